//! The stage between training and the final evaluation: how the trained network's outputs become
//! probabilities and decisions, fitted on the validation split (never on the test split).
//! First the temperature that calibrates the probabilities, then, for a binary task, the
//! threshold on the calibrated probability of the second class. Both are stored in the Best
//! Model, so `predict` decides exactly as the report does.
pub mod temperature;
pub mod threshold;

use serde::Serialize;

use crate::config::{CalibrationChoice, ThresholdMetric, TrainConfig};
use crate::task::{Task, TaskKind};

/// What was fitted, and from what, for the report and metrics.json.
#[derive(Clone, Debug, Serialize)]
pub struct Decisions {
    pub temperature: f32,
    /// Where the temperature came from, in words.
    pub temperature_source: String,
    /// Binary: the decision threshold on the second class's probability.
    pub threshold: Option<f32>,
    pub threshold_source: Option<String>,
    /// `--threshold auto`: the metric maximised and its value against every candidate threshold
    /// on the validation split.
    #[serde(skip)]
    pub threshold_curve: Option<(ThresholdMetric, Vec<(f64, f64)>)>,
}

impl Decisions {
    /// One line for the log.
    pub fn describe(&self) -> String {
        if self.temperature_source == NOT_APPLICABLE {
            return format!("decisions: none ({NOT_APPLICABLE})");
        }
        let mut line = format!("decisions: temperature {:.4} ({})", self.temperature, self.temperature_source);
        if let (Some(t), Some(source)) = (self.threshold, &self.threshold_source) {
            line.push_str(&format!("; threshold {t:.4} ({source})"));
        }
        line
    }
}

/// A regression's decisions: there are none to fit.
const NOT_APPLICABLE: &str = "not applicable: a regression predicts a number";

/// The temperature, then (binary) the threshold, fitted on the validation logits and truth.
/// Returns the task that decides with them. Where the options ask for something the data cannot
/// give (no validation split, one class in it), the run goes on with the default and a warning.
pub fn fit(task: &Task, validation: Option<(&[Vec<f32>], &[usize])>, cfg: &TrainConfig, warnings: &mut Vec<String>) -> (Task, Decisions) {
    let mut task = task.clone();
    if task.is_regression() {
        return (task, Decisions { temperature: 1.0, temperature_source: NOT_APPLICABLE.to_string(), threshold: None, threshold_source: None, threshold_curve: None });
    }
    let validation = validation.filter(|(logits, _)| !logits.is_empty());
    let temperature_source = match (cfg.calibrate, validation) {
        (CalibrationChoice::None, _) => "none (--calibrate none)".to_string(),
        (CalibrationChoice::Temperature, None) => {
            warnings.push("--calibrate temperature needs a validation split, and there is none: the probabilities are left uncalibrated".into());
            "none: no validation split to fit it on".to_string()
        }
        (CalibrationChoice::Temperature, Some((logits, truth))) => {
            let t = temperature::fit(logits, truth);
            task.temperature = t as f32;
            format!(
                "fitted on the {} validation images (their log loss {:.4} at temperature 1, {:.4} at {:.4})",
                logits.len(),
                temperature::log_loss(logits, truth, 1.0),
                temperature::log_loss(logits, truth, f64::from(task.temperature)),
                task.temperature
            )
        }
    };
    let mut threshold_curve = None;
    let threshold_source = (task.kind == TaskKind::Binary).then(|| {
        if let Some(t) = cfg.threshold.fixed() {
            task.threshold = Some(t);
            return "set with --threshold".to_string();
        }
        let metric = cfg.threshold_metric;
        task.threshold = Some(0.5);
        let Some((logits, truth)) = validation else {
            warnings.push("--threshold auto needs a validation split, and there is none: the decision threshold is 0.5".into());
            return "0.5: no validation split to tune it on".to_string();
        };
        let p1: Vec<f32> = task.probabilities(logits).iter().map(|p| p[1]).collect();
        let positive: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
        match threshold::tune(&p1, &positive, metric) {
            Some(tuned) => {
                task.threshold = Some(tuned.threshold);
                threshold_curve = Some((metric, tuned.curve));
                format!("tuned on the {} validation images: maximises {} ({:.4})", truth.len(), metric.name(), tuned.value)
            }
            None => {
                warnings.push(format!(
                    "--threshold auto: the validation split has one class only, or one score for every image, so there is nothing to tune; the decision threshold is 0.5 (classes: {})",
                    task.classes.join(", ")
                ));
                "0.5: nothing to tune on the validation split".to_string()
            }
        }
    });
    let decisions = Decisions { temperature: task.temperature, temperature_source, threshold: task.threshold, threshold_source, threshold_curve };
    (task, decisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(flags: &str) -> TrainConfig {
        let mut c = TrainConfig::new("a.zip".into(), "a.csv".into(), "out".into(), "resnet18");
        for f in flags.split_whitespace().collect::<Vec<_>>().chunks(2) {
            match f[0] {
                "--threshold" => c.threshold = f[1].parse().unwrap(),
                "--calibrate" => c.calibrate = f[1].parse().unwrap(),
                "--threshold-metric" => c.threshold_metric = f[1].parse().unwrap(),
                other => panic!("{other}"),
            }
        }
        c
    }

    fn binary() -> Task {
        Task::for_training(TaskKind::Binary, &["benign".into(), "malignant".into()], None, "dx", "m.csv").unwrap()
    }

    /// Overconfident validation logits: the second class is right when its logit margin is
    /// above 2, but the network is 8x too sure.
    fn validation() -> (Vec<Vec<f32>>, Vec<usize>) {
        let margins: Vec<f32> = (0..40).map(|i| i as f32 - 20.0).collect();
        let logits = margins.iter().map(|&m| vec![0.0, 8.0 * m]).collect();
        let truth = margins.iter().map(|&m| usize::from(m > 2.0 || m == -3.0)).collect();
        (logits, truth)
    }

    #[test]
    fn temperature_then_threshold_on_the_calibrated_probabilities() {
        let (logits, truth) = validation();
        let mut warnings = Vec::new();
        let (task, d) = fit(&binary(), Some((&logits, &truth)), &cfg(""), &mut warnings);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(task.temperature > 1.0, "overconfident logits are cooled: {}", task.temperature);
        let t = task.threshold.unwrap();
        // Every image above the cut is positive and every one below negative, bar one.
        let decided: Vec<usize> = task.probabilities(&logits).iter().map(|p| task.decide(p)).collect();
        let wrong = decided.iter().zip(&truth).filter(|(a, b)| a != b).count();
        assert_eq!(wrong, 1, "threshold {t}");
        assert!(d.threshold_source.unwrap().contains("maximises f1"));
        assert!(d.temperature_source.starts_with("fitted on the 40 validation images"));
    }

    #[test]
    fn a_fixed_threshold_is_kept_and_no_validation_falls_back_with_warnings() {
        let (logits, truth) = validation();
        let mut warnings = Vec::new();
        let (task, d) = fit(&binary(), Some((&logits, &truth)), &cfg("--threshold 0.3 --calibrate none"), &mut warnings);
        assert_eq!((task.threshold, task.temperature), (Some(0.3), 1.0));
        assert_eq!(d.threshold_source.as_deref(), Some("set with --threshold"));
        let (task, d) = fit(&binary(), None, &cfg(""), &mut warnings);
        assert_eq!((task.threshold, task.temperature), (Some(0.5), 1.0));
        assert!(d.threshold_source.unwrap().contains("no validation split"));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("--calibrate temperature needs a validation split"));
    }

    #[test]
    fn a_multiclass_task_gets_a_temperature_and_no_threshold() {
        let task = Task::for_training(TaskKind::Classification, &["a".into(), "b".into(), "c".into()], None, "dx", "m.csv").unwrap();
        let logits = vec![vec![5.0, 0.0, 0.0], vec![0.0, 5.0, 0.0], vec![0.0, 0.0, 5.0], vec![5.0, 0.0, 0.0]];
        let truth = [0, 1, 2, 1];
        let (calibrated, d) = fit(&task, Some((&logits, &truth)), &cfg(""), &mut Vec::new());
        assert!(d.threshold.is_none() && d.threshold_source.is_none());
        let before: Vec<usize> = task.probabilities(&logits).iter().map(|p| task.decide(p)).collect();
        let after: Vec<usize> = calibrated.probabilities(&logits).iter().map(|p| calibrated.decide(p)).collect();
        assert_eq!(before, after, "temperature never changes the most probable class");
        assert_ne!(calibrated.temperature, 1.0);
    }
}
