//! The task seam: everything that differs between kinds of task sits here, so that the stages
//! (training, evaluation, outputs, report) ask the task rather than branching on it. A task
//! fixes the head size, the loss, how a model's outputs become scores and decisions, the metrics,
//! the Predictions CSV's columns, the images worth explaining and how the report names it.
//! `classify.rs` holds multi-class and binary classification, `regress.rs` regression; this file
//! chooses the task and dispatches to them.
mod classify;
mod regress;

use anyhow::Result;
use tch::{Kind, Tensor};

pub use crate::config::TaskKind;
use crate::bail_input;
use crate::config::{ClassBalance, RegressionLoss, TrainConfig};
use crate::data::balance::Balance;
use crate::data::metadata::{is_missing, parse_value, Metadata, Row};
use crate::data::split::{Split, SplitPlan};
use crate::data::{ImageSet, Labels};
use crate::decisions::Decisions;
use crate::metrics::{Figures, Intervals};
pub use classify::Classifier;
pub use regress::Target;

/// `--task auto` chooses regression for a numeric label column with more than this many distinct
/// values (or with any value that is not a whole number).
pub const AUTO_MAX_NUMERIC_CLASSES: usize = 10;

/// The least share of numbers among the present labels for `--task auto` to read a column as a
/// regression target: a stray "unknown" in a column of ages is left out, not made a class.
pub const AUTO_MIN_NUMERIC_SHARE: f64 = 0.95;

/// The task `--task auto` infers from the labels, and why, in words. The rule: missing values
/// (empty, NA, ...) aside, a column that is at least `AUTO_MIN_NUMERIC_SHARE` numbers becomes
/// regression when its numbers have more than `AUTO_MAX_NUMERIC_CLASSES` distinct values or any
/// value that is not a whole number (the other rows are then left out). Otherwise the labels are
/// classes: two distinct labels make a binary task and more a multi-class one.
pub fn infer(rows: &[Row], column: &str) -> (TaskKind, String) {
    let present: Vec<&str> = rows.iter().map(|r| r.label.as_str()).filter(|l| !is_missing(l)).collect();
    // As classes, every non-empty label counts, "None" and "NA" included, as the classifier
    // counts them (`metadata::is_missing`).
    let mut distinct: Vec<String> =
        rows.iter().map(|r| r.label.as_str()).filter(|l| !l.is_empty()).map(crate::data::metadata::label_key).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let values: Vec<f64> = present.iter().filter_map(|l| parse_value(l)).collect();
    let text = present.len() - values.len();
    let mut numbers = values.clone();
    numbers.sort_by(f64::total_cmp);
    numbers.dedup();
    let fractional = values.iter().any(|x| x.fract() != 0.0);
    let share = values.len() as f64 / present.len().max(1) as f64;
    if !values.is_empty() && share >= AUTO_MIN_NUMERIC_SHARE && (numbers.len() > AUTO_MAX_NUMERIC_CLASSES || fractional) {
        let why = if fractional { "values that are not whole numbers".to_string() } else { format!("{} distinct values", numbers.len()) };
        let others = match text {
            0 => String::new(),
            n => format!(" ({n} of {} values are not numbers and are left out)", present.len()),
        };
        return (TaskKind::Regression, format!("the label column '{column}' holds numbers, with {why}{others}: regression"));
    }
    if !values.is_empty() && text == 0 && distinct.len() == numbers.len() {
        let kind = if numbers.len() == 2 { TaskKind::Binary } else { TaskKind::Classification };
        return (
            kind,
            format!(
                "the label column '{column}' holds {} distinct whole numbers (at most {AUTO_MAX_NUMERIC_CLASSES}), read as classes: {}",
                numbers.len(),
                kind.name()
            ),
        );
    }
    let kind = if distinct.len() == 2 { TaskKind::Binary } else { TaskKind::Classification };
    (kind, format!("the label column '{column}' holds {} distinct class names: {}", distinct.len(), kind.name()))
}

/// A classification of two classes given a fixed `--threshold` is a binary one, as GLEAM's
/// tool takes it: the reason, in words, when that applies.
pub fn threshold_makes_binary(kind: TaskKind, threshold: Option<f32>, classes: &[String]) -> Option<String> {
    let t = threshold?;
    (kind == TaskKind::Classification && classes.len() == 2).then(|| {
        format!("--threshold {t} with two classes ({}): a binary classification, decided at that threshold", classes.join(", "))
    })
}

/// How the training reads the label column for a task of `kind`: numbers for a regression, else
/// class names (the sorted distinct labels).
pub fn labels_to_read(kind: TaskKind) -> Labels<'static> {
    match kind {
        TaskKind::Regression => Labels::Values,
        _ => Labels::Classes(None),
    }
}

/// The task of a training run: `--task`, or for `auto` the one `infer` finds (with why, which
/// the log also says). Then the rows it cannot use: a regression leaves out the rows without a
/// number (the warnings name them), a classification refuses an empty label.
pub fn choose(asked: TaskKind, meta: &mut Metadata) -> Result<(TaskKind, Option<String>, Vec<String>)> {
    let (kind, why) = match asked {
        TaskKind::Auto => {
            let (kind, why) = infer(&meta.rows, &meta.label_column);
            eprintln!("task: {why}");
            (kind, Some(why))
        }
        kind => (kind, None),
    };
    let warnings = match kind {
        TaskKind::Regression => crate::data::metadata::numeric_rows(meta)?,
        _ => {
            crate::data::metadata::require_labels(meta)?;
            Vec::new()
        }
    };
    Ok((kind, why, warnings))
}

/// Bootstrap resamples behind every 95% interval of the test figures.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// One row of scores per image (a float tensor of N x outputs), as vectors.
pub fn rows(scores: &Tensor) -> Vec<Vec<f32>> {
    let mut all = ScoreRows::new(0);
    all.push(scores);
    all.to_rows()
}

/// The scores of a pass over many images, batch by batch, in one buffer of `width` values an
/// image. A pass gathers them so, and makes them rows only when it ends, because a small
/// allocation per image made among a step's tensors and kept to the pass's end splits the free
/// blocks those tensors come back to, and the heap then grows with the length of the epoch
/// (docs/performance.md, "Data larger than memory").
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScoreRows {
    width: usize,
    values: Vec<f32>,
    /// How many rows the buffer is sized for once the first batch gives the width.
    expected: usize,
}

impl ScoreRows {
    /// An empty pass that expects `expected` rows (a hint: more may come).
    pub fn new(expected: usize) -> ScoreRows {
        ScoreRows { width: 0, values: Vec::new(), expected }
    }

    /// Appends a batch's scores (a float tensor of N x outputs, on any device).
    pub fn push(&mut self, scores: &Tensor) {
        let scores = scores.to_device(tch::Device::Cpu);
        let width = scores.size().last().copied().unwrap_or(1).max(1) as usize;
        if self.values.is_empty() {
            self.width = width;
            self.values.reserve_exact(self.expected.max(1) * width);
        }
        debug_assert_eq!(width, self.width, "every batch of a pass has the same outputs");
        let flat = Vec::<f32>::try_from(scores.flatten(0, -1)).expect("float scores");
        self.values.extend_from_slice(&flat);
    }

    /// How many images' scores the pass holds.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// One vector per image, in the order the batches came.
    pub fn to_rows(&self) -> Vec<Vec<f32>> {
        self.values.chunks(self.width.max(1)).map(<[f32]>::to_vec).collect()
    }
}

/// Logits read back (one row per image, at least one row) as an N x outputs tensor.
fn logits_tensor(logits: &[Vec<f32>]) -> Tensor {
    let width = logits[0].len();
    let flat: Vec<f32> = logits.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([logits.len() as i64, width as i64])
}

/// One image to explain: its position in the list, the output explained (a class, or 0 for a
/// regression's value) and why it was picked.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    pub position: usize,
    pub target: i64,
    pub why: String,
}

impl Pick {
    /// Adds a pick while there are fewer than `limit`, and never the same image twice.
    fn push(picks: &mut Vec<Pick>, limit: usize, position: usize, target: usize, why: String) {
        if picks.len() < limit && !picks.iter().any(|p| p.position == position) {
            picks.push(Pick { position, target: target as i64, why });
        }
    }
}

/// The task of a run, or of a Best Model: a classification with its classes and decision rule,
/// or a regression with its target.
#[derive(Clone, Debug)]
pub enum Task {
    Classify(Classifier),
    Regress(Target),
}

impl Task {
    /// A classification for a training run; `label_column` and `source` name where the classes
    /// came from, for the messages.
    pub fn for_training(kind: TaskKind, classes: &[String], threshold: Option<f32>, label_column: &str, source: &str) -> Result<Task> {
        Ok(Task::Classify(Classifier::new(kind, classes, threshold, label_column, source)?))
    }

    /// A regression on `column`, scaled by the training split's values `train`.
    pub fn for_regression(train: &[f64], column: &str, loss: RegressionLoss, threshold: Option<f32>) -> Result<Task> {
        Ok(Task::Regress(Target::fit(train, column, loss, threshold)?))
    }

    pub fn kind(&self) -> TaskKind {
        match self {
            Task::Classify(c) => c.kind,
            Task::Regress(_) => TaskKind::Regression,
        }
    }

    /// The class names, as the Best Model and metrics.json list them: none for a regression.
    pub fn classes(&self) -> &[String] {
        match self {
            Task::Classify(c) => &c.classes,
            Task::Regress(_) => &[],
        }
    }

    /// A regression's target, as the Best Model and metrics.json record it.
    pub fn target(&self) -> Option<&Target> {
        match self {
            Task::Classify(_) => None,
            Task::Regress(t) => Some(t),
        }
    }

    /// The temperature the logits are divided by (1: none, and always for a regression).
    pub fn temperature(&self) -> f32 {
        match self {
            Task::Classify(c) => c.temperature,
            Task::Regress(_) => 1.0,
        }
    }

    /// A binary task's decision threshold.
    pub fn threshold(&self) -> Option<f32> {
        match self {
            Task::Classify(c) => c.threshold,
            Task::Regress(_) => None,
        }
    }

    /// Whether this is a regression. Stages ask the task's own methods instead; the few places
    /// outside `task/` that must know are listed in the test `task_branches` (tests/it).
    pub fn is_regression(&self) -> bool {
        matches!(self, Task::Regress(_))
    }

    /// Refuses the training options of the other kind of task: a `--validation-metric`, label
    /// smoothing or class balancing for a regression, a regression loss for a classification.
    pub fn check_options(&self, cfg: &TrainConfig) -> Result<()> {
        if !self.is_regression() && cfg.loss != RegressionLoss::Mse {
            bail_input!(
                "--loss {} is a regression loss, and this is a classification (trained with cross-entropy): leave --loss out, or use --task regression",
                cfg.loss.name()
            );
        }
        if self.is_regression() && cfg.label_smoothing.is_some_and(|v| v > 0.0) {
            bail_input!("--label-smoothing applies to a classification, and this is a regression: leave it out");
        }
        if self.is_regression() && matches!(cfg.class_balance, ClassBalance::Loss | ClassBalance::Sampler) {
            bail_input!("--class-balance applies to a classification, and this is a regression: leave it out");
        }
        let metric = cfg.validation_metric;
        match metric.for_regression() {
            Some(r) if r != self.is_regression() => bail_input!(
                "--validation-metric {} is a {} figure, and this is {}: use {}",
                metric.name(),
                if r { "regression" } else { "classification" },
                if self.is_regression() { "a regression" } else { "a classification" },
                if self.is_regression() { "loss, mae, rmse or r2" } else { "loss, accuracy, balanced_accuracy, macro_f1 or roc_auc" }
            ),
            _ => Ok(()),
        }
    }

    /// What the training does about unequal classes, and how the log and the report say it: a
    /// classification's `--class-balance` planned on the labels of the training images `train`
    /// (`data::balance`); a regression has no classes to balance (`check_options` refused a
    /// request).
    pub fn class_balance(&self, choice: ClassBalance, set: &ImageSet, train: &[usize]) -> (Balance, Option<String>) {
        match self {
            Task::Classify(c) => {
                let (plan, text) = c.class_balance(choice, set, train);
                (plan, Some(text))
            }
            Task::Regress(_) => (Balance::None, None),
        }
    }

    /// The task in a few words, for the log: "7 classes", or a regression's description.
    pub fn brief(&self) -> String {
        match self {
            Task::Classify(c) => format!("{} classes", c.classes.len()),
            Task::Regress(t) => t.describe(),
        }
    }

    /// The label smoothing the training uses: `--label-smoothing`, else a classification's default
    /// (`config::LABEL_SMOOTHING`); a regression has none (`check_options` refused a request).
    pub fn label_smoothing(&self, requested: Option<f64>) -> f64 {
        match self {
            Task::Classify(_) => requested.unwrap_or(crate::config::LABEL_SMOOTHING),
            Task::Regress(_) => 0.0,
        }
    }

    /// The moving average's decay for a run of `steps` training steps: `--ema-decay`, else a
    /// classification's default (`config::EMA_DECAY` from `config::EMA_MIN_STEPS` steps, none
    /// below); a regression has none unless asked (its runs were not measured).
    pub fn ema_decay(&self, requested: Option<f64>, steps: usize) -> f64 {
        match (self, requested) {
            (_, Some(v)) => v,
            (Task::Classify(_), None) if steps >= crate::config::EMA_MIN_STEPS => crate::config::EMA_DECAY,
            _ => 0.0,
        }
    }

    /// `predict`: refuses labels of another kind of task than the model's, naming both.
    pub fn check_labels(&self, rows: &[Row], column: &str, file: &str) -> Result<()> {
        let present: Vec<&Row> = rows.iter().filter(|r| !is_missing(&r.label)).collect();
        match self {
            Task::Classify(c) => c.check_labels(rows, &present, column, file),
            Task::Regress(t) => t.check_labels(&present, column, file),
        }
    }

    /// How `predict` reads the label column: as the model's classes, or as numbers.
    pub fn labels(&self) -> Labels<'_> {
        match self {
            Task::Classify(c) => Labels::Classes(Some(&c.classes)),
            Task::Regress(_) => Labels::Values,
        }
    }

    /// The images among `indices` that can be scored: all for a classification, those with a
    /// true value for a regression (the others are still predicted).
    pub fn scored(&self, set: &ImageSet, indices: &[usize]) -> Vec<usize> {
        indices.iter().copied().filter(|&i| !self.is_regression() || set.targets[i].is_finite()).collect()
    }

    /// The true class names (regression: values) of `indices`, for the Predictions CSV.
    pub fn truth_names(&self, set: &ImageSet, indices: &[usize]) -> Vec<String> {
        match self {
            Task::Classify(c) => c.truth_names(set, indices),
            Task::Regress(_) => indices.iter().map(|&i| set.targets[i].to_string()).collect(),
        }
    }

    /// `predict`'s truth for the Predictions CSV: the class names, or a regression's values as
    /// the label column writes them (`rows`, in the set's order).
    pub fn written_truth(&self, set: &ImageSet, rows: &[Row]) -> Vec<String> {
        match self {
            Task::Classify(c) => c.truth_names(set, &(0..set.len()).collect::<Vec<_>>()),
            Task::Regress(_) => rows.iter().map(|r| r.label.clone()).collect(),
        }
    }

    /// The test images' true classes (classification) or values (regression), the other empty.
    pub fn answers(&self, set: &ImageSet, indices: &[usize]) -> (Vec<usize>, Vec<f64>) {
        match self {
            Task::Classify(_) => (set.truth(indices), Vec::new()),
            Task::Regress(_) => (Vec::new(), set.values(indices)),
        }
    }

    /// Images per split in train, validation and test: per class for a classification, one row
    /// for a regression.
    pub fn split_counts(&self, set: &ImageSet, plan: &SplitPlan) -> Vec<[usize; 3]> {
        match self {
            Task::Classify(c) => (0..c.classes.len()).map(|k| Split::ALL.map(|s| plan.indices(s).iter().filter(|&&i| set.labels[i] == k).count())).collect(),
            Task::Regress(_) => vec![Split::ALL.map(|s| plan.indices(s).len())],
        }
    }

    /// The name of an explained output: the class `t`, or a regression's value.
    pub fn output_name(&self, t: i64) -> String {
        match self {
            Task::Classify(c) => c.classes[t as usize].clone(),
            Task::Regress(_) => "predicted value".to_string(),
        }
    }

    /// Outputs of the model's head.
    pub fn head_outputs(&self) -> i64 {
        match self {
            Task::Classify(c) => c.classes.len() as i64,
            Task::Regress(_) => 1,
        }
    }

    /// The training loss of a batch: a classification's cross-entropy (`Classifier::loss`), or a
    /// regression's chosen loss against the standardised target.
    pub fn loss(&self, logits: &Tensor, targets: &Tensor, label_smoothing: f64, class_weights: Option<&Tensor>) -> Tensor {
        match self {
            Task::Classify(c) => c.loss(logits, targets, label_smoothing, class_weights),
            Task::Regress(t) => t.loss(logits, targets),
        }
    }

    /// The scores the outputs give, as float32: softmax probabilities, one per class, at the
    /// task's temperature; or for regression the standardised value, which `predicted_values`
    /// turns into the target's units in float64 (a float32 holds 1e9 + 17 as 1e9).
    pub fn scores(&self, logits: &Tensor) -> Tensor {
        match self {
            Task::Classify(c) => c.scores(logits),
            Task::Regress(_) => logits.to_kind(Kind::Float),
        }
    }

    /// One output per image from the outputs of several views of it (test-time augmentation):
    /// a regression's mean value; a classification's mean softmax, as its logarithm, which
    /// `scores` turns back into that mean (and a temperature then calibrates). One view is
    /// returned as it is.
    pub fn combine_views(&self, outputs: &[Tensor]) -> Tensor {
        if outputs.len() == 1 {
            return outputs[0].shallow_clone();
        }
        match self {
            Task::Classify(c) => c.combine_views(outputs),
            Task::Regress(_) => outputs.iter().skip(1).fold(outputs[0].shallow_clone(), |acc, o| acc + o) / outputs.len() as f64,
        }
    }

    /// `scores` of logits already read back, one row per image.
    pub fn probabilities(&self, logits: &[Vec<f32>]) -> Vec<Vec<f32>> {
        if logits.is_empty() {
            return Vec::new();
        }
        rows(&self.scores(&logits_tensor(logits)))
    }

    /// The same task without calibration: what the network's own probabilities decide.
    pub fn uncalibrated(&self) -> Task {
        self.at_temperature(1.0)
    }

    /// The same task dividing its logits by `temperature` (a regression has none: unchanged).
    pub fn at_temperature(&self, temperature: f32) -> Task {
        match self {
            Task::Classify(c) => Task::Classify(Classifier { temperature, ..c.clone() }),
            Task::Regress(_) => self.clone(),
        }
    }

    /// The decisions fitted on the validation logits and truth after training (a
    /// classification's temperature and threshold: `Classifier::fit_decisions`), with the task
    /// that decides with them. A regression has none.
    pub fn fit_decisions(&self, validation: Option<(&[Vec<f32>], &[usize])>, cfg: &TrainConfig, warnings: &mut Vec<String>) -> (Task, Decisions) {
        match self {
            Task::Classify(c) => {
                let (c, d) = c.fit_decisions(validation, cfg, warnings);
                (Task::Classify(c), d)
            }
            Task::Regress(_) => (self.clone(), Decisions::not_applicable()),
        }
    }

    /// A cross-validated ensemble's decisions (`Classifier::ensemble_decisions`), with the task
    /// that decides on its averaged scores. A regression has none.
    pub fn ensemble_decisions(&self, oof: &[Vec<f32>], truth: &[usize], temperatures: &[f32], cfg: &TrainConfig, warnings: &mut Vec<String>) -> (Task, Decisions) {
        match self {
            Task::Classify(c) => {
                let (c, d) = c.ensemble_decisions(oof, truth, temperatures, cfg, warnings);
                (Task::Classify(c), d)
            }
            Task::Regress(_) => (self.clone(), Decisions::not_applicable()),
        }
    }

    /// The figures of images `images` of `set`, whose scores are `scores` (same order).
    pub fn figures(&self, set: &ImageSet, images: &[usize], scores: &[Vec<f32>]) -> Figures {
        match self {
            Task::Classify(c) => Figures::Classification(c.metrics(&set.truth(images), scores)),
            Task::Regress(t) => t.figures(&set.values(images), scores),
        }
    }

    /// Bootstrap 95% intervals of the figures (None for too few images).
    pub fn intervals(&self, set: &ImageSet, images: &[usize], scores: &[Vec<f32>], seed: u64) -> Option<Intervals> {
        match self {
            Task::Classify(c) => c.intervals(&set.truth(images), scores, seed),
            Task::Regress(t) => t.intervals(&set.values(images), scores, seed),
        }
    }

    /// The per-epoch figures of the Training History (after the loss), by column name, and as
    /// the report's epoch table titles them; a `Figures::epoch_values` gives them in this order.
    pub fn epoch_columns(&self) -> [&'static str; 3] {
        match self {
            Task::Classify(_) => ["accuracy", "macro_f1", "roc_auc"],
            Task::Regress(_) => ["mae", "rmse", "r2"],
        }
    }

    /// The first of `epoch_columns` as the training log names it.
    pub fn log_figure(&self) -> &'static str {
        match self {
            Task::Classify(_) => "acc",
            Task::Regress(_) => "mae",
        }
    }

    /// `epoch_columns` as the report titles them.
    pub fn epoch_titles(&self) -> [&'static str; 3] {
        match self {
            Task::Classify(_) => ["accuracy", "macro F1", "ROC-AUC"],
            Task::Regress(_) => ["MAE", "RMSE", "R²"],
        }
    }

    /// The Predictions CSV (`Classifier::predictions_csv`, `Target::predictions_csv`).
    pub fn predictions_csv(&self, images: &[String], truth: Option<&[String]>, scores: &[Vec<f32>], splits: Option<&[String]>) -> Result<Vec<u8>> {
        match self {
            Task::Classify(c) => c.predictions_csv(images, truth, scores, splits),
            Task::Regress(t) => t.predictions_csv(images, truth, scores, splits),
        }
    }

    /// The report's choice of test images to explain, at most `limit` (`Classifier::report_picks`,
    /// `Target::report_picks`); `test` are the images of `set` that `scores` score.
    pub fn report_picks(&self, set: &ImageSet, test: &[usize], scores: &[Vec<f32>], limit: usize) -> Vec<Pick> {
        match self {
            Task::Classify(c) => c.report_picks(scores, &set.truth(test), limit),
            Task::Regress(t) => t.report_picks(scores, &set.values(test), limit),
        }
    }

    /// `predict`'s choice of images to explain, at most `limit`.
    pub fn predict_picks(&self, scores: &[Vec<f32>], limit: usize) -> Vec<Pick> {
        match self {
            Task::Classify(c) => c.predict_picks(scores, limit),
            Task::Regress(t) => t.predict_picks(scores, limit),
        }
    }

    /// How the report names the task.
    pub fn describe(&self) -> String {
        match self {
            Task::Classify(c) => c.describe(),
            Task::Regress(t) => t.describe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RegressionLoss;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn a_pass_keeps_its_batches_scores_in_one_buffer_and_gives_them_back_as_rows() {
        let mut pass = ScoreRows::new(3);
        assert!(pass.is_empty());
        assert_eq!(pass.len(), 0);
        assert!(pass.to_rows().is_empty());
        pass.push(&Tensor::from_slice(&[0.1f32, 0.9, 0.6, 0.4]).view([2, 2]));
        let capacity = pass.values.capacity();
        assert_eq!(capacity, 6, "sized for the expected rows once the width is known");
        // More rows than expected still fit: the hint only sizes the first allocation.
        pass.push(&Tensor::from_slice(&[0.3f32, 0.7, 1.0, 0.0]).view([2, 2]));
        assert_eq!(pass.len(), 4);
        assert_eq!(pass.to_rows(), vec![vec![0.1, 0.9], vec![0.6, 0.4], vec![0.3, 0.7], vec![1.0, 0.0]]);
        // A regression's single output per image.
        assert_eq!(rows(&Tensor::from_slice(&[2.5f32, -1.0]).view([2, 1])), vec![vec![2.5], vec![-1.0]]);
        assert!(rows(&Tensor::zeros([0, 3], (Kind::Float, tch::Device::Cpu))).is_empty());
    }

    fn label_rows(labels: &[&str]) -> Vec<Row> {
        labels.iter().enumerate().map(|(i, l)| Row { line: i + 2, image: format!("{i}.png"), label: l.to_string(), split: None, group: None }).collect()
    }

    #[test]
    fn predict_refuses_labels_of_another_task_and_nothing_else() {
        let reg = Task::for_regression(&[40.0, 60.0], "age", RegressionLoss::Mse, None).unwrap();
        assert!(reg.check_labels(&label_rows(&["45", "NA", "", "61.5"]), "age", "m.csv").is_ok(), "numbers, some missing");
        let e = reg.check_labels(&label_rows(&["45", "nv"]), "dx", "m.csv").unwrap_err().to_string();
        assert!(e.contains("a regression of 'age'") && e.contains("label column 'dx' of m.csv holds class names (line 3: 'nv')"), "{e}");
        let cls = Task::for_training(TaskKind::Classification, &names(3), None, "y", "m.csv").unwrap();
        assert!(cls.check_labels(&label_rows(&["c0", "c2", "NA"]), "y", "m.csv").is_ok());
        let ages: Vec<String> = (0..12).map(|i| format!("{}", 20 + 5 * i)).collect();
        let e = cls.check_labels(&label_rows(&ages.iter().map(String::as_str).collect::<Vec<_>>()), "age", "m.csv").unwrap_err().to_string();
        assert!(e.contains("classification into 3 classes (c0, c1, c2)") && e.contains("holds numbers like a regression target (line 2: '20')"), "{e}");
        // A classifier of numeric class codes takes its own codes, however many.
        let codes: Vec<String> = (0..12).map(|i| i.to_string()).collect();
        let coded = Task::for_training(TaskKind::Classification, &codes, None, "y", "m.csv").unwrap();
        let mut spelled: Vec<String> = codes.clone();
        spelled[3] = "3.0".into();
        assert!(coded.check_labels(&label_rows(&spelled.iter().map(String::as_str).collect::<Vec<_>>()), "y", "m.csv").is_ok());
    }

    #[test]
    fn auto_follows_its_documented_rule() {
        let kind = |labels: Vec<String>| infer(&label_rows(&labels.iter().map(String::as_str).collect::<Vec<_>>()), "y").0;
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(kind(s(&["nv", "mel", "nv"])), TaskKind::Binary);
        assert_eq!(kind(s(&["nv", "mel", "bcc"])), TaskKind::Classification);
        assert_eq!(kind(s(&["0", "1", "1.0", ""])), TaskKind::Binary, "0/1 codes, one spelled 1.0, one missing");
        let ten: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(kind(ten.clone()), TaskKind::Classification, "ten whole numbers are class codes");
        let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert_eq!(kind(eleven), TaskKind::Regression, "eleven distinct numbers are a quantity");
        assert_eq!(kind(s(&["0.5", "1.5", "0.5"])), TaskKind::Regression, "a fraction makes it a quantity");
        assert_eq!(kind(s(&["45", "NA", "50", "?", "30", "35", "40", "55", "60", "65", "70", "75", "80"])), TaskKind::Regression, "missing markers aside");
        let mut mixed = ten;
        mixed.push("unknown".into());
        assert_eq!(kind(mixed), TaskKind::Classification, "a class name among class codes makes every label a class");
        let ages = |n: usize, text: &[&str]| -> Vec<String> { (0..n).map(|i| format!("{}", 20 + i)).chain(text.iter().map(|t| t.to_string())).collect() };
        assert_eq!(kind(ages(19, &["unknown"])), TaskKind::Regression, "95% numbers: the stray text is left out");
        assert_eq!(kind(ages(18, &["unknown", "old"])), TaskKind::Classification, "90% numbers: classes");
        let (_, why) = infer(&label_rows(&ages(39, &["unknown"]).iter().map(String::as_str).collect::<Vec<_>>()), "age");
        assert!(why.ends_with("39 distinct values (1 of 40 values are not numbers and are left out): regression"), "{why}");
        let (_, why) = infer(&label_rows(&["1.5", "2"]), "age");
        assert!(why.contains("'age'") && why.contains("regression"), "{why}");
        // "None" is a class, as the classifier keeps it: one rule for both.
        assert_eq!(kind(s(&["None", "Mild", "Severe", "None"])), TaskKind::Classification);
        assert_eq!(kind(s(&["none", "Severe", ""])), TaskKind::Binary);
        assert_eq!(kind(s(&["0", "1", "NA"])), TaskKind::Classification, "NA among class codes is a third class");
    }

    #[test]
    fn each_task_refuses_the_options_of_the_other_and_defaults_its_smoothing_and_average() {
        let t = Task::for_training(TaskKind::Classification, &names(3), None, "y", "m.csv").unwrap();
        let reg = Task::for_regression(&[1.0, 3.0], "age", RegressionLoss::Mse, None).unwrap();
        let mut cfg = crate::config::TrainConfig::new("a.zip".into(), "a.csv".into(), "out".into(), "resnet18");
        // The defaults (smoothing left out, class balance auto) suit both kinds of task.
        reg.check_options(&cfg).unwrap();
        assert_eq!((reg.label_smoothing(cfg.label_smoothing), t.label_smoothing(cfg.label_smoothing)), (0.0, crate::config::LABEL_SMOOTHING));
        assert_eq!(t.label_smoothing(Some(0.0)), 0.0, "0 turns it off");
        let (min, ema) = (crate::config::EMA_MIN_STEPS, crate::config::EMA_DECAY);
        assert_eq!((t.ema_decay(None, min - 1), t.ema_decay(None, min), reg.ema_decay(None, 100 * min)), (0.0, ema, 0.0), "on by default from EMA_MIN_STEPS steps, for a classification");
        assert_eq!((t.ema_decay(Some(0.0), 100 * min), t.ema_decay(Some(0.9), 10), reg.ema_decay(Some(0.9), 10)), (0.0, 0.9, 0.9), "an asked decay is kept");
        cfg.label_smoothing = Some(0.1);
        let e = reg.check_options(&cfg).unwrap_err().to_string();
        assert!(e.contains("--label-smoothing applies to a classification"), "{e}");
        cfg.label_smoothing = None;
        cfg.class_balance = crate::config::ClassBalance::Sampler;
        let e = reg.check_options(&cfg).unwrap_err().to_string();
        assert!(e.contains("--class-balance applies to a classification"), "{e}");
    }
}
