//! A classification, binary or into several classes: its classes, the loss, how logits become
//! probabilities and decisions (temperature and threshold, fitted after training), the class
//! balance, the figures, the Predictions CSV and the images worth explaining.
use anyhow::Result;
use tch::{Kind, Reduction, Tensor};

use super::{Pick, TaskKind};
use crate::bail_input;
use crate::config::{CalibrationChoice, ClassBalance, ThresholdMetric, TrainConfig};
use crate::data::balance::Balance;
use crate::data::metadata::{label_key, Row};
use crate::data::ImageSet;
use crate::decisions::{temperature, threshold, Decisions};
use crate::metrics::{self, Intervals, Metrics};

#[derive(Clone, Debug)]
pub struct Classifier {
    /// `Binary` or `Classification`.
    pub kind: TaskKind,
    pub classes: Vec<String>,
    /// Binary: the second class is predicted when its probability reaches this (else the more
    /// probable class, i.e. 0.5).
    pub threshold: Option<f32>,
    /// The logits are divided by this before the softmax (1: as the network gives them); fitted
    /// by `fit_decisions` after training.
    pub temperature: f32,
}

impl Classifier {
    /// The classifier of a training run; `label_column` and `source` name where the classes came
    /// from, for the messages.
    pub fn new(kind: TaskKind, classes: &[String], threshold: Option<f32>, label_column: &str, source: &str) -> Result<Classifier> {
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
        Ok(Classifier { kind, classes: classes.to_vec(), threshold, temperature: 1.0 })
    }

    /// `predict`: refuses a label column of numbers that reads as a regression target, unless
    /// every label is one of the classes (a classifier of numeric class codes).
    pub fn check_labels(&self, rows: &[Row], present: &[&Row], column: &str, file: &str) -> Result<()> {
        let Some(first) = present.first() else { return Ok(()) };
        let (kind, _) = super::infer(rows, column);
        let known = |l: &str| self.classes.iter().any(|c| label_key(c) == label_key(l));
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

    /// `--class-balance` planned on the labels of the training images `train` (`data::balance`),
    /// with how the log and the report say it.
    pub fn class_balance(&self, choice: ClassBalance, set: &ImageSet, train: &[usize]) -> (Balance, String) {
        let labels: Vec<usize> = train.iter().map(|&i| set.labels[i]).collect();
        crate::data::balance::plan(choice, &labels, &self.classes)
    }

    /// Cross-entropy of the logits against the class indices (with `label_smoothing`, against
    /// targets that give that share to all classes evenly, as PyTorch's
    /// `CrossEntropyLoss(label_smoothing=...)`). `class_weights` weigh each image's term by its
    /// class, and the mean is over the weights, as PyTorch's `weight=` does.
    pub fn loss(&self, logits: &Tensor, targets: &Tensor, label_smoothing: f64, class_weights: Option<&Tensor>) -> Tensor {
        if label_smoothing == 0.0 && class_weights.is_none() {
            return logits.cross_entropy_for_logits(targets);
        }
        logits.cross_entropy_loss(targets, class_weights, Reduction::Mean, -100, label_smoothing)
    }

    /// Softmax probabilities, one per class, at the temperature, as float32.
    pub fn scores(&self, logits: &Tensor) -> Tensor {
        if self.temperature == 1.0 {
            logits.softmax(-1, Kind::Float)
        } else {
            (logits.to_kind(Kind::Float) / f64::from(self.temperature)).softmax(-1, Kind::Float)
        }
    }

    /// The mean softmax of several views, as its logarithm, which `scores` turns back into that
    /// mean (and a temperature then calibrates).
    pub fn combine_views(&self, outputs: &[Tensor]) -> Tensor {
        let n = outputs.len() as f64;
        let mean = outputs.iter().map(|o| o.softmax(-1, Kind::Float)).reduce(|acc, p| acc + p).expect("views") / n;
        // The smallest normal float keeps a probability that underflowed to 0 finite.
        mean.clamp_min(f64::from(f32::MIN_POSITIVE)).log()
    }

    /// `scores` of logits already read back (at least one row), one row per image.
    pub fn probabilities(&self, logits: &[Vec<f32>]) -> Vec<Vec<f32>> {
        super::rows(&self.scores(&super::logits_tensor(logits)))
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

    pub fn intervals(&self, truth: &[usize], probs: &[Vec<f32>], seed: u64) -> Option<Intervals> {
        metrics::bootstrap(truth, probs, &self.classes, super::BOOTSTRAP_RESAMPLES, seed, self.threshold)
    }

    /// The true class names of images `indices`.
    pub fn truth_names(&self, set: &ImageSet, indices: &[usize]) -> Vec<String> {
        indices.iter().map(|&i| set.classes[set.labels[i]].clone()).collect()
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

    pub fn describe(&self) -> String {
        match (self.kind, self.threshold) {
            (_, Some(t)) => format!("binary, decision threshold {t} on the probability of '{}'", self.classes[1]),
            (TaskKind::Binary, None) => "binary".into(),
            (_, None) => "classification".into(),
        }
    }

    /// The report's picks among the test images: `limit` of them, or all when there are fewer.
    /// For each class, its most confident correct image, explaining that class; then the most
    /// confident mistakes, explaining the class predicted; then, if mistakes run out, the least
    /// confident correct images. Ties go to the earlier image.
    pub fn report_picks(&self, scores: &[Vec<f32>], truth: &[usize], limit: usize) -> Vec<Pick> {
        let mut picks: Vec<Pick> = Vec::new();
        let short = crate::error::short;
        let decided: Vec<usize> = scores.iter().map(|p| self.decide(p)).collect();
        for (c, class) in self.classes.iter().enumerate() {
            let best = (0..scores.len())
                .filter(|&i| truth[i] == c && decided[i] == c)
                .max_by(|&a, &b| scores[a][c].total_cmp(&scores[b][c]).then(b.cmp(&a)));
            if let Some(i) = best {
                Pick::push(&mut picks, limit, i, c, format!("the most confident correct {}", short(class)));
            }
        }
        let mut wrong: Vec<usize> = (0..scores.len()).filter(|&i| decided[i] != truth[i]).collect();
        wrong.sort_by(|&a, &b| scores[b][decided[b]].total_cmp(&scores[a][decided[a]]).then(a.cmp(&b)));
        for i in wrong {
            let why = format!("a confident mistake: true {}, predicted {}", short(&self.classes[truth[i]]), short(&self.classes[decided[i]]));
            Pick::push(&mut picks, limit, i, decided[i], why);
        }
        let mut unsure: Vec<usize> = (0..scores.len()).collect();
        unsure.sort_by(|&a, &b| self.confidence(&scores[a]).total_cmp(&self.confidence(&scores[b])).then(a.cmp(&b)));
        // What is left is decided correctly (every mistake is in already), however confident:
        // named by its rank among those, never "uncertain" at 99.9%.
        let mut first = true;
        for i in unsure {
            let rank = if first { "the least" } else { "the next least" };
            let why = format!("{rank} confident correct {} ({:.1}%)", short(&self.classes[decided[i]]), 100.0 * self.confidence(&scores[i]));
            let before = picks.len();
            Pick::push(&mut picks, limit, i, decided[i], why);
            first &= picks.len() == before;
        }
        picks
    }

    /// predict's picks: the least confident predictions first, explaining the class predicted.
    pub fn predict_picks(&self, scores: &[Vec<f32>], limit: usize) -> Vec<Pick> {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| self.confidence(&scores[a]).total_cmp(&self.confidence(&scores[b])).then(a.cmp(&b)));
        order
            .into_iter()
            .take(limit)
            .map(|i| {
                let c = self.decide(&scores[i]);
                let why = format!("predicted {} ({:.1}%)", crate::error::short(&self.classes[c]), 100.0 * self.confidence(&scores[i]));
                Pick { position: i, target: c as i64, why }
            })
            .collect()
    }

    /// The temperature, then (binary) the threshold, fitted on the validation logits and truth.
    /// Returns the classifier that decides with them. Where the options ask for something the
    /// data cannot give (no validation split, one class in it), the run goes on with the default
    /// and a warning.
    pub fn fit_decisions(&self, validation: Option<(&[Vec<f32>], &[usize])>, cfg: &TrainConfig, warnings: &mut Vec<String>) -> (Classifier, Decisions) {
        let mut c = self.clone();
        let validation = validation.filter(|(logits, _)| !logits.is_empty());
        let temperature_source = match (cfg.calibrate, validation) {
            (CalibrationChoice::None, _) => "none (--calibrate none)".to_string(),
            (CalibrationChoice::Temperature, None) => {
                warnings.push("--calibrate temperature needs a validation split, and there is none: the probabilities are left uncalibrated".into());
                "none: no validation split to fit it on".to_string()
            }
            (CalibrationChoice::Temperature, Some((logits, truth))) => {
                let t = temperature::fit(logits, truth);
                c.temperature = t as f32;
                format!(
                    "fitted on the {} validation images (their log loss {:.4} at temperature 1, {:.4} at {:.4})",
                    logits.len(),
                    temperature::log_loss(logits, truth, 1.0),
                    temperature::log_loss(logits, truth, f64::from(c.temperature)),
                    c.temperature
                )
            }
        };
        let scored = validation.map(|(logits, truth)| (c.probabilities(logits).iter().map(|p| p[1]).collect(), truth));
        let (threshold_source, threshold_curve) = c.decide_threshold(scored, cfg, ("the validation split", "validation images"), warnings);
        let decisions = Decisions { temperature: c.temperature, temperature_source, threshold: c.threshold, threshold_source, threshold_curve };
        (c, decisions)
    }

    /// A binary task's threshold, set in `self`: `--threshold`'s, else tuned on `scored` (the
    /// second class's probabilities and the truth) to maximise `--threshold-metric`, else 0.5.
    /// `place` names where the scores come from (the split, and its images). Returns the
    /// threshold's source and the tuning curve; (None, None) for other tasks.
    #[allow(clippy::type_complexity)]
    fn decide_threshold(&mut self, scored: Option<(Vec<f32>, &[usize])>, cfg: &TrainConfig, place: (&str, &str), warnings: &mut Vec<String>) -> (Option<String>, Option<(ThresholdMetric, Vec<(f64, f64)>)>) {
        if self.kind != TaskKind::Binary {
            return (None, None);
        }
        if let Some(t) = cfg.threshold.fixed() {
            self.threshold = Some(t);
            return (Some("set with --threshold".to_string()), None);
        }
        let (split, items) = place;
        let metric = cfg.threshold_metric;
        self.threshold = Some(0.5);
        let Some((p1, truth)) = scored else {
            warnings.push("--threshold auto needs a validation split, and there is none: the decision threshold is 0.5".into());
            return (Some("0.5: no validation split to tune it on".to_string()), None);
        };
        let positive: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
        match threshold::tune(&p1, &positive, metric) {
            Some(tuned) => {
                self.threshold = Some(tuned.threshold);
                let source = format!("tuned on the {} {items}: maximises {} ({:.4})", truth.len(), metric.name(), tuned.value);
                (Some(source), Some((metric, tuned.curve)))
            }
            None => {
                warnings.push(format!(
                    "--threshold auto: {split} has one class only, or one score for every image, so there is nothing to tune; the decision threshold is 0.5 (classes: {})",
                    self.classes.join(", ")
                ));
                (Some(format!("0.5: nothing to tune on {split}")), None)
            }
        }
    }

    /// A cross-validated ensemble's decisions. Each member's probabilities are calibrated by its
    /// own fold's temperature (`temperatures`) before they are averaged, so the ensemble's own
    /// temperature is 1. A binary threshold is tuned on the out-of-fold probabilities `oof`
    /// (truth `truth`), the images no member that scored them trained on.
    pub fn ensemble_decisions(&self, oof: &[Vec<f32>], truth: &[usize], temperatures: &[f32], cfg: &TrainConfig, warnings: &mut Vec<String>) -> (Classifier, Decisions) {
        let mut c = Classifier { temperature: 1.0, ..self.clone() };
        let listed = temperatures.iter().map(|t| format!("{t:.4}")).collect::<Vec<_>>().join(", ");
        let temperature_source = match cfg.calibrate {
            CalibrationChoice::None => "none (--calibrate none): the ensemble averages its fold models' own probabilities".to_string(),
            CalibrationChoice::Temperature => format!("each fold model's own, fitted on its validation fold ({listed}), before its probabilities are averaged"),
        };
        let scored = Some((oof.iter().map(|p| p[1]).collect(), truth));
        let (threshold_source, threshold_curve) = c.decide_threshold(scored, cfg, ("the out-of-fold set", "out-of-fold predictions"), warnings);
        let decisions = Decisions { temperature: 1.0, temperature_source, threshold: c.threshold, threshold_source, threshold_curve };
        (c, decisions)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Task;
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("c{i}")).collect()
    }

    fn three() -> Classifier {
        Classifier::new(TaskKind::Classification, &["a".into(), "b".into(), "c".into()], None, "label", "m.csv").unwrap()
    }

    #[test]
    fn a_training_task_checks_its_classes_and_threshold() {
        let e = |r: Result<Classifier>| format!("{:#}", r.expect_err("an error"));
        assert!(e(Classifier::new(TaskKind::Classification, &names(1), None, "dx", "m.csv")).contains("single class ('c0')"));
        assert!(e(Classifier::new(TaskKind::Binary, &names(3), None, "dx", "m.csv")).contains("has 3 (c0, c1, c2)"));
        assert!(e(Classifier::new(TaskKind::Classification, &names(2), Some(0.3), "dx", "m.csv")).contains("binary only"));
        let t = Classifier::new(TaskKind::Binary, &names(2), Some(0.3), "dx", "m.csv").unwrap();
        assert_eq!(Task::Classify(t.clone()).head_outputs(), 2);
        assert_eq!(t.decide(&[0.65, 0.35]), 1, "0.35 reaches the threshold 0.3");
        assert_eq!(t.confidence(&[0.65, 0.35]), 0.35);
        assert_eq!(t.describe(), "binary, decision threshold 0.3 on the probability of 'c1'");
    }

    #[test]
    fn the_report_shows_each_class_then_mistakes_then_uncertain_images() {
        let scores = vec![
            vec![0.9, 0.05, 0.05], // 0: a, right
            vec![0.6, 0.3, 0.1],   // 1: a, right, less sure
            vec![0.1, 0.8, 0.1],   // 2: b, right
            vec![0.7, 0.2, 0.1],   // 3: c, predicted a (a mistake)
            vec![0.2, 0.5, 0.3],   // 4: c, predicted b (a surer-less mistake)
        ];
        let truth = [0, 0, 1, 2, 2];
        let picks = three().report_picks(&scores, &truth, 5);
        let order: Vec<(usize, i64)> = picks.iter().map(|p| (p.position, p.target)).collect();
        // No correct c: the classes a and b, the mistakes by confidence, then the uncertain rest.
        assert_eq!(order, [(0, 0), (2, 1), (3, 0), (4, 1), (1, 0)]);
        assert!(picks[0].why.contains("most confident correct a") && picks[2].why.contains("true c, predicted a"));
        assert!(picks[4].why.contains("the least confident correct a (60.0%)"), "{}", picks[4].why);
        assert_eq!(three().report_picks(&scores, &truth, 2).len(), 2);
        assert_eq!(three().report_picks(&scores, &truth, 50).len(), 5, "never an image twice");
    }

    #[test]
    fn predict_explains_the_least_confident_first() {
        let scores = vec![vec![0.9, 0.05, 0.05], vec![0.4, 0.35, 0.25], vec![0.1, 0.8, 0.1]];
        let picks = three().predict_picks(&scores, 2);
        assert_eq!(picks.iter().map(|p| p.position).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(picks[1].target, 1);
    }

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

    fn binary() -> Classifier {
        Classifier::new(TaskKind::Binary, &["benign".into(), "malignant".into()], None, "dx", "m.csv").unwrap()
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
        let (c, d) = binary().fit_decisions(Some((&logits, &truth)), &cfg(""), &mut warnings);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(c.temperature > 1.0, "overconfident logits are cooled: {}", c.temperature);
        let t = c.threshold.unwrap();
        // Every image above the cut is positive and every one below negative, bar one.
        let decided: Vec<usize> = c.probabilities(&logits).iter().map(|p| c.decide(p)).collect();
        let wrong = decided.iter().zip(&truth).filter(|(a, b)| a != b).count();
        assert_eq!(wrong, 1, "threshold {t}");
        assert!(d.threshold_source.unwrap().contains("maximises f1"));
        assert!(d.temperature_source.starts_with("fitted on the 40 validation images"));
    }

    #[test]
    fn a_fixed_threshold_is_kept_and_no_validation_falls_back_with_warnings() {
        let (logits, truth) = validation();
        let mut warnings = Vec::new();
        let (c, d) = binary().fit_decisions(Some((&logits, &truth)), &cfg("--threshold 0.3 --calibrate none"), &mut warnings);
        assert_eq!((c.threshold, c.temperature), (Some(0.3), 1.0));
        assert_eq!(d.threshold_source.as_deref(), Some("set with --threshold"));
        let (c, d) = binary().fit_decisions(None, &cfg(""), &mut warnings);
        assert_eq!((c.threshold, c.temperature), (Some(0.5), 1.0));
        assert!(d.threshold_source.unwrap().contains("no validation split"));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("--calibrate temperature needs a validation split"));
    }

    #[test]
    fn a_multiclass_task_gets_a_temperature_and_no_threshold() {
        let c = three();
        let logits = vec![vec![5.0, 0.0, 0.0], vec![0.0, 5.0, 0.0], vec![0.0, 0.0, 5.0], vec![5.0, 0.0, 0.0]];
        let truth = [0, 1, 2, 1];
        let (calibrated, d) = c.fit_decisions(Some((&logits, &truth)), &cfg(""), &mut Vec::new());
        assert!(d.threshold.is_none() && d.threshold_source.is_none());
        let before: Vec<usize> = c.probabilities(&logits).iter().map(|p| c.decide(p)).collect();
        let after: Vec<usize> = calibrated.probabilities(&logits).iter().map(|p| calibrated.decide(p)).collect();
        assert_eq!(before, after, "temperature never changes the most probable class");
        assert_ne!(calibrated.temperature, 1.0);
    }

    #[test]
    fn label_smoothing_spreads_its_share_over_every_class() {
        let t = Classifier::new(TaskKind::Classification, &names(3), None, "y", "m.csv").unwrap();
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
    }
}
