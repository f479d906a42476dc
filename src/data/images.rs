//! Decoding: any of PNG, JPEG, BMP, TIFF, WebP, GIF; grayscale, alpha, palette and 16-bit become
//! 8-bit RGB, resized to a square of the model's input size. A pixel limit stops decompression
//! bombs before anything large is allocated.
use anyhow::Result;
use image::imageops::FilterType;
use image::{ImageReader, Limits};
use std::io::Cursor;

use crate::error::input_error;

/// Images above this many pixels are refused (about 10,000 x 10,000).
pub const MAX_PIXELS: u64 = 100_000_000;

/// Decodes `bytes` to an RGB8 image of `size` x `size`, laid out height x width x 3; the flag
/// says the original was smaller than 8x8 pixels.
pub fn decode_rgb(bytes: &[u8], name: &str, size: u32) -> Result<(Vec<u8>, bool)> {
    if bytes.is_empty() {
        return Err(input_error(format!("'{name}' is an empty file (0 bytes)")));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| input_error(format!("'{name}' cannot be read: {e}")))?;
    if reader.format().is_none() {
        return Err(input_error(format!(
            "'{name}' is not an image in a known format (PNG, JPEG, BMP, TIFF, WebP, GIF)"
        )));
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| input_error(format!("'{name}' is damaged or truncated: {e}")))?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(input_error(format!(
            "'{name}' is {w}x{h} pixels, above the limit of {MAX_PIXELS} pixels; resize it first"
        )));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| input_error(format!("'{name}' is damaged or truncated: {e}")))?;
    let rgb = img.to_rgb8();
    let tiny = rgb.width() < 8 || rgb.height() < 8;
    let rgb = if rgb.width() == size && rgb.height() == size {
        rgb
    } else {
        image::imageops::resize(&rgb, size, size, FilterType::Triangle)
    };
    Ok((rgb.into_raw(), tiny))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

    fn encode(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).unwrap();
        out.into_inner()
    }

    fn sample() -> RgbImage {
        RgbImage::from_fn(8, 8, |x, y| Rgb([(x * 30) as u8, (y * 30) as u8, 77]))
    }

    #[test]
    fn every_format_and_colour_type_becomes_rgb() {
        let rgb = DynamicImage::ImageRgb8(sample());
        let variants = [
            (rgb.clone(), ImageFormat::Png),
            (rgb.clone(), ImageFormat::Bmp),
            (rgb.clone(), ImageFormat::Tiff),
            (DynamicImage::ImageRgba8(rgb.to_rgba8()), ImageFormat::Png),
            (DynamicImage::ImageLuma8(rgb.to_luma8()), ImageFormat::Png),
            (DynamicImage::ImageRgb16(rgb.to_rgb16()), ImageFormat::Png),
            (DynamicImage::ImageLuma16(rgb.to_luma16()), ImageFormat::Png),
        ];
        for (img, fmt) in variants {
            let out = decode_rgb(&encode(&img, fmt), "x", 8).unwrap().0;
            assert_eq!(out.len(), 8 * 8 * 3);
            if matches!(img, DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) | DynamicImage::ImageRgb16(_)) {
                assert_eq!(out, sample().into_raw(), "{fmt:?} {:?}", img.color());
            }
        }
        let jpeg = decode_rgb(&encode(&rgb, ImageFormat::Jpeg), "x", 8).unwrap().0;
        let err: i32 = jpeg.iter().zip(sample().into_raw()).map(|(&a, b)| (a as i32 - b as i32).abs()).max().unwrap();
        assert!(err < 40, "jpeg error {err}");
        let webp = decode_rgb(&encode(&rgb, ImageFormat::WebP), "x", 8).unwrap().0;
        assert_eq!(webp.len(), 192);
    }

    #[test]
    fn resizes_to_square() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(30, 10, Rgb([200, 10, 10])));
        let (out, tiny) = decode_rgb(&encode(&img, ImageFormat::Png), "x", 16).unwrap();
        assert!(!tiny);
        assert_eq!(out.len(), 16 * 16 * 3);
        assert!(out.chunks(3).all(|p| p == [200, 10, 10]));
        let one = DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, Rgb([1, 2, 3])));
        assert_eq!(decode_rgb(&encode(&one, ImageFormat::Png), "x", 4).unwrap(), ([1u8, 2, 3].repeat(16), true));
    }

    #[test]
    fn bad_files_are_named() {
        let e = |b: &[u8]| format!("{:#}", decode_rgb(b, "bad.png", 8).unwrap_err());
        assert!(e(b"").contains("empty file"));
        assert!(e(b"just some text").contains("not an image"));
        let png = encode(&DynamicImage::ImageRgb8(sample()), ImageFormat::Png);
        assert!(e(&png[..png.len() / 2]).contains("damaged or truncated"));
        // A PNG header claiming 40000 x 40000 pixels is refused before decoding.
        let mut bomb = png.clone();
        bomb[16..20].copy_from_slice(&40000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&40000u32.to_be_bytes());
        let crc = crc32fast::hash(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(e(&bomb).contains("above the limit"), "{}", e(&bomb));
    }
}
