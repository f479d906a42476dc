//! Every metric against scikit-learn on the same labels and probabilities, to 1e-9: a 7-class
//! set, a binary set, heavy ties, a class never predicted, a class absent from the truth. Also
//! the calibration figures (against `calibration_curve` and `brier_score_loss`), the tuned binary
//! threshold (against each metric of scikit-learn at every cut) and the fitted temperature
//! (against SciPy's bounded minimisation of scikit-learn's log loss). Every regression figure
//! against scikit-learn and SciPy on continuous values, tied ranks, a constant prediction, a
//! constant truth and a truth holding zeros.
use image_learner::config::ThresholdMetric;
use image_learner::decisions::{temperature, threshold};
use image_learner::metrics::calibration::{reliability, RELIABILITY_BINS};
use image_learner::metrics::{compute, Metrics};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    k: usize,
    y: Vec<usize>,
    probs: Vec<Vec<f32>>,
}

/// Random probabilities that lean towards the truth, as a half-trained model's would.
fn random_case(name: &'static str, k: usize, n: usize, seed: u64, quantise: Option<f32>) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let y: Vec<usize> = (0..n).map(|_| rng.random_range(0..k)).collect();
    let probs = y
        .iter()
        .map(|&t| {
            let mut p: Vec<f32> = (0..k).map(|c| rng.random::<f32>() + if c == t { 0.6 } else { 0.0 }).collect();
            if let Some(q) = quantise {
                p.iter_mut().for_each(|v| *v = (*v / q).round().max(1.0) * q);
            }
            let s: f32 = p.iter().sum();
            p.iter().map(|v| v / s).collect()
        })
        .collect();
    Case { name, k, y, probs }
}

fn cases() -> Vec<Case> {
    let mut out = vec![
        random_case("seven_classes", 7, 300, 1, None),
        random_case("binary", 2, 80, 2, None),
        random_case("ties", 4, 120, 3, Some(0.25)),
    ];
    // Class 2 is never predicted: its probability is always the smallest.
    let mut never = random_case("never_predicted", 3, 90, 4, None);
    for p in &mut never.probs {
        p[2] = 0.0;
        let s: f32 = p.iter().sum();
        p.iter_mut().for_each(|v| *v /= s);
    }
    out.push(never);
    // Class 3 is absent from the truth (but may be predicted).
    let mut absent = random_case("absent_from_truth", 4, 100, 5, None);
    absent.y.iter_mut().for_each(|t| if *t == 3 { *t = 0 });
    out.push(absent);
    out
}

fn close(ours: f64, theirs: &Value, what: &str) {
    let t = theirs.as_f64().unwrap_or_else(|| panic!("{what}: scikit-learn gave {theirs}"));
    assert!((ours - t).abs() <= 1e-9, "{what}: ours {ours}, scikit-learn {t}");
}

fn compare_calibration(name: &str, c: &Case, m: &Metrics, r: &Value) {
    let top_k: Vec<f64> = m.top_k_accuracy.iter().map(|t| t.accuracy).collect();
    assert_eq!(top_k.len(), r["top_k"].as_array().unwrap().len(), "{name}: top-k for k = {:?}", m.top_k_accuracy);
    for (i, v) in top_k.iter().enumerate() {
        close(*v, &r["top_k"][i], &format!("{name} top-{} accuracy", m.top_k_accuracy[i].k));
    }
    close(m.brier_score, &r["brier"], &format!("{name} brier"));
    close(m.ece, &r["ece"], &format!("{name} ece"));
    close(m.mce, &r["mce"], &format!("{name} mce"));
    for k in 0..c.k {
        let scores: Vec<f64> = c.probs.iter().map(|p| p[k] as f64).collect();
        let hits: Vec<bool> = c.y.iter().map(|&t| t == k).collect();
        let bins = reliability(&scores, &hits, RELIABILITY_BINS);
        let theirs = &r["reliability_per_class"][k];
        assert_eq!(json!(bins.iter().map(|b| b.count).collect::<Vec<_>>()), theirs["count"], "{name} class {k} bin counts");
        for (i, b) in bins.iter().enumerate() {
            close(b.hit_rate, &theirs["hit_rate"][i], &format!("{name} class {k} bin {i} hit rate"));
            close(b.mean_score, &theirs["mean_score"][i], &format!("{name} class {k} bin {i} mean score"));
        }
    }
}

fn compare(name: &str, m: &Metrics, r: &Value) {
    let scalars: [(&str, f64); 14] = [
        ("accuracy", m.accuracy),
        ("balanced_accuracy", m.balanced_accuracy),
        ("cohen_kappa", m.cohen_kappa),
        ("matthews_corrcoef", m.matthews_corrcoef),
        ("log_loss", m.log_loss),
        ("macro_precision", m.macro_precision),
        ("macro_recall", m.macro_recall),
        ("macro_f1", m.macro_f1),
        ("weighted_precision", m.weighted_precision),
        ("weighted_recall", m.weighted_recall),
        ("weighted_f1", m.weighted_f1),
        ("micro_precision", m.micro_precision),
        ("micro_recall", m.micro_recall),
        ("micro_f1", m.micro_f1),
    ];
    for (key, v) in scalars {
        close(v, &r[key], &format!("{name} {key}"));
    }
    close(m.roc_auc_macro.unwrap(), &r["roc_auc_macro"], &format!("{name} roc_auc_macro"));
    close(m.roc_auc_weighted.unwrap(), &r["roc_auc_weighted"], &format!("{name} roc_auc_weighted"));
    assert_eq!(json!(m.confusion_matrix), r["confusion_matrix"], "{name} confusion matrix");
    let pc = &r["per_class"];
    for (c, cm) in m.per_class.iter().enumerate() {
        let what = |k: &str| format!("{name} class {c} {k}");
        close(cm.precision, &pc["precision"][c], &what("precision"));
        close(cm.recall, &pc["recall"][c], &what("recall"));
        close(cm.f1, &pc["f1"][c], &what("f1"));
        close(cm.specificity, &pc["specificity"][c], &what("specificity"));
        assert_eq!(json!(cm.support), pc["support"][c], "{}", what("support"));
        for (ours, key) in [(cm.roc_auc, "roc_auc"), (cm.average_precision, "average_precision")] {
            match ours {
                Some(v) => close(v, &pc[key][c], &what(key)),
                None => assert!(pc[key][c].is_null(), "{}: ours undefined, scikit-learn {}", what(key), pc[key][c]),
            }
        }
    }
}

/// The reference script's figures for `input`.
fn reference(dir: &std::path::Path, input: &[Value]) -> Value {
    let (cin, cout) = (dir.join("cases.json"), dir.join("sklearn.json"));
    std::fs::write(&cin, serde_json::to_vec(input).unwrap()).unwrap();
    let python = super::python();
    let o = std::process::Command::new(python)
        .arg(crate::common::repo().join("tests/reference/sklearn_metrics.py"))
        .args([&cin, &cout])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(&cout).unwrap()).unwrap()
}

fn close_opt(ours: Option<f64>, theirs: &Value, what: &str) {
    match ours {
        Some(v) => close(v, theirs, what),
        None => assert!(theirs.is_null(), "{what}: ours undefined, the reference {theirs}"),
    }
}

#[test]
fn every_regression_figure_matches_scikit_learn_and_scipy() {
    use image_learner::metrics::regression;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let ages: Vec<f64> = (0..250).map(|_| f64::from(rng.random_range(5..17u32) * 5)).collect();
    let noisy: Vec<f64> = ages.iter().map(|a| a + rng.random::<f64>() * 20.0 - 8.0).collect();
    let continuous: Vec<f64> = (0..200).map(|_| rng.random::<f64>() * 10.0 - 3.0).collect();
    let fitted: Vec<f64> = continuous.iter().map(|v| 0.8 * v + rng.random::<f64>() - 0.2).collect();
    let cases: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("continuous", continuous.clone(), fitted),
        // Ages in steps of 5 with rounded predictions: ties on both sides of the ranks.
        ("tied_ages", ages.clone(), noisy.iter().map(|v| v.round()).collect()),
        ("constant_prediction", ages.clone(), vec![52.0; ages.len()]),
        ("constant_truth", vec![3.5; 40], (0..40).map(|i| f64::from(i) / 10.0).collect()),
        ("zero_in_truth", (0..60).map(|i| f64::from(i % 7)).collect(), (0..60).map(|i| f64::from(i % 7) + 0.3).collect()),
    ];
    let input: Vec<Value> = cases.iter().map(|(name, t, p)| json!({"name": name, "y_true": t, "y_pred": p})).collect();
    let dir = tempfile::tempdir().unwrap();
    let reference = reference(dir.path(), &input);
    for (name, t, p) in &cases {
        let (m, r) = (regression::compute(t, p), &reference[*name]);
        for (ours, key) in [(m.mae, "mae"), (m.mse, "mse"), (m.rmse, "rmse"), (m.r2, "r2"), (m.explained_variance, "explained_variance")] {
            close(ours, &r[key], &format!("{name} {key}"));
        }
        close_opt(m.pearson_r, &r["pearson_r"], &format!("{name} pearson_r"));
        close_opt(m.spearman_rho, &r["spearman_rho"], &format!("{name} spearman_rho"));
        close_opt(m.mape, &r["mape"], &format!("{name} mape"));
    }
    // The cases do exercise what they are named for.
    assert!(reference["constant_prediction"]["pearson_r"].is_null() && reference["constant_truth"]["spearman_rho"].is_null());
    assert!(reference["zero_in_truth"]["has_zero"].as_bool().unwrap());
    assert!(reference["tied_ages"]["spearman_rho"].as_f64().unwrap() > 0.5);
}

#[test]
fn every_metric_matches_scikit_learn() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    let tuned = |c: &Case| -> Vec<(ThresholdMetric, threshold::Tuned)> {
        let p1: Vec<f32> = c.probs.iter().map(|p| p[1]).collect();
        let positive: Vec<bool> = c.y.iter().map(|&t| t == 1).collect();
        ThresholdMetric::ALL.iter().map(|&m| (m, threshold::tune(&p1, &positive, m).unwrap())).collect()
    };
    let mut input: Vec<Value> = cases
        .iter()
        .map(|c| {
            let mut v = json!({"name": c.name, "k": c.k, "y_true": c.y, "probs": c.probs.iter().map(|p| p.iter().map(|&v| v as f64).collect::<Vec<_>>()).collect::<Vec<_>>()});
            if c.k == 2 {
                v["thresholds"] = tuned(c).iter().map(|(m, t)| (m.name().to_string(), json!(t.threshold as f64))).collect::<serde_json::Map<_, _>>().into();
            }
            v
        })
        .collect();
    // Overconfident logits (a noisy rule, scaled up) for the temperature.
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (logits, logit_truth): (Vec<Vec<f32>>, Vec<usize>) = (0..200)
        .map(|_| {
            let z: Vec<f32> = (0..4).map(|_| rng.random::<f32>() * 12.0 - 6.0).collect();
            let top = image_learner::metrics::argmax(&z);
            let y = if rng.random::<f32>() < 0.7 { top } else { rng.random_range(0..4) };
            (z, y)
        })
        .unzip();
    input.push(json!({"name": "temperature", "y_true": logit_truth, "logits": logits.iter().map(|z| z.iter().map(|&v| v as f64).collect::<Vec<_>>()).collect::<Vec<_>>()}));
    let reference = reference(dir.path(), &input);
    for c in &cases {
        let classes: Vec<String> = (0..c.k).map(|i| format!("c{i}")).collect();
        let m = compute(&c.y, &c.probs, &classes);
        compare(c.name, &m, &reference[c.name]);
        compare_calibration(c.name, c, &m, &reference[c.name]);
        if c.k == 2 {
            for (metric, t) in tuned(c) {
                let r = &reference[c.name]["thresholds"][metric.name()];
                let what = format!("{} threshold {} for {}", c.name, t.threshold, metric.name());
                close(t.value, &r["at_ours"], &what);
                close(t.value, &r["best"], &format!("{what}: the best cut"));
            }
        }
    }
    let r = &reference["temperature"];
    let ours = temperature::fit(&logits, &logit_truth);
    let theirs = r["temperature"].as_f64().unwrap();
    assert!((ours - theirs).abs() < 1e-4 * theirs, "temperature: ours {ours}, SciPy {theirs}");
    assert!(temperature::log_loss(&logits, &logit_truth, ours) <= r["log_loss"].as_f64().unwrap() + 1e-12, "ours is at least as good a minimum");
    close(temperature::log_loss(&logits, &logit_truth, theirs), &r["log_loss"], "log loss at SciPy's temperature");
    close(temperature::log_loss(&logits, &logit_truth, 1.0), &r["log_loss_at_1"], "log loss at temperature 1");
    assert!(ours > 1.2, "the logits were made overconfident: {ours}");
    // The cases do exercise what they are named for.
    let never = &reference["never_predicted"]["confusion_matrix"];
    assert!((0..3).all(|t| never[t][2] == 0));
    assert_eq!(reference["absent_from_truth"]["per_class"]["support"][3], 0);
}

/// A cross-validation's out-of-fold figures are scikit-learn's on its out-of-fold predictions
/// (the Predictions CSV's rows outside the test split).
#[test]
fn out_of_fold_figures_match_scikit_learn_on_the_out_of_fold_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cv");
    let o = crate::cross_validation::train_k_fold(&out, &crate::common::sample_csv(), &["--explain", "0"]);
    assert!(o.status.success(), "{}", crate::common::stderr(&o));
    let script = "import csv, json, sys\n\
from sklearn import metrics as m\n\
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r['split'] != 'test']\n\
t = [r['true_label'] for r in rows]; p = [r['predicted_label'] for r in rows]\n\
print(json.dumps({'n': len(rows), 'accuracy': m.accuracy_score(t, p), 'macro_f1': m.f1_score(t, p, average='macro'), 'balanced_accuracy': m.balanced_accuracy_score(t, p)}))";
    let o = std::process::Command::new(super::python()).args(["-c", script]).arg(out.join("predictions.csv")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let theirs: Value = serde_json::from_slice(&o.stdout).unwrap();
    let metrics: Value = serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    let ours = &metrics["cross_validation"]["out_of_fold"];
    assert_eq!(ours["n"], theirs["n"]);
    for figure in ["accuracy", "macro_f1", "balanced_accuracy"] {
        close(ours[figure].as_f64().unwrap(), &theirs[figure], figure);
    }
}
