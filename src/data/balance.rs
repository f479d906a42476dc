//! Class imbalance (`--class-balance`): a plain loss buys accuracy on a set that is two thirds
//! one class by ignoring the rare ones. Either the loss weighs each class by its inverse
//! frequency in the training split (scikit-learn's "balanced" class weights), or each epoch
//! draws its training images so that every class comes up equally often.
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::ClassBalance;

/// `--class-balance auto` balances (with class weights) when the largest training class has at
/// least this many times the images of the smallest.
pub const AUTO_IMBALANCE: f64 = 3.0;

/// What the training does about unequal classes, and how the report says it.
#[derive(Clone, Debug, PartialEq)]
pub enum Balance {
    None,
    /// One weight per class, in class order.
    Weights(Vec<f64>),
    Sampler,
}

/// The balance `choice` makes for training labels `labels` (class indices) of `classes`, and
/// its description.
pub fn plan(choice: ClassBalance, labels: &[usize], classes: &[String]) -> (Balance, String) {
    let mut counts = vec![0usize; classes.len()];
    for &l in labels {
        counts[l] += 1;
    }
    let present: Vec<usize> = counts.iter().copied().filter(|&n| n > 0).collect();
    let ratio = present.iter().max().copied().unwrap_or(1) as f64 / present.iter().min().copied().unwrap_or(1).max(1) as f64;
    let imbalance = format!("the largest training class has {ratio:.1}x the images of the smallest");
    let weights = || {
        let w = class_weights(&counts);
        let shown: Vec<String> = classes.iter().zip(&w).map(|(c, w)| format!("{c} {w:.3}")).collect();
        (Balance::Weights(w), format!("class weights in the loss, inverse to the class sizes ({}); {imbalance}", shown.join(", ")))
    };
    match choice {
        ClassBalance::None => (Balance::None, format!("none; {imbalance}")),
        ClassBalance::Loss => weights(),
        ClassBalance::Sampler => (
            Balance::Sampler,
            format!("each epoch draws {} training images, every class equally often (with replacement); {imbalance}", labels.len()),
        ),
        ClassBalance::Auto if ratio >= AUTO_IMBALANCE => {
            let (b, d) = weights();
            (b, format!("auto (at least {AUTO_IMBALANCE}x): {d}"))
        }
        ClassBalance::Auto => (Balance::None, format!("auto: none, as {imbalance} (under {AUTO_IMBALANCE}x)")),
    }
}

/// scikit-learn's `compute_class_weight("balanced")`: n / (k * n_c) over the k classes that
/// have images; 0 for a class without any.
pub fn class_weights(counts: &[usize]) -> Vec<f64> {
    let n: usize = counts.iter().sum();
    let k = counts.iter().filter(|&&c| c > 0).count().max(1);
    counts.iter().map(|&c| if c == 0 { 0.0 } else { n as f64 / (k * c) as f64 }).collect()
}

/// One epoch's training order for the sampler: as many draws as `indices` has, each a class
/// chosen uniformly among those present, then one of its images uniformly.
pub fn balanced_draw(indices: &[usize], labels: &[usize], rng: &mut ChaCha8Rng) -> Vec<usize> {
    let k = indices.iter().map(|&i| labels[i] + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for &i in indices {
        by_class[labels[i]].push(i);
    }
    by_class.retain(|c| !c.is_empty());
    if by_class.is_empty() {
        return Vec::new();
    }
    (0..indices.len())
        .map(|_| {
            let class = &by_class[rng.random_range(0..by_class.len())];
            class[rng.random_range(0..class.len())]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn class_weights_are_scikit_learns_balanced_ones() {
        // sklearn.utils.class_weight.compute_class_weight("balanced", classes=[0, 1, 2], y=[0]*6 + [1]*3 + [2]) = [0.5556, 1.1111, 3.3333]
        let w = class_weights(&[6, 3, 1]);
        for (got, want) in w.iter().zip([10.0 / 18.0, 10.0 / 9.0, 10.0 / 3.0]) {
            assert!((got - want).abs() < 1e-12, "{w:?}");
        }
        assert_eq!(class_weights(&[4, 0, 4]), vec![1.0, 0.0, 1.0], "an absent class weighs nothing, and does not count");
        let labels: Vec<usize> = [0; 6].into_iter().chain([1; 3]).chain([2]).collect();
        let (b, text) = plan(ClassBalance::Auto, &labels, &names(3));
        assert_eq!(b, Balance::Weights(w));
        assert!(text.starts_with("auto (at least 3x): class weights") && text.contains("6.0x"), "{text}");
        let (b, text) = plan(ClassBalance::Auto, &[0, 0, 1, 1, 1], &names(2));
        assert_eq!(b, Balance::None, "1.5x is under the threshold: {text}");
        assert_eq!(plan(ClassBalance::None, &labels, &names(3)).0, Balance::None);
        assert_eq!(plan(ClassBalance::Sampler, &labels, &names(3)).0, Balance::Sampler);
    }

    #[test]
    fn the_sampler_draws_every_class_equally_often_and_is_seeded() {
        // 90 images of class 0, 9 of class 1, 1 of class 2.
        let labels: Vec<usize> = [0; 90].into_iter().chain([1; 9]).chain([2]).collect();
        let indices: Vec<usize> = (0..100).collect();
        let draw = |seed| balanced_draw(&indices, &labels, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut counts = [0usize; 3];
        for seed in 0..30 {
            let d = draw(seed);
            assert_eq!(d.len(), 100);
            for i in d {
                counts[labels[i]] += 1;
            }
        }
        // 3000 draws, a third each: the binomial sd is about 26.
        for c in counts {
            assert!((c as f64 - 1000.0).abs() < 130.0, "{counts:?}");
        }
        let only_some: Vec<usize> = (0..90).collect();
        assert!(balanced_draw(&only_some, &labels, &mut ChaCha8Rng::seed_from_u64(1)).iter().all(|&i| i < 90), "only the given images");
    }
}
