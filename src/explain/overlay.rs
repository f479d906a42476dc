//! Heatmaps made visible: the jet colour scale over the image, as pytorch-grad-cam's
//! `show_cam_on_image` draws it (half image, half colour, rescaled to full brightness), and the
//! scale's legend.
use std::fmt::Write;

/// The jet colour of `v` in [0, 1]: dark blue (0) through cyan, yellow, to dark red (1).
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let channel = |centre: f32| ((1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [channel(3.0), channel(2.0), channel(1.0)]
}

/// `pixels` (RGB, row by row) with `heat` (one value in [0, 1] per pixel) laid over it.
pub fn blend(pixels: &[u8], heat: &[f32]) -> Vec<u8> {
    assert_eq!(pixels.len(), 3 * heat.len(), "one heat value per RGB pixel");
    let mixed: Vec<f32> = pixels
        .chunks_exact(3)
        .zip(heat)
        .flat_map(|(px, &h)| {
            let c = jet(h);
            (0..3).map(move |k| 0.5 * f32::from(c[k]) / 255.0 + 0.5 * f32::from(px[k]) / 255.0)
        })
        .collect();
    let top = mixed.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
    mixed.iter().map(|v| (255.0 * v / top).round().clamp(0.0, 255.0) as u8).collect()
}

/// The image and its overlay side by side, `size` pixels square each, as one RGB image.
pub fn side_by_side(pixels: &[u8], heat: &[f32], size: usize) -> image::RgbImage {
    let over = blend(pixels, heat);
    let mut out = image::RgbImage::new(2 * size as u32, size as u32);
    for y in 0..size {
        for x in 0..size {
            let i = 3 * (y * size + x);
            out.put_pixel(x as u32, y as u32, image::Rgb([pixels[i], pixels[i + 1], pixels[i + 2]]));
            out.put_pixel((size + x) as u32, y as u32, image::Rgb([over[i], over[i + 1], over[i + 2]]));
        }
    }
    out
}

/// A CSS gradient of the colour scale, for the legend.
pub fn legend_gradient() -> String {
    let mut css = String::from("linear-gradient(to right");
    for k in 0..=8 {
        let [r, g, b] = jet(k as f32 / 8.0);
        let _ = write!(css, ", #{r:02x}{g:02x}{b:02x}");
    }
    css.push(')');
    css
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_runs_from_dark_blue_to_dark_red() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        assert_eq!(jet(-1.0), jet(0.0));
        assert!(legend_gradient().starts_with("linear-gradient(to right, #000080"));
    }

    #[test]
    fn the_overlay_keeps_the_image_under_the_colour() {
        // A black and a white pixel under the same heat: the white one stays brighter.
        let out = blend(&[0, 0, 0, 255, 255, 255], &[1.0, 1.0]);
        assert!(out[3] > out[0] && out[5] > out[2]);
        // Rescaled to full brightness.
        assert_eq!(*out.iter().max().unwrap(), 255);
        let pair = side_by_side(&[10, 20, 30], &[0.0], 1);
        assert_eq!(pair.dimensions(), (2, 1));
        assert_eq!(pair.get_pixel(0, 0).0, [10, 20, 30]);
    }
}
