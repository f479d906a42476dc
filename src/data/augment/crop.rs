//! torchvision's `RandomResizedCrop`: a region of a drawn share of the image's area and a drawn
//! aspect ratio, resized back to the image's size (bilinear, half-pixel centres, edges repeated,
//! which is what torchvision's antialiased resize computes when it enlarges, as it always does
//! here).
use rand::Rng;

/// torchvision's aspect-ratio range, 3/4 to 4/3, drawn on a log scale.
pub const RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);
/// The share of the area a crop keeps unless `--crop-scale` says otherwise.
pub const DEFAULT_SCALE: [f64; 2] = crate::config::CropScale::DEFAULT.0;

/// A crop: its top row, left column, height and width, in pixels of the stored image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Crop {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Draws a crop of a `size` x `size` image as `RandomResizedCrop.get_params` does: up to ten
/// tries at an area share in `scale` and an aspect in `RATIO`; then the central crop, clamped to
/// the ratio range.
pub fn draw(size: usize, scale: [f64; 2], rng: &mut impl Rng) -> Crop {
    let area = (size * size) as f64;
    let (lo, hi) = (RATIO.0.ln(), RATIO.1.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale[0]..=scale[1]);
        let aspect = rng.random_range(lo..=hi).exp();
        let width = (target * aspect).sqrt().round() as usize;
        let height = (target / aspect).sqrt().round() as usize;
        if (1..=size).contains(&width) && (1..=size).contains(&height) {
            let top = rng.random_range(0..=size - height);
            let left = rng.random_range(0..=size - width);
            return Crop { top, left, height, width };
        }
    }
    // A square image's ratio is 1, inside the range: the whole image.
    Crop { top: 0, left: 0, height: size, width: size }
}

/// Replaces the `size` x `size` image by `crop` of it, enlarged back to `size` x `size`.
pub fn resized_crop(img: &mut [u8], size: usize, crop: Crop) {
    if crop.height == size && crop.width == size {
        return;
    }
    let src = img.to_vec();
    // Each output pixel's source coordinate along one axis: its two neighbours and the weight
    // of the second, with half-pixel centres and the edges repeated.
    let taps = |n: usize, offset: usize| -> Vec<(usize, usize, f32)> {
        let scale = n as f32 / size as f32;
        (0..size)
            .map(|o| {
                let x = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let x0 = (x.floor() as usize).min(n - 1);
                let x1 = (x0 + 1).min(n - 1);
                (offset + x0, offset + x1, x - x0 as f32)
            })
            .collect()
    };
    let (rows, cols) = (taps(crop.height, crop.top), taps(crop.width, crop.left));
    let at = |y: usize, x: usize, c: usize| src[(y * size + x) * 3 + c] as f32;
    for (oy, &(y0, y1, fy)) in rows.iter().enumerate() {
        for (ox, &(x0, x1, fx)) in cols.iter().enumerate() {
            for c in 0..3 {
                let top = at(y0, x0, c) + (at(y0, x1, c) - at(y0, x0, c)) * fx;
                let bottom = at(y1, x0, c) + (at(y1, x1, c) - at(y1, x0, c)) * fx;
                img[(oy * size + ox) * 3 + c] = (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Over 10,000 draws the area shares stay within the asked range and average what the
    /// retries leave of it, and the aspects stay within 3/4..4/3 with a log-mean near 1.
    #[test]
    fn drawn_crops_follow_the_requested_ranges() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let size = 224;
        for scale in [[0.35, 1.0], [0.08, 1.0], [0.5, 0.6]] {
            let (mut share_sum, mut log_aspect_sum, n) = (0.0, 0.0, 10_000);
            for _ in 0..n {
                let c = draw(size, scale, &mut rng);
                assert!(c.top + c.height <= size && c.left + c.width <= size);
                let share = (c.height * c.width) as f64 / (size * size) as f64;
                let aspect = c.width as f64 / c.height as f64;
                // Rounding the sides to whole pixels moves the share and aspect a little.
                assert!(share >= scale[0] - 0.005 && share <= scale[1] + 0.005, "{scale:?}: share {share}");
                assert!(aspect >= 0.75 * 0.98 && aspect <= 4.0 / 3.0 * 1.02, "aspect {aspect}");
                share_sum += share;
                log_aspect_sum += aspect.ln();
            }
            let mean = share_sum / n as f64;
            // A draw is kept when the crop fits: |log aspect| <= -log share. The kept shares'
            // mean, integrated: each share weighted by the chance its aspect fits.
            let l = RATIO.1.ln();
            let (mut num, mut den) = (0.0, 0.0);
            for k in 0..100_000 {
                let u = scale[0] + (scale[1] - scale[0]) * (k as f64 + 0.5) / 100_000.0;
                let fits = (-u.ln()).min(l) / l;
                num += u * fits;
                den += fits;
            }
            let expected = num / den;
            assert!((mean - expected).abs() < 0.01, "{scale:?}: mean share {mean}, expected {expected}");
            assert!((log_aspect_sum / n as f64).abs() < 0.02, "the aspects centre on 1");
        }
    }

    #[test]
    fn the_whole_image_is_left_as_it_is_and_a_quarter_is_enlarged() {
        let size = 4;
        let img: Vec<u8> = (0..size * size * 3).map(|i| (i * 5) as u8).collect();
        let mut same = img.clone();
        resized_crop(&mut same, size, Crop { top: 0, left: 0, height: 4, width: 4 });
        assert_eq!(same, img);
        // The top-left 2x2 doubled: output pixel 1 sits at source 0.25, between pixels 0 and 1.
        let mut quarter = img.clone();
        resized_crop(&mut quarter, size, Crop { top: 0, left: 0, height: 2, width: 2 });
        let px = |im: &[u8], x: usize, y: usize| im[(y * size + x) * 3];
        assert_eq!(px(&quarter, 0, 0), px(&img, 0, 0));
        let want = px(&img, 0, 0) as f32 * 0.75 + px(&img, 1, 0) as f32 * 0.25;
        assert_eq!(px(&quarter, 1, 0), want.round() as u8);
        assert_eq!(px(&quarter, 3, 3), px(&img, 1, 1), "the far corner repeats the crop's edge");
    }
}
