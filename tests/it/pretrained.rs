//! Pretrained weights by name, and `--fine-tune false`: the backbone stays bit-identical.
use crate::common::*;
use image_learner::models;
use image_learner::outputs;
use image_learner::weights::bundle;
use image_learner::commands::train::run as run_train;

/// A weights folder holding a randomly initialised checkpoint for `name`, with a 1000-class head
/// as the hubs publish it.
fn weights_dir(dir: &std::path::Path, name: &str) -> std::collections::HashMap<String, tch::Tensor> {
    tch::manual_seed(3);
    let spec = models::find(name).unwrap();
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _ = spec.build(&vs.root(), 1000);
    let bytes = bundle::safetensors_bytes(&vs, spec).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{name}.safetensors")), &bytes).unwrap();
    bundle::read_safetensors(&bytes).unwrap()
}

#[test]
fn frozen_backbone_is_bit_identical_and_fine_tuning_changes_it() {
    for name in ["resnet18", "efficientnet_lite0"] {
        let dir = tempfile::tempdir().unwrap();
        let wdir = dir.path().join("weights");
        let reference = weights_dir(&wdir, name);
        let spec = models::find(name).unwrap();
        let head = format!("{}.", spec.head_prefix);
        for fine_tune in [false, true] {
            let out = dir.path().join(format!("out-{fine_tune}"));
            let mut cfg = quick_config(&out, 2);
            cfg.model = name.into();
            cfg.use_pretrained = true;
            cfg.fine_tune = fine_tune;
            cfg.weights.weights_dir = Some(wdir.clone());
            run_train(&cfg).unwrap();
            let b = bundle::read(&out.join(outputs::BEST_MODEL)).unwrap();
            let mut changed = 0;
            for (k, t) in &b.weights[0] {
                if k.starts_with(&head) {
                    assert_eq!(t.size()[0], 3, "{name}: a new head sized to the classes");
                    continue;
                }
                if !t.equal(&reference[k]) {
                    changed += 1;
                }
            }
            if fine_tune {
                assert!(changed > 10, "{name}: fine-tuning trains the backbone ({changed} changed)");
            } else {
                assert_eq!(changed, 0, "{name}: frozen backbone parameters and statistics stay bit-identical");
            }
            let html = std::fs::read_to_string(out.join(outputs::REPORT)).unwrap();
            assert!(html.contains(&format!("{name}.safetensors")), "the report names the weights file");
        }
    }
}

/// Pretrained weights learnt at 224 pixels: without `--image-size`, the sample's 48-pixel images
/// are enlarged to 128 for them, and kept at 48 from scratch. The report says which rule ran.
#[test]
fn small_images_are_enlarged_for_pretrained_weights_only() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = dir.path().join("weights");
    weights_dir(&wdir, "resnet18");
    for (pretrained, size) in [(true, 128), (false, 48)] {
        let out = dir.path().join(format!("out-{pretrained}"));
        let mut cfg = quick_config(&out, 1);
        cfg.image_size = None;
        cfg.use_pretrained = pretrained;
        cfg.weights.weights_dir = Some(wdir.clone());
        let summary = run_train(&cfg).unwrap();
        assert_eq!(summary.image_size, size, "pretrained {pretrained}");
        let html = std::fs::read_to_string(out.join(outputs::REPORT)).unwrap();
        let rule = if pretrained { "128x128 (from the images, at least 128 for the pretrained weights" } else { "48x48 (from the images; resnet18" };
        assert!(html.contains(rule), "pretrained {pretrained}: the Run table says {rule}");
    }
}
