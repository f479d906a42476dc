//! The binary decision threshold that maximises a chosen metric on the validation split.
//!
//! An image is given the second (positive) class when its probability reaches the threshold.
//! Between two neighbouring distinct validation scores every threshold makes the same decisions,
//! so the candidates are the midpoints between them: each way of cutting the sorted scores that
//! leaves at least one image on each side is tried once. Of equally good candidates the one
//! nearest 0.5 wins (then the lower), so a flat metric keeps the usual default.
use crate::config::ThresholdMetric;

/// The chosen threshold and the metric against every candidate.
#[derive(Clone, Debug)]
pub struct Tuned {
    pub threshold: f32,
    /// The metric at the chosen threshold, on the validation split.
    pub value: f64,
    /// (threshold, metric) for every candidate, by increasing threshold.
    pub curve: Vec<(f64, f64)>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// `metric` of the decisions with these counts, as scikit-learn computes it for the positive
/// class (a zero denominator gives 0). Youden's J is sensitivity + specificity - 1.
pub fn metric_value(metric: ThresholdMetric, tp: f64, fp: f64, tn: f64, fn_: f64) -> f64 {
    let (tpr, tnr) = (ratio(tp, tp + fn_), ratio(tn, tn + fp));
    match metric {
        ThresholdMetric::F1 => ratio(2.0 * tp, 2.0 * tp + fp + fn_),
        ThresholdMetric::Accuracy => ratio(tp + tn, tp + tn + fp + fn_),
        ThresholdMetric::BalancedAccuracy => (tpr + tnr) / 2.0,
        ThresholdMetric::Precision => ratio(tp, tp + fp),
        ThresholdMetric::Recall => tpr,
        ThresholdMetric::Mcc => {
            let d = (tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_);
            if d == 0.0 { 0.0 } else { (tp * tn - fp * fn_) / d.sqrt() }
        }
        ThresholdMetric::Youden => tpr + tnr - 1.0,
    }
}

/// The best threshold for `scores` (probabilities of the positive class) against `positive`;
/// None when the scores are all equal or one class is missing, where nothing can be tuned.
pub fn tune(scores: &[f32], positive: &[bool], metric: ThresholdMetric) -> Option<Tuned> {
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    // Walk down the scores; after each run of equal scores, cut below it.
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut curve = Vec::new();
    let mut best: Option<(f64, f32)> = None;
    for (k, &i) in order.iter().enumerate() {
        if positive[i] { tp += 1.0 } else { fp += 1.0 }
        let Some(&next) = order.get(k + 1) else { break };
        let (upper, lower) = (scores[i], scores[next]);
        if upper == lower {
            continue;
        }
        // The midpoint, kept strictly above `lower` so that the cut stays where it is meant.
        let mid = ((upper as f64 + lower as f64) / 2.0) as f32;
        let t = if mid > lower { mid } else { upper };
        let value = metric_value(metric, tp, fp, n_neg - fp, n_pos - tp);
        curve.push((t as f64, value));
        let better = match best {
            None => true,
            Some((v, bt)) => value > v || (value == v && ((t - 0.5).abs(), t) < ((bt - 0.5).abs(), bt)),
        };
        if better {
            best = Some((value, t));
        }
    }
    curve.reverse();
    best.map(|(value, threshold)| Tuned { threshold, value, curve })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_cut_of_separable_scores_lies_between_the_classes() {
        let scores = [0.1, 0.2, 0.35, 0.45, 0.9];
        let positive = [false, false, false, true, true];
        let t = tune(&scores, &positive, ThresholdMetric::F1).unwrap();
        assert!((t.threshold - 0.4).abs() < 1e-6, "{}", t.threshold);
        assert_eq!(t.value, 1.0);
        assert_eq!(t.curve.len(), 4, "one candidate between each pair of neighbours");
        assert!(t.curve.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn ties_go_to_the_candidate_nearest_one_half_and_equal_scores_are_one_cut() {
        // Accuracy is 3/4 at the cuts 0.2 and 0.675; 0.675 is nearer 0.5.
        let t = tune(&[0.1, 0.3, 0.45, 0.9], &[false, true, false, true], ThresholdMetric::Accuracy).unwrap();
        assert_eq!(t.curve.iter().map(|c| c.1).collect::<Vec<_>>(), [0.75, 0.5, 0.75]);
        assert!((t.threshold - 0.675).abs() < 1e-6, "{}", t.threshold);
        assert_eq!(tune(&[0.2, 0.3, 0.3, 0.9], &[true, false, false, true], ThresholdMetric::F1).unwrap().curve.len(), 2);
        assert!(tune(&[0.4, 0.4], &[true, false], ThresholdMetric::F1).is_none());
        assert!(tune(&[0.1, 0.4], &[true, true], ThresholdMetric::F1).is_none());
    }

    #[test]
    fn neighbouring_floats_keep_their_cut() {
        let lower = 0.3f32;
        let upper = f32::from_bits(lower.to_bits() + 1);
        let t = tune(&[lower, upper], &[false, true], ThresholdMetric::F1).unwrap();
        assert!(upper >= t.threshold && lower < t.threshold);
    }

    #[test]
    fn youden_and_mcc_from_counts() {
        assert!((metric_value(ThresholdMetric::Youden, 8.0, 1.0, 9.0, 2.0) - (0.8 + 0.9 - 1.0)).abs() < 1e-12);
        assert_eq!(metric_value(ThresholdMetric::Mcc, 0.0, 0.0, 5.0, 5.0), 0.0);
    }
}
