//! Explanations: they change nothing in the model, repeat exactly, and reach the report and
//! `predict` for every task. Their values against pytorch-grad-cam: `reference::cams`.
use image_learner::explain::{self, Method};
use image_learner::{models, outputs};
use tch::{nn, Device, Kind, Tensor};

/// Explaining leaves the model as it was: the same weights, the same batch-norm statistics, no
/// gradient left on any parameter, the same outputs after; and the same map twice.
#[test]
fn explaining_changes_nothing_and_repeats_exactly() {
    tch::manual_seed(3);
    let spec = models::find("resnet18").unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = spec.build(&vs.root(), 3);
    let x = Tensor::randn([3, 3, 48, 48], (Kind::Float, Device::Cpu));
    let before: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (k, v.copy())).collect();
    let logits = tch::no_grad(|| net.forward(&x, false, false));

    let first = explain::heatmaps(&net, &x, &[0, 1, 2], Method::GradCam).unwrap();
    let second = explain::heatmaps(&net, &x, &[0, 1, 2], Method::GradCam).unwrap();
    assert!(first.equal(&second), "the same image, model and class give the same map");
    assert_eq!(first.size(), [3, 48, 48]);
    let (low, high) = (first.min().double_value(&[]), first.max().double_value(&[]));
    assert!(low >= 0.0 && high > 0.99 && high <= 1.0, "normalised to [0, 1]: {low}..{high}");

    let after = vs.variables();
    for (name, value) in &before {
        assert!(after[name].equal(value), "{name} changed");
        assert!(!after[name].grad().defined(), "{name} has a gradient left");
    }
    assert!(tch::no_grad(|| net.forward(&x, false, false)).equal(&logits), "outputs changed");
    // Batch norms' running statistics are variables here, so the loop above covers them; check
    // one by name so that the test fails if they ever stop being.
    assert!(before.iter().any(|(k, _)| k == "bn1.running_mean"));
}

/// Trains on the sample through the binary; returns the output folder.
fn train(dir: &std::path::Path, name: &str, csv: &std::path::Path, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.join(name);
    let zip = crate::common::sample_zip();
    let mut args = vec![
        "train", "--images", zip.to_str().unwrap(), "--metadata", csv.to_str().unwrap(),
        "--model", "resnet18", "--use-pretrained", "false", "--epochs", "2", "--batch-size", "16", "--image-size", "32",
        "--threads", "2", "--device", "cpu", "--output-dir", out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = crate::common::run(&args);
    assert!(o.status.success(), "{}", crate::common::stderr(&o));
    out
}

fn zip_entries(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            (f.name().to_string(), bytes)
        })
        .collect()
}

/// The report explains as many test images as asked, each as an image and its overlay, with the
/// colour legend; `--explain 0` leaves them out; either way the predictions and the figures are
/// the same bytes.
#[test]
fn the_report_explains_test_images_without_changing_any_figure() {
    let dir = tempfile::tempdir().unwrap();
    let csv = crate::common::sample_csv();
    let with = train(dir.path(), "with", &csv, &["--explain", "5"]);
    let without = train(dir.path(), "without", &csv, &["--explain", "0"]);
    let html = std::fs::read_to_string(with.join(outputs::REPORT)).unwrap();
    assert!(html.contains("What the model looks at") && html.contains("Grad-CAM at layer4[-1] of resnet18"), "the method and layer named");
    assert_eq!(html.matches("alt=\"heatmap of ").count(), 5);
    assert!(html.contains("class=\"scale\" style=\"background:linear-gradient(to right, #000080"), "the legend");
    assert!(html.contains("most confident correct") || html.contains("a confident mistake"));
    let bare = std::fs::read_to_string(without.join(outputs::REPORT)).unwrap();
    assert_eq!(bare.matches("alt=\"heatmap of ").count(), 0);
    assert!(bare.contains("No test image was explained (--explain 0)."));
    for file in [outputs::PREDICTIONS, outputs::HISTORY] {
        let (a, b) = (std::fs::read(with.join(file)).unwrap(), std::fs::read(without.join(file)).unwrap());
        if file == outputs::HISTORY {
            // The history's timing columns differ; its figures must not.
            let strip = |bytes: &[u8]| -> Vec<String> {
                String::from_utf8_lossy(bytes).lines().map(|l| l.split(',').take(11).collect::<Vec<_>>().join(",")).collect()
            };
            assert_eq!(strip(&a), strip(&b));
        } else {
            assert_eq!(a, b, "{file}");
        }
    }
    let metrics = |d: &std::path::Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(d.join(outputs::METRICS)).unwrap()).unwrap() };
    assert_eq!(metrics(&with)["test"], metrics(&without)["test"]);
}

/// predict writes the Explanations ZIP: the least confident images first, each PNG the image
/// beside its overlay, listed in explanations.csv; a regression model explains its value; a
/// Best Model whose options predate explanations explains as well.
#[test]
fn predict_writes_explanations_for_every_task_and_older_models() {
    let dir = tempfile::tempdir().unwrap();
    let out = train(dir.path(), "run", &crate::common::sample_csv(), &["--explain", "0"]);
    let model = out.join(outputs::BEST_MODEL);
    let predict = |model: &std::path::Path, name: &str, extra: &[&str]| {
        let (csv, zip) = (dir.path().join(format!("{name}.csv")), dir.path().join(format!("{name}.zip")));
        let images = crate::common::sample_zip();
        let mut args = vec![
            "predict", "--model", model.to_str().unwrap(), "--images", images.to_str().unwrap(),
            "--output", csv.to_str().unwrap(), "--explanations", zip.to_str().unwrap(), "--device", "cpu",
        ];
        args.extend_from_slice(extra);
        let o = crate::common::run(&args);
        assert!(o.status.success(), "{}", crate::common::stderr(&o));
        assert!(crate::common::stderr(&o).contains("images explained into"), "{}", crate::common::stderr(&o));
        (crate::common::csv_rows(&csv), zip_entries(&zip))
    };

    let (preds, entries) = predict(&model, "four", &["--explain", "4", "--cam", "hirescam"]);
    assert_eq!(entries.len(), 5);
    let listing = String::from_utf8(entries.iter().find(|(n, _)| n == "explanations.csv").unwrap().1.clone()).unwrap();
    let rows: Vec<Vec<&str>> = listing.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["rank", "image_path", "explained", "reason", "method", "file"]);
    assert_eq!(rows.len(), 5);
    let confidence = |image: &str| -> f64 { preds.iter().find(|r| r[0] == image).unwrap()[2].parse().unwrap() };
    let shown: Vec<f64> = rows[1..].iter().map(|r| confidence(r[1])).collect();
    let least = preds[1..].iter().map(|r| r[2].parse::<f64>().unwrap()).fold(f64::MAX, f64::min);
    assert_eq!(shown[0], least, "the least confident first");
    assert!(shown.windows(2).all(|w| w[0] <= w[1]), "{shown:?}");
    for r in &rows[1..] {
        assert_eq!(r[4], "HiResCAM at layer4[-1]");
        let png = &entries.iter().find(|(n, _)| n == r[5]).unwrap().1;
        let img = image::load_from_memory(png).unwrap();
        assert_eq!((img.width(), img.height()), (64, 32), "the image beside its overlay");
        assert_eq!(preds.iter().find(|p| p[0] == r[1]).unwrap()[1], r[2], "the predicted class is explained");
    }

    let (preds, entries) = predict(&model, "all", &["--explain", "all"]);
    assert_eq!(entries.len(), preds.len(), "every image, plus the listing, minus the header");

    // Options written before explanations existed: the model explains all the same.
    let b = image_learner::weights::bundle::read(&model).unwrap();
    let mut config = serde_json::to_value(&b.config).unwrap();
    let options = config["options"].as_object_mut().unwrap();
    assert!(options.remove("explain").is_some() && options.remove("cam").is_some());
    let weights = zip_entries(&model).into_iter().find(|(n, _)| n == "model.safetensors").unwrap().1;
    let older = dir.path().join("older.zip");
    std::fs::write(&older, image_learner::weights::bundle::zip_members(&serde_json::to_vec(&config).unwrap(), &[("model.safetensors", &weights)]).unwrap()).unwrap();
    let (_, entries) = predict(&older, "older", &["--explain", "2"]);
    assert_eq!(entries.len(), 3);

    let reg = train(dir.path(), "reg", &crate::common::repo().join("test-data/sample_metadata_regression.csv"), &["--task", "regression", "--explain", "3"]);
    let html = std::fs::read_to_string(reg.join(outputs::REPORT)).unwrap();
    assert_eq!(html.matches("alt=\"heatmap of ").count(), 3);
    assert!(html.contains("the highest prediction") && html.contains("the lowest prediction"));
    let (_, entries) = predict(&reg.join(outputs::BEST_MODEL), "reg", &["--explain", "2"]);
    let listing = String::from_utf8(entries.iter().find(|(n, _)| n == "explanations.csv").unwrap().1.clone()).unwrap();
    assert!(listing.lines().skip(1).all(|l| l.contains(",predicted value,")), "{listing}");
}

/// A count that is not one, or an Explanations ZIP without a count: exit 2, the message, nothing
/// written.
#[test]
fn bad_explanation_options_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let zip = crate::common::sample_zip();
    let csv = crate::common::sample_csv();
    let out = dir.path().join("out");
    for (bad, expect) in [
        (vec!["--explain", "-1"], "--explain '-1' is not a number of images"),
        (vec!["--explain", "some"], "--explain 'some' is not a number of images"),
        (vec!["--explain", "65"], "give at most 64 test images"),
        (vec!["--explain", "all"], "give at most 64 test images"),
        (vec!["--cam", "eigencam"], "unknown --cam 'eigencam': use gradcam or hirescam"),
    ] {
        let mut args = vec!["train", "--images", zip.to_str().unwrap(), "--metadata", csv.to_str().unwrap(), "--output-dir", out.to_str().unwrap(), "--use-pretrained", "false"];
        args.extend(bad.iter().copied());
        let o = crate::common::run(&args);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", crate::common::stderr(&o));
        assert!(crate::common::stderr(&o).contains(expect), "{bad:?}: {}", crate::common::stderr(&o));
        assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(), "{bad:?} wrote something");
    }
    let predictions = dir.path().join("p.csv");
    for (bad, expect) in [
        (vec!["--explain", "-3"], "--explain '-3' is not a number of images"),
        (vec!["--explain", "1.5"], "--explain '1.5' is not a number of images"),
        (vec!["--explanations", "e.zip"], "--explanations names a ZIP for the explanations, but --explain is 0"),
    ] {
        let mut args = vec!["predict", "--model", "missing.zip", "--images", zip.to_str().unwrap(), "--output", predictions.to_str().unwrap()];
        args.extend(bad.iter().copied());
        let o = crate::common::run(&args);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", crate::common::stderr(&o));
        assert!(crate::common::stderr(&o).contains(expect), "{bad:?}: {}", crate::common::stderr(&o));
        assert!(!predictions.exists());
    }
}
