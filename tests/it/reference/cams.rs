//! Explanations against their reference: for every architecture (each size of one being the
//! same code, one size stands for all), given the reference's
//! weights by name, our Grad-CAM and HiResCAM heatmaps equal pytorch-grad-cam's at the target
//! layer the model spec names, to 1e-4 after its normalisation. The reference maps are made at
//! test time by tests/reference/cams.py.
use std::collections::HashMap;
use std::process::Command;

use image_learner::explain::{self, Method};
use image_learner::models;
use tch::{nn, Device, Kind, Tensor};

const MODELS: &[&str] = &[
    "resnet18",
    "resnext50_32x4d",
    "wide_resnet50_2",
    "efficientnet_lite0",
    "efficientnet_b0",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "densenet121",
    "vgg16",
    "vgg16_bn",
    "convnext_tiny",
    "vit_b_16",
    "swin_t",
    "caformer_s18",
    "convformer_s18",
    "poolformerv2_s12",
];

#[test]
fn heatmaps_match_pytorch_grad_cam_for_every_family() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(super::python());
    cmd.arg(crate::common::repo().join("tests/reference/cams.py")).arg(dir.path());
    cmd.args(MODELS.iter().map(|n| format!("{n}={}", models::find(n).unwrap().cam_target)));
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "reference script failed: {}", String::from_utf8_lossy(&o.stderr));

    let mut failures = Vec::new();
    for name in MODELS {
        let refs: HashMap<String, Tensor> =
            Tensor::read_safetensors(dir.path().join(format!("{name}.safetensors"))).unwrap().into_iter().collect();
        let spec = models::find(name).unwrap();
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = spec.build(&vs.root(), 5);
        image_learner::weights::copy_variables(&mut vs, None, &refs).unwrap();
        let targets = Vec::<i64>::try_from(refs["__targets"].to_kind(Kind::Int64)).unwrap();
        for (method, key) in [(Method::GradCam, "__gradcam"), (Method::HiResCam, "__hirescam")] {
            let ours = explain::heatmaps(&net, &refs["__input"], &targets, method).unwrap();
            let theirs = &refs[key];
            assert_eq!(ours.size(), theirs.size(), "{name} {method}");
            let diff = (&ours - theirs).abs().max().double_value(&[]);
            // A map that is zero everywhere would match a reference that is too: the reference's
            // must show something.
            let spread = theirs.std(true).double_value(&[]);
            println!("{name} {method}: max difference {diff:.1e}, reference spread {spread:.3}");
            if diff >= 1e-4 || spread < 0.05 {
                failures.push(format!("{name} {method}: differs by {diff:.2e} (reference spread {spread:.3})"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

