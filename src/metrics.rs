//! Classification metrics as pure functions of true labels and predicted probabilities, defined
//! as scikit-learn defines them (macro averages over the labels present in either the truth or
//! the predictions; 0 where a ratio divides by zero).
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
    /// One-vs-rest ROC-AUC; `None` when the class has no positives or no negatives.
    pub roc_auc: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    pub n: usize,
    pub accuracy: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    /// Mean one-vs-rest ROC-AUC over the classes present in the truth; `None` if none qualifies.
    pub roc_auc_macro: Option<f64>,
    pub cohen_kappa: f64,
    /// Mean negative log-likelihood of the true class (probabilities clipped at 1e-15).
    pub log_loss: f64,
    /// Rows: true class; columns: predicted class.
    pub confusion_matrix: Vec<Vec<usize>>,
    pub per_class: Vec<ClassMetrics>,
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

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// Binary ROC-AUC of `scores` for `positive` flags, ties counted half (Mann-Whitney U).
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * order[i..=j].iter().filter(|&&k| positive[k]).count() as f64;
        i = j + 1;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

pub fn compute(y_true: &[usize], probs: &[Vec<f32>], classes: &[String]) -> Metrics {
    let k = classes.len();
    let n = y_true.len();
    let y_pred: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
    let mut cm = vec![vec![0usize; k]; k];
    for (&t, &p) in y_true.iter().zip(&y_pred) {
        cm[t][p] += 1;
    }
    let present: Vec<usize> = (0..k)
        .filter(|&c| cm[c].iter().sum::<usize>() > 0 || (0..k).any(|t| cm[t][c] > 0))
        .collect();
    let mut per_class = Vec::with_capacity(k);
    for c in 0..k {
        let tp = cm[c][c] as f64;
        let predicted: f64 = (0..k).map(|t| cm[t][c] as f64).sum();
        let actual: f64 = cm[c].iter().sum::<usize>() as f64;
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, actual);
        let f1 = ratio(2.0 * tp, predicted + actual);
        let scores: Vec<f64> = probs.iter().map(|p| p[c] as f64).collect();
        let positive: Vec<bool> = y_true.iter().map(|&t| t == c).collect();
        per_class.push(ClassMetrics {
            class: classes[c].clone(),
            precision,
            recall,
            f1,
            support: actual as usize,
            roc_auc: roc_auc(&scores, &positive),
        });
    }
    let macro_of = |f: fn(&ClassMetrics) -> f64| {
        if present.is_empty() { 0.0 } else { present.iter().map(|&c| f(&per_class[c])).sum::<f64>() / present.len() as f64 }
    };
    let aucs: Vec<f64> = per_class.iter().filter_map(|m| m.roc_auc).collect();
    let roc_auc_macro = if k == 2 {
        per_class[1].roc_auc
    } else if aucs.is_empty() {
        None
    } else {
        Some(aucs.iter().sum::<f64>() / aucs.len() as f64)
    };
    let correct = (0..k).map(|c| cm[c][c]).sum::<usize>() as f64;
    // Cohen's kappa from the confusion matrix, as sklearn.metrics.cohen_kappa_score.
    let total = n as f64;
    let kappa = if n == 0 {
        0.0
    } else {
        let row: Vec<f64> = (0..k).map(|i| cm[i].iter().sum::<usize>() as f64).collect();
        let col: Vec<f64> = (0..k).map(|j| (0..k).map(|i| cm[i][j] as f64).sum()).collect();
        let mut observed_off = 0.0;
        let mut expected_off = 0.0;
        for i in 0..k {
            for j in 0..k {
                if i != j {
                    observed_off += cm[i][j] as f64;
                    expected_off += row[i] * col[j] / total;
                }
            }
        }
        1.0 - observed_off / expected_off
    };
    let log_loss = if n == 0 {
        0.0
    } else {
        y_true
            .iter()
            .zip(probs)
            .map(|(&t, p)| {
                let sum: f64 = p.iter().map(|&v| v as f64).sum();
                -((p[t] as f64 / sum).clamp(1e-15, 1.0 - 1e-15)).ln()
            })
            .sum::<f64>()
            / total
    };
    Metrics {
        n,
        accuracy: ratio(correct, total),
        macro_precision: macro_of(|m| m.precision),
        macro_recall: macro_of(|m| m.recall),
        macro_f1: macro_of(|m| m.f1),
        roc_auc_macro,
        cohen_kappa: kappa,
        log_loss,
        confusion_matrix: cm,
        per_class,
    }
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

    // Expected figures computed with scikit-learn 1.x on the same inputs.
    #[test]
    fn matches_sklearn_multiclass() {
        let y_true = [0, 1, 2, 2, 1, 0, 2, 1];
        let y_pred = [0, 2, 2, 2, 1, 0, 1, 1];
        let m = compute(&y_true, &onehotish(&y_pred, 3), &classes(3));
        assert!((m.accuracy - 0.75).abs() < 1e-12);
        // precision: c0 2/2, c1 2/3, c2 2/3 ; recall: 1, 2/3, 2/3
        assert!((m.macro_precision - (1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!((m.macro_recall - (1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // sklearn.metrics.cohen_kappa_score(y_true, y_pred) = 0.6190476190476191
        assert!((m.cohen_kappa - 0.6190476190476191).abs() < 1e-12, "{}", m.cohen_kappa);
        assert_eq!(m.confusion_matrix, vec![vec![2, 0, 0], vec![0, 2, 1], vec![0, 1, 2]]);
    }

    #[test]
    fn roc_auc_with_ties() {
        // sklearn.metrics.roc_auc_score([0,0,1,1,1], [0.1,0.4,0.4,0.8,0.4]) = 5/6
        let auc = roc_auc(&[0.1, 0.4, 0.4, 0.8, 0.4], &[false, false, true, true, true]).unwrap();
        assert!((auc - 5.0 / 6.0).abs() < 1e-12, "{auc}");
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
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
}
