//! Regression metrics of predicted values against true values, defined as scikit-learn 1.9 and
//! SciPy define them, so that every figure matches them on the same inputs:
//! - R² and explained variance follow sklearn's `force_finite=True`: with a constant truth they
//!   are 1 for a perfect prediction and 0 otherwise;
//! - Pearson r and Spearman ρ (average ranks for ties) are SciPy's `pearsonr` and `spearmanr`,
//!   undefined (`None`) when the truth or the predictions are constant;
//! - MAPE is `mean_absolute_percentage_error`, a fraction (0.1 is 10%). It divides by the true
//!   value, so it is left undefined (`None`) when any true value is 0, where sklearn's result
//!   would be a meaningless ratio to machine epsilon.
use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{average_ranks, percentile_interval, Intervals};

#[derive(Clone, Debug, Serialize)]
pub struct RegressionMetrics {
    pub n: usize,
    pub mae: f64,
    pub mse: f64,
    pub rmse: f64,
    pub r2: f64,
    pub explained_variance: f64,
    pub pearson_r: Option<f64>,
    pub spearman_rho: Option<f64>,
    pub mape: Option<f64>,
    /// The mean error (predicted minus true): how far the predictions sit above the truth.
    pub mean_error: f64,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Σ (v - mean)², two-pass for accuracy.
fn sum_sq_dev(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m) * (x - m)).sum()
}

/// 1 - num/den with sklearn's `force_finite` handling of a zero denominator.
fn one_minus_ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        if num == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - num / den
    }
}

/// Pearson's r; `None` when either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() < 2 {
        return None;
    }
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Spearman's ρ: Pearson's r of the average ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Every regression figure of `pred` against `truth` (same length, at least one value).
pub fn compute(truth: &[f64], pred: &[f64]) -> RegressionMetrics {
    let n = truth.len();
    let errors: Vec<f64> = pred.iter().zip(truth).map(|(p, t)| p - t).collect();
    let mae = mean(&errors.iter().map(|e| e.abs()).collect::<Vec<_>>());
    let mse = mean(&errors.iter().map(|e| e * e).collect::<Vec<_>>());
    let ss_res: f64 = errors.iter().map(|e| e * e).sum();
    let ss_tot = sum_sq_dev(truth);
    let mape = truth.iter().all(|&t| t != 0.0).then(|| mean(&errors.iter().zip(truth).map(|(e, t)| e.abs() / t.abs()).collect::<Vec<_>>()));
    RegressionMetrics {
        n,
        mae,
        mse,
        rmse: mse.sqrt(),
        r2: one_minus_ratio(ss_res, ss_tot),
        explained_variance: one_minus_ratio(sum_sq_dev(&errors), ss_tot),
        pearson_r: pearson(truth, pred),
        spearman_rho: spearman(truth, pred),
        mape,
        mean_error: mean(&errors),
    }
}

/// The figures that get a bootstrap interval, by name, as they appear in metrics.json.
fn interval_figures(m: &RegressionMetrics) -> [(&'static str, Option<f64>); 8] {
    [
        ("mae", Some(m.mae)),
        ("mse", Some(m.mse)),
        ("rmse", Some(m.rmse)),
        ("r2", Some(m.r2)),
        ("explained_variance", Some(m.explained_variance)),
        ("pearson_r", m.pearson_r),
        ("spearman_rho", m.spearman_rho),
        ("mape", m.mape),
    ]
}

/// Percentile bootstrap 95% intervals (images resampled with replacement, seeded); a figure
/// undefined in more than half of the resamples gets none. `None` for fewer than 2 images.
pub fn bootstrap(truth: &[f64], pred: &[f64], resamples: usize, seed: u64) -> Option<Intervals> {
    let n = truth.len();
    if n < 2 || resamples == 0 {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xB007_57A9);
    let mut samples: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for _ in 0..resamples {
        let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
        let t: Vec<f64> = idx.iter().map(|&i| truth[i]).collect();
        let p: Vec<f64> = idx.iter().map(|&i| pred[i]).collect();
        for (name, v) in interval_figures(&compute(&t, &p)) {
            let s = samples.entry(name).or_default();
            s.extend(v);
        }
    }
    let of = samples.into_iter().filter(|(_, v)| v.len() * 2 > resamples).map(|(k, v)| (k, percentile_interval(v))).collect();
    Some(Intervals { resamples, of })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from scikit-learn 1.9 / SciPy 1.16 on the same inputs (the full parity
    // test against them is tests/it/reference/sklearn_parity.rs).
    #[test]
    fn figures_match_hand_checked_values() {
        let t = [3.0, -0.5, 2.0, 7.0];
        let p = [2.5, 0.0, 2.0, 8.0];
        let m = compute(&t, &p);
        assert!((m.mae - 0.5).abs() < 1e-12);
        assert!((m.mse - 0.375).abs() < 1e-12);
        assert!((m.r2 - 0.948_608_137_044_967_9).abs() < 1e-12);
        assert!((m.explained_variance - 0.957_173_447_537_473_2).abs() < 1e-12);
        assert!((m.pearson_r.unwrap() - 0.984_869_618_448_27).abs() < 1e-12);
        assert!((m.spearman_rho.unwrap() - 1.0).abs() < 1e-12);
        assert!((m.mape.unwrap() - 0.327_380_952_380_952_4).abs() < 1e-12);
    }

    #[test]
    fn degenerate_inputs_follow_the_references() {
        let m = compute(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]);
        assert_eq!((m.r2, m.pearson_r, m.spearman_rho), (0.0, None, None), "constant truth");
        assert_eq!(compute(&[2.0, 2.0], &[2.0, 2.0]).r2, 1.0, "perfect constant");
        assert_eq!(compute(&[0.0, 1.0], &[0.5, 1.0]).mape, None, "a true zero");
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        let ci = bootstrap(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.1, 2.2, 2.9, 4.2, 4.8], 200, 1).unwrap();
        let mae = ci.get("mae").unwrap();
        assert!(mae.low <= 0.16 && 0.16 <= mae.high, "the interval holds the point estimate: {mae:?}");
        assert_eq!(ci, bootstrap(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.1, 2.2, 2.9, 4.2, 4.8], 200, 1).unwrap(), "seeded");
    }
}
