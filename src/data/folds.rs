//! k-fold cross-validation's folds: the images outside the test split dealt into K folds,
//! stratified by class (a regression: by quantile band of its target) and, with a group column,
//! grouped so that no group spans two folds. Seeded.
use std::collections::BTreeMap;

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::bail_input;

pub use crate::config::FOLDS;

/// The fold (0..k) of each item with class `labels` and, when given, group `groups`.
///
/// Each group (or, ungrouped, each item) counts as its most common class. Per class, the groups
/// are shuffled, then dealt largest first, each to the fold that holds the fewest items of that
/// class (ties: the fewest items in all, then the lowest fold). Ungrouped, every fold gets its
/// class's share to within one item.
pub fn assign(labels: &[usize], groups: Option<&[String]>, classes: &[String], k: usize, seed: u64) -> Result<Vec<usize>> {
    if !FOLDS.contains(&k) {
        bail_input!(
            "--cross-validation {k}: use 0 (no cross-validation) or a number of folds from {} to {}",
            FOLDS.start(),
            FOLDS.end()
        );
    }
    // The units dealt out: groups, or single items.
    let by_class: BTreeMap<usize, Vec<Vec<usize>>> = match groups {
        Some(g) => super::split::groups_by_class(labels, g),
        None => {
            let mut by_class: BTreeMap<usize, Vec<Vec<usize>>> = BTreeMap::new();
            for (i, &l) in labels.iter().enumerate() {
                by_class.entry(l).or_default().push(vec![i]);
            }
            by_class
        }
    };
    if let Some((&class, units)) = by_class.iter().min_by_key(|(_, u)| u.len()).filter(|(_, u)| u.len() < k) {
        let what = if groups.is_some() { "groups" } else { "images" };
        bail_input!(
            "--cross-validation {k}: class '{}' has {} {what} outside the test split, too few for {k} folds \
             (each fold needs one to validate on); use at most {} folds, or add images",
            classes[class],
            units.len(),
            units.len()
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold = vec![0usize; labels.len()];
    let mut total = vec![0usize; k];
    for (_, mut class_units) in by_class {
        class_units.shuffle(&mut rng);
        // Stable: equal sizes keep their shuffled order.
        class_units.sort_by_key(|u| std::cmp::Reverse(u.len()));
        let mut in_class = vec![0usize; k];
        for unit in class_units {
            let f = (0..k).min_by_key(|&f| (in_class[f], total[f], f)).expect("k > 0");
            in_class[f] += unit.len();
            total[f] += unit.len();
            for i in unit {
                fold[i] = f;
            }
        }
    }
    Ok(fold)
}

/// A split's cross-validation: the images outside its test split (`pool`, in set order) and the
/// fold (0..k) of each.
#[derive(Clone, Debug)]
pub struct Folds {
    pub k: usize,
    pub pool: Vec<usize>,
    pub fold: Vec<usize>,
}

impl Folds {
    /// The images model `f` validates on: fold `f`, in set order.
    pub fn validation(&self, f: usize) -> Vec<usize> {
        self.pool.iter().zip(&self.fold).filter(|(_, &x)| x == f).map(|(&i, _)| i).collect()
    }

    /// The images model `f` trains on: every other fold, in set order.
    pub fn train(&self, f: usize) -> Vec<usize> {
        self.pool.iter().zip(&self.fold).filter(|(_, &x)| x != f).map(|(&i, _)| i).collect()
    }

    /// The training steps model `f` plans in `epochs` epochs of batches of `batch_size` (at most
    /// its training images, as `train::fitting_batch_size` fits it).
    pub fn planned_steps(&self, f: usize, batch_size: usize, epochs: usize) -> usize {
        let n = self.train(f).len();
        super::batches::training_steps(n, batch_size.min(n).max(1)) * epochs
    }

    /// The fold of each image of the set (None: a test image).
    pub fn of_image(&self, images: usize) -> Vec<Option<usize>> {
        let mut out = vec![None; images];
        for (&i, &f) in self.pool.iter().zip(&self.fold) {
            out[i] = Some(f);
        }
        out
    }
}

/// Deals the images outside `plan`'s test split into `k` folds: stratified by class (a
/// regression: by quantile band of its target), grouped by the set's group column when it has
/// one, seeded.
pub fn deal(ing: &super::Ingested, plan: &super::split::SplitPlan, k: usize, seed: u64) -> Result<Folds> {
    let set = &ing.images;
    let mut pool: Vec<usize> = plan.train.iter().chain(&plan.validation).copied().collect();
    pool.sort_unstable();
    let groups: Option<Vec<String>> = ing.summary.group_column.as_ref().map(|_| {
        pool.iter().map(|&i| ing.rows[i].group.clone().unwrap_or_else(|| format!("row:{}", ing.rows[i].line))).collect()
    });
    let (labels, classes) = if set.targets.is_empty() {
        (pool.iter().map(|&i| set.labels[i]).collect(), set.classes.clone())
    } else {
        let values: Vec<f64> = pool.iter().map(|&i| set.targets[i]).collect();
        let units = groups.as_ref().map_or(values.len(), |g| g.iter().collect::<std::collections::HashSet<_>>().len());
        super::split::value_strata(&values, units)
    };
    let fold = assign(&labels, groups.as_deref(), &classes, k, seed)?;
    Ok(Folds { k, pool, fold })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(n: usize) -> Vec<String> {
        (0..n).map(|c| format!("c{c}")).collect()
    }

    /// Ungrouped: the folds partition the items, and each class's count per fold is within one
    /// of its share; the same seed gives the same folds, another seed others.
    #[test]
    fn stratified_folds_share_every_class_to_within_one_image() {
        // Imbalanced: 53, 17 and 6 items.
        let labels: Vec<usize> = (0..76).map(|i| if i < 53 { 0 } else if i < 70 { 1 } else { 2 }).collect();
        for k in [3, 5] {
            let f = assign(&labels, None, &classes(3), k, 7).unwrap();
            assert!(f.iter().all(|&x| x < k));
            for class in 0..3 {
                let n = labels.iter().filter(|&&l| l == class).count();
                for fold in 0..k {
                    let got = (0..76).filter(|&i| labels[i] == class && f[i] == fold).count() as f64;
                    assert!((got - n as f64 / k as f64).abs() < 1.0, "class {class}, fold {fold}: {got} of {n}");
                }
            }
            let sizes: Vec<usize> = (0..k).map(|fold| f.iter().filter(|&&x| x == fold).count()).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
            assert_eq!(f, assign(&labels, None, &classes(3), k, 7).unwrap());
            assert_ne!(f, assign(&labels, None, &classes(3), k, 8).unwrap());
        }
    }

    /// Grouped: no group is in two folds, every fold has every class, and each class's count per
    /// fold stays within the largest group of that class of its share.
    #[test]
    fn grouped_folds_keep_each_group_whole() {
        // 40 lesions of 1 to 3 images; the lesion's images share its class.
        let mut labels = Vec::new();
        let mut groups = Vec::new();
        for g in 0..40 {
            for _ in 0..(g % 3 + 1) {
                labels.push(if g < 25 { 0 } else { 1 });
                groups.push(format!("lesion{g}"));
            }
        }
        let f = assign(&labels, Some(&groups), &classes(2), 5, 1).unwrap();
        for g in 0..40 {
            let name = format!("lesion{g}");
            let folds: std::collections::BTreeSet<usize> = (0..labels.len()).filter(|&i| groups[i] == name).map(|i| f[i]).collect();
            assert_eq!(folds.len(), 1, "{name} spans folds {folds:?}");
        }
        for class in 0..2 {
            let n = labels.iter().filter(|&&l| l == class).count() as f64;
            for fold in 0..5 {
                let got = (0..labels.len()).filter(|&i| labels[i] == class && f[i] == fold).count() as f64;
                assert!(got > 0.0 && (got - n / 5.0).abs() <= 3.0, "class {class}, fold {fold}: {got} of {n}");
            }
        }
    }

    #[test]
    fn too_few_or_too_many_folds_are_refused_naming_the_option() {
        let labels: Vec<usize> = (0..30).map(|i| usize::from(i >= 26)).collect();
        for k in [1, 2, 11] {
            let e = format!("{:#}", assign(&labels, None, &classes(2), k, 1).unwrap_err());
            assert!(e.contains(&format!("--cross-validation {k}: use 0 (no cross-validation) or a number of folds from 3 to 10")), "{e}");
        }
        // Class c1 has 4 images: 5 folds cannot each validate on one.
        let e = format!("{:#}", assign(&labels, None, &classes(2), 5, 1).unwrap_err());
        assert!(e.contains("class 'c1' has 4 images outside the test split, too few for 5 folds") && e.contains("at most 4 folds"), "{e}");
        assert!(assign(&labels, None, &classes(2), 4, 1).is_ok());
        // Grouped, the groups count: c1's 4 images in 2 lesions allow no 3 folds.
        let groups: Vec<String> = (0..30).map(|i| if i >= 26 { format!("L{}", i / 28) } else { format!("g{i}") }).collect();
        let e = format!("{:#}", assign(&labels, Some(&groups), &classes(2), 3, 1).unwrap_err());
        assert!(e.contains("class 'c1' has 2 groups outside the test split, too few for 3 folds"), "{e}");
    }
}
