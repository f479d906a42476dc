//! Temperature scaling (Guo et al., 2017): one number T that divides every logit before the
//! softmax, chosen to minimise the log loss of a held-out split. T > 0 keeps each image's ranking
//! of the classes, so the most probable class never changes; only how sure the model says it is.

/// The range searched for T. Outside it the held-out split is either perfectly separated
/// (T -> 0) or carries no signal (T -> infinity), and neither extreme should be applied.
pub const RANGE: (f64, f64) = (0.01, 100.0);

/// Mean negative log-likelihood of the true classes at temperature `t`, in float64.
pub fn log_loss(logits: &[Vec<f32>], truth: &[usize], t: f64) -> f64 {
    let total: f64 = logits
        .iter()
        .zip(truth)
        .map(|(z, &y)| {
            let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64 / t));
            let lse = max + z.iter().map(|&v| (v as f64 / t - max).exp()).sum::<f64>().ln();
            lse - z[y] as f64 / t
        })
        .sum();
    total / logits.len().max(1) as f64
}

/// The temperature in `RANGE` that minimises `log_loss`. The loss is convex in 1/T, hence
/// unimodal in ln T, where a golden-section search finds its minimum to 1e-10.
pub fn fit(logits: &[Vec<f32>], truth: &[usize]) -> f64 {
    let f = |u: f64| log_loss(logits, truth, u.exp());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (RANGE.0.ln(), RANGE.1.ln());
    let (mut c, mut d) = (b - ratio * (b - a), a + ratio * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    while b - a > 1e-10 {
        if fc <= fd {
            (b, d, fd) = (d, c, fc);
            c = b - ratio * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + ratio * (b - a);
            fd = f(d);
        }
    }
    ((a + b) / 2.0).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overconfident_logits_get_a_temperature_above_one() {
        // Logits that say 99.99% but are right only 3 times in 4.
        let logits: Vec<Vec<f32>> = (0..40).map(|i| if i % 2 == 0 { vec![10.0, 0.0] } else { vec![0.0, 10.0] }).collect();
        let truth: Vec<usize> = (0..40).map(|i| if i % 4 == 3 { 1 - i % 2 } else { i % 2 }).collect();
        let t = fit(&logits, &truth);
        // At the optimum the probability of the predicted class is 3/4: 10 / T = ln 3.
        assert!((t - 10.0 / 3f64.ln()).abs() < 1e-6, "{t}");
        assert!(log_loss(&logits, &truth, t) < log_loss(&logits, &truth, 1.0));
    }
}
