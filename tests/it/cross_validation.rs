//! `--cross-validation K`: K fold models, their out-of-fold predictions, and their ensemble as
//! the Best Model, which `predict` averages as training did.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::common::{csv_rows, run, sample_csv, sample_zip, stderr};

/// Trains the bundled sample's images, labelled by `metadata`, with 3 folds (1 epoch, 32 pixels, every prediction written).
pub fn train_k_fold(out: &Path, metadata: &Path, extra: &[&str]) -> std::process::Output {
    let zip = sample_zip();
    let mut args = vec![
        "train", "--images", zip.to_str().unwrap(), "--metadata", metadata.to_str().unwrap(), "--model", "resnet18",
        "--use-pretrained", "false", "--epochs", "1", "--batch-size", "16", "--image-size", "32", "--threads", "2",
        "--predictions", "all", "--output-dir", out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    for (option, default) in [("--cross-validation", "3"), ("--explain", "2")] {
        if !extra.contains(&option) {
            args.extend([option, default]);
        }
    }
    run(&args)
}

/// The predictions CSV as maps of column to value.
fn records(path: &Path) -> Vec<BTreeMap<String, String>> {
    let rows = csv_rows(path);
    rows[1..].iter().map(|r| rows[0].iter().cloned().zip(r.iter().cloned()).collect()).collect()
}

/// Predicts every image of the sample with `model` into `out`: image name -> probabilities.
fn predict(model: &Path, out: &Path) -> BTreeMap<String, Vec<f64>> {
    let o = run(&["predict", "--model", model.to_str().unwrap(), "--images", sample_zip().to_str().unwrap(), "--output", out.to_str().unwrap(), "--threads", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    records(out)
        .into_iter()
        .map(|r| {
            let probs = r.iter().filter(|(k, _)| k.starts_with("prob_")).map(|(_, v)| v.parse::<f64>().unwrap()).collect();
            (r["image_path"].rsplit('/').next().unwrap().to_string(), probs)
        })
        .collect()
}

/// The members of a ZIP: name -> bytes.
fn zip_entries(path: &Path) -> BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().to_string(), b)
        })
        .collect()
}

/// The folds partition the non-test images with every class within one image of its share, the
/// history has one block per fold, each image outside the test split carries the prediction of
/// the one model that never trained on it, the Best Model holds the three fold models (each a
/// state dict of its own), `predict` gives the mean of its members' probabilities, and the same
/// seed gives the same bytes.
#[test]
fn k_fold_models_their_out_of_fold_predictions_and_their_ensemble() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cv");
    let o = train_k_fold(&out, &sample_csv(), &[]);
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    for k in 1..=3 {
        assert!(log.contains(&format!("fold {k}/3, epoch 1/1:")), "the log names the fold: {log}");
    }

    // Predictions: 36 test rows, and 144 rows dealt into three folds of 48, 16 per class.
    let preds = records(&out.join("predictions.csv"));
    assert_eq!(preds.len(), 180);
    let mut per_fold: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &preds {
        *per_fold.entry((r["split"].clone(), r["true_label"].clone())).or_default() += 1;
    }
    let splits: BTreeSet<&str> = per_fold.keys().map(|(s, _)| s.as_str()).collect();
    assert_eq!(splits, BTreeSet::from(["fold 1", "fold 2", "fold 3", "test"]));
    for ((split, class), n) in &per_fold {
        let expected = if split == "test" { 12 } else { 16 };
        assert_eq!(*n, expected, "{split}, {class}");
    }

    // History: one block per fold, its best epoch marked, the fold named.
    let history = csv_rows(&out.join("training_history.csv"));
    assert_eq!(history[0].last().unwrap(), "fold");
    let folds: Vec<&str> = history[1..].iter().map(|r| r.last().unwrap().as_str()).collect();
    assert_eq!(folds, ["1", "2", "3"]);
    let best = history[0].iter().position(|c| c == "is_best").unwrap();
    assert!(history[1..].iter().all(|r| r[best] == "true"), "one epoch per fold, each its fold's best");

    // metrics.json: the out-of-fold figures are those of the out-of-fold rows.
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    let cv = &metrics["cross_validation"];
    assert_eq!(cv["folds"], 3);
    assert_eq!(cv["images_per_fold"], serde_json::json!([48, 48, 48]));
    let oof_rows: Vec<_> = preds.iter().filter(|r| r["split"] != "test").collect();
    let correct = oof_rows.iter().filter(|r| r["correct"] == "true").count() as f64 / oof_rows.len() as f64;
    assert!((cv["out_of_fold"]["accuracy"].as_f64().unwrap() - correct).abs() < 1e-12);
    let per_fold_accuracy: Vec<f64> = cv["per_fold"]["accuracy"]["folds"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(per_fold_accuracy.len(), 3);
    let mean = per_fold_accuracy.iter().sum::<f64>() / 3.0;
    assert!((cv["per_fold"]["accuracy"]["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!(std::fs::read_to_string(out.join("report.html")).unwrap().contains("Out-of-fold (95% interval)"));

    // The Best Model: three members, each its own state dict; config.json lists them.
    let model = out.join("best_model.zip");
    let entries = zip_entries(&model);
    let names: Vec<&str> = entries.keys().map(String::as_str).collect();
    assert_eq!(names, ["config.json", "fold_1.safetensors", "fold_2.safetensors", "fold_3.safetensors"]);
    let config: serde_json::Value = serde_json::from_slice(&entries["config.json"]).unwrap();
    assert_eq!(config["members"].as_array().unwrap().len(), 3);
    assert_eq!(config["options"]["cross_validation"], 3);

    // predict: the ensemble's probabilities are the mean of its members', each used alone as a
    // one-model Best Model with its fold's temperature; and the test rows repeat the training's.
    let ensemble = predict(&model, &dir.path().join("ensemble.csv"));
    let mut members = Vec::new();
    for (k, m) in config["members"].as_array().unwrap().iter().enumerate() {
        let mut one = config.clone();
        one.as_object_mut().unwrap().remove("members");
        one["temperature"] = m["temperature"].clone();
        let path = dir.path().join(format!("member{k}.zip"));
        let weights = &entries[m["weights"].as_str().unwrap()];
        std::fs::write(&path, image_learner::weights::bundle::zip_members(&serde_json::to_vec(&one).unwrap(), &[("model.safetensors", weights)]).unwrap()).unwrap();
        members.push(predict(&path, &dir.path().join(format!("member{k}.csv"))));
    }
    for (image, probs) in &ensemble {
        for (c, p) in probs.iter().enumerate() {
            let mean = members.iter().map(|m| m[image][c]).sum::<f64>() / 3.0;
            assert!((p - mean).abs() < 2e-6, "{image}, class {c}: {p} against the members' mean {mean}");
        }
    }
    for r in preds.iter().filter(|r| r["split"] == "test") {
        let theirs = &ensemble[&r["image_path"]];
        let ours: Vec<f64> = r.iter().filter(|(k, _)| k.starts_with("prob_")).map(|(_, v)| v.parse().unwrap()).collect();
        assert_eq!(&ours, theirs, "{}: predict repeats the training's test prediction", r["image_path"]);
    }

    // Same seed, same bytes.
    let again = dir.path().join("again");
    assert!(train_k_fold(&again, &sample_csv(), &[]).status.success());
    assert!(std::fs::read(out.join("predictions.csv")).unwrap() == std::fs::read(again.join("predictions.csv")).unwrap(), "the predictions differ between two runs");
    let (mut first, mut second) = (entries, zip_entries(&again.join("best_model.zip")));
    let mut configs = [first.remove("config.json").unwrap(), second.remove("config.json").unwrap()].map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap());
    for c in &mut configs {
        let options = c["options"].as_object_mut().unwrap();
        options.remove("output_dir");
        options.remove("command_line");
    }
    assert_eq!(configs[0], configs[1], "config.json differs but for the output folder and the command line");
    assert!(first == second, "the fold models' weights differ between two runs");
    let timeless = |p: PathBuf| -> Vec<Vec<String>> {
        csv_rows(&p).into_iter().map(|r| r.into_iter().enumerate().filter(|(i, _)| !image_learner::outputs::history::TIME_COLUMNS.contains(i)).map(|(_, v)| v).collect()).collect()
    };
    assert_eq!(timeless(out.join("training_history.csv")), timeless(again.join("training_history.csv")));
}

/// With a split column, the column chooses the test split and its train and validation rows are
/// dealt into the folds; the report says so.
#[test]
fn a_split_column_chooses_the_test_split_and_the_folds_take_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("split.csv");
    let rows = csv_rows(&sample_csv());
    let mut text = String::from("image_path,label,split\n");
    for (i, r) in rows[1..].iter().enumerate() {
        let split = ["train", "train", "validation", "test", "train"][i % 5];
        text.push_str(&format!("{},{},{split}\n", r[0], r[1]));
    }
    std::fs::write(&csv, text).unwrap();
    let out = dir.path().join("out");
    let o = train_k_fold(&out, &csv, &["--split-column", "split", "--explain", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let test: BTreeSet<String> = rows[1..].iter().enumerate().filter(|(i, _)| i % 5 == 3).map(|(_, r)| r[0].clone()).collect();
    let written: BTreeSet<String> = records(&out.join("predictions.csv")).into_iter().filter(|r| r["split"] == "test").map(|r| r["image_path"].clone()).collect();
    assert_eq!(written, test);
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("chose the test split; its train and validation rows were dealt into the folds"), "the report says which wins");
}

/// Folds outside 3-10, or more folds than the smallest class has images outside the test split:
/// exit 2, a message naming --cross-validation, and nothing written.
#[test]
fn impossible_fold_counts_are_refused_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    for k in ["1", "2", "11"] {
        let out = dir.path().join(format!("k{k}"));
        let o = train_k_fold(&out, &sample_csv(), &["--cross-validation", k]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(&format!("--cross-validation {k}: use 0 (no cross-validation) or a number of folds from 3 to 10")), "{}", stderr(&o));
        assert!(!out.join("best_model.zip").exists());
    }
    // Two circles outside the test split: too few for 3 folds.
    let csv = dir.path().join("few.csv");
    let rows = csv_rows(&sample_csv());
    let mut text = String::from("image_path,label,split\n");
    let mut circles = 0;
    for r in &rows[1..] {
        let split = if r[1] == "circle" {
            circles += 1;
            if circles <= 2 { "train" } else { "test" }
        } else {
            "train"
        };
        text.push_str(&format!("{},{},{split}\n", r[0], r[1]));
    }
    std::fs::write(&csv, text).unwrap();
    let out = dir.path().join("few");
    let o = train_k_fold(&out, &csv, &["--split-column", "split"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--cross-validation 3: class 'circle' has 2 images outside the test split, too few for 3 folds"), "{}", stderr(&o));
    assert!(!out.join("best_model.zip").exists());
}

/// A binary task tunes its ensemble's threshold on the out-of-fold predictions; a regression's
/// folds are stratified by value band and its ensemble averages the members' values.
#[test]
fn binary_and_regression_tasks_cross_validate() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("binary");
    let o = train_k_fold(&binary, &crate::common::repo().join("test-data/sample_metadata_binary.csv"), &["--task", "binary", "--explain", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(binary.join("metrics.json")).unwrap()).unwrap();
    let source = m["decisions"]["threshold_source"].as_str().unwrap();
    assert!(source.contains("out-of-fold predictions"), "{source}");
    assert_eq!(m["task"], "binary");

    let regression = dir.path().join("regression");
    let o = train_k_fold(&regression, &crate::common::repo().join("test-data/sample_metadata_regression.csv"), &["--task", "regression", "--explain", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(regression.join("metrics.json")).unwrap()).unwrap();
    let cv = &m["cross_validation"];
    assert!(cv["out_of_fold"]["mae"].as_f64().unwrap() > 0.0);
    assert_eq!(cv["per_fold"]["mae"]["folds"].as_array().unwrap().len(), 3);
    let oof_rows: Vec<_> = records(&regression.join("predictions.csv")).into_iter().filter(|r| r["split"] != "test").collect();
    assert_eq!(oof_rows.len(), cv["out_of_fold"]["n"].as_u64().unwrap() as usize);
}
