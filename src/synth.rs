//! The bundled sample: small synthetic images of a few shape classes, drawn deterministically
//! from a seed, so that the project ships no third-party images.
use std::io::{Cursor, Write};
use std::path::Path;

use anyhow::Result;
use image::{ImageFormat, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const CLASSES: [&str; 3] = ["circle", "square", "triangle"];

fn inside(class: &str, x: f32, y: f32, cx: f32, cy: f32, r: f32) -> bool {
    let (dx, dy) = (x - cx, y - cy);
    match class {
        "circle" => dx * dx + dy * dy <= r * r,
        "square" => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
        _ => dy <= r * 0.8 && dy >= -r && dx.abs() <= (dy + r) * 0.6,
    }
}

/// One image: a noisy background and a shape of the class, with random place, size and colour.
pub fn draw(class: &str, size: u32, rng: &mut ChaCha8Rng) -> RgbImage {
    let bg: [f32; 3] = std::array::from_fn(|_| rng.random_range(150.0..230.0));
    let fg: [f32; 3] = std::array::from_fn(|_| rng.random_range(20.0..120.0));
    let s = size as f32;
    let r = rng.random_range(0.22..0.34) * s;
    let cx = rng.random_range(r..s - r);
    let cy = rng.random_range(r..s - r);
    RgbImage::from_fn(size, size, |x, y| {
        let base = if inside(class, x as f32 + 0.5, y as f32 + 0.5, cx, cy, r) { fg } else { bg };
        Rgb(std::array::from_fn(|c| (base[c] + rng.random_range(-18.0..18.0)).clamp(0.0, 255.0) as u8))
    })
}

/// An image's regression target in the sample: its mean brightness on a 0-100 scale, to two
/// decimals (something a network can learn from the pixels alone).
pub fn brightness(img: &RgbImage) -> f64 {
    let sum: u64 = img.as_raw().iter().map(|&v| u64::from(v)).sum();
    let mean = sum as f64 / img.as_raw().len() as f64;
    (mean / 255.0 * 10_000.0).round() / 100.0
}

/// Writes `sample_images.zip` and `sample_metadata.csv` (image_path,label) into `dir`, with the
/// variants the Galaxy tests use: a split column, two classes only, HAM10000-style columns
/// (tab-separated, two images per lesion), a table without a label column, and a regression
/// target (`brightness`). The images are PNG, or JPEG (quality 90) with `jpeg`; the ZIP is
/// written as it is made, so a large sample (for the scale benchmark) needs little memory.
pub fn write_sample(dir: &Path, per_class: usize, size: u32, seed: u64, jpeg: bool) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut files = crate::outputs::OutputSet::new();
    let mut tables = None;
    files.stage_with(&dir.join("sample_images.zip"), &mut |f| {
        tables = Some(write_images(f, per_class, size, seed, jpeg).map_err(std::io::Error::other)?);
        Ok(())
    })?;
    let (csv, split, binary, ham, bad, regression) = tables.expect("written");
    for (name, text) in [
        ("sample_metadata.csv", &csv),
        ("sample_metadata_split.csv", &split),
        ("sample_metadata_binary.csv", &binary),
        ("sample_metadata_ham.tsv", &ham),
        ("sample_metadata_bad.csv", &bad),
        ("sample_metadata_regression.csv", &regression),
    ] {
        files.stage(&dir.join(name), text.as_bytes())?;
    }
    files.commit()?;
    Ok(())
}

type Tables = (String, String, String, String, String, String);

/// Draws the images into a ZIP written to `out`, and returns the sample's six tables.
fn write_images(out: &mut std::fs::File, per_class: usize, size: u32, seed: u64, jpeg: bool) -> Result<Tables> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(out));
    let ext = if jpeg { "jpg" } else { "png" };
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default());
    let mut csv = String::from("image_path,label\n");
    let mut split = String::from("image_path,label,split\n");
    let mut binary = String::from("image_path,label\n");
    let mut ham = String::from("lesion_id\timage_id\tdx\timage_path\n");
    let mut bad = String::from("image_path,diagnosis_code\n");
    let mut regression = String::from("image_path,target\n");
    for i in 0..per_class {
        let which = match i * 10 / per_class.max(1) {
            0..=6 => "train",
            7 => "validation",
            _ => "test",
        };
        for class in CLASSES {
            let file = format!("{class}_{i:03}.{ext}");
            split.push_str(&format!("{file},{class},{which}\n"));
            if class != "triangle" {
                binary.push_str(&format!("{file},{class}\n"));
            }
            ham.push_str(&format!("L_{class}_{:03}\t{class}_{i:03}\t{class}\timages/{file}\n", i / 2));
            bad.push_str(&format!("{file},{class}\n"));
            let name = format!("images/{file}");
            let mut encoded = Cursor::new(Vec::new());
            let img = draw(class, size, &mut rng);
            regression.push_str(&format!("{file},{}\n", brightness(&img)));
            if jpeg {
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut encoded, 90).encode_image(&img)?;
            } else {
                img.write_to(&mut encoded, ImageFormat::Png)?;
            }
            zip.start_file(name.as_str(), opts)?;
            zip.write_all(encoded.get_ref())?;
            csv.push_str(&format!("{file},{class}\n"));
        }
    }
    zip.finish()?.flush()?;
    Ok((csv, split, binary, ham, bad, regression))
}
