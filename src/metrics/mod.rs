//! Classification metrics as pure functions of true labels and predicted probabilities, defined
//! as scikit-learn 1.9 defines them, so that every figure matches it on the same inputs:
//! - precision / recall / F1 averages run over the labels present in the truth or the
//!   predictions (sklearn's default `labels=None`); a ratio with a zero denominator is 0
//!   (`zero_division="warn"` returns 0);
//! - ROC-AUC and average precision are undefined for a class with no positive or no negative in
//!   the truth: sklearn raises an error there, we give `None` for that class and average the
//!   one-vs-rest figures over the classes where they are defined;
//! - balanced accuracy is the mean recall over the classes present in the truth;
//! - top-k accuracy is `top_k_accuracy_score`'s: among equal probabilities the higher class index
//!   ranks first, and k runs over `TOP_K` where k is below the number of classes (at or above it
//!   every image is a hit).
//!
//! Calibration figures (ECE, MCE, Brier) are `calibration`'s; regression figures are
//! `regression`'s, and `Figures` holds either kind.
pub mod calibration;
pub mod regression;

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// True negatives over all negatives.
    pub specificity: f64,
    /// Images of this class in the truth.
    pub support: usize,
    /// One-vs-rest ROC-AUC; `None` when the class has no positives or no negatives.
    pub roc_auc: Option<f64>,
    /// Average precision (area under the precision-recall curve, sklearn's step definition).
    pub average_precision: Option<f64>,
}

/// A 95% confidence interval.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    pub n: usize,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub weighted_precision: f64,
    pub weighted_recall: f64,
    pub weighted_f1: f64,
    pub micro_precision: f64,
    pub micro_recall: f64,
    pub micro_f1: f64,
    /// One-vs-rest ROC-AUC averaged over the classes where it is defined (binary: of class 1).
    pub roc_auc_macro: Option<f64>,
    /// The same, weighted by each class's support.
    pub roc_auc_weighted: Option<f64>,
    pub cohen_kappa: f64,
    pub matthews_corrcoef: f64,
    /// Mean negative log-likelihood of the true class (probabilities clipped at machine epsilon).
    pub log_loss: f64,
    /// Top-k accuracy for each k of `TOP_K` below the number of classes.
    pub top_k_accuracy: Vec<TopK>,
    /// `calibration::brier_score`.
    pub brier_score: f64,
    /// Expected and maximum calibration error of the top label (`calibration::top_label`).
    pub ece: f64,
    pub mce: f64,
    /// Rows: true class; columns: predicted class.
    pub confusion_matrix: Vec<Vec<usize>>,
    pub per_class: Vec<ClassMetrics>,
}

/// The figures of one split: a classification's, or a regression's with the training loss
/// (standardised units) of its predictions.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Figures {
    Classification(Metrics),
    Regression {
        loss: f64,
        #[serde(flatten)]
        figures: regression::RegressionMetrics,
    },
}

impl Figures {
    pub fn n(&self) -> usize {
        match self {
            Figures::Classification(m) => m.n,
            Figures::Regression { figures, .. } => figures.n,
        }
    }

    /// What training minimises, measured on these images: log loss, or the regression loss.
    pub fn loss(&self) -> f64 {
        match self {
            Figures::Classification(m) => m.log_loss,
            Figures::Regression { loss, .. } => *loss,
        }
    }

    pub fn classification(&self) -> Option<&Metrics> {
        match self {
            Figures::Classification(m) => Some(m),
            Figures::Regression { .. } => None,
        }
    }

    pub fn regression(&self) -> Option<&regression::RegressionMetrics> {
        match self {
            Figures::Classification(_) => None,
            Figures::Regression { figures, .. } => Some(figures),
        }
    }

    /// The figure `--validation-metric` names (None: undefined here, or of the other kind).
    pub fn value(&self, metric: crate::config::ValidationMetric) -> Option<f64> {
        use crate::config::ValidationMetric as V;
        match (self, metric) {
            (_, V::Loss) => Some(self.loss()),
            (Figures::Classification(m), V::Accuracy) => Some(m.accuracy),
            (Figures::Classification(m), V::BalancedAccuracy) => Some(m.balanced_accuracy),
            (Figures::Classification(m), V::MacroF1) => Some(m.macro_f1),
            (Figures::Classification(m), V::RocAuc) => m.roc_auc_macro,
            (Figures::Regression { figures, .. }, V::Mae) => Some(figures.mae),
            (Figures::Regression { figures, .. }, V::Rmse) => Some(figures.rmse),
            (Figures::Regression { figures, .. }, V::R2) => Some(figures.r2),
            _ => None,
        }
    }

    /// The two or three figures a log line gives.
    pub fn headline(&self) -> String {
        match self {
            Figures::Classification(m) => format!("accuracy {:.4}, macro F1 {:.4}", m.accuracy, m.macro_f1),
            Figures::Regression { figures: f, .. } => format!("MAE {:.4}, RMSE {:.4}, R² {:.4}", f.mae, f.rmse, f.r2),
        }
    }

    /// The Training History's figures after the loss, in `Task::epoch_columns` order.
    pub fn epoch_values(&self) -> [Option<f64>; 3] {
        match self {
            Figures::Classification(m) => [Some(m.accuracy), Some(m.macro_f1), m.roc_auc_macro],
            Figures::Regression { figures: f, .. } => [Some(f.mae), Some(f.rmse), Some(f.r2)],
        }
    }
}

/// The k of top-k accuracy.
pub const TOP_K: [usize; 2] = [3, 5];

#[derive(Clone, Debug, Serialize)]
pub struct TopK {
    pub k: usize,
    pub accuracy: f64,
}

/// The share of images whose true class is among the `k` most probable, ranked as
/// scikit-learn's `top_k_accuracy_score` ranks them (ties: the higher class index first).
pub fn top_k_accuracy(y_true: &[usize], probs: &[Vec<f32>], k: usize) -> f64 {
    let hits = y_true
        .iter()
        .zip(probs)
        .filter(|&(&t, p)| {
            let above = p.iter().enumerate().filter(|&(j, &v)| v > p[t] || (v == p[t] && j > t)).count();
            above < k
        })
        .count();
    ratio(hits as f64, y_true.len() as f64)
}

/// Index of the largest probability (the first on ties, as numpy's argmax).
pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// The predicted class: the most probable one, or for two classes with a decision `threshold`,
/// the second class when its probability reaches the threshold.
pub fn decide(p: &[f32], threshold: Option<f32>) -> usize {
    match threshold {
        Some(t) if p.len() == 2 => usize::from(p[1] >= t),
        _ => argmax(p),
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// Binary ROC-AUC of `scores` for `positive` flags, ties counted half (Mann-Whitney U), which
/// equals sklearn's trapezoidal area under the ROC curve.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let rank_sum: f64 = average_ranks(scores).iter().zip(positive).filter(|(_, &p)| p).map(|(r, _)| r).sum();
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Ranks from 1, ties given their average rank (SciPy's `rankdata(method="average")`).
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Points of a curve swept over the distinct scores, highest first: (false positives, true
/// positives) cumulated at each threshold.
fn sweep(scores: &[f64], positive: &[bool]) -> Vec<(f64, f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if positive[i] { tp += 1.0 } else { fp += 1.0 }
        let last_of_tie = k + 1 == order.len() || scores[order[k + 1]] != scores[i];
        if last_of_tie {
            out.push((scores[i], fp, tp));
        }
    }
    out
}

/// Average precision as sklearn: sum over thresholds of (recall step) x precision.
pub fn average_precision(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    if n_pos == 0.0 {
        return None;
    }
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for (_, fp, tp) in sweep(scores, positive) {
        let recall = tp / n_pos;
        ap += (recall - prev_recall) * tp / (tp + fp);
        prev_recall = recall;
    }
    Some(ap)
}

/// ROC curve points (false positive rate, true positive rate), starting at (0, 0).
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> Vec<(f64, f64)> {
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    let mut pts = vec![(0.0, 0.0)];
    for (_, fp, tp) in sweep(scores, positive) {
        pts.push((ratio(fp, n_neg), ratio(tp, n_pos)));
    }
    pts
}

/// Precision-recall curve points (recall, precision), from the highest threshold down.
pub fn pr_curve(scores: &[f64], positive: &[bool]) -> Vec<(f64, f64)> {
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let mut pts = vec![(0.0, 1.0)];
    for (_, fp, tp) in sweep(scores, positive) {
        pts.push((ratio(tp, n_pos), tp / (tp + fp)));
    }
    pts
}

fn column(probs: &[Vec<f32>], c: usize) -> Vec<f64> {
    probs.iter().map(|p| p[c] as f64).collect()
}

pub fn compute(y_true: &[usize], probs: &[Vec<f32>], classes: &[String]) -> Metrics {
    compute_with_threshold(y_true, probs, classes, None)
}

/// `compute` with a decision threshold for two-class problems (see `decide`).
pub fn compute_with_threshold(y_true: &[usize], probs: &[Vec<f32>], classes: &[String], threshold: Option<f32>) -> Metrics {
    let k = classes.len();
    let n = y_true.len();
    let total = n as f64;
    let y_pred: Vec<usize> = probs.iter().map(|p| decide(p, threshold)).collect();
    let mut cm = vec![vec![0usize; k]; k];
    for (&t, &p) in y_true.iter().zip(&y_pred) {
        cm[t][p] += 1;
    }
    let row: Vec<f64> = (0..k).map(|i| cm[i].iter().sum::<usize>() as f64).collect();
    let col: Vec<f64> = (0..k).map(|j| (0..k).map(|i| cm[i][j] as f64).sum()).collect();
    let present: Vec<usize> = (0..k).filter(|&c| row[c] > 0.0 || col[c] > 0.0).collect();
    let mut per_class = Vec::with_capacity(k);
    for c in 0..k {
        let tp = cm[c][c] as f64;
        let (predicted, actual) = (col[c], row[c]);
        let scores = column(probs, c);
        let positive: Vec<bool> = y_true.iter().map(|&t| t == c).collect();
        per_class.push(ClassMetrics {
            class: classes[c].clone(),
            precision: ratio(tp, predicted),
            recall: ratio(tp, actual),
            f1: ratio(2.0 * tp, predicted + actual),
            specificity: ratio(total - actual - predicted + tp, total - actual),
            support: actual as usize,
            roc_auc: roc_auc(&scores, &positive),
            average_precision: average_precision(&scores, &positive),
        });
    }
    let mean_over = |idx: &[usize], f: &dyn Fn(&ClassMetrics) -> f64| {
        if idx.is_empty() { 0.0 } else { idx.iter().map(|&c| f(&per_class[c])).sum::<f64>() / idx.len() as f64 }
    };
    let weighted = |f: &dyn Fn(&ClassMetrics) -> f64| ratio(present.iter().map(|&c| f(&per_class[c]) * row[c]).sum(), total);
    let in_truth: Vec<usize> = (0..k).filter(|&c| row[c] > 0.0).collect();
    let correct: f64 = (0..k).map(|c| cm[c][c] as f64).sum();
    let accuracy = ratio(correct, total);

    let defined: Vec<(usize, f64)> = (0..k).filter_map(|c| per_class[c].roc_auc.map(|a| (c, a))).collect();
    let (roc_auc_macro, roc_auc_weighted) = if k == 2 {
        (per_class[1].roc_auc, per_class[1].roc_auc)
    } else if defined.is_empty() {
        (None, None)
    } else {
        let macro_ = defined.iter().map(|(_, a)| a).sum::<f64>() / defined.len() as f64;
        let w: f64 = defined.iter().map(|&(c, _)| row[c]).sum();
        (Some(macro_), Some(defined.iter().map(|&(c, a)| a * row[c]).sum::<f64>() / w))
    };

    // Cohen's kappa from the confusion matrix, as sklearn.metrics.cohen_kappa_score.
    let (mut observed_off, mut expected_off) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            if i != j {
                observed_off += cm[i][j] as f64;
                expected_off += row[i] * col[j] / total;
            }
        }
    }
    let cohen_kappa = if n == 0 { 0.0 } else { 1.0 - observed_off / expected_off };
    // Matthews correlation, multiclass form (Gorodkin's R_K), as sklearn.metrics.matthews_corrcoef.
    let t_dot_p: f64 = (0..k).map(|c| row[c] * col[c]).sum();
    let cov_ytyp = correct * total - t_dot_p;
    let cov_ypyp = total * total - col.iter().map(|v| v * v).sum::<f64>();
    let cov_ytyt = total * total - row.iter().map(|v| v * v).sum::<f64>();
    let matthews_corrcoef = if cov_ypyp * cov_ytyt == 0.0 { 0.0 } else { cov_ytyp / (cov_ytyt * cov_ypyp).sqrt() };
    let eps = f64::EPSILON;
    let log_loss = ratio(
        y_true.iter().zip(probs).map(|(&t, p)| -(p[t] as f64).clamp(eps, 1.0 - eps).ln()).sum(),
        total,
    );
    let confidence: Vec<f64> = probs.iter().zip(&y_pred).map(|(p, &d)| p[d] as f64).collect();
    let correct: Vec<bool> = y_true.iter().zip(&y_pred).map(|(t, d)| t == d).collect();
    let top = calibration::top_label(&confidence, &correct);
    Metrics {
        n,
        accuracy,
        balanced_accuracy: mean_over(&in_truth, &|m| m.recall),
        macro_precision: mean_over(&present, &|m| m.precision),
        macro_recall: mean_over(&present, &|m| m.recall),
        macro_f1: mean_over(&present, &|m| m.f1),
        weighted_precision: weighted(&|m| m.precision),
        weighted_recall: weighted(&|m| m.recall),
        weighted_f1: weighted(&|m| m.f1),
        micro_precision: accuracy,
        micro_recall: accuracy,
        micro_f1: accuracy,
        roc_auc_macro,
        roc_auc_weighted,
        cohen_kappa,
        matthews_corrcoef,
        log_loss,
        top_k_accuracy: TOP_K.iter().filter(|&&t| t < k).map(|&t| TopK { k: t, accuracy: top_k_accuracy(y_true, probs, t) }).collect(),
        brier_score: calibration::brier_score(y_true, probs),
        ece: top.ece,
        mce: top.mce,
        confusion_matrix: cm,
        per_class,
    }
}

/// 95% percentile intervals from a seeded bootstrap over images, by figure name (classification:
/// accuracy, macro F1 and macro ROC-AUC; regression: `regression::bootstrap`'s). A figure the
/// resamples leave undefined too often has none.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Intervals {
    pub resamples: usize,
    #[serde(flatten)]
    pub of: BTreeMap<&'static str, Interval>,
}

impl Intervals {
    pub fn get(&self, figure: &str) -> Option<Interval> {
        self.of.get(figure).copied()
    }
}

fn percentile_interval(mut v: Vec<f64>) -> Interval {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
    Interval { low: at(0.025), high: at(0.975) }
}

pub fn bootstrap(y_true: &[usize], probs: &[Vec<f32>], classes: &[String], resamples: usize, seed: u64, threshold: Option<f32>) -> Option<Intervals> {
    let n = y_true.len();
    if n < 2 || resamples == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xB007_57A9);
    let (mut acc, mut f1, mut auc) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..resamples {
        let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
        let t: Vec<usize> = idx.iter().map(|&i| y_true[i]).collect();
        let p: Vec<Vec<f32>> = idx.iter().map(|&i| probs[i].clone()).collect();
        let m = compute_with_threshold(&t, &p, classes, threshold);
        acc.push(m.accuracy);
        f1.push(m.macro_f1);
        if let Some(a) = m.roc_auc_macro {
            auc.push(a);
        }
    }
    let mut of = BTreeMap::from([("accuracy", percentile_interval(acc)), ("macro_f1", percentile_interval(f1))]);
    if auc.len() * 2 > resamples {
        of.insert("roc_auc_macro", percentile_interval(auc));
    }
    Some(Intervals { resamples, of })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("c{i}")).collect()
    }

    fn onehotish(pred: &[usize], k: usize) -> Vec<Vec<f32>> {
        pred.iter().map(|&p| (0..k).map(|c| if c == p { 0.7 } else { 0.3 / (k - 1) as f32 }).collect()).collect()
    }

    // Expected figures computed with scikit-learn 1.9 on the same inputs (the full parity test
    // against scikit-learn itself is tests/it/reference/sklearn_parity.rs).
    #[test]
    fn matches_sklearn_multiclass() {
        let y_true = [0, 1, 2, 2, 1, 0, 2, 1];
        let y_pred = [0, 2, 2, 2, 1, 0, 1, 1];
        let m = compute(&y_true, &onehotish(&y_pred, 3), &classes(3));
        assert!((m.accuracy - 0.75).abs() < 1e-12);
        assert!((m.macro_precision - (1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!((m.macro_recall - (1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // sklearn.metrics.cohen_kappa_score(y_true, y_pred) = 0.6190476190476191
        assert!((m.cohen_kappa - 0.6190476190476191).abs() < 1e-12, "{}", m.cohen_kappa);
        assert_eq!(m.confusion_matrix, vec![vec![2, 0, 0], vec![0, 2, 1], vec![0, 1, 2]]);
    }

    /// `--validation-metric balanced_accuracy` scores an epoch by the mean of the classes'
    /// recalls, which differs from accuracy when the classes are unequal.
    #[test]
    fn balanced_accuracy_is_a_validation_figure() {
        use crate::config::ValidationMetric;
        // Four of class 0, all right; two of class 1, one right: accuracy 5/6, balanced 3/4.
        let (y_true, y_pred) = ([0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 0]);
        let f = Figures::Classification(compute(&y_true, &onehotish(&y_pred, 2), &classes(2)));
        let metric: ValidationMetric = "balanced_accuracy".parse().unwrap();
        assert!(metric.higher_is_better() && metric.for_regression() == Some(false));
        assert_eq!(f.value(metric), Some(0.75));
        assert!((f.value(ValidationMetric::Accuracy).unwrap() - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn roc_auc_and_average_precision_with_ties() {
        // sklearn.metrics.roc_auc_score([0,0,1,1,1], [0.1,0.4,0.4,0.8,0.4]) = 5/6
        let (s, p) = ([0.1, 0.4, 0.4, 0.8, 0.4], [false, false, true, true, true]);
        assert!((roc_auc(&s, &p).unwrap() - 5.0 / 6.0).abs() < 1e-12);
        // sklearn.metrics.average_precision_score(...) = 1/3 * 1 + 2/3 * 3/4 = 0.8333...
        assert!((average_precision(&s, &p).unwrap() - (1.0 / 3.0 + 2.0 / 3.0 * 0.75)).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(roc_curve(&s, &p), [(0.0, 0.0), (0.0, 1.0 / 3.0), (0.5, 1.0), (1.0, 1.0)]);
    }

    #[test]
    fn class_never_predicted_and_absent() {
        // Class 2 never appears in truth or prediction: it does not enter the macro averages.
        let m = compute(&[0, 0, 1, 1], &onehotish(&[0, 0, 0, 1], 3), &classes(3));
        assert!((m.macro_recall - (1.0 + 0.5) / 2.0).abs() < 1e-12);
        assert!((m.macro_precision - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
        assert_eq!(m.per_class[2].support, 0);
        assert_eq!(m.per_class[2].roc_auc, None);
    }

    #[test]
    fn top_k_ranks_the_higher_class_first_among_equal_probabilities() {
        // sklearn.metrics.top_k_accuracy_score([1], [[0.4, 0.4, 0.2]], k=1) = 1, and 0 for [0].
        let p = vec![vec![0.4f32, 0.4, 0.2]];
        assert_eq!((top_k_accuracy(&[1], &p, 1), top_k_accuracy(&[0], &p, 1)), (1.0, 0.0));
        assert_eq!(top_k_accuracy(&[0], &p, 2), 1.0);
        let m = compute(&[0, 1, 2, 3], &onehotish(&[0, 1, 2, 0], 4), &classes(4));
        assert_eq!(m.top_k_accuracy.iter().map(|t| t.k).collect::<Vec<_>>(), [3], "k below the number of classes only");
    }

    #[test]
    fn threshold_moves_binary_decisions() {
        let p = vec![vec![0.7f32, 0.3], vec![0.4, 0.6], vec![0.55, 0.45]];
        assert_eq!(p.iter().map(|p| decide(p, None)).collect::<Vec<_>>(), [0, 1, 0]);
        assert_eq!(p.iter().map(|p| decide(p, Some(0.25))).collect::<Vec<_>>(), [1, 1, 1]);
        assert_eq!(p.iter().map(|p| decide(p, Some(0.65))).collect::<Vec<_>>(), [0, 0, 0]);
        // At 0.4 the third image (0.45) flips to the second class.
        let m = compute_with_threshold(&[0, 1, 1], &p, &classes(2), Some(0.4));
        assert!((m.accuracy - 1.0).abs() < 1e-12);
        assert!((compute(&[0, 1, 1], &p, &classes(2)).accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(decide(&[0.2, 0.3, 0.5], Some(0.1)), 2, "no threshold for more than two classes");
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_estimate() {
        let y: Vec<usize> = (0..60).map(|i| i % 3).collect();
        let pred: Vec<usize> = (0..60).map(|i| if i % 5 == 0 { (i + 1) % 3 } else { i % 3 }).collect();
        let p = onehotish(&pred, 3);
        let a = bootstrap(&y, &p, &classes(3), 200, 1, None).unwrap();
        let b = bootstrap(&y, &p, &classes(3), 200, 1, None).unwrap();
        assert_eq!(a, b);
        let (acc, m) = (a.get("accuracy").unwrap(), compute(&y, &p, &classes(3)));
        assert!(acc.low <= m.accuracy && m.accuracy <= acc.high);
        assert!(acc.high - acc.low > 0.05);
    }
}
