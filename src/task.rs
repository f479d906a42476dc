//! The task seam: everything that differs between kinds of task sits here, so that the stages
//! (training, evaluation, outputs, report) ask the task rather than branching on it. A task
//! fixes the head size, the loss, how a model's outputs become scores and decisions, the metrics,
//! the Predictions CSV's columns and how the report names it. Multi-class and binary
//! classification are written through it; another kind of task is another variant here.
use anyhow::Result;
use tch::{Kind, Tensor};

use crate::bail_input;
pub use crate::config::TaskKind;
use crate::metrics::{self, Intervals, Metrics};

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
        Ok(Task { kind, classes: classes.to_vec(), threshold, temperature: 1.0 })
    }

    /// Outputs of the model's head.
    pub fn head_outputs(&self) -> i64 {
        self.classes.len() as i64
    }

    /// The training loss of a batch: cross-entropy of the logits against the class indices.
    pub fn loss(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        logits.cross_entropy_for_logits(targets)
    }

    /// The scores the outputs give (softmax probabilities, one per class, at the task's
    /// temperature), as float32.
    pub fn scores(&self, logits: &Tensor) -> Tensor {
        if self.temperature == 1.0 {
            logits.softmax(-1, Kind::Float)
        } else {
            (logits.to_kind(Kind::Float) / f64::from(self.temperature)).softmax(-1, Kind::Float)
        }
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

    /// Every metric of these predictions against the truth.
    pub fn metrics(&self, truth: &[usize], probs: &[Vec<f32>]) -> Metrics {
        metrics::compute_with_threshold(truth, probs, &self.classes, self.threshold)
    }

    /// Bootstrap 95% intervals of the metrics (None for too few images).
    pub fn intervals(&self, truth: &[usize], probs: &[Vec<f32>], seed: u64) -> Option<Intervals> {
        metrics::bootstrap(truth, probs, &self.classes, BOOTSTRAP_RESAMPLES, seed, self.threshold)
    }

    /// The Predictions CSV: one row per image with the decided class, its probability and one
    /// probability column per class; `truth` (class names) where known, `splits` when it covers
    /// every split.
    pub fn predictions_csv(&self, images: &[String], truth: Option<&[String]>, probs: &[Vec<f32>], splits: Option<&[String]>) -> Result<Vec<u8>> {
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
        match (self.kind, self.threshold) {
            (_, Some(t)) => format!("binary, decision threshold {t} on the probability of '{}'", self.classes[1]),
            (TaskKind::Binary, None) => "binary".into(),
            (TaskKind::Classification, None) => "classification".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("c{i}")).collect()
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
