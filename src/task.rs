//! The task seam: everything that differs between kinds of task sits here, so that the stages
//! (training, evaluation, outputs, report) ask the task rather than branching on it. A task
//! fixes the head size, the loss, how a model's outputs become scores and decisions, the metrics,
//! the Predictions CSV's columns and how the report names it. Multi-class classification, binary
//! classification and regression are written through it.
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use crate::bail_input;
pub use crate::config::TaskKind;
use crate::config::{ClassBalance, RegressionLoss};
use crate::data::metadata::{is_missing, parse_value, Metadata, Row};
use crate::data::balance::Balance;
use crate::data::ImageSet;
use crate::metrics::{self, regression, Figures, Intervals, Metrics};

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

/// A regression's target: the column, the training split's mean and standard deviation (the
/// network predicts the standardised value), and the loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub column: String,
    pub mean: f64,
    /// Population standard deviation (ddof 0, as scikit-learn's `StandardScaler`).
    pub sd: f64,
    pub loss: RegressionLoss,
}

impl Target {
    fn standardise(&self, v: f64) -> f64 {
        (v - self.mean) / self.sd
    }
}

/// Bootstrap resamples behind every 95% interval of the test figures.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// One row of scores per image (a float tensor of N x outputs), as vectors.
pub fn rows(scores: &Tensor) -> Vec<Vec<f32>> {
    let scores = scores.to_device(tch::Device::Cpu);
    let width = scores.size().last().copied().unwrap_or(1).max(1) as usize;
    let flat = Vec::<f32>::try_from(scores.flatten(0, -1)).expect("float scores");
    flat.chunks(width).map(<[f32]>::to_vec).collect()
}

/// A task with its classes: what the stages ask instead of branching on the task.
#[derive(Clone, Debug)]
pub struct Task {
    pub kind: TaskKind,
    pub classes: Vec<String>,
    /// Binary: the second class is predicted when its probability reaches this (else the more
    /// probable class, i.e. 0.5).
    pub threshold: Option<f32>,
    /// The logits are divided by this before the softmax (1: as the network gives them); fitted
    /// by `decisions` after training.
    pub temperature: f32,
    /// Regression: the target and its scale (None for classification).
    pub target: Option<Target>,
}

impl Task {
    /// The task for a training run; `label_column` and `source` name where the classes came from,
    /// for the messages.
    pub fn for_training(kind: TaskKind, classes: &[String], threshold: Option<f32>, label_column: &str, source: &str) -> Result<Task> {
        let k = classes.len();
        if k < 2 {
            bail_input!(
                "{source} has a single class ('{}'): a classifier needs at least two classes in the label column '{label_column}'",
                classes.first().map_or("", String::as_str)
            );
        }
        if threshold.is_some() && kind != TaskKind::Binary {
            bail_input!("--threshold applies to --task binary only");
        }
        if kind == TaskKind::Binary && k != 2 {
            bail_input!(
                "--task binary needs exactly two classes; the label column '{label_column}' has {k} ({}). Use --task classification",
                classes.join(", ")
            );
        }
        Ok(Task { kind, classes: classes.to_vec(), threshold, temperature: 1.0, target: None })
    }

    /// A regression on `column`, scaled by the training split's values `train`.
    pub fn for_regression(train: &[f64], column: &str, loss: RegressionLoss, threshold: Option<f32>) -> Result<Task> {
        if threshold.is_some() {
            bail_input!("--threshold applies to --task binary only, and this is a regression");
        }
        let n = train.len().max(1) as f64;
        let mean = train.iter().sum::<f64>() / n;
        let sd = (train.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
        if !(sd > 0.0 && sd.is_finite()) {
            bail_input!(
                "every training image has the same target ({}) in the column '{column}': a regression cannot learn from that. \
                 Check the column, or the split",
                train.first().copied().unwrap_or(f64::NAN)
            );
        }
        let target = Target { column: column.to_string(), mean, sd, loss };
        Ok(Task { kind: TaskKind::Regression, classes: Vec::new(), threshold: None, temperature: 1.0, target: Some(target) })
    }

    /// Refuses the training options of the other kind of task: a `--validation-metric`, label
    /// smoothing or class balancing for a regression, a regression loss for a classification.
    pub fn check_options(&self, cfg: &crate::config::TrainConfig) -> Result<()> {
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
        match self.is_regression() {
            true => (Balance::None, None),
            false => {
                let labels: Vec<usize> = train.iter().map(|&i| set.labels[i]).collect();
                let (plan, text) = crate::data::balance::plan(choice, &labels, &self.classes);
                (plan, Some(text))
            }
        }
    }

    /// The task in a few words, for the log: "7 classes", or a regression's description.
    pub fn brief(&self) -> String {
        match self.is_regression() {
            true => self.describe(),
            false => format!("{} classes", self.classes.len()),
        }
    }

    /// The label smoothing the training uses: `--label-smoothing`, else a classification's default
    /// (`config::LABEL_SMOOTHING`); a regression has none (`check_options` refused a request).
    pub fn label_smoothing(&self, requested: Option<f64>) -> f64 {
        match self.is_regression() {
            true => 0.0,
            false => requested.unwrap_or(crate::config::LABEL_SMOOTHING),
        }
    }

    /// `predict`: refuses labels of another kind of task than the model's, naming both.
    pub fn check_labels(&self, rows: &[Row], column: &str, file: &str) -> Result<()> {
        let present: Vec<&Row> = rows.iter().filter(|r| !is_missing(&r.label)).collect();
        let Some(first) = present.first() else { return Ok(()) };
        if let Some(t) = &self.target {
            if let Some(r) = present.iter().find(|r| parse_value(&r.label).is_none()) {
                bail_input!(
                    "this Best Model is a regression of '{}' and predicts a number, but the label column '{column}' of {file} \
                     holds class names (line {}: '{}'). Use a classification model, or leave the label column out",
                    t.column,
                    r.line,
                    crate::error::short(&r.label)
                );
            }
            return Ok(());
        }
        let (kind, _) = infer(rows, column);
        let known = |l: &str| self.classes.iter().any(|c| crate::data::metadata::label_key(c) == crate::data::metadata::label_key(l));
        if kind == TaskKind::Regression && !present.iter().all(|r| known(&r.label)) {
            bail_input!(
                "this Best Model is a {} into {} classes ({}), but the label column '{column}' of {file} holds numbers \
                 like a regression target (line {}: '{}'). Use a regression model, or leave the label column out",
                self.kind.name(),
                self.classes.len(),
                self.classes.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                first.line,
                crate::error::short(&first.label)
            );
        }
        Ok(())
    }

    pub fn is_regression(&self) -> bool {
        self.target.is_some()
    }

    /// Outputs of the model's head.
    pub fn head_outputs(&self) -> i64 {
        if self.is_regression() { 1 } else { self.classes.len() as i64 }
    }

    /// The training loss of a batch: cross-entropy of the logits against the class indices
    /// (with `label_smoothing`, against targets that give that share to all classes evenly, as
    /// PyTorch's `CrossEntropyLoss(label_smoothing=...)`), or for regression the chosen loss of
    /// the output against the standardised target.
    /// `class_weights` weigh each image's term by its class, and the mean is over the weights,
    /// as PyTorch's `weight=` does.
    pub fn loss(&self, logits: &Tensor, targets: &Tensor, label_smoothing: f64, class_weights: Option<&Tensor>) -> Tensor {
        let Some(t) = &self.target else {
            if label_smoothing == 0.0 && class_weights.is_none() {
                return logits.cross_entropy_for_logits(targets);
            }
            return logits.cross_entropy_loss(targets, class_weights, Reduction::Mean, -100, label_smoothing);
        };
        // Standardised in float64, so that a target far from 0 keeps its differences.
        let z = ((targets.to_kind(Kind::Double) - t.mean) / t.sd).to_kind(Kind::Float);
        let out = logits.to_kind(Kind::Float).squeeze_dim(-1);
        match t.loss {
            RegressionLoss::Mse => out.mse_loss(&z, Reduction::Mean),
            RegressionLoss::Mae => out.l1_loss(&z, Reduction::Mean),
            RegressionLoss::Huber => out.huber_loss(&z, Reduction::Mean, 1.0),
        }
    }

    /// The loss of predicted values against true ones, in the units training minimises (as
    /// `loss`, for the validation figures).
    fn value_loss(&self, truth: &[f64], predicted: &[f64]) -> f64 {
        let t = self.target.as_ref().expect("a regression");
        let cost = |d: f64| match t.loss {
            RegressionLoss::Mse => d * d,
            RegressionLoss::Mae => d.abs(),
            RegressionLoss::Huber => if d.abs() < 1.0 { 0.5 * d * d } else { d.abs() - 0.5 },
        };
        let sum: f64 = truth.iter().zip(predicted).map(|(&y, &p)| cost(t.standardise(p) - t.standardise(y))).sum();
        sum / truth.len().max(1) as f64
    }

    /// The scores the outputs give, as float32: softmax probabilities, one per class, at the
    /// task's temperature; or for regression the standardised value, which `predicted_values`
    /// turns into the target's units in float64 (a float32 holds 1e9 + 17 as 1e9).
    pub fn scores(&self, logits: &Tensor) -> Tensor {
        if self.target.is_some() {
            return logits.to_kind(Kind::Float);
        }
        if self.temperature == 1.0 {
            logits.softmax(-1, Kind::Float)
        } else {
            (logits.to_kind(Kind::Float) / f64::from(self.temperature)).softmax(-1, Kind::Float)
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
        let n = outputs.len() as f64;
        if self.target.is_some() {
            return outputs.iter().skip(1).fold(outputs[0].shallow_clone(), |acc, o| acc + o) / n;
        }
        let mean = outputs.iter().map(|o| o.softmax(-1, Kind::Float)).reduce(|acc, p| acc + p).expect("views") / n;
        // The smallest normal float keeps a probability that underflowed to 0 finite.
        mean.clamp_min(f64::from(f32::MIN_POSITIVE)).log()
    }

    /// `scores` of logits already read back, one row per image.
    pub fn probabilities(&self, logits: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let Some(width) = logits.first().map(Vec::len) else { return Vec::new() };
        let flat: Vec<f32> = logits.iter().flatten().copied().collect();
        let t = Tensor::from_slice(&flat).view([logits.len() as i64, width as i64]);
        rows(&self.scores(&t))
    }

    /// The same task without calibration: what the network's own probabilities decide.
    pub fn uncalibrated(&self) -> Task {
        Task { temperature: 1.0, ..self.clone() }
    }

    /// The class decided from one image's probabilities.
    pub fn decide(&self, p: &[f32]) -> usize {
        metrics::decide(p, self.threshold)
    }

    /// The probability of the decided class: what the report and the CSV call confidence.
    pub fn confidence(&self, p: &[f32]) -> f32 {
        p[self.decide(p)]
    }

    /// Every classification metric of these probabilities against the true classes.
    pub fn metrics(&self, truth: &[usize], probs: &[Vec<f32>]) -> Metrics {
        metrics::compute_with_threshold(truth, probs, &self.classes, self.threshold)
    }

    /// The figures of images `images` of `set`, whose scores are `scores` (same order).
    pub fn figures(&self, set: &ImageSet, images: &[usize], scores: &[Vec<f32>]) -> Figures {
        if self.is_regression() {
            let (truth, predicted) = (set.values(images), self.predicted_values(scores));
            let loss = self.value_loss(&truth, &predicted);
            return Figures::Regression { loss, figures: regression::compute(&truth, &predicted) };
        }
        Figures::Classification(self.metrics(&set.truth(images), scores))
    }

    /// Bootstrap 95% intervals of the figures (None for too few images).
    pub fn intervals(&self, set: &ImageSet, images: &[usize], scores: &[Vec<f32>], seed: u64) -> Option<Intervals> {
        if self.is_regression() {
            return regression::bootstrap(&set.values(images), &self.predicted_values(scores), BOOTSTRAP_RESAMPLES, seed);
        }
        metrics::bootstrap(&set.truth(images), scores, &self.classes, BOOTSTRAP_RESAMPLES, seed, self.threshold)
    }

    /// A regression's predicted values, in the target's units, from its one-column scores.
    pub fn predicted_values(&self, scores: &[Vec<f32>]) -> Vec<f64> {
        let t = self.target.as_ref().expect("a regression");
        scores.iter().map(|s| t.mean + t.sd * f64::from(s[0])).collect()
    }

    /// The per-epoch figures of the Training History (after the loss), by column name; a
    /// `Figures::epoch_values` gives them in this order.
    pub fn epoch_columns(&self) -> [&'static str; 3] {
        if self.is_regression() { ["mae", "rmse", "r2"] } else { ["accuracy", "macro_f1", "roc_auc"] }
    }

    /// The Predictions CSV: one row per image with the decided class, its probability and one
    /// probability column per class; `truth` (class names) where known, `splits` when it covers
    /// every split.
    pub fn predictions_csv(&self, images: &[String], truth: Option<&[String]>, probs: &[Vec<f32>], splits: Option<&[String]>) -> Result<Vec<u8>> {
        if self.is_regression() {
            return value_predictions_csv(images, truth, &self.predicted_values(probs), splits);
        }
        let classes = &self.classes;
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["image_path".to_string()];
        if splits.is_some() {
            header.push("split".into());
        }
        if truth.is_some() {
            header.push("true_label".into());
        }
        header.extend(["predicted_label".to_string(), "confidence".to_string()]);
        header.extend(classes.iter().map(|c| format!("prob_{c}")));
        if truth.is_some() {
            header.push("correct".into());
        }
        w.write_record(&header)?;
        for (i, p) in probs.iter().enumerate() {
            let pred = self.decide(p);
            let mut rec = vec![images[i].clone()];
            if let Some(s) = splits {
                rec.push(s[i].clone());
            }
            if let Some(t) = truth {
                rec.push(t[i].clone());
            }
            rec.push(classes[pred].clone());
            rec.push(format!("{:.6}", p[pred]));
            rec.extend(p.iter().map(|v| format!("{v:.6}")));
            if let Some(t) = truth {
                rec.push((t[i] == classes[pred]).to_string());
            }
            w.write_record(&rec)?;
        }
        Ok(w.into_inner()?)
    }

    /// How the report names the task.
    pub fn describe(&self) -> String {
        if let Some(t) = &self.target {
            return format!(
                "regression of '{}' ({} loss on the target standardised with the training mean {:.4} and standard deviation {:.4})",
                t.column,
                t.loss.name(),
                t.mean,
                t.sd
            );
        }
        match (self.kind, self.threshold) {
            (_, Some(t)) => format!("binary, decision threshold {t} on the probability of '{}'", self.classes[1]),
            (TaskKind::Binary, None) => "binary".into(),
            (_, None) => "classification".into(),
        }
    }
}


/// A regression's Predictions CSV: `image_path, [split], [true_value], predicted_value, [error]`,
/// the error being predicted minus true. `truth` holds the target column's text.
fn value_predictions_csv(images: &[String], truth: Option<&[String]>, predicted: &[f64], splits: Option<&[String]>) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["image_path"];
    if splits.is_some() {
        header.push("split");
    }
    if truth.is_some() {
        header.push("true_value");
    }
    header.push("predicted_value");
    if truth.is_some() {
        header.push("error");
    }
    w.write_record(&header)?;
    for (i, p) in predicted.iter().enumerate() {
        let mut rec = vec![images[i].clone()];
        if let Some(s) = splits {
            rec.push(s[i].clone());
        }
        if let Some(t) = truth {
            rec.push(t[i].clone());
        }
        rec.push(format!("{p:.6}"));
        if let Some(t) = truth {
            rec.push(parse_value(&t[i]).map_or(String::new(), |v| format!("{:.6}", p - v)));
        }
        w.write_record(&rec)?;
    }
    Ok(w.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RegressionLoss;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("c{i}")).collect()
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
    fn a_regression_task_scales_by_the_training_split() {
        let t = Task::for_regression(&[1.0, 3.0], "age", RegressionLoss::Mse, None).unwrap();
        let target = t.target.as_ref().unwrap();
        assert_eq!((target.mean, target.sd, t.head_outputs()), (2.0, 1.0, 1));
        let e = |r: Result<Task>| format!("{:#}", r.err().expect("an error"));
        assert!(e(Task::for_regression(&[4.0, 4.0], "age", RegressionLoss::Mse, None)).contains("same target (4)"));
        assert!(e(Task::for_regression(&[1.0, 3.0], "age", RegressionLoss::Mse, Some(0.5))).contains("binary only"));
        // The predicted values are in the target's units; the loss is on the standardised
        // scale, as the network is trained.
        let out = Tensor::from_slice(&[0.5f32, -1.0]).view([2, 1]);
        assert_eq!(t.predicted_values(&rows(&t.scores(&out))), vec![2.5, 1.0]);
        // A billion added to every target shifts the values by a billion, to the last unit.
        let far = Task::for_regression(&[1e9 + 1.0, 1e9 + 3.0], "age", RegressionLoss::Mse, None).unwrap();
        assert_eq!(far.predicted_values(&rows(&far.scores(&out))), vec![1e9 + 2.5, 1e9 + 1.0]);
        let z = far.loss(&Tensor::from_slice(&[0.0f32]).view([1, 1]), &Tensor::from_slice(&[1e9 + 3.0]), 0.0, None).double_value(&[]);
        assert!((z - 1.0).abs() < 1e-6, "the target 1e9 + 3 is one standard deviation above the mean: loss {z}");
        let y = Tensor::from_slice(&[2.5f64, 3.0]);
        let mse = t.loss(&out, &y, 0.0, None).double_value(&[]);
        assert!((mse - (0.0 + 4.0) / 2.0).abs() < 1e-6, "{mse}");
        assert!((t.value_loss(&[2.5, 3.0], &[2.5, 1.0]) - mse).abs() < 1e-6, "the validation loss is the training loss");
        let huber = Task::for_regression(&[1.0, 3.0], "age", RegressionLoss::Huber, None).unwrap();
        assert!((huber.loss(&out, &y, 0.0, None).double_value(&[]) - 0.75).abs() < 1e-6, "|d| = 2 costs 1.5");
        assert!((huber.value_loss(&[2.5, 3.0], &[2.5, 1.0]) - 0.75).abs() < 1e-9);
        let csv = String::from_utf8(t.predictions_csv(&["a.png".into()], Some(&["3".into()]), &[vec![0.5]], None).unwrap()).unwrap();
        assert_eq!(csv, "image_path,true_value,predicted_value,error\na.png,3,2.500000,-0.500000\n");
    }

    #[test]
    fn label_smoothing_spreads_its_share_over_every_class() {
        let t = Task::for_training(TaskKind::Classification, &names(3), None, "y", "m.csv").unwrap();
        let logits = Tensor::from_slice(&[2.0f32, 0.5, -1.0, 0.0, 1.0, 3.0]).view([2, 3]);
        let y = Tensor::from_slice(&[0i64, 1]);
        let logp: Vec<Vec<f64>> = [[2.0f64, 0.5, -1.0], [0.0, 1.0, 3.0]]
            .iter()
            .map(|z| {
                let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
                z.iter().map(|v| v - lse).collect()
            })
            .collect();
        let eps = 0.1;
        // (1 - eps) * -log p(true) + eps * mean over classes of -log p, averaged over the batch.
        let want: f64 = [0usize, 1].iter().enumerate().map(|(i, &c)| (1.0 - eps) * -logp[i][c] + eps * -logp[i].iter().sum::<f64>() / 3.0).sum::<f64>() / 2.0;
        assert!((t.loss(&logits, &y, eps, None).double_value(&[]) - want).abs() < 1e-6);
        let plain: f64 = -(logp[0][0] + logp[1][1]) / 2.0;
        assert!((t.loss(&logits, &y, 0.0, None).double_value(&[]) - plain).abs() < 1e-6, "0 is the plain cross-entropy");
        // Class weights: PyTorch's weighted mean, sum of w[y] * -log p(y) over the sum of w[y].
        let w = Tensor::from_slice(&[1.0f32, 3.0, 5.0]);
        let weighted = (1.0 * -logp[0][0] + 3.0 * -logp[1][1]) / 4.0;
        assert!((t.loss(&logits, &y, 0.0, Some(&w)).double_value(&[]) - weighted).abs() < 1e-6);
        let reg = Task::for_regression(&[1.0, 3.0], "age", RegressionLoss::Mse, None).unwrap();
        let mut cfg = crate::config::TrainConfig::new("a.zip".into(), "a.csv".into(), "out".into(), "resnet18");
        // The defaults (smoothing left out, class balance auto) suit both kinds of task.
        reg.check_options(&cfg).unwrap();
        assert_eq!((reg.label_smoothing(cfg.label_smoothing), t.label_smoothing(cfg.label_smoothing)), (0.0, crate::config::LABEL_SMOOTHING));
        assert_eq!(t.label_smoothing(Some(0.0)), 0.0, "0 turns it off");
        cfg.label_smoothing = Some(0.1);
        let e = reg.check_options(&cfg).unwrap_err().to_string();
        assert!(e.contains("--label-smoothing applies to a classification"), "{e}");
        cfg.label_smoothing = None;
        cfg.class_balance = crate::config::ClassBalance::Sampler;
        let e = reg.check_options(&cfg).unwrap_err().to_string();
        assert!(e.contains("--class-balance applies to a classification"), "{e}");
    }

    #[test]
    fn a_training_task_checks_its_classes_and_threshold() {
        let e = |r: Result<Task>| format!("{:#}", r.err().expect("an error"));
        assert!(e(Task::for_training(TaskKind::Classification, &names(1), None, "dx", "m.csv")).contains("single class ('c0')"));
        assert!(e(Task::for_training(TaskKind::Binary, &names(3), None, "dx", "m.csv")).contains("has 3 (c0, c1, c2)"));
        assert!(e(Task::for_training(TaskKind::Classification, &names(2), Some(0.3), "dx", "m.csv")).contains("binary only"));
        let t = Task::for_training(TaskKind::Binary, &names(2), Some(0.3), "dx", "m.csv").unwrap();
        assert_eq!(t.head_outputs(), 2);
        assert_eq!(t.decide(&[0.65, 0.35]), 1, "0.35 reaches the threshold 0.3");
        assert_eq!(t.confidence(&[0.65, 0.35]), 0.35);
        assert_eq!(t.describe(), "binary, decision threshold 0.3 on the probability of 'c1'");
    }
}
