//! Seeded image augmentations on 8-bit RGB images (height x width x 3), one image at a time.
//! The existing tool's six (flips, rotation, blur, brightness, contrast) are each applied with
//! probability 1/2; the field's three (`crop`, `color`, `trivial`) to every image, as
//! torchvision applies them.
use rand::Rng;

use crate::config::Augmentation;

pub mod color;
pub mod crop;
pub mod trivial;

/// What a run asks of its augmentation: the chosen ones, in order, and the random-resized
/// crop's share of the area.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub augs: Vec<Augmentation>,
    pub crop_scale: [f64; 2],
}

impl Plan {
    pub fn none() -> Plan {
        Plan { augs: Vec::new(), crop_scale: crop::DEFAULT_SCALE }
    }

    pub fn is_empty(&self) -> bool {
        self.augs.is_empty()
    }
}

/// Largest rotation, in degrees, either way.
pub const MAX_ROTATION_DEGREES: f32 = 15.0;
/// Brightness and contrast factors are drawn from [1 - JITTER, 1 + JITTER].
pub const JITTER: f32 = 0.25;
/// Gaussian blur sigma range (3x3 kernel), as torchvision's GaussianBlur default.
pub const BLUR_SIGMA: (f32, f32) = (0.1, 2.0);

pub fn hflip(img: &mut [u8], size: usize) {
    for row in img.chunks_exact_mut(size * 3) {
        for x in 0..size / 2 {
            for c in 0..3 {
                row.swap(x * 3 + c, (size - 1 - x) * 3 + c);
            }
        }
    }
}

pub fn vflip(img: &mut [u8], size: usize) {
    let stride = size * 3;
    for y in 0..size / 2 {
        let (top, bottom) = img.split_at_mut((size - 1 - y) * stride);
        top[y * stride..(y + 1) * stride].swap_with_slice(&mut bottom[..stride]);
    }
}

/// Rotation about the centre by `degrees` (counter-clockwise), bilinear, corners filled black.
pub fn rotate(img: &mut [u8], size: usize, degrees: f32) {
    let src = img.to_vec();
    let (sin, cos) = degrees.to_radians().sin_cos();
    let c = (size as f32 - 1.0) / 2.0;
    let at = |x: isize, y: isize, ch: usize| -> f32 {
        if x < 0 || y < 0 || x >= size as isize || y >= size as isize {
            0.0
        } else {
            src[(y as usize * size + x as usize) * 3 + ch] as f32
        }
    };
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = (x as f32 - c, y as f32 - c);
            // Inverse mapping: where in the source this output pixel comes from.
            let sx = cos * dx - sin * dy + c;
            let sy = sin * dx + cos * dy + c;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            for ch in 0..3 {
                let v = at(x0, y0, ch) * (1.0 - fx) * (1.0 - fy)
                    + at(x0 + 1, y0, ch) * fx * (1.0 - fy)
                    + at(x0, y0 + 1, ch) * (1.0 - fx) * fy
                    + at(x0 + 1, y0 + 1, ch) * fx * fy;
                img[(y * size + x) * 3 + ch] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// 3x3 Gaussian blur with reflected borders.
pub fn blur(img: &mut [u8], size: usize, sigma: f32) {
    let w1 = (-1.0 / (2.0 * sigma * sigma)).exp();
    let k = [w1 / (1.0 + 2.0 * w1), 1.0 / (1.0 + 2.0 * w1), w1 / (1.0 + 2.0 * w1)];
    let reflect = |i: isize| -> usize {
        if i < 0 {
            (-i) as usize
        } else if i >= size as isize {
            (2 * size as isize - 2 - i) as usize
        } else {
            i as usize
        }
        .min(size - 1)
    };
    let pass = |src: &[u8], horizontal: bool| -> Vec<u8> {
        let mut out = vec![0u8; src.len()];
        for y in 0..size {
            for x in 0..size {
                for ch in 0..3 {
                    let mut v = 0.0;
                    for (t, w) in k.iter().enumerate() {
                        let d = t as isize - 1;
                        let (sx, sy) = if horizontal {
                            (reflect(x as isize + d), y)
                        } else {
                            (x, reflect(y as isize + d))
                        };
                        v += w * src[(sy * size + sx) * 3 + ch] as f32;
                    }
                    out[(y * size + x) * 3 + ch] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        out
    };
    let h = pass(img, true);
    img.copy_from_slice(&pass(&h, false));
}

pub fn brightness(img: &mut [u8], factor: f32) {
    for p in img.iter_mut() {
        *p = (*p as f32 * factor).round().clamp(0.0, 255.0) as u8;
    }
}

/// Contrast about the image's mean grey level, as torchvision's adjust_contrast.
pub fn contrast(img: &mut [u8], factor: f32) {
    let n = (img.len() / 3) as f32;
    let mean = img
        .chunks_exact(3)
        .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
        .sum::<f32>()
        / n;
    for p in img.iter_mut() {
        *p = (mean + factor * (*p as f32 - mean)).round().clamp(0.0, 255.0) as u8;
    }
}

/// Applies `plan` to one image, drawing every choice from `rng`: the random-resized crop first
/// (it chooses what the image shows), then the others in the order given.
pub fn apply(img: &mut [u8], size: usize, plan: &Plan, rng: &mut impl Rng) {
    if plan.augs.contains(&Augmentation::RandomResizedCrop) {
        crop::resized_crop(img, size, crop::draw(size, plan.crop_scale, rng));
    }
    for &a in &plan.augs {
        match a {
            Augmentation::RandomResizedCrop => continue,
            Augmentation::ColorJitter => {
                color::jitter(img, color::draw_jitter(rng));
                continue;
            }
            Augmentation::TrivialAugment => {
                trivial::apply(img, size, trivial::draw(rng));
                continue;
            }
            _ => {}
        }
        if !rng.random_bool(0.5) {
            continue;
        }
        match a {
            Augmentation::HorizontalFlip => hflip(img, size),
            Augmentation::VerticalFlip => vflip(img, size),
            Augmentation::Rotate => {
                rotate(img, size, rng.random_range(-MAX_ROTATION_DEGREES..=MAX_ROTATION_DEGREES))
            }
            Augmentation::Blur => blur(img, size, rng.random_range(BLUR_SIGMA.0..=BLUR_SIGMA.1)),
            Augmentation::Brightness => brightness(img, rng.random_range(1.0 - JITTER..=1.0 + JITTER)),
            Augmentation::Contrast => contrast(img, rng.random_range(1.0 - JITTER..=1.0 + JITTER)),
            Augmentation::RandomResizedCrop | Augmentation::ColorJitter | Augmentation::TrivialAugment => {
                unreachable!("applied above")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn gradient(size: usize) -> Vec<u8> {
        (0..size * size * 3).map(|i| ((i * 37 + i / 7) % 251) as u8).collect()
    }
    fn px(img: &[u8], size: usize, x: usize, y: usize) -> [u8; 3] {
        let i = (y * size + x) * 3;
        [img[i], img[i + 1], img[i + 2]]
    }

    #[test]
    fn flips_are_exact_mirrors() {
        for size in [5, 6] {
            let src = gradient(size);
            let mut h = src.clone();
            hflip(&mut h, size);
            let mut v = src.clone();
            vflip(&mut v, size);
            for y in 0..size {
                for x in 0..size {
                    assert_eq!(px(&h, size, x, y), px(&src, size, size - 1 - x, y));
                    assert_eq!(px(&v, size, x, y), px(&src, size, x, size - 1 - y));
                }
            }
            hflip(&mut h, size);
            assert_eq!(h, src);
        }
    }

    #[test]
    fn rotation_by_zero_and_quarter_turn() {
        let size = 7;
        let src = gradient(size);
        let mut r = src.clone();
        rotate(&mut r, size, 0.0);
        assert_eq!(r, src);
        let mut q = src.clone();
        rotate(&mut q, size, 90.0);
        for y in 0..size {
            for x in 0..size {
                // Inverse mapping of a quarter turn: out(x, y) = src(size - 1 - y, x).
                assert_eq!(px(&q, size, x, y), px(&src, size, size - 1 - y, x));
            }
        }
        let mut s = src.clone();
        rotate(&mut s, size, 45.0);
        assert_eq!(px(&s, size, 3, 3), px(&src, size, 3, 3), "the centre stays");
        assert_eq!(px(&s, size, 0, 0), [0, 0, 0], "corners are filled black");
    }

    #[test]
    fn blur_keeps_flat_images_and_smooths_edges() {
        let size = 6;
        let mut flat = vec![90u8; size * size * 3];
        blur(&mut flat, size, 1.5);
        assert!(flat.iter().all(|&v| v == 90));
        let mut edge: Vec<u8> = (0..size * size).flat_map(|i| if i % size < 3 { [0u8; 3] } else { [255u8; 3] }).collect();
        blur(&mut edge, size, 1.0);
        assert!(px(&edge, size, 2, 0)[0] > 0 && px(&edge, size, 3, 0)[0] < 255);
        assert_eq!(px(&edge, size, 0, 0)[0], 0);
    }

    #[test]
    fn brightness_and_contrast() {
        let mut img = vec![100u8, 200, 50];
        brightness(&mut img, 1.2);
        assert_eq!(img, [120, 240, 60]);
        brightness(&mut img, 2.0);
        assert_eq!(img, [240, 255, 120]);
        let mut c = vec![100u8, 100, 100, 200, 200, 200];
        contrast(&mut c, 0.0);
        assert_eq!(c, [150; 6]);
        let mut c = vec![100u8, 100, 100, 200, 200, 200];
        contrast(&mut c, 1.5);
        assert_eq!(c, [75, 75, 75, 225, 225, 225]);
    }

    #[test]
    fn apply_is_seeded() {
        let size = 8;
        let run = |seed| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut outs = Vec::new();
            for _ in 0..6 {
                let mut img = gradient(size);
                apply(&mut img, size, &Plan { augs: Augmentation::ALL.to_vec(), crop_scale: crop::DEFAULT_SCALE }, &mut rng);
                outs.push(img);
            }
            outs
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert!(run(1).iter().any(|img| *img != gradient(size)));
    }
}
