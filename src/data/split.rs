//! Train / validation / test assignment: stratified and seeded, optionally keeping every image of
//! a group (e.g. one lesion) in one split, or taken from a split column.
use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::bail_input;
use crate::config::SplitFractions;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// Reads one split-column value: 0/1/2 or train/validation(val)/test, any case.
pub fn parse_split_value(v: &str) -> Option<Split> {
    match v.trim().to_ascii_lowercase().as_str() {
        "0" | "train" | "training" => Some(Split::Train),
        "1" | "val" | "valid" | "validation" | "dev" => Some(Split::Validation),
        "2" | "test" | "testing" => Some(Split::Test),
        _ => None,
    }
}

/// Target counts for `n` items over the splits with a non-zero share; each such split gets at
/// least one item. `None` when `n` is too small for that.
fn counts(n: usize, f: &SplitFractions) -> Option<[usize; 3]> {
    let shares = [f.train, f.validation, f.test];
    let wanted = shares.iter().filter(|&&s| s > 0.0).count();
    if n < wanted {
        return None;
    }
    let mut c = [0usize; 3];
    for i in [1, 2] {
        if shares[i] > 0.0 {
            c[i] = ((n as f64 * shares[i] / 100.0).round() as usize).max(1);
        }
    }
    // Train keeps the rest and at least one.
    while c[1] + c[2] > n - 1 {
        let i = if c[1] >= c[2] && c[1] > 1 || c[2] <= 1 { 1 } else { 2 };
        c[i] -= 1;
    }
    c[0] = n - c[1] - c[2];
    Some(c)
}

/// Stratified split of items with class `labels`: per class, a seeded shuffle then the counts.
pub fn stratified(labels: &[usize], classes: &[String], f: &SplitFractions, seed: u64) -> Result<Vec<Split>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    let mut out = vec![Split::Train; labels.len()];
    for (class, mut items) in by_class {
        let Some(c) = counts(items.len(), f) else {
            bail_input!(
                "class '{}' has {} image(s): too few to put one in each of train, validation and test \
                 ({f}); add images, merge the class, or remove its rows",
                classes[class],
                items.len()
            );
        };
        items.shuffle(&mut rng);
        for (k, &i) in items.iter().enumerate() {
            out[i] = if k < c[0] { Split::Train } else if k < c[0] + c[1] { Split::Validation } else { Split::Test };
        }
    }
    Ok(out)
}

/// Split that keeps every image of a group together. Groups are stratified by their most common
/// class and dealt out largest-first to the split furthest below its target share.
pub fn grouped(
    labels: &[usize],
    groups: &[String],
    classes: &[String],
    f: &SplitFractions,
    seed: u64,
) -> Result<Vec<Split>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let by_class = groups_by_class(labels, groups);
    let shares = [f.train, f.validation, f.test];
    let mut out = vec![Split::Train; labels.len()];
    for (class, mut class_groups) in by_class {
        let n_images: usize = class_groups.iter().map(Vec::len).sum();
        if counts(class_groups.len(), f).is_none() {
            bail_input!(
                "class '{}' has {} group(s) ({} images): too few groups to put one in each of train, \
                 validation and test ({f}); add images or split without --group-column",
                classes[class],
                class_groups.len(),
                n_images
            );
        }
        class_groups.shuffle(&mut rng);
        // Stable sort keeps the shuffled order among groups of equal size.
        class_groups.sort_by_key(|g| std::cmp::Reverse(g.len()));
        let mut filled = [0usize; 3];
        let mut groups_in = [0usize; 3];
        let wanted: Vec<usize> = (0..3).filter(|&s| shares[s] > 0.0).collect();
        for (k, g) in class_groups.iter().enumerate() {
            let remaining_groups = class_groups.len() - k;
            let empty: Vec<usize> = wanted.iter().copied().filter(|&s| groups_in[s] == 0).collect();
            // Keep enough groups back that every wanted split gets at least one.
            let s = if empty.len() >= remaining_groups {
                empty[0]
            } else {
                *wanted
                    .iter()
                    .max_by(|&&a, &&b| {
                        let deficit = |s: usize| shares[s] / 100.0 * n_images as f64 - filled[s] as f64;
                        deficit(a).total_cmp(&deficit(b)).then(b.cmp(&a))
                    })
                    .unwrap()
            };
            filled[s] += g.len();
            groups_in[s] += 1;
            for &i in g {
                out[i] = Split::ALL[s];
            }
        }
    }
    Ok(out)
}

/// The items of each group (groups in name order), filed under
/// the group's class: its most frequent label (ties: the lowest class index).
pub(crate) fn groups_by_class(labels: &[usize], groups: &[String]) -> BTreeMap<usize, Vec<Vec<usize>>> {
    let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        members.entry(g.as_str()).or_default().push(i);
    }
    let mut by_class: BTreeMap<usize, Vec<Vec<usize>>> = BTreeMap::new();
    for (_, items) in members {
        let mut freq: HashMap<usize, usize> = HashMap::new();
        for &i in &items {
            *freq.entry(labels[i]).or_default() += 1;
        }
        let class = freq.iter().max_by_key(|(&c, &n)| (n, std::cmp::Reverse(c))).map(|(&c, _)| c).expect("a group has items");
        by_class.entry(class).or_default().push(items);
    }
    by_class
}

/// Split from a split column. Rows with a value that is not a split are an error naming the row.
/// With no validation rows, validation is carved from train (stratified, seeded).
pub fn from_column(
    values: &[(usize, Option<String>)],
    labels: &[usize],
    classes: &[String],
    column: &str,
    f: &SplitFractions,
    seed: u64,
) -> Result<(Vec<Split>, bool)> {
    let mut out = Vec::with_capacity(values.len());
    for (line, v) in values {
        let v = v.as_deref().unwrap_or("");
        match parse_split_value(v) {
            Some(s) => out.push(s),
            None => bail_input!(
                "line {line}: the split column '{column}' holds '{}'; use train/validation/test or 0/1/2",
                crate::error::short(v)
            ),
        }
    }
    for (s, what) in [(Split::Train, "train"), (Split::Test, "test")] {
        if !out.contains(&s) {
            bail_input!("the split column '{column}' has no {what} rows; mark some rows '{what}'");
        }
    }
    let carved = !out.contains(&Split::Validation) && f.validation > 0.0;
    if carved {
        let train: Vec<usize> = (0..out.len()).filter(|&i| out[i] == Split::Train).collect();
        let train_labels: Vec<usize> = train.iter().map(|&i| labels[i]).collect();
        let share = f.validation / (f.train + f.validation) * 100.0;
        let inner = SplitFractions { train: 100.0 - share, validation: share, test: 0.0 };
        let sub = stratified(&train_labels, classes, &inner, seed)?;
        for (&i, s) in train.iter().zip(sub) {
            out[i] = s;
        }
    }
    Ok((out, carved))
}

/// Warnings when near-copies of one image may sit in different splits: groups spread over
/// splits, or `_orig`/`_flip`-style twins split apart.
pub fn leakage_warnings(names: &[String], splits: &[Split], groups: Option<&[String]>, group_column: Option<&str>) -> Vec<String> {
    let mut warnings = Vec::new();
    if let (Some(groups), Some(col)) = (groups, group_column) {
        let mut seen: HashMap<&str, Split> = HashMap::new();
        let mut spread = std::collections::BTreeSet::new();
        for (g, &s) in groups.iter().zip(splits) {
            if *seen.entry(g).or_insert(s) != s {
                spread.insert(g.as_str());
            }
        }
        if !spread.is_empty() {
            warnings.push(format!(
                "{} {col} groups have images in more than one split (e.g. {}): near-copies in train and \
                 test inflate the test metrics",
                spread.len(),
                spread.iter().take(3).copied().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    const SUFFIXES: &[&str] = &["_orig", "_original", "_flip", "_flipped", "_aug", "_mirror", "_rot"];
    let mut twin: HashMap<String, Split> = HashMap::new();
    let mut split_pairs = 0;
    for (n, &s) in names.iter().zip(splits) {
        let base = n.rsplit(['/', '\\']).next().unwrap_or(n).to_lowercase();
        let stem = base.rsplit_once('.').map(|(a, _)| a).unwrap_or(&base).to_string();
        let Some(root) = SUFFIXES.iter().find_map(|suf| stem.strip_suffix(suf)) else { continue };
        match twin.get(root) {
            Some(&other) if other != s => split_pairs += 1,
            Some(_) => {}
            None => {
                twin.insert(root.to_string(), s);
            }
        }
    }
    if split_pairs > 0 && groups.is_none() {
        warnings.push(format!(
            "{split_pairs} images look like copies of one original (names ending _orig/_flip) and sit in \
             another split than their twin: the test metrics are inflated. Split by a group column \
             (--group-column, e.g. lesion_id) or use a split column"
        ));
    }
    warnings
}

/// Stops when a class has no training image (a model cannot learn it), and warns when one has no
/// test image (its test figures cannot be measured). Only a split column can do either.
fn check_classes_per_split(
    assignment: &[Split],
    labels: &[usize],
    classes: &[String],
    column: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let mut count = vec![[0usize; 3]; classes.len()];
    for (&s, &l) in assignment.iter().zip(labels) {
        count[l][s as usize] += 1;
    }
    let from = column.map_or("the split".to_string(), |c| format!("the split column '{c}'"));
    for (c, n) in count.iter().enumerate() {
        let name = crate::error::short(&classes[c]);
        if n[0] == 0 {
            bail_input!(
                "class '{name}' has no training image: {from} puts its {} image(s) in validation ({}) and test ({}). \
                 Mark some of them train, or remove the class's rows",
                n[1] + n[2],
                n[1],
                n[2]
            );
        }
        if n[2] == 0 {
            warnings.push(format!("class '{name}' has no test image ({from}): its test figures cannot be measured"));
        }
    }
    Ok(())
}

/// Quantile bins of regression targets (one per ten `units`, the images or the groups that are
/// dealt out; at least one, at most five), as stratification labels with their names. Equal
/// values share a bin.
pub(crate) fn value_strata(targets: &[f64], units: usize) -> (Vec<usize>, Vec<String>) {
    let mut sorted: Vec<f64> = targets.to_vec();
    sorted.sort_by(f64::total_cmp);
    let bins = (units / 10).clamp(1, 5);
    let cuts: Vec<f64> = (1..bins).map(|b| sorted[b * sorted.len() / bins]).collect();
    let labels = targets.iter().map(|v| cuts.iter().filter(|&&c| *v >= c).count()).collect();
    (labels, (0..bins).map(|b| format!("value band {}", b + 1)).collect())
}

/// The split stage's result: which images train, validate and test, and how that was decided.
pub struct SplitPlan {
    /// Indices into the image set, in set order.
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub test: Vec<usize>,
    /// How the split was made, for the report.
    pub method: String,
    /// Leakage and missing-group warnings.
    pub warnings: Vec<String>,
}

impl SplitPlan {
    pub fn indices(&self, which: Split) -> &[usize] {
        match which {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }
}

/// Splits an ingested set: by its split column when it has one, else grouped by its group
/// column when it has one, else stratified by class; seeded throughout.
pub fn plan(ing: &super::Ingested, f: &SplitFractions, seed: u64) -> Result<SplitPlan> {
    let set = &ing.images;
    let s = &ing.summary;
    let mut warnings = Vec::new();
    // A regression is stratified by quantile bins of its target, so that every split spans the
    // range of values; a classification by class.
    let regression = !set.targets.is_empty();
    let groups: Option<Vec<String>> = s.group_column.as_ref().map(|_| {
        ing.rows.iter().map(|r| r.group.clone().unwrap_or_else(|| format!("row:{}", r.line))).collect()
    });
    let (labels, classes, by) = if regression {
        // Grouped, the bands are dealt out as groups: one band per ten groups, not per ten images.
        let units = match &groups {
            Some(g) if s.split_column.is_none() => g.iter().collect::<std::collections::HashSet<_>>().len(),
            _ => set.targets.len(),
        };
        let (bins, names) = value_strata(&set.targets, units);
        (bins, names, "by quantile band of the target")
    } else {
        (set.labels.clone(), set.classes.clone(), "by class")
    };
    let (labels, classes) = (&labels, &classes);
    let (assignment, method) = if let Some(col) = &s.split_column {
        let values: Vec<(usize, Option<String>)> = ing.rows.iter().map(|r| (r.line, r.split.clone())).collect();
        let (splits, carved) = from_column(&values, labels, classes, col, f, seed)?;
        let how = if carved {
            format!("Split from the column '{col}'; it has no validation rows, so validation was carved from train (stratified, seed {seed}).")
        } else {
            format!("Split from the column '{col}'.")
        };
        (splits, how)
    } else if let (Some(col), Some(groups)) = (&s.group_column, &groups) {
        let missing = ing.rows.iter().filter(|r| r.group.is_none()).count();
        if missing > 0 {
            warnings.push(format!("{missing} rows have no value in the group column '{col}'; each is its own group"));
        }
        let distinct = groups.iter().collect::<std::collections::HashSet<_>>().len();
        let wanted = [f.train, f.validation, f.test].iter().filter(|&&v| v > 0.0).count();
        if distinct < wanted {
            bail_input!(
                "the group column '{col}' has {distinct} group(s), and a split grouped by it needs at least one group \
                 in each of the {wanted} parts of {f}: add groups, or split without --group-column"
            );
        }
        let splits = grouped(labels, groups, classes, f, seed)?;
        (splits, format!("Stratified {f} split grouped by '{col}': all images of one group are in one split (seed {seed})."))
    } else {
        (stratified(labels, classes, f, seed)?, format!("Stratified random {f} split {by} (seed {seed})."))
    };
    if !regression {
        check_classes_per_split(&assignment, labels, classes, s.split_column.as_deref(), &mut warnings)?;
    } else if !assignment.contains(&Split::Train) {
        bail_input!("the split leaves no training image; mark some rows train");
    }
    let groups: Option<Vec<String>> = s.group_column.as_ref().map(|_| ing.rows.iter().map(|r| r.group.clone().unwrap_or_default()).collect());
    warnings.extend(leakage_warnings(&set.names, &assignment, groups.as_deref(), s.group_column.as_deref()));
    let idx = |which: Split| -> Vec<usize> { (0..assignment.len()).filter(|&i| assignment[i] == which).collect() };
    Ok(SplitPlan { train: idx(Split::Train), validation: idx(Split::Validation), test: idx(Split::Test), method, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_strata_are_quantile_bands() {
        let v: Vec<f64> = (0..100).map(|i| f64::from(99 - i)).collect();
        let (bands, names) = value_strata(&v, v.len());
        assert_eq!(names.len(), 5);
        for b in 0..5 {
            assert_eq!(bands.iter().filter(|&&x| x == b).count(), 20, "band {b}");
        }
        assert_eq!((bands[0], bands[99]), (4, 0), "the largest value is in the top band");
        let (few, names) = value_strata(&[1.0, 2.0, 3.0], 3);
        assert_eq!((few, names.len()), (vec![0, 0, 0], 1), "few values: one band");
    }

    fn classes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    fn count(splits: &[Split], labels: &[usize], class: usize, s: Split) -> usize {
        splits.iter().zip(labels).filter(|(&x, &l)| x == s && l == class).count()
    }

    #[test]
    fn stratified_counts_per_class_and_seeded() {
        let labels: Vec<usize> = (0..200).map(|i| if i < 150 { 0 } else { 1 }).collect();
        let f = SplitFractions::default();
        let a = stratified(&labels, &classes(2), &f, 42).unwrap();
        assert_eq!([count(&a, &labels, 0, Split::Train), count(&a, &labels, 0, Split::Validation), count(&a, &labels, 0, Split::Test)], [105, 15, 30]);
        assert_eq!([count(&a, &labels, 1, Split::Train), count(&a, &labels, 1, Split::Validation), count(&a, &labels, 1, Split::Test)], [35, 5, 10]);
        assert_eq!(a, stratified(&labels, &classes(2), &f, 42).unwrap());
        assert_ne!(a, stratified(&labels, &classes(2), &f, 7).unwrap());
    }

    #[test]
    fn small_classes_get_every_split_or_an_error() {
        let labels = vec![0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        let a = stratified(&labels, &classes(2), &SplitFractions::default(), 1).unwrap();
        for s in Split::ALL {
            assert_eq!(count(&a, &labels, 0, s), 1);
        }
        let e = format!("{:#}", stratified(&[0, 0, 1, 1, 1], &["rare".into(), "b".into()], &SplitFractions::default(), 1).unwrap_err());
        assert!(e.contains("class 'rare' has 2 image(s)"), "{e}");
        // Without a validation share, two images are enough.
        let f = SplitFractions { train: 80.0, validation: 0.0, test: 20.0 };
        assert!(stratified(&[0, 0, 1, 1], &classes(2), &f, 1).is_ok());
    }

    #[test]
    fn groups_stay_together() {
        let n = 300;
        let labels: Vec<usize> = (0..n).map(|i| (i / 3) % 3).collect();
        let groups: Vec<String> = (0..n).map(|i| format!("g{}", i / 3)).collect();
        let s = grouped(&labels, &groups, &classes(3), &SplitFractions::default(), 42).unwrap();
        let mut of_group: HashMap<&str, Split> = HashMap::new();
        for (g, &x) in groups.iter().zip(&s) {
            assert_eq!(*of_group.entry(g).or_insert(x), x, "group {g} split apart");
        }
        for c in 0..3 {
            let test = count(&s, &labels, c, Split::Test);
            assert!((15..=24).contains(&test), "class {c} test {test}");
            assert!(count(&s, &labels, c, Split::Validation) >= 3);
        }
        assert!(leakage_warnings(&groups, &s, Some(&groups), Some("g")).is_empty());
        assert_eq!(s, grouped(&labels, &groups, &classes(3), &SplitFractions::default(), 42).unwrap());
    }

    #[test]
    fn split_column_forms_and_carving() {
        let vals: Vec<(usize, Option<String>)> = ["train", "TEST", "0", "2", "Val", "1", "training", "validation"]
            .iter()
            .enumerate()
            .map(|(i, v)| (i + 2, Some(v.to_string())))
            .collect();
        let labels = vec![0; 8];
        let (s, carved) = from_column(&vals, &labels, &classes(1), "split", &SplitFractions::default(), 1).unwrap();
        use Split::*;
        assert_eq!(s, [Train, Test, Train, Test, Validation, Validation, Train, Validation]);
        assert!(!carved);
        let vals: Vec<(usize, Option<String>)> = (0..40).map(|i| (i + 2, Some(if i < 30 { "train" } else { "test" }.into()))).collect();
        let labels: Vec<usize> = (0..40).map(|i| i % 2).collect();
        let (s, carved) = from_column(&vals, &labels, &classes(2), "split", &SplitFractions::default(), 1).unwrap();
        assert!(carved);
        assert_eq!(s.iter().filter(|&&x| x == Validation).count(), 4);
        assert!(s[30..].iter().all(|&x| x == Test));
        let bad = vec![(5, Some("holdout".to_string()))];
        let e = format!("{:#}", from_column(&bad, &[0], &classes(1), "split", &SplitFractions::default(), 1).unwrap_err());
        assert!(e.contains("line 5") && e.contains("holdout"), "{e}");
    }

    #[test]
    fn twin_images_across_splits_warn() {
        let names: Vec<String> = ["a_orig.jpg", "a_flip.jpg", "b_orig.jpg", "b_flip.jpg"].map(String::from).to_vec();
        use Split::*;
        let w = leakage_warnings(&names, &[Train, Test, Train, Train], None, None);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("1 images look like copies"));
        assert!(leakage_warnings(&names, &[Train, Train, Test, Test], None, None).is_empty());
    }
}
