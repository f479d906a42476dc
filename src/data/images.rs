//! Decoding: any of PNG, JPEG, BMP, TIFF, WebP, GIF; grayscale, alpha, palette and 16-bit become
//! 8-bit RGB, resized to a square of the model's input size. A pixel limit stops decompression
//! bombs before anything large is allocated.
use anyhow::Result;
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
    let rgb = img.into_rgb8();
    let (w, h) = rgb.dimensions();
    let tiny = w < 8 || h < 8;
    if w == size && h == size {
        return Ok((rgb.into_raw(), tiny));
    }
    let resized = resize_bilinear(rgb.into_raw(), w, h, size)
        .map_err(|e| input_error(format!("'{name}' ({w}x{h}) cannot be resized to {size}x{size}: {e}")))?;
    Ok((resized, tiny))
}

/// Bilinear (triangle-filter) resize of 8-bit RGB to `size` x `size`, with SIMD
/// (fast_image_resize); the filter widens when shrinking, so downscaling averages.
fn resize_bilinear(rgb: Vec<u8>, w: u32, h: u32, size: u32) -> std::result::Result<Vec<u8>, String> {
    use fast_image_resize::{images::Image, FilterType as F, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let src = Image::from_vec_u8(w, h, rgb, PixelType::U8x3).map_err(|e| e.to_string())?;
    let mut dst = Image::new(size, size, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(F::Bilinear));
    Resizer::new().resize(&src, &mut dst, &options).map_err(|e| e.to_string())?;
    Ok(dst.into_vec())
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
    fn resizing_interpolates_and_averages_like_image_s_triangle_filter() {
        // A horizontal ramp, shrunk and enlarged: the result matches the image crate's own
        // triangle filter within rounding, and keeps the ramp.
        let ramp = RgbImage::from_fn(40, 30, |x, _| Rgb([(x * 6) as u8, 255 - (x * 6) as u8, 9]));
        for size in [8, 96] {
            let ours = resize_bilinear(ramp.clone().into_raw(), 40, 30, size).unwrap();
            let theirs = image::imageops::resize(&ramp, size, size, image::imageops::FilterType::Triangle).into_raw();
            let worst = ours.iter().zip(&theirs).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            assert!(worst <= 2, "size {size}: differs from image's triangle filter by {worst}");
            let row: Vec<u8> = ours.chunks(3).take(size as usize).map(|p| p[0]).collect();
            assert!(row.windows(2).all(|w| w[0] <= w[1]), "size {size}: the ramp rises: {row:?}");
        }
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
