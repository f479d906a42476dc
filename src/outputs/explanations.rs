//! predict's Explanations ZIP: for each explained image, a PNG of the image (as the model saw it)
//! beside its heatmap overlay, and `explanations.csv` listing them in order.
use std::io::{Cursor, Write};

use anyhow::Result;

use crate::data::ImageSet;
use crate::explain::{overlay, Explained};

/// A file name for the image at `rank`: its number (so that the ZIP lists them in order) and its
/// base name, with anything but letters, digits, dots, dashes and underscores replaced.
fn entry_name(rank: usize, image: &str) -> String {
    let base = image.rsplit(['/', '\\']).next().unwrap_or(image);
    let stem = base.rsplit_once('.').map_or(base, |(s, _)| s);
    let clean: String = stem.chars().take(80).map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    format!("{:04}_{clean}.png", rank + 1)
}

/// The ZIP's bytes. `images` maps an explained position to the set's image index; `output` names
/// the output explained (a class, or the predicted value).
pub fn zip(set: &ImageSet, images: &[usize], explained: &[Explained], output: &dyn Fn(i64) -> String, method: &str) -> Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let deflated = zip::write::SimpleFileOptions::default();
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(["rank", "image_path", "explained", "reason", "method", "file"])?;
    for (rank, e) in explained.iter().enumerate() {
        let i = images[e.position];
        let name = entry_name(rank, &set.names[i]);
        let pair = overlay::side_by_side(&set.image(i)?, &e.heat, set.size);
        let mut png = Cursor::new(Vec::new());
        pair.write_to(&mut png, image::ImageFormat::Png)?;
        w.start_file(name.as_str(), deflated)?;
        w.write_all(png.get_ref())?;
        csv.write_record([(rank + 1).to_string(), set.names[i].clone(), output(e.target), e.why.clone(), method.to_string(), name])?;
    }
    w.start_file("explanations.csv", deflated)?;
    w.write_all(&csv.into_inner()?)?;
    Ok(w.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_keep_order_and_only_safe_characters() {
        assert_eq!(entry_name(0, "a/b/ISIC_001.jpg"), "0001_ISIC_001.png");
        assert_eq!(entry_name(41, "..\\x y?.png"), "0042_x_y_.png");
        assert_eq!(entry_name(2, "noext"), "0003_noext.png");
    }
}
