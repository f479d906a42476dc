//! Numerical fidelity: each architecture, given the reference implementation's weights by name,
//! gives the reference's logits and first-parameter gradient. The reference outputs are made at
//! test time by tests/reference/models.py with the set-up's torch, torchvision and timm.
use std::collections::HashMap;
use std::process::Command;

use image_learner::models;
use tch::{nn, Device, Kind, Tensor};

const MODELS: &[(&str, &str)] = &[
    ("resnet18", "conv1.weight"),
    ("resnet50", "conv1.weight"),
    ("resnext50_32x4d", "conv1.weight"),
    ("wide_resnet50_2", "conv1.weight"),
    ("efficientnet_lite0", "conv_stem.weight"),
    ("efficientnet_b0", "features.0.0.weight"),
    ("efficientnet_b3", "features.0.0.weight"),
    ("efficientnet_b5", "features.0.0.weight"),
    ("mobilenet_v2", "features.0.0.weight"),
    ("mobilenet_v3_small", "features.0.0.weight"),
    ("mobilenet_v3_large", "features.0.0.weight"),
    ("densenet121", "features.conv0.weight"),
    ("vgg16", "features.0.weight"),
    ("vgg16_bn", "features.0.weight"),
    ("convnext_tiny", "features.0.0.weight"),
    ("vit_b_16", "class_token"),
    ("swin_t", "features.0.0.weight"),
    ("caformer_s18", "stem.conv.weight"),
    ("convformer_s18", "stem.conv.weight"),
    ("poolformerv2_s12", "stem.conv.weight"),
];

fn read_all(path: &std::path::Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

#[test]
fn logits_and_gradients_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(super::python());
    cmd.arg(crate::common::repo().join("tests/reference/models.py")).arg(dir.path());
    cmd.args(MODELS.iter().map(|(n, _)| *n));
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "reference script failed: {}", String::from_utf8_lossy(&o.stderr));

    for (name, first) in MODELS {
        let refs = read_all(&dir.path().join(format!("{name}.safetensors")));
        let spec = models::find(name).unwrap();
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = spec.build(&vs.root(), 5);
        // Every parameter of ours exists in the reference with the same shape, and vice versa.
        let ours = vs.variables();
        let theirs: Vec<&String> = refs.keys().filter(|k| !k.starts_with("__")).collect();
        assert_eq!(ours.len(), theirs.len(), "{name}: parameter count");
        image_learner::weights::copy_variables(&mut vs, None, &refs).unwrap();

        let x = &refs["__input"];
        let logits = net.forward(x, false, false);
        let diff = (&logits - &refs["__logits"]).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{name}: logits differ by {diff}");

        let loss = logits.cross_entropy_for_logits(&refs["__labels"].to_kind(Kind::Int64));
        loss.backward();
        let grad = vs.variables()[*first].grad();
        let reference = &refs["__grad"];
        let gdiff = (&grad - reference).abs().max().double_value(&[]);
        let scale = reference.abs().max().double_value(&[]).max(1e-6);
        assert!(gdiff / scale < 1e-3 && gdiff < 1e-4, "{name}: gradient of {first} differs by {gdiff} (scale {scale})");
    }
}

#[test]
fn every_steps_learning_rate_matches_pytorchs_schedulers() {
    use image_learner::config::LrScheduleKind;
    use image_learner::schedule::{Plan, Schedule};
    // (schedule, epochs, steps per epoch, warmup epochs, step period, gamma, cosine floor,
    // frozen epochs)
    let cases = [
        (LrScheduleKind::Constant, 4, 3, 1.0, None, 0.1, None, 0),
        (LrScheduleKind::Cosine, 10, 7, 0.0, None, 0.1, None, 0),
        (LrScheduleKind::Cosine, 6, 5, 2.0, None, 0.1, Some(0.0), 0),
        (LrScheduleKind::Cosine, 5, 8, 0.5, None, 0.1, Some(2e-5), 0),
        (LrScheduleKind::Cosine, 9, 4, 1.0, None, 0.1, None, 2),
        (LrScheduleKind::Step, 10, 4, 1.0, Some(3), 0.1, None, 0),
        (LrScheduleKind::Step, 7, 2, 0.0, Some(2), 0.5, None, 0),
        (LrScheduleKind::Step, 8, 6, 1.5, Some(2), 0.3, None, 0),
        (LrScheduleKind::Step, 30, 3, 0.0, None, 0.1, None, 0),
        (LrScheduleKind::Step, 13, 2, 2.0, None, 0.1, None, 1),
        (LrScheduleKind::OneCycle, 10, 9, 0.0, None, 0.1, None, 0),
        (LrScheduleKind::OneCycle, 30, 31, 3.0, None, 0.1, None, 0),
        (LrScheduleKind::OneCycle, 3, 1, 0.0, None, 0.1, None, 0),
        (LrScheduleKind::OneCycle, 8, 5, 0.0, None, 0.1, None, 3),
    ];
    let peak = 0.001;
    let json: Vec<serde_json::Value> = cases
        .iter()
        .map(|&(k, epochs, spe, warmup, step_epochs, gamma, min_lr, freeze)| {
            serde_json::json!({"kind": k.name(), "peak": peak, "epochs": epochs, "steps_per_epoch": spe,
                "warmup_epochs": warmup, "step_epochs": step_epochs, "gamma": gamma, "min_lr": min_lr,
                "freeze_epochs": freeze})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (cin, cout) = (dir.path().join("cases.json"), dir.path().join("rates.json"));
    std::fs::write(&cin, serde_json::to_vec(&json).unwrap()).unwrap();
    let o = Command::new(super::python()).arg(crate::common::repo().join("tests/reference/schedules.py")).args([&cin, &cout]).output().unwrap();
    assert!(o.status.success(), "reference script failed: {}", String::from_utf8_lossy(&o.stderr));
    let theirs: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&cout).unwrap()).unwrap();
    for (&(k, epochs, spe, warmup, step_epochs, gamma, min_lr, freeze_epochs), reference) in cases.iter().zip(&theirs) {
        let plan = Plan { warmup_epochs: warmup, step_epochs, gamma, min_lr, freeze_epochs, ..Plan::plain(k, peak, epochs) };
        let ours = Schedule::new(plan, spe);
        let lrs = reference["lr"].as_array().unwrap();
        assert_eq!(lrs.len(), epochs * spe, "{k:?}: steps");
        for (i, lr) in lrs.iter().enumerate() {
            let (want, got) = (lr.as_f64().unwrap(), ours.at(i));
            assert!((got.lr - want).abs() <= 1e-9 * peak, "{k:?} {epochs}x{spe} warmup {warmup}: step {i}: ours {} torch {want}", got.lr);
            match reference["momentum"].as_array() {
                Some(m) if !m[i].is_null() => {
                    let want = m[i].as_f64().unwrap();
                    assert!((got.momentum.unwrap() - want).abs() < 1e-9, "{k:?}: step {i}: momentum {:?} torch {want}", got.momentum);
                }
                _ => assert_eq!(got.momentum, None, "{k:?}: step {i}"),
            }
        }
    }
}
