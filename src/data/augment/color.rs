//! Colour operations on 8-bit RGB, computed as torchvision computes them on a uint8 tensor
//! (float32 arithmetic, each result clamped and truncated to 8 bits), and `ColorJitter`.
use rand::seq::SliceRandom;
use rand::Rng;

/// `ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05)`.
pub const JITTER: f32 = 0.2;
pub const HUE: f32 = 0.05;

/// torchvision's grey level of one pixel, truncated to 8 bits (`rgb_to_grayscale`).
fn grey(p: &[u8]) -> u8 {
    (0.2989 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) as u8
}

/// `ratio * a + (1 - ratio) * b`, clamped and truncated (torchvision's `_blend`).
fn blend(a: u8, b: f32, ratio: f32) -> u8 {
    (ratio * a as f32 + (1.0 - ratio) * b).clamp(0.0, 255.0) as u8
}

pub fn brightness(img: &mut [u8], factor: f32) {
    for v in img.iter_mut() {
        *v = blend(*v, 0.0, factor);
    }
}

/// Blends toward the image's mean grey level.
pub fn contrast(img: &mut [u8], factor: f32) {
    let n = (img.len() / 3) as f32;
    let mean = img.chunks_exact(3).map(|p| grey(p) as f32).sum::<f32>() / n;
    for v in img.iter_mut() {
        *v = blend(*v, mean, factor);
    }
}

/// Blends each pixel toward its own grey level.
pub fn saturation(img: &mut [u8], factor: f32) {
    for p in img.chunks_exact_mut(3) {
        let g = grey(p) as f32;
        for v in p.iter_mut() {
            *v = blend(*v, g, factor);
        }
    }
}

/// Turns the hue by `shift` of a full turn (-0.5..0.5), through torchvision's HSV formulas.
pub fn hue(img: &mut [u8], shift: f32) {
    for p in img.chunks_exact_mut(3) {
        let [r, g, b] = [p[0] as f32 / 255.0, p[1] as f32 / 255.0, p[2] as f32 / 255.0];
        let (maxc, minc) = (r.max(g).max(b), r.min(g).min(b));
        let equal = maxc == minc;
        let cr = maxc - minc;
        let s = cr / if equal { 1.0 } else { maxc };
        let d = if equal { 1.0 } else { cr };
        let (rc, gc, bc) = ((maxc - r) / d, (maxc - g) / d, (maxc - b) / d);
        let h = if maxc == r {
            bc - gc
        } else if maxc == g {
            2.0 + rc - bc
        } else {
            4.0 + gc - rc
        };
        let h = ((h / 6.0 + 1.0) % 1.0 + shift).rem_euclid(1.0);
        let v = maxc;
        let i = (h * 6.0).floor();
        let f = h * 6.0 - i;
        let (pp, q, t) = (
            (v * (1.0 - s)).clamp(0.0, 1.0),
            (v * (1.0 - s * f)).clamp(0.0, 1.0),
            (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0),
        );
        let rgb = match (i as i32).rem_euclid(6) {
            0 => [v, t, pp],
            1 => [q, v, pp],
            2 => [pp, v, t],
            3 => [pp, q, v],
            4 => [t, pp, v],
            _ => [v, pp, q],
        };
        for (out, x) in p.iter_mut().zip(rgb) {
            // torchvision's float-to-uint8 conversion: times 255.999, truncated.
            *out = (x * (255.0 + 1.0 - 1e-3)) as u8;
        }
    }
}

/// One draw of `ColorJitter`: the order of the four operations and their factors.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Jitter {
    /// 0 brightness, 1 contrast, 2 saturation, 3 hue.
    pub order: [usize; 4],
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

pub fn draw_jitter(rng: &mut impl Rng) -> Jitter {
    let mut order = [0, 1, 2, 3];
    order.shuffle(rng);
    let mut factor = || rng.random_range(1.0 - JITTER..=1.0 + JITTER);
    let (brightness, contrast, saturation) = (factor(), factor(), factor());
    Jitter { order, brightness, contrast, saturation, hue: rng.random_range(-HUE..=HUE) }
}

pub fn jitter(img: &mut [u8], j: Jitter) {
    for op in j.order {
        match op {
            0 => brightness(img, j.brightness),
            1 => contrast(img, j.contrast),
            2 => saturation(img, j.saturation),
            _ => hue(img, j.hue),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_change_at_factor_one_and_grey_stays_grey() {
        let img: Vec<u8> = (0..48u32).map(|i| (i * 37 % 256) as u8).collect();
        for f in [brightness, contrast, saturation] {
            let mut x = img.clone();
            f(&mut x, 1.0);
            assert_eq!(x, img);
        }
        let mut x = img.clone();
        hue(&mut x, 0.0);
        assert!(x.iter().zip(&img).all(|(a, b)| a.abs_diff(*b) <= 1), "a turn of 0 keeps the colours");
        let mut g = vec![90u8, 90, 90, 10, 10, 10];
        hue(&mut g, 0.3);
        saturation(&mut g, 1.5);
        assert_eq!(g, [90, 90, 90, 10, 10, 10]);
        // A pure red turned by a third of a circle is green.
        let mut red = vec![255u8, 0, 0];
        hue(&mut red, 1.0 / 3.0);
        assert_eq!(red, [0, 255, 0]);
    }
}
