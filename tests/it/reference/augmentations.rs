//! The augmentations against torchvision's own functions: the parameters are drawn here, in
//! Rust, handed to `tests/reference/augment.py`, and each image must agree to within one grey
//! level per pixel.
use std::process::Command;

use image_learner::data::augment::{color, crop, trivial};
use rand::SeedableRng;

const SIZE: usize = 48;

/// A smooth image (neighbouring pixels differ by at most 1 per channel, so a nearest-pixel
/// sample that rounds the other way at a tie moves a value by 1 at most), and a drawn lesion
/// with sharp edges for the operations that sample no pixel positions.
fn images() -> Vec<Vec<u8>> {
    let smooth = (0..SIZE * SIZE)
        .flat_map(|p| {
            let (x, y) = (p % SIZE, p / SIZE);
            [(40 + x + y) as u8, (200 - x) as u8, (100 + x * y / SIZE) as u8]
        })
        .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let drawn = image_learner::synth::draw("circle", SIZE as u32, &mut rng).into_raw();
    vec![smooth, drawn]
}

#[test]
fn crops_colour_jitter_and_trivial_augment_match_torchvision() {
    let imgs = images();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    let mut cases = Vec::new();
    for i in 0..16 {
        let c = crop::draw(SIZE, [0.08, 1.0], &mut rng);
        cases.push(serde_json::json!({"kind": "crop", "image": i % 2, "crop": c}));
    }
    for i in 0..16 {
        let j = color::draw_jitter(&mut rng);
        cases.push(serde_json::json!({"kind": "jitter", "image": i % 2, "jitter": j}));
    }
    // Every operation at least four times, its magnitude and sign drawn as TrivialAugmentWide
    // draws them; the geometric ones on the smooth image only.
    let mut per_op = [0; trivial::OPS.len()];
    while per_op.iter().any(|&n| n < 4) {
        let d = trivial::draw(&mut rng);
        if per_op[d.op] >= 4 {
            continue;
        }
        let geometric = (1..=5).contains(&d.op);
        let image = if geometric { 0 } else { per_op[d.op] % 2 };
        per_op[d.op] += 1;
        cases.push(serde_json::json!({"kind": "trivial", "image": image, "op": trivial::OPS[d.op],
            "magnitude": d.magnitude, "drawn": d}));
    }
    let dir = tempfile::tempdir().unwrap();
    let (cin, cout) = (dir.path().join("cases.json"), dir.path().join("out.json"));
    std::fs::write(&cin, serde_json::to_vec(&serde_json::json!({"size": SIZE, "images": imgs, "cases": cases})).unwrap()).unwrap();
    let o = Command::new(super::python()).arg(crate::common::repo().join("tests/reference/augment.py")).args([&cin, &cout]).output().unwrap();
    assert!(o.status.success(), "reference script failed: {}", String::from_utf8_lossy(&o.stderr));
    let theirs: Vec<Vec<u8>> = serde_json::from_slice(&std::fs::read(&cout).unwrap()).unwrap();
    for (case, want) in cases.iter().zip(&theirs) {
        let mut img = imgs[case["image"].as_u64().unwrap() as usize].clone();
        match case["kind"].as_str().unwrap() {
            "crop" => crop::resized_crop(&mut img, SIZE, serde_json::from_value(case["crop"].clone()).unwrap()),
            "jitter" => color::jitter(&mut img, serde_json::from_value(case["jitter"].clone()).unwrap()),
            _ => trivial::apply(&mut img, SIZE, serde_json::from_value(case["drawn"].clone()).unwrap()),
        }
        let worst = img.iter().zip(want).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        let changed = img.iter().zip(&imgs[case["image"].as_u64().unwrap() as usize]).filter(|(a, b)| a != b).count();
        assert!(worst <= 1, "{case}: differs from torchvision by up to {worst} grey levels ({changed} values changed)");
    }
}
