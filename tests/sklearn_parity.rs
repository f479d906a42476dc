//! Every metric against scikit-learn on the same labels and probabilities, to 1e-9: a 7-class
//! set, a binary set, heavy ties, a class never predicted, a class absent from the truth.
mod common;

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

#[test]
fn every_metric_matches_scikit_learn() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    let input: Vec<Value> = cases
        .iter()
        .map(|c| json!({"name": c.name, "k": c.k, "y_true": c.y, "probs": c.probs.iter().map(|p| p.iter().map(|&v| v as f64).collect::<Vec<_>>()).collect::<Vec<_>>()}))
        .collect();
    let (cin, cout) = (dir.path().join("cases.json"), dir.path().join("sklearn.json"));
    std::fs::write(&cin, serde_json::to_vec(&input).unwrap()).unwrap();
    let python = std::env::var("IMAGE_LEARNER_PYTHON").expect("IMAGE_LEARNER_PYTHON is set by scripts/setup-test.sh");
    let o = std::process::Command::new(python)
        .arg(common::repo().join("tests/reference/sklearn_metrics.py"))
        .args([&cin, &cout])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference: Value = serde_json::from_slice(&std::fs::read(&cout).unwrap()).unwrap();
    for c in &cases {
        let classes: Vec<String> = (0..c.k).map(|i| format!("c{i}")).collect();
        compare(c.name, &compute(&c.y, &c.probs, &classes), &reference[c.name]);
    }
    // The cases do exercise what they are named for.
    let never = &reference["never_predicted"]["confusion_matrix"];
    assert!((0..3).all(|t| never[t][2] == 0));
    assert_eq!(reference["absent_from_truth"]["per_class"]["support"][3], 0);
}
