//! How far predicted probabilities can be taken at face value: reliability bins, expected and
//! maximum calibration error, and the Brier score.
//!
//! Binning is scikit-learn's `calibration_curve(strategy="uniform")`: `RELIABILITY_BINS` bins of
//! equal width on [0, 1], each closed on the right (a score equal to an inner edge falls in the
//! lower bin), empty bins left out. The calibration errors are taken over the top label: each
//! image's confidence (the probability of its decided class) against whether that decision was
//! right, as Guo et al. (2017) define ECE; ECE weighs each bin's |accuracy - confidence| by its
//! share of the images, MCE is the largest gap over the non-empty bins.
use serde::Serialize;

/// Bins of every reliability diagram and of ECE / MCE.
pub const RELIABILITY_BINS: usize = 15;

/// One non-empty bin of a reliability diagram.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Bin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    /// Mean score of the bin's images (sklearn's `prob_pred`).
    pub mean_score: f64,
    /// Fraction of them that are hits (sklearn's `prob_true`).
    pub hit_rate: f64,
}

/// The reliability bins of `scores` against `hits`, as `calibration_curve` bins them.
pub fn reliability(scores: &[f64], hits: &[bool], bins: usize) -> Vec<Bin> {
    // numpy's linspace(0, 1, bins + 1): edge i is i * (1 / bins), the last exactly 1.
    let step = 1.0 / bins as f64;
    let inner: Vec<f64> = (1..bins).map(|i| i as f64 * step).collect();
    let (mut count, mut sum, mut hit) = (vec![0usize; bins], vec![0f64; bins], vec![0usize; bins]);
    for (&s, &h) in scores.iter().zip(hits) {
        // searchsorted(inner, s, side="left"): the number of inner edges strictly below s.
        let b = inner.partition_point(|&e| e < s);
        count[b] += 1;
        sum[b] += s;
        hit[b] += usize::from(h);
    }
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| Bin {
            lower: b as f64 * step,
            upper: if b + 1 == bins { 1.0 } else { (b + 1) as f64 * step },
            count: count[b],
            mean_score: sum[b] / count[b] as f64,
            hit_rate: hit[b] as f64 / count[b] as f64,
        })
        .collect()
}

/// Top-label calibration of a set of predictions.
#[derive(Clone, Debug, Serialize)]
pub struct Calibration {
    /// Expected calibration error over `RELIABILITY_BINS` equal-width bins of confidence.
    pub ece: f64,
    /// Maximum calibration error over the same non-empty bins.
    pub mce: f64,
    pub bins: Vec<Bin>,
}

/// ECE, MCE and the bins of each image's confidence against whether its decision was right.
pub fn top_label(confidence: &[f64], correct: &[bool]) -> Calibration {
    let bins = reliability(confidence, correct, RELIABILITY_BINS);
    let n = confidence.len().max(1) as f64;
    let gap = |b: &Bin| (b.hit_rate - b.mean_score).abs();
    Calibration {
        ece: bins.iter().map(|b| b.count as f64 / n * gap(b)).sum(),
        mce: bins.iter().map(gap).fold(0.0, f64::max),
        bins,
    }
}

/// The Brier score as scikit-learn's `brier_score_loss`: for two classes the mean squared gap
/// between the second class's probability and its indicator; for more, the mean over images of
/// the squared gaps summed over classes (range 0 to 2).
pub fn brier_score(truth: &[usize], probs: &[Vec<f32>]) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let total: f64 = truth
        .iter()
        .zip(probs)
        .map(|(&t, p)| {
            if p.len() == 2 {
                (p[1] as f64 - f64::from(u8::from(t == 1))).powi(2)
            } else {
                p.iter().enumerate().map(|(c, &v)| (v as f64 - f64::from(u8::from(c == t))).powi(2)).sum()
            }
        })
        .sum();
    total / truth.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_right_closed_and_empty_ones_left_out() {
        // With 5 bins, 0.4 sits on an inner edge and belongs to the second bin (0.2, 0.4].
        let b = reliability(&[0.0, 0.4, 0.41, 1.0], &[false, true, false, true], 5);
        assert_eq!(b.iter().map(|b| b.count).collect::<Vec<_>>(), [1, 1, 1, 1]);
        assert_eq!(b.iter().map(|b| b.lower).collect::<Vec<_>>(), [0.0, 0.2, 0.4, 0.8]);
        assert_eq!(b[1].hit_rate, 1.0);
    }

    #[test]
    fn a_perfectly_calibrated_bin_has_no_error_and_a_wrong_one_its_gap() {
        // Ten images at confidence 0.7, seven right: calibrated. Then all ten wrong: gap 0.7.
        let conf = vec![0.7; 10];
        let right: Vec<bool> = (0..10).map(|i| i < 7).collect();
        let c = top_label(&conf, &right);
        assert!(c.ece.abs() < 1e-12 && c.mce.abs() < 1e-12);
        let c = top_label(&conf, &[false; 10]);
        assert!((c.ece - 0.7).abs() < 1e-12 && (c.mce - 0.7).abs() < 1e-12);
    }

    #[test]
    fn brier_of_binary_uses_the_second_class_and_of_multiclass_sums_over_classes() {
        let b = brier_score(&[1, 0], &[vec![0.2, 0.8], vec![0.6, 0.4]]);
        assert!((b - (0.04 + 0.16) / 2.0).abs() < 1e-7);
        let m = brier_score(&[2], &[vec![0.25, 0.25, 0.5]]);
        assert!((m - (0.0625 + 0.0625 + 0.25)).abs() < 1e-7);
    }
}
