//! Training on the bundled sample through the library and the binary: the four outputs, their
//! columns, `predict` reproducing the test predictions, and repeatability.
use std::collections::HashSet;

use crate::common::*;
use image_learner::outputs;
use image_learner::weights::bundle;
use image_learner::commands::train::run as run_train;

#[test]
fn train_writes_all_outputs_and_predict_reproduces_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cfg = quick_config(&out, 3);
    cfg.augmentation = vec![image_learner::config::Augmentation::HorizontalFlip];
    let summary = run_train(&cfg).unwrap();
    assert_eq!(summary.epochs_run, 3);
    assert_eq!(summary.image_size, 32);

    let hist = csv_rows(&out.join(outputs::HISTORY));
    let expected: Vec<&str> = "epoch train_loss train_accuracy train_macro_f1 train_roc_auc validation_loss validation_accuracy \
        validation_macro_f1 validation_roc_auc learning_rate is_best seconds data_wait_seconds"
        .split_whitespace()
        .collect();
    assert_eq!(hist[0], expected, "the classification history's columns are the published ones");
    assert_eq!(hist.len(), 4);
    let best: Vec<&Vec<String>> = hist[1..].iter().filter(|r| r[10] == "true").collect();
    assert_eq!(best.len(), 1);
    assert_eq!(best[0][0], summary.best_epoch.to_string());
    for r in &hist[1..] {
        let loss: f64 = r[1].parse().unwrap();
        let acc: f64 = r[2].parse().unwrap();
        assert!(loss.is_finite() && loss > 0.0 && (0.0..=1.0).contains(&acc));
    }

    let preds = csv_rows(&out.join(outputs::PREDICTIONS));
    assert_eq!(
        preds[0],
        ["image_path", "true_label", "predicted_label", "confidence", "prob_circle", "prob_square", "prob_triangle", "correct"]
    );
    // 60 per class, 20% test each.
    assert_eq!(preds.len() - 1, 36);
    for r in &preds[1..] {
        let p: Vec<f64> = r[4..7].iter().map(|v| v.parse().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4);
        let conf: f64 = r[3].parse().unwrap();
        assert_eq!(conf, p.iter().cloned().fold(f64::MIN, f64::max));
        assert_eq!(r[7], (r[1] == r[2]).to_string());
    }
    let correct = preds[1..].iter().filter(|r| r[7] == "true").count() as f64 / 36.0;
    let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(outputs::METRICS)).unwrap()).unwrap();
    assert!((metrics["test"]["accuracy"].as_f64().unwrap() - correct).abs() < 1e-12);
    for key in ["macro_precision", "macro_recall", "macro_f1", "roc_auc_macro", "cohen_kappa", "confusion_matrix"] {
        assert!(!metrics["test"][key].is_null(), "{key}");
    }

    let html = std::fs::read_to_string(out.join(outputs::REPORT)).unwrap();
    for heading in ["Config and Overall Performance Summary", "Training and Validation Results", "Test Results", "Confusion matrix"] {
        assert!(html.contains(heading), "{heading}");
    }
    assert!(html.contains("resnet18") && html.contains("32x32 (--image-size)"));

    let b = bundle::read(&out.join(outputs::BEST_MODEL)).unwrap();
    assert_eq!(b.config.classes, ["circle", "square", "triangle"]);
    assert_eq!(b.config.architecture, "resnet18");
    assert_eq!(b.config.best_epoch, summary.best_epoch);
    assert!(b.weights[0].contains_key("layer4.1.bn2.running_var") && b.weights[0].contains_key("fc.weight"));

    // predict, through the binary, on exactly the test images: the same probabilities.
    let test_csv = dir.path().join("test_images.csv");
    let mut listing = String::from("image_path,label\n");
    for r in &preds[1..] {
        listing.push_str(&format!("{},{}\n", r[0], r[1]));
    }
    std::fs::write(&test_csv, listing).unwrap();
    let predicted = dir.path().join("again.csv");
    let o = run(&[
        "predict", "--model", out.join(outputs::BEST_MODEL).to_str().unwrap(),
        "--images", sample_zip().to_str().unwrap(), "--metadata", test_csv.to_str().unwrap(),
        "--output", predicted.to_str().unwrap(), "--threads", "2", "--device", "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(csv_rows(&predicted), preds, "predict must reproduce the test predictions exactly");
    assert!(stderr(&o).contains("against the labels"));

    // Without a CSV: every image of the ZIP, no truth columns.
    let all = dir.path().join("all.csv");
    let o = run(&[
        "predict", "--model", out.join(outputs::BEST_MODEL).to_str().unwrap(),
        "--images", sample_zip().to_str().unwrap(), "--output", all.to_str().unwrap(), "--device", "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows = csv_rows(&all);
    assert_eq!(rows.len(), 181);
    assert_eq!(rows[0][..3], ["image_path", "predicted_label", "confidence"]);
}

/// Through the binary: each run is its own process, as in use (libtorch's random generator is
/// global to a process, and the test harness runs tests in parallel threads).
#[test]
fn same_seed_repeats_and_another_seed_splits_differently() {
    let dir = tempfile::tempdir().unwrap();
    let go = |name: &str, seed: &str| {
        let out = dir.path().join(name);
        let o = run(&[
            "train", "--images", sample_zip().to_str().unwrap(), "--metadata", sample_csv().to_str().unwrap(),
            "--model", "resnet18", "--use-pretrained", "false", "--epochs", "2", "--batch-size", "16", "--image-size", "32",
            "--seed", seed, "--threads", "2", "--device", "cpu",
            "--augmentation", "horizontal_flip,vertical_flip,rotate,blur,brightness,contrast",
            "--output-dir", out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        out
    };
    let (a, b, c) = (go("a", "42"), go("b", "42"), go("c", "7"));
    let text = |p: &std::path::Path, f: &str| std::fs::read_to_string(p.join(f)).unwrap();
    assert!(text(&a, outputs::PREDICTIONS) == text(&b, outputs::PREDICTIONS), "same seed, other predictions");
    assert!(text(&a, outputs::METRICS) == text(&b, outputs::METRICS), "same seed, other metrics");
    let timeless = |p: &std::path::Path| -> Vec<Vec<String>> {
        csv_rows(&p.join(outputs::HISTORY)).into_iter().map(|mut r| { r.drain(outputs::history::TIME_COLUMNS); r }).collect()
    };
    assert_eq!(timeless(&a), timeless(&b));
    let names = |p: &std::path::Path| -> HashSet<String> {
        csv_rows(&p.join(outputs::PREDICTIONS)).into_iter().skip(1).map(|r| r[0].clone()).collect()
    };
    assert_ne!(names(&a), names(&c), "another seed gives another split");
}

#[test]
fn bundled_sample_is_what_the_generator_makes() {
    let dir = tempfile::tempdir().unwrap();
    image_learner::synth::write_sample(dir.path(), 60, 48, 1, false).unwrap();
    for f in ["sample_images.zip", "sample_metadata.csv", "sample_metadata_split.csv", "sample_metadata_binary.csv", "sample_metadata_ham.tsv", "sample_metadata_bad.csv", "sample_metadata_regression.csv"] {
        assert_eq!(
            std::fs::read(dir.path().join(f)).unwrap(),
            std::fs::read(repo().join("test-data").join(f)).unwrap(),
            "{f}: regenerate with `image-learner sample`"
        );
    }
}

/// `--precision bf16` trains through libtorch's autocast (the report says so) and learns the
/// sample as float32 does; where the CPU has no bf16 instructions it is refused with the reason.
#[test]
fn bf16_mixed_precision_trains_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cpu_bf16 = std::fs::read_to_string("/proc/cpuinfo").unwrap().split_whitespace().any(|f| f == "avx512_bf16" || f == "amx_bf16");
    let mut accuracy = Vec::new();
    for precision in [image_learner::config::PrecisionChoice::Fp32, image_learner::config::PrecisionChoice::Bf16] {
        let out = dir.path().join(format!("{precision:?}"));
        let mut cfg = quick_config(&out, 8);
        cfg.runtime.precision = precision;
        match run_train(&cfg) {
            Ok(s) => {
                let html = std::fs::read_to_string(out.join(image_learner::outputs::REPORT)).unwrap();
                let expected = if precision == image_learner::config::PrecisionChoice::Bf16 { "bf16 mixed precision" } else { "float32" };
                assert!(html.contains(expected), "{precision:?}: the report names the arithmetic");
                accuracy.push(s.test.classification().unwrap().accuracy);
            }
            Err(e) => {
                assert!(!cpu_bf16 && format!("{e:#}").contains("neither AVX512-BF16 nor AMX"), "{e:#}");
                return;
            }
        }
    }
    // Three classes (chance 0.33): both learn, and bf16 lands near float32.
    assert!(accuracy[1] > 0.55 && (accuracy[0] - accuracy[1]).abs() < 0.2, "fp32 {} vs bf16 {}", accuracy[0], accuracy[1]);
}

/// The final figures reuse the best epoch's passes instead of running them again: validation
/// always (the restored weights give exactly those probabilities, which `predict` confirms), and
/// train unless `--evaluate-train true` or `--predictions all` asks for the training images to be
/// evaluated again. The report and metrics.json say which train figures they show.
#[test]
fn final_figures_reuse_the_best_epochs_passes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let go = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let (zip, csv) = (sample_zip(), sample_csv());
        let mut args = vec![
            "train", "--images", zip.to_str().unwrap(), "--metadata", csv.to_str().unwrap(),
            "--model", "resnet18", "--use-pretrained", "false", "--epochs", "3", "--batch-size", "16", "--image-size", "32",
            "--threads", "2", "--device", "cpu", "--augmentation", "horizontal_flip",
        ];
        args.extend_from_slice(&["--output-dir", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let metrics: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(outputs::METRICS)).unwrap()).unwrap();
        let html = std::fs::read_to_string(out.join(outputs::REPORT)).unwrap();
        (out, metrics, html)
    };

    // Default: the train figures are the best epoch's training pass, as its history row says.
    let (out, pass, html) = go("default", &[]);
    assert!(pass["train_figures_from"].as_str().unwrap().contains("training pass"));
    assert!(html.contains("train, training pass* (n=126)") && html.contains("were not evaluated again"));
    assert!(html.contains("flip: the mean of the predictions for each image and its horizontal mirror"), "--tta auto flips for a model trained with horizontal flips");
    let hist = csv_rows(&out.join(outputs::HISTORY));
    let best = hist[1..].iter().find(|r| r[10] == "true").unwrap();
    assert_eq!(best[2].parse::<f64>().unwrap(), pass["train"]["accuracy"].as_f64().unwrap());
    assert_eq!(best[4].parse::<f64>().unwrap(), pass["train"]["roc_auc_macro"].as_f64().unwrap());
    assert_eq!(best[6].parse::<f64>().unwrap(), pass["validation"]["accuracy"].as_f64().unwrap());

    // Evaluated again: other train figures, the very same validation and test figures.
    let (_, again, html) = go("again", &["--evaluate-train", "true"]);
    assert!(again["train_figures_from"].as_str().unwrap().contains("evaluated again"));
    assert!(html.contains("train (n=126)") && !html.contains("training pass*"));
    assert_ne!(again["train"]["log_loss"], pass["train"]["log_loss"]);
    assert_eq!(again["validation"], pass["validation"]);
    assert_eq!(again["test"], pass["test"]);

    // Every image's prediction: `predict` with the Best Model on the validation images gives the
    // reused validation probabilities bit for bit, and the train ones too.
    let (out, all, _) = go("all", &["--predictions", "all"]);
    assert_eq!(all["train"], again["train"]);
    let rows = csv_rows(&out.join(outputs::PREDICTIONS));
    assert_eq!(rows[0][1], "split");
    for split in ["validation", "train"] {
        let picked: Vec<Vec<String>> = rows[1..]
            .iter()
            .filter(|r| r[1] == split)
            .map(|r| r.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, v)| v.clone()).collect())
            .collect();
        assert!(!picked.is_empty());
        let listing = dir.path().join(format!("{split}.csv"));
        let mut text = String::from("image_path,label\n");
        for r in &picked {
            text.push_str(&format!("{},{}\n", r[0], r[1]));
        }
        std::fs::write(&listing, text).unwrap();
        let again_csv = dir.path().join(format!("{split}_predicted.csv"));
        let o = run(&[
            "predict", "--model", out.join(outputs::BEST_MODEL).to_str().unwrap(),
            "--images", sample_zip().to_str().unwrap(), "--metadata", listing.to_str().unwrap(),
            "--output", again_csv.to_str().unwrap(), "--threads", "2", "--device", "cpu",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(csv_rows(&again_csv)[1..], picked[..], "{split}: predict must give the reused probabilities");
    }
}

/// Trains through the binary on the sample with `extra` flags; returns the output folder, the
/// metrics and the process's messages.
fn train_sample(dir: &std::path::Path, name: &str, csv: &std::path::Path, extra: &[&str]) -> (std::path::PathBuf, serde_json::Value, String) {
    let out = dir.join(name);
    let zip = sample_zip();
    let mut args = vec![
        "train", "--images", zip.to_str().unwrap(), "--metadata", csv.to_str().unwrap(),
        "--model", "resnet18", "--use-pretrained", "false", "--epochs", "2", "--batch-size", "16", "--image-size", "32",
        "--threads", "2", "--device", "cpu", "--output-dir", out.to_str().unwrap(),
    ];
    for option in ["--epochs", "--batch-size", "--model", "--image-size", "--threads"].into_iter().filter(|o| extra.contains(o)) {
        let at = args.iter().position(|a| *a == option).unwrap();
        args.drain(at..at + 2);
    }
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let metrics = serde_json::from_slice(&std::fs::read(out.join(outputs::METRICS)).unwrap()).unwrap();
    (out, metrics, stderr(&o))
}

/// `with` trained twice under the same seed: asserts that both runs wrote the same predictions and
/// metrics, byte for byte, and returns the two runs' folders and the first one's log.
fn trained_twice_alike(dir: &std::path::Path, with: &[&str]) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let (a, _, log) = train_sample(dir, "a", &sample_csv(), with);
    let (b, _, _) = train_sample(dir, "b", &sample_csv(), with);
    let text = |p: &std::path::Path, f: &str| std::fs::read_to_string(p.join(f)).unwrap();
    assert_eq!(text(&a, outputs::PREDICTIONS), text(&b, outputs::PREDICTIONS), "same seed, other predictions");
    assert_eq!(text(&a, outputs::METRICS), text(&b, outputs::METRICS), "same seed, other metrics");
    (a, b, log)
}

/// The temperature is fitted on the validation split after training: the same training with and
/// without it decides every test image alike, while the probabilities and log loss move.
#[test]
fn the_temperature_changes_probabilities_never_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let (cal, cal_m, _) = train_sample(dir.path(), "calibrated", &sample_csv(), &[]);
    let (raw, raw_m, _) = train_sample(dir.path(), "raw", &sample_csv(), &["--calibrate", "none"]);
    let t = cal_m["decisions"]["temperature"].as_f64().unwrap();
    assert!(t > 0.0 && t != 1.0, "{t}");
    assert!(cal_m["decisions"]["temperature_source"].as_str().unwrap().starts_with("fitted on the 18 validation images"));
    assert_eq!(raw_m["decisions"]["temperature"].as_f64(), Some(1.0));
    let (a, b) = (csv_rows(&cal.join(outputs::PREDICTIONS)), csv_rows(&raw.join(outputs::PREDICTIONS)));
    let column = |rows: &[Vec<String>], i: usize| rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>();
    assert_eq!(column(&a, 2), column(&b, 2), "the decided classes");
    assert_ne!(column(&a, 3), column(&b, 3), "the confidences");
    assert_eq!(cal_m["test"]["accuracy"], raw_m["test"]["accuracy"]);
    assert_eq!(cal_m["test"]["confusion_matrix"], raw_m["test"]["confusion_matrix"]);
    assert_ne!(cal_m["test"]["log_loss"], raw_m["test"]["log_loss"]);
    // On the validation split, where it was fitted, the temperature can only lower the log loss.
    assert!(cal_m["validation"]["log_loss"].as_f64().unwrap() <= raw_m["validation"]["log_loss"].as_f64().unwrap() + 1e-12);
    assert!((bundle::read(&cal.join(outputs::BEST_MODEL)).unwrap().config.temperature as f64 - t).abs() < 1e-6);
    let html = std::fs::read_to_string(cal.join(outputs::REPORT)).unwrap();
    for text in ["Temperature scaling divides every logit", "ECE before", "Reliability per class", "Brier score"] {
        assert!(html.contains(text), "{text}");
    }
    // The sample has three classes: top-3 would be every image, so no top-k at all.
    assert_eq!(cal_m["test"]["top_k_accuracy"], serde_json::json!([]));
    assert!(!html.contains("Top-3"));
    assert!(!std::fs::read_to_string(raw.join(outputs::REPORT)).unwrap().contains("ECE before"));
}

/// Binary: the threshold is tuned on the calibrated validation probabilities, stored in the Best
/// Model, used for every test decision, and applied again by `predict`.
#[test]
fn a_tuned_threshold_decides_the_test_images_and_predict_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let csv = repo().join("test-data/sample_metadata_binary.csv");
    let (out, m, _) = train_sample(dir.path(), "binary", &csv, &["--task", "binary", "--threshold-metric", "mcc", "--split", "60/20/20"]);
    let d = &m["decisions"];
    let t = d["threshold"].as_f64().unwrap();
    assert!(d["threshold_source"].as_str().unwrap().starts_with("tuned on the 24 validation images: maximises mcc"), "{d}");
    let b = bundle::read(&out.join(outputs::BEST_MODEL)).unwrap();
    assert_eq!(b.config.threshold.map(f64::from), Some(t));
    let preds = csv_rows(&out.join(outputs::PREDICTIONS));
    let second = preds[0][5].strip_prefix("prob_").unwrap().to_string();
    for r in &preds[1..] {
        let p1: f32 = r[5].parse().unwrap();
        // The CSV rounds to 6 decimals: only images well away from the threshold are checked.
        if (f64::from(p1) - t).abs() > 1e-5 {
            assert_eq!(r[2] == second, f64::from(p1) >= t, "{r:?} at threshold {t}");
        }
    }
    let html = std::fs::read_to_string(out.join(outputs::REPORT)).unwrap();
    assert!(html.contains("Threshold source") && html.contains("Decision threshold (validation split)"));
    let listing = dir.path().join("test.csv");
    let text: String = std::iter::once("image_path,label\n".to_string()).chain(preds[1..].iter().map(|r| format!("{},{}\n", r[0], r[1]))).collect();
    std::fs::write(&listing, text).unwrap();
    let again = dir.path().join("again.csv");
    let o = run(&[
        "predict", "--model", out.join(outputs::BEST_MODEL).to_str().unwrap(), "--images", sample_zip().to_str().unwrap(),
        "--metadata", listing.to_str().unwrap(), "--output", again.to_str().unwrap(), "--threads", "2", "--device", "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(csv_rows(&again), preds, "predict decides with the stored temperature and threshold");

    // Without a validation split: 0.5 and no temperature, each with a warning.
    let (_, m, log) = train_sample(dir.path(), "no_validation", &csv, &["--task", "binary", "--split", "80/0/20"]);
    assert_eq!((m["decisions"]["threshold"].as_f64(), m["decisions"]["temperature"].as_f64()), (Some(0.5), Some(1.0)));
    assert!(log.contains("--threshold auto needs a validation split") && log.contains("--calibrate temperature needs a validation split"), "{log}");
}

/// Regression end to end, with the task inferred: rows without a value are left out with a
/// warning naming them, the outputs have the regression columns, the model beats always
/// predicting the training mean, and `predict` reproduces the test predictions.
#[test]
fn a_regression_is_inferred_trained_reported_and_predicted_again() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("test-data/sample_metadata_regression.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[3] = format!("{},", lines[3].split(',').next().unwrap());
    lines[5] = format!("{},NA", lines[5].split(',').next().unwrap());
    let csv = dir.path().join("regression.csv");
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let (out, m, log) = train_sample(
        dir.path(),
        "regression",
        &csv,
        &["--task", "auto", "--epochs", "8", "--validation-metric", "mae", "--predictions", "all", "--learning-rate", "0.001"],
    );
    assert!(log.contains("task: the label column 'target' holds numbers, with values that are not whole numbers: regression"), "{log}");
    assert!(log.contains("2 rows of regression.csv have no value in the target column 'target' (lines 4, 6)"), "{log}");
    assert_eq!(m["task"], "regression");
    let hist = csv_rows(&out.join(outputs::HISTORY));
    assert_eq!(hist[0][..9], ["epoch", "train_loss", "train_mae", "train_rmse", "train_r2", "validation_loss", "validation_mae", "validation_rmse", "validation_r2"]);
    let preds = csv_rows(&out.join(outputs::PREDICTIONS));
    assert_eq!(preds[0], ["image_path", "split", "true_value", "predicted_value", "error"]);
    assert_eq!(preds.len() - 1, 178, "two rows left out");
    let value = |r: &Vec<String>, i: usize| -> f64 { r[i].parse().unwrap() };
    let of = |split: &str| preds[1..].iter().filter(|r| r[1] == split).collect::<Vec<_>>();
    let (train, test) = (of("train"), of("test"));
    let train_mean = train.iter().map(|r| value(r, 2)).sum::<f64>() / train.len() as f64;
    let baseline = test.iter().map(|r| (value(r, 2) - train_mean).abs()).sum::<f64>() / test.len() as f64;
    let mae = test.iter().map(|r| (value(r, 3) - value(r, 2)).abs()).sum::<f64>() / test.len() as f64;
    assert!((m["test"]["mae"].as_f64().unwrap() - mae).abs() < 1e-5, "metrics.json and the CSV agree");
    assert!(mae < 0.8 * baseline, "test MAE {mae} against {baseline} for always predicting the training mean");
    for r in &test {
        assert!((value(r, 4) - (value(r, 3) - value(r, 2))).abs() < 2e-6, "error = predicted - true: {r:?}");
    }
    assert!((m["target"]["mean"].as_f64().unwrap() - train_mean).abs() < 1e-9, "standardised with the training split");
    for key in ["mae", "rmse", "r2", "pearson_r", "spearman_rho"] {
        let ci = &m["test_95ci"][key];
        assert!(ci["low"].as_f64().unwrap() <= m["test"][key].as_f64().unwrap() && m["test"][key].as_f64().unwrap() <= ci["high"].as_f64().unwrap(), "{key}: {ci}");
    }
    let html = std::fs::read_to_string(out.join(outputs::REPORT)).unwrap();
    for text in ["True against predicted (test)", "Residuals against predicted", "Distribution of the errors", "Largest errors", "Spearman", "Task chosen by"] {
        assert!(html.contains(text), "{text}");
    }
    assert!(!html.contains("Confusion matrix") && !html.contains("ECE before") && !html.contains("Temperature"), "no classifier's sections or items");
    assert!(log.contains("decisions: none (not applicable: a regression predicts a number)"), "{log}");
    let b = bundle::read(&out.join(outputs::BEST_MODEL)).unwrap();
    assert_eq!(b.config.task, image_learner::task::TaskKind::Regression);
    assert!(b.config.target.is_some() && b.config.classes.is_empty());

    // The test images again, and one training image without a value: predicted, not scored.
    let listing = dir.path().join("test.csv");
    let unscored = &train[0];
    let text: String = std::iter::once("image_path,target\n".to_string())
        .chain(test.iter().map(|r| format!("{},{}\n", r[0], r[2])))
        .chain(std::iter::once(format!("{},NA\n", unscored[0])))
        .collect();
    std::fs::write(&listing, text).unwrap();
    let again = dir.path().join("again.csv");
    let o = run(&[
        "predict", "--model", out.join(outputs::BEST_MODEL).to_str().unwrap(), "--images", sample_zip().to_str().unwrap(),
        "--metadata", listing.to_str().unwrap(), "--output", again.to_str().unwrap(), "--threads", "2", "--device", "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut expected: Vec<Vec<String>> = test.iter().map(|r| vec![r[0].clone(), r[2].clone(), r[3].clone(), r[4].clone()]).collect();
    expected.push(vec![unscored[0].clone(), "NA".into(), unscored[3].clone(), String::new()]);
    // The images and their truth exactly; the values to float32's precision on the standardised
    // scale: predict's batches hold one image more, and libtorch's sums over another batch
    // shape may differ in the last bit.
    let got = csv_rows(&again)[1..].to_vec();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g[..2], e[..2], "predict gives the test images again");
        let (a, b): (f64, f64) = (g[2].parse().unwrap(), e[2].parse().unwrap());
        assert!((a - b).abs() <= 1e-5, "predict gives the test predictions again: {g:?} against {e:?}");
    }
    let err = stderr(&o);
    let line = test.len() + 2;
    assert!(err.contains(&format!("1 of {} images have no value in the column 'target' of test.csv (lines {line}): predicted, but not scored", test.len() + 1)), "{err}");
    assert!(err.contains(&format!("{} images scored against the labels: MAE {:.4}", test.len(), m["test"]["mae"].as_f64().unwrap())), "{err}");

    // Labels of another task than the model's are refused, and nothing is written.
    let refused = dir.path().join("refused.csv");
    let o = run(&[
        "predict", "--model", out.join(outputs::BEST_MODEL).to_str().unwrap(), "--images", sample_zip().to_str().unwrap(),
        "--metadata", sample_csv().to_str().unwrap(), "--output", refused.to_str().unwrap(), "--device", "cpu",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("this Best Model is a regression of 'target' and predicts a number, but the label column 'label'"), "{err}");
    assert!(err.contains("holds class names (line 2: 'circle')"), "{err}");
    assert!(!refused.exists(), "nothing written");
}

/// A ZIP64 archive (more than 65,535 entries, so a ZIP64 end of central directory) is read
/// whole: all 70,000 tiny images are found, matched to their rows and decoded.
#[test]
fn a_zip64_archive_of_70000_images_is_read_whole() {
    use std::io::Write;
    const N: usize = 70_000;
    let dir = tempfile::tempdir().unwrap();
    let mut png = Vec::new();
    image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([(x * 30) as u8, (y * 30) as u8, 90]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let zip_path = dir.path().join("many.zip");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut csv = String::from("image_path,label\n");
    for i in 0..N {
        let name = format!("tiles/{:02}/tile_{i:05}.png", i % 97);
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(&png).unwrap();
        csv.push_str(&format!("{name},{}\n", if i % 2 == 0 { "a" } else { "b" }));
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&zip_path).unwrap();
    assert!(bytes.windows(4).any(|s| s == [0x50, 0x4b, 0x06, 0x06]), "the writer made a ZIP64 end of central directory");
    let csv_path = dir.path().join("many.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let o = run(&[
        "throughput", "--images", zip_path.to_str().unwrap(), "--metadata", csv_path.to_str().unwrap(), "--image-size", "8", "--threads", "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let figures: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(figures["images"], N, "{figures}");
}

/// Label smoothing reaches the training loss and nothing else: the same run with it has another
/// training loss, while its validation loss is still the plain log loss; the report and the Best
/// Model record it. A classification left without `--label-smoothing` is smoothed by 0.1.
#[test]
fn label_smoothing_changes_the_training_loss_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--epochs", "1", "--calibrate", "none"];
    let (plain, _, _) = train_sample(dir.path(), "plain", &sample_csv(), &[&args[..], &["--label-smoothing", "0"]].concat());
    let (smooth, m, _) = train_sample(dir.path(), "smooth", &sample_csv(), &args);
    let first_epoch = |out: &std::path::Path, column: &str| -> f64 {
        let rows = csv_rows(&out.join(outputs::HISTORY));
        let at = rows[0].iter().position(|c| c == column).unwrap();
        rows[1][at].parse().unwrap()
    };
    let (a, b) = (first_epoch(&plain, "train_loss"), first_epoch(&smooth, "train_loss"));
    assert!((a - b).abs() > 1e-3, "the smoothed loss is another number: {a} and {b}");
    let validation = first_epoch(&smooth, "validation_loss");
    assert!((validation - m["validation"]["log_loss"].as_f64().unwrap()).abs() < 1e-5, "validation loss {validation} is the log loss: {}", m["validation"]);
    assert!(std::fs::read_to_string(smooth.join(outputs::REPORT)).unwrap().contains("label smoothing 0.1"));
    assert_eq!(bundle::read(&smooth.join(outputs::BEST_MODEL)).unwrap().config.options.label_smoothing, Some(0.1));
    assert_eq!(bundle::read(&plain.join(outputs::BEST_MODEL)).unwrap().config.options.label_smoothing, Some(0.0));
}

/// A cosine schedule after a warmup epoch: the history holds the rate each epoch ended at (the
/// peak, at the end of the warmup, then lower, down near the floor), and the report names the
/// schedule.
#[test]
fn the_learning_rate_follows_the_schedule_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--epochs", "3", "--learning-rate", "0.01", "--lr-schedule", "cosine", "--warmup-epochs", "1"];
    let (out, _, _) = train_sample(dir.path(), "cosine", &sample_csv(), &args);
    let rows = csv_rows(&out.join(outputs::HISTORY));
    let at = rows[0].iter().position(|c| c == "learning_rate").unwrap();
    let lr: Vec<f64> = rows[1..].iter().map(|r| r[at].parse().unwrap()).collect();
    assert_eq!(lr[0], 0.01, "the warmup ends at the peak: {lr:?}");
    // The cosine over epochs 2 and 3 falls from the peak to its floor (the peak / 100): past its
    // middle by the end of epoch 2, one step short of the floor at the end of epoch 3.
    let middle = 0.0001 + 0.0099 / 2.0;
    assert!(lr[1] < 0.01 && lr[1] > middle - 1e-12, "{lr:?}");
    assert!(lr[2] > 0.0001 && lr[2] < 0.003, "{lr:?}");
    let report = std::fs::read_to_string(out.join(outputs::REPORT)).unwrap();
    assert!(report.contains("peak; schedule: cosine down to 1e-4, after 1 warmup epoch"), "the run table names the schedule");
    assert_eq!(bundle::read(&out.join(outputs::BEST_MODEL)).unwrap().config.options.lr_schedule, image_learner::config::LrScheduleKind::Cosine);
}

/// A frozen first epoch, then one-cycle with slower, decaying rates for the backbone: the log
/// says when the backbone joins, the run repeats byte for byte, differs from a plain run, and the
/// report says what trained when.
#[test]
fn a_frozen_start_and_discriminative_rates_are_seeded_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let with = ["--epochs", "3", "--freeze-epochs", "1", "--backbone-lr-mult", "0.5", "--layer-decay", "0.8", "--lr-schedule", "onecycle"];
    let (a, _, log) = trained_twice_alike(dir.path(), &with);
    let (plain, _, _) = train_sample(dir.path(), "plain", &sample_csv(), &["--epochs", "3"]);
    assert!(log.contains("epoch 2: the backbone joins the training"), "{log}");
    assert!(log.contains("learning rates: the head at the scheduled rate, the backbone at 0.1638 to 0.4000 times it"), "{log}");
    let text = |p: &std::path::Path, f: &str| std::fs::read_to_string(p.join(f)).unwrap();
    assert_ne!(text(&a, outputs::PREDICTIONS), text(&plain, outputs::PREDICTIONS), "the options change the training");
    let report = text(&a, outputs::REPORT);
    assert!(report.contains("the head alone (and batch norm) in epoch 1, then all layers; the backbone at 0.5 times the rate of the head"), "run table");
    assert!(report.contains("each backbone stage at 0.8 times the rate of the stage after it"));
    let options = bundle::read(&a.join(outputs::BEST_MODEL)).unwrap().config.options;
    assert_eq!((options.freeze_epochs, options.backbone_lr_mult, options.layer_decay), (1, 0.5, 0.8));
}

/// The field's three augmentations are seeded: the same seed repeats the run byte for byte, and
/// they change what the model sees, so its training differs from a run without them.
#[test]
fn crops_colour_jitter_and_trivial_augment_are_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let with = ["--augmentation", "random_resized_crop,color_jitter,trivial_augment", "--crop-scale", "0.5,1"];
    let (a, b, _) = trained_twice_alike(dir.path(), &with);
    let (plain, _, _) = train_sample(dir.path(), "plain", &sample_csv(), &[]);
    let text = |p: &std::path::Path, f: &str| std::fs::read_to_string(p.join(f)).unwrap();
    assert_eq!(text(&a, outputs::HISTORY).lines().map(|l| l.split(',').take(3).collect::<Vec<_>>().join(",")).collect::<Vec<_>>(),
               text(&b, outputs::HISTORY).lines().map(|l| l.split(',').take(3).collect::<Vec<_>>().join(",")).collect::<Vec<_>>());
    assert_ne!(csv_rows(&a.join(outputs::HISTORY))[1][1], csv_rows(&plain.join(outputs::HISTORY))[1][1], "the augmented images reach the loss");
    assert!(text(&a, outputs::REPORT).contains("random_resized_crop (0.5 to 1 of the area), color_jitter, trivial_augment"));
    let options = bundle::read(&a.join(outputs::BEST_MODEL)).unwrap().config.options;
    assert_eq!(options.crop_scale.0, [0.5, 1.0]);
}

/// A model trained with `--tta flip`: `predict` applies flip by default and so repeats the test
/// predictions exactly; `--tta none` overrides it; a Best Model written before the option
/// existed (no `tta` in its options) predicts as `--tta none`; the report names the choice.
#[test]
fn test_time_augmentation_is_kept_in_the_best_model_and_predict_can_override_it() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let (out, _, _) = train_sample(dir.path(), "tta", &sample_csv(), &["--epochs", "1", "--tta", "flip", "--explain", "1"]);
    let report = std::fs::read_to_string(out.join(outputs::REPORT)).unwrap();
    assert!(report.contains("flip: the mean of the predictions for each image and its horizontal mirror (the validation and test figures)"));
    assert!(report.contains("(test-time augmentation: flip); each heatmap explains the image as it is."));
    let preds = csv_rows(&out.join(outputs::PREDICTIONS));
    let listing = dir.path().join("test.csv");
    std::fs::write(&listing, std::iter::once("image_path,label".to_string()).chain(preds[1..].iter().map(|r| format!("{},{}", r[0], r[1]))).collect::<Vec<_>>().join("\n")).unwrap();
    let predict = |model: &std::path::Path, name: &str, extra: &[&str]| -> (Vec<Vec<String>>, String) {
        let (path, images) = (dir.path().join(name), sample_zip());
        let mut args = vec!["predict", "--model", model.to_str().unwrap(), "--images", images.to_str().unwrap(),
            "--metadata", listing.to_str().unwrap(), "--output", path.to_str().unwrap(), "--device", "cpu"];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        (csv_rows(&path), stderr(&o))
    };
    let model = out.join(outputs::BEST_MODEL);
    let (flipped, log) = predict(&model, "flip.csv", &[]);
    assert_eq!(flipped, preds, "predict applies the model's TTA and repeats the test predictions");
    assert!(log.contains("test-time augmentation: flip"), "{log}");
    let (plain, log) = predict(&model, "none.csv", &["--tta", "none"]);
    assert_ne!(plain, flipped, "--tta none overrides the model's");
    assert!(!log.contains("test-time augmentation"));
    let (auto, _) = predict(&model, "auto.csv", &["--tta", "auto"]);
    assert_eq!(auto, plain, "--tta auto: this model was trained without horizontal flips");
    // The same Best Model as an earlier version wrote it: no tta among its options.
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&model).unwrap()).unwrap();
    let mut member = |name: &str| {
        let mut bytes = Vec::new();
        zip.by_name(name).unwrap().read_to_end(&mut bytes).unwrap();
        bytes
    };
    let mut config: serde_json::Value = serde_json::from_slice(&member("config.json")).unwrap();
    assert_eq!(config["options"]["tta"], "flip");
    config["options"].as_object_mut().unwrap().remove("tta");
    let old = dir.path().join("old_model.zip");
    std::fs::write(&old, bundle::zip_members(&serde_json::to_vec(&config).unwrap(), &[("model.safetensors", &member("model.safetensors"))]).unwrap()).unwrap();
    let (from_old, _) = predict(&old, "old.csv", &[]);
    assert_eq!(from_old, plain, "a Best Model without the field predicts as --tta none");
    let o = run(&["predict", "--model", model.to_str().unwrap(), "--images", sample_zip().to_str().unwrap(), "--tta", "flip8"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown test-time augmentation 'flip8': use auto, none, flip or flip4"), "{}", stderr(&o));
}

/// A validation split of one class cannot measure ROC-AUC: the run warns, chooses the best epoch
/// by the validation loss, and the report says so instead of leaving the figure blank.
#[test]
fn a_figure_the_validation_split_cannot_measure_falls_back_to_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(sample_csv()).unwrap();
    let mut lines = vec!["image_path,label,split".to_string()];
    let mut seen = std::collections::HashMap::new();
    for line in text.lines().skip(1) {
        let class = line.rsplit(',').next().unwrap().to_string();
        let n = seen.entry(class.clone()).or_insert(0);
        *n += 1;
        let split = match (*n, class.as_str()) {
            (1..=6, "circle") => "validation",
            (1..=6, _) => "test",
            _ => "train",
        };
        lines.push(format!("{line},{split}"));
    }
    let csv = dir.path().join("one_class_validation.csv");
    std::fs::write(&csv, lines.join("\n")).unwrap();
    let (out, m, log) = train_sample(dir.path(), "auc", &csv, &["--validation-metric", "roc_auc", "--split-column", "split"]);
    assert!(log.contains("warning: validation roc_auc cannot be measured on this validation split"), "{log}");
    let report = std::fs::read_to_string(out.join(outputs::REPORT)).unwrap();
    assert!(report.contains("validation loss: validation roc_auc cannot be measured"), "the run table says why");
    let best = m["best_epoch"].as_u64().unwrap() as usize;
    let rows = csv_rows(&out.join(outputs::HISTORY));
    let at = rows[0].iter().position(|c| c == "validation_loss").unwrap();
    let losses: Vec<f64> = rows[1..].iter().map(|r| r[at].parse().unwrap()).collect();
    let lowest = losses.iter().cloned().fold(f64::INFINITY, f64::min);
    assert_eq!(losses[best - 1], lowest, "the best epoch has the lowest validation loss: {losses:?}");
}

/// GLEAM's binary test: `--task classification` with a threshold on two classes trains a binary
/// classification decided at that threshold, and the log and the report say why.
#[test]
fn a_threshold_on_two_classes_makes_a_binary_task() {
    let dir = tempfile::tempdir().unwrap();
    let csv = repo().join("test-data/sample_metadata_binary.csv");
    let (out, m, log) = train_sample(dir.path(), "two", &csv, &["--task", "classification", "--threshold", "0.6", "--epochs", "1"]);
    assert!(log.contains("task: --threshold 0.6 with two classes"), "{log}");
    assert_eq!(m["task"], "binary", "{}", m["task"]);
    let report = std::fs::read_to_string(out.join(outputs::REPORT)).unwrap();
    assert!(report.contains("a binary classification, decided at that threshold"));
    assert!(report.contains("decision threshold 0.6"));
}

/// Shifting every regression target by a constant only shifts the predictions: the target is
/// standardised, and the values restored, in float64. By a thousand the run is the same bit for
/// bit; by a billion the targets themselves carry float64's rounding (1e9 + 65.7 is not exact),
/// so training differs a little, but the predictions still vary as before (they were once all
/// exactly 1e9).
#[test]
fn a_regression_target_far_from_zero_only_shifts_the_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let values = repo().join("test-data/sample_metadata_regression.csv");
    let text = std::fs::read_to_string(&values).unwrap();
    let shifted = |by: f64, name: &str| -> std::path::PathBuf {
        let lines: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| if i == 0 { l.to_string() } else { let (a, b) = l.rsplit_once(',').unwrap(); format!("{a},{}", b.parse::<f64>().unwrap() + by) })
            .collect();
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n")).unwrap();
        path
    };
    let args = ["--task", "regression", "--epochs", "1"];
    let predicted = |csv: &std::path::Path, name: &str| -> (Vec<f64>, f64) {
        let (out, m, _) = train_sample(dir.path(), name, csv, &args);
        let rows = csv_rows(&out.join(outputs::PREDICTIONS));
        let at = rows[0].iter().position(|c| c == "predicted_value").unwrap();
        (rows[1..].iter().map(|r| r[at].parse().unwrap()).collect(), m["test"]["r2"].as_f64().unwrap())
    };
    let (near, near_r2) = predicted(&values, "near");
    let (thousand, thousand_r2) = predicted(&shifted(1000.0, "thousand.csv"), "thousand");
    let (billion, billion_r2) = predicted(&shifted(1e9, "billion.csv"), "billion");
    for (n, t) in near.iter().zip(&thousand) {
        assert!((t - 1000.0 - n).abs() < 2e-6, "shifted by a thousand: {t} against {n}");
    }
    assert!((near_r2 - thousand_r2).abs() < 1e-9);
    let spread = |v: &[f64]| v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread(&near) > 1.0 && spread(&billion) > 0.5 * spread(&near), "the predictions vary: {billion:?}");
    let worst = near.iter().zip(&billion).map(|(n, b)| (b - 1e9 - n).abs()).fold(0.0, f64::max);
    assert!(worst < 0.25 * spread(&near), "shifted by a billion, the predictions move by up to {worst}");
    assert!((near_r2 - billion_r2).abs() < 0.1, "R² {near_r2} against {billion_r2}");
}

/// Classes named None, Mild and Severe under `--task auto`: "None" is a class to the task guess
/// as to the classifier, so the run trains three classes.
#[test]
fn a_class_named_none_is_a_class() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(sample_csv()).unwrap().replace(",circle", ",None").replace(",square", ",Mild").replace(",triangle", ",Severe");
    let csv = dir.path().join("severity.csv");
    std::fs::write(&csv, text).unwrap();
    let (_, m, log) = train_sample(dir.path(), "severity", &csv, &["--task", "auto", "--epochs", "1"]);
    assert!(log.contains("holds 3 distinct class names: classification"), "{log}");
    assert_eq!(m["classes"], serde_json::json!(["Mild", "None", "Severe"]));
}

/// Class balancing on a sample made unequal (60 circles, 15 squares, 15 triangles): auto, the
/// default, weighs the classes, which changes the training loss and is reported; the sampler's train figures
/// come from the training images evaluated again, not from its balanced draw.
#[test]
fn unequal_classes_are_balanced_as_asked_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(sample_csv()).unwrap();
    let (mut kept, mut seen) = (vec![text.lines().next().unwrap().to_string()], std::collections::HashMap::new());
    for line in text.lines().skip(1) {
        let class = line.rsplit(',').next().unwrap().to_string();
        let n = seen.entry(class.clone()).or_insert(0);
        *n += 1;
        if class == "circle" || *n <= 15 {
            kept.push(line.to_string());
        }
    }
    let csv = dir.path().join("unequal.csv");
    std::fs::write(&csv, kept.join("\n") + "\n").unwrap();
    let args = ["--epochs", "1", "--calibrate", "none"];
    let (plain, pm, _) = train_sample(dir.path(), "plain", &csv, &[&args[..], &["--class-balance", "none"]].concat());
    let (weighted, wm, log) = train_sample(dir.path(), "auto", &csv, &args);
    assert!(log.contains("class balance: auto (at least 3x): class weights in the loss"), "{log}");
    assert!(pm["class_balance"].as_str().unwrap().starts_with("none; the largest training class has"), "{}", pm["class_balance"]);
    assert!(wm["class_balance"].as_str().unwrap().contains("circle 0."), "{}", wm["class_balance"]);
    let first_loss = |out: &std::path::Path| -> String { csv_rows(&out.join(outputs::HISTORY))[1][1].clone() };
    assert_ne!(first_loss(&plain), first_loss(&weighted), "the weights reach the loss");
    assert!(std::fs::read_to_string(weighted.join(outputs::REPORT)).unwrap().contains("Class balance"));
    let (sampled, _, log) = train_sample(dir.path(), "sampler", &csv, &[&args[..], &["--class-balance", "sampler"]].concat());
    assert!(log.contains("every class equally often"), "{log}");
    assert!(std::fs::read_to_string(sampled.join(outputs::REPORT)).unwrap().contains("the training images evaluated again"));
}

/// A moving average of the weights changes what is validated and kept, never the training: the
/// training losses equal those of the same run without it, the validation losses do not, the
/// train figures are evaluated again with the kept weights, and the run repeats byte for byte.
#[test]
fn a_moving_average_of_the_weights_is_validated_and_kept_without_changing_training() {
    let dir = tempfile::tempdir().unwrap();
    let with = ["--epochs", "3", "--ema-decay", "0.9"];
    let (a, _, _) = trained_twice_alike(dir.path(), &with);
    let (plain, _, plain_log) = train_sample(dir.path(), "plain", &sample_csv(), &["--epochs", "3"]);
    let text = |p: &std::path::Path, f: &str| std::fs::read_to_string(p.join(f)).unwrap();
    let column = |p: &std::path::Path, name: &str| -> Vec<String> {
        let rows = csv_rows(&p.join(outputs::HISTORY));
        let at = rows[0].iter().position(|c| c == name).unwrap();
        rows[1..].iter().map(|r| r[at].clone()).collect()
    };
    assert_eq!(column(&a, "train_loss"), column(&plain, "train_loss"), "the average does not touch training");
    let (averaged, own) = (column(&a, "validation_loss"), column(&plain, "validation_loss"));
    assert!(averaged.iter().zip(&own).all(|(x, y)| x != y), "validated with other weights: {averaged:?} {own:?}");
    let report = text(&a, outputs::REPORT);
    assert!(report.contains("decay 0.9: validation, the best epoch and the Best Model use the averaged weights"));
    assert!(report.contains("Train figures: the training images evaluated again with the best weights"));
    assert_eq!(bundle::read(&a.join(outputs::BEST_MODEL)).unwrap().config.options.ema_decay, Some(0.9));
    // 3 epochs of the sample are far too short for the default average.
    assert!(!plain_log.contains("moving average"), "{plain_log}");
    assert_eq!(bundle::read(&plain.join(outputs::BEST_MODEL)).unwrap().config.options.ema_decay, Some(0.0));
}

/// A classification trained for at least `config::EMA_MIN_STEPS` steps averages its weights
/// (`config::EMA_DECAY`) unless told otherwise: the log says why, and the report and the Best
/// Model record the decay.
#[test]
fn a_long_classification_run_averages_its_weights_by_default() {
    let dir = tempfile::tempdir().unwrap();
    // The sample's 126 training images in batches of 2: 63 steps an epoch, 504 in 8 epochs (the
    // smallest model, at the least size and on one thread, keeps them quick).
    let args = ["--epochs", "8", "--batch-size", "2", "--model", "mobilenet_v3_small", "--image-size", "16", "--threads", "1"];
    let (out, _, log) = train_sample(dir.path(), "long", &sample_csv(), &args);
    let decay = image_learner::config::EMA_DECAY;
    assert!(log.contains(&format!("moving average of the weights: decay {decay}, the default for a classification of at least 500 training steps (this run plans 504)")), "{log}");
    assert!(std::fs::read_to_string(out.join(outputs::REPORT)).unwrap().contains(&format!("decay {decay}: validation, the best epoch")));
    assert_eq!(bundle::read(&out.join(outputs::BEST_MODEL)).unwrap().config.options.ema_decay, Some(decay));
}
