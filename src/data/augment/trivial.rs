//! torchvision's `TrivialAugmentWide`: one operation per image, drawn uniformly from fourteen,
//! at a magnitude drawn uniformly from its 31 steps (and a drawn sign where the operation has
//! one). Each operation computes what torchvision computes on a uint8 tensor; the geometric ones
//! sample the nearest pixel and fill with black, as its defaults do.
use rand::Rng;

use super::color;

/// The operations, in torchvision's order.
pub const OPS: [&str; 14] = [
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
    "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
];
const BINS: usize = 31;

/// One draw: the operation (an index into `OPS`) and its signed magnitude.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Op {
    pub op: usize,
    pub magnitude: f32,
}

/// `torch.linspace(start, end, 31)[bin]`, as float32.
fn linspace(start: f32, end: f32, bin: usize) -> f32 {
    let step = (end - start) / (BINS - 1) as f32;
    // torch.linspace fills the first half from the start and the second from the end.
    if bin < BINS / 2 { start + step * bin as f32 } else { end - step * (BINS - 1 - bin) as f32 }
}

pub fn draw(rng: &mut impl Rng) -> Op {
    let op = rng.random_range(0..OPS.len());
    let (magnitude, signed) = match OPS[op] {
        "ShearX" | "ShearY" | "Brightness" | "Color" | "Contrast" | "Sharpness" => (linspace(0.0, 0.99, rng.random_range(0..BINS)), true),
        "TranslateX" | "TranslateY" => (linspace(0.0, 32.0, rng.random_range(0..BINS)), true),
        "Rotate" => (linspace(0.0, 135.0, rng.random_range(0..BINS)), true),
        "Posterize" => (8.0 - (rng.random_range(0..BINS) as f32 / ((BINS - 1) as f32 / 6.0)).round(), false),
        "Solarize" => (linspace(255.0, 0.0, rng.random_range(0..BINS)), false),
        _ => (0.0, false),
    };
    let negative = signed && rng.random_bool(0.5);
    Op { op, magnitude: if negative { -magnitude } else { magnitude } }
}

pub fn apply(img: &mut [u8], size: usize, op: Op) {
    let m = op.magnitude;
    let half = size as f64 * 0.5;
    match OPS[op.op] {
        "ShearX" => affine(img, size, inverse_affine([-half, -half], 0.0, [0.0, 0.0], [(m as f64).atan().to_degrees(), 0.0])),
        "ShearY" => affine(img, size, inverse_affine([-half, -half], 0.0, [0.0, 0.0], [0.0, (m as f64).atan().to_degrees()])),
        "TranslateX" => affine(img, size, inverse_affine([0.0, 0.0], 0.0, [m.trunc() as f64, 0.0], [0.0, 0.0])),
        "TranslateY" => affine(img, size, inverse_affine([0.0, 0.0], 0.0, [0.0, m.trunc() as f64], [0.0, 0.0])),
        // F.rotate turns counter-clockwise: the inverse matrix of the angle's negative.
        "Rotate" => affine(img, size, inverse_affine([0.0, 0.0], -(m as f64), [0.0, 0.0], [0.0, 0.0])),
        "Brightness" => color::brightness(img, 1.0 + m),
        "Color" => color::saturation(img, 1.0 + m),
        "Contrast" => color::contrast(img, 1.0 + m),
        "Sharpness" => sharpness(img, size, 1.0 + m),
        "Posterize" => {
            let mask = 0xFFu8 << (8 - m as u32);
            img.iter_mut().for_each(|v| *v &= mask);
        }
        "Solarize" => img.iter_mut().filter(|v| **v as f32 >= m).for_each(|v| *v = 255 - *v),
        "AutoContrast" => autocontrast(img),
        "Equalize" => equalize(img),
        _ => {}
    }
}

/// torchvision's `_get_inverse_affine_matrix`: the output-to-input map of a rotation by
/// `angle` degrees, a translation and a shear (degrees), about `center` (pixels from the image's
/// centre), as the six numbers of a 2x3 matrix.
fn inverse_affine(center: [f64; 2], angle: f64, translate: [f64; 2], shear: [f64; 2]) -> [f32; 6] {
    let rot = angle.to_radians();
    let (sx, sy) = (shear[0].to_radians(), shear[1].to_radians());
    let [cx, cy] = center;
    let [tx, ty] = translate;
    let a = (rot - sy).cos() / sy.cos();
    let b = -(rot - sy).cos() * sx.tan() / sy.cos() - rot.sin();
    let c = (rot - sy).sin() / sy.cos();
    let d = -(rot - sy).sin() * sx.tan() / sy.cos() + rot.cos();
    let mut m = [d, -b, 0.0, -c, a, 0.0];
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
    m[2] += cx;
    m[5] += cy;
    m.map(|v| v as f32)
}

/// Samples each output pixel's nearest source pixel through `m` (the centre of the image at the
/// origin), black outside, as `F.affine` does with `grid_sample(mode="nearest",
/// align_corners=False)`.
fn affine(img: &mut [u8], size: usize, m: [f32; 6]) {
    let src = img.to_vec();
    let n = size as f32;
    for oy in 0..size {
        let y = -n * 0.5 + 0.5 + oy as f32;
        for ox in 0..size {
            let x = -n * 0.5 + 0.5 + ox as f32;
            let gx = (x * m[0] + y * m[1] + m[2]) / (0.5 * n);
            let gy = (x * m[3] + y * m[4] + m[5]) / (0.5 * n);
            let (sx, sy) = ((((gx + 1.0) * n - 1.0) / 2.0).round_ties_even(), (((gy + 1.0) * n - 1.0) / 2.0).round_ties_even());
            let out = &mut img[(oy * size + ox) * 3..(oy * size + ox) * 3 + 3];
            if sx >= 0.0 && sy >= 0.0 && sx < n && sy < n {
                let at = (sy as usize * size + sx as usize) * 3;
                out.copy_from_slice(&src[at..at + 3]);
            } else {
                out.fill(0);
            }
        }
    }
}

/// Blends toward the image smoothed by torchvision's 3x3 kernel (1s around a 5, over 13),
/// rounded, whose border keeps the image's own pixels.
fn sharpness(img: &mut [u8], size: usize, factor: f32) {
    if size <= 2 {
        return;
    }
    let src = img.to_vec();
    for y in 1..size - 1 {
        for x in 1..size - 1 {
            for c in 0..3 {
                let mut sum = 0.0f32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let w = if dy == 1 && dx == 1 { 5.0 } else { 1.0 } / 13.0;
                        sum += w * src[((y + dy - 1) * size + x + dx - 1) * 3 + c] as f32;
                    }
                }
                let i = (y * size + x) * 3 + c;
                img[i] = (factor * src[i] as f32 + (1.0 - factor) * sum.round()).clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// Stretches each channel to the full 0..255 range.
fn autocontrast(img: &mut [u8]) {
    for c in 0..3 {
        let channel = img.iter().skip(c).step_by(3);
        let (lo, hi) = channel.fold((255u8, 0u8), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        if lo == hi {
            continue;
        }
        let scale = 255.0 / (hi as f32 - lo as f32);
        for v in img.iter_mut().skip(c).step_by(3) {
            *v = ((*v as f32 - lo as f32) * scale).clamp(0.0, 255.0) as u8;
        }
    }
}

/// Equalises each channel's histogram with torchvision's integer look-up table.
fn equalize(img: &mut [u8]) {
    for c in 0..3 {
        let mut hist = [0u64; 256];
        for &v in img.iter().skip(c).step_by(3) {
            hist[v as usize] += 1;
        }
        let nonzero: Vec<u64> = hist.iter().copied().filter(|&h| h != 0).collect();
        let step = nonzero[..nonzero.len() - 1].iter().sum::<u64>() / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        let mut cumulative = 0;
        for (i, h) in hist.iter().enumerate() {
            // The table is shifted by one: entry i holds the sum over the levels below i.
            lut[i] = ((cumulative + step / 2) / step).min(255) as u8;
            cumulative += h;
        }
        for v in img.iter_mut().skip(c).step_by(3) {
            *v = lut[*v as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_operation_is_drawn_with_its_magnitudes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut seen = [0usize; 14];
        for _ in 0..5000 {
            let d = draw(&mut rng);
            seen[d.op] += 1;
            let m = d.magnitude;
            match OPS[d.op] {
                "Rotate" => assert!(m.abs() <= 135.0 && (m / 4.5 - (m / 4.5).round()).abs() < 1e-4),
                "Posterize" => assert!((2.0..=8.0).contains(&m) && m.fract() == 0.0),
                "Solarize" => assert!((0.0..=255.0).contains(&m)),
                "Identity" | "AutoContrast" | "Equalize" => assert_eq!(m, 0.0),
                _ => {}
            }
        }
        assert!(seen.iter().all(|&n| n > 250), "uniform over the fourteen: {seen:?}");
        assert_eq!(linspace(0.0, 32.0, 30), 32.0);
        assert_eq!(linspace(255.0, 0.0, 0), 255.0);
    }

    #[test]
    fn a_translation_moves_pixels_and_fills_black() {
        let size = 4;
        let img: Vec<u8> = (0..size * size * 3).map(|i| 10 + i as u8).collect();
        let mut t = img.clone();
        apply(&mut t, size, Op { op: 3, magnitude: 1.7 });
        // By one pixel to the right (the magnitude truncated), black in the first column.
        for y in 0..size {
            assert_eq!(&t[y * 12..y * 12 + 3], &[0, 0, 0]);
            assert_eq!(&t[y * 12 + 3..y * 12 + 12], &img[y * 12..y * 12 + 9]);
        }
    }
}
