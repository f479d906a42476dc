//! A regression: the target column, its scale (the network predicts the standardised value) and
//! loss, the figures, the Predictions CSV and the images worth explaining.
use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use super::Pick;
use crate::bail_input;
use crate::config::RegressionLoss;
use crate::data::metadata::{parse_value, Row};
use crate::metrics::{regression, Figures, Intervals};

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
    /// The target `column`, scaled by the training split's values `train`.
    pub fn fit(train: &[f64], column: &str, loss: RegressionLoss, threshold: Option<f32>) -> Result<Target> {
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
        Ok(Target { column: column.to_string(), mean, sd, loss })
    }

    fn standardise(&self, v: f64) -> f64 {
        (v - self.mean) / self.sd
    }

    /// `predict`: refuses class names in the label column, naming the first.
    pub fn check_labels(&self, present: &[&Row], column: &str, file: &str) -> Result<()> {
        if let Some(r) = present.iter().find(|r| parse_value(&r.label).is_none()) {
            bail_input!(
                "this Best Model is a regression of '{}' and predicts a number, but the label column '{column}' of {file} \
                 holds class names (line {}: '{}'). Use a classification model, or leave the label column out",
                self.column,
                r.line,
                crate::error::short(&r.label)
            );
        }
        Ok(())
    }

    /// The chosen loss of the output against the standardised target.
    pub fn loss(&self, output: &Tensor, targets: &Tensor) -> Tensor {
        // Standardised in float64, so that a target far from 0 keeps its differences.
        let z = ((targets.to_kind(Kind::Double) - self.mean) / self.sd).to_kind(Kind::Float);
        let out = output.to_kind(Kind::Float).squeeze_dim(-1);
        match self.loss {
            RegressionLoss::Mse => out.mse_loss(&z, Reduction::Mean),
            RegressionLoss::Mae => out.l1_loss(&z, Reduction::Mean),
            RegressionLoss::Huber => out.huber_loss(&z, Reduction::Mean, 1.0),
        }
    }

    /// The loss of predicted values against true ones, in the units training minimises (as
    /// `loss`, for the validation figures).
    fn value_loss(&self, truth: &[f64], predicted: &[f64]) -> f64 {
        let cost = |d: f64| match self.loss {
            RegressionLoss::Mse => d * d,
            RegressionLoss::Mae => d.abs(),
            RegressionLoss::Huber => if d.abs() < 1.0 { 0.5 * d * d } else { d.abs() - 0.5 },
        };
        let sum: f64 = truth.iter().zip(predicted).map(|(&y, &p)| cost(self.standardise(p) - self.standardise(y))).sum();
        sum / truth.len().max(1) as f64
    }

    /// The predicted values, in the target's units, from the one-column scores.
    pub fn predicted_values(&self, scores: &[Vec<f32>]) -> Vec<f64> {
        scores.iter().map(|s| self.mean + self.sd * f64::from(s[0])).collect()
    }

    pub fn figures(&self, truth: &[f64], scores: &[Vec<f32>]) -> Figures {
        let predicted = self.predicted_values(scores);
        let loss = self.value_loss(truth, &predicted);
        Figures::Regression { loss, figures: regression::compute(truth, &predicted) }
    }

    pub fn intervals(&self, truth: &[f64], scores: &[Vec<f32>], seed: u64) -> Option<Intervals> {
        regression::bootstrap(truth, &self.predicted_values(scores), super::BOOTSTRAP_RESAMPLES, seed)
    }

    /// The Predictions CSV: `image_path, [split], [true_value], predicted_value, [error]`, the
    /// error being predicted minus true. `truth` holds the target column's text.
    pub fn predictions_csv(&self, images: &[String], truth: Option<&[String]>, scores: &[Vec<f32>], splits: Option<&[String]>) -> Result<Vec<u8>> {
        let predicted = self.predicted_values(scores);
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

    pub fn describe(&self) -> String {
        format!(
            "regression of '{}' ({} loss on the target standardised with the training mean {:.4} and standard deviation {:.4})",
            self.column,
            self.loss.name(),
            self.mean,
            self.sd
        )
    }

    /// The report's picks among the test images, true values `values`: the highest and the
    /// lowest prediction, then the largest errors. Ties go to the earlier image.
    pub fn report_picks(&self, scores: &[Vec<f32>], values: &[f64], limit: usize) -> Vec<Pick> {
        let mut picks: Vec<Pick> = Vec::new();
        let predicted = self.predicted_values(scores);
        let mut order: Vec<usize> = (0..predicted.len()).collect();
        order.sort_by(|&a, &b| predicted[b].total_cmp(&predicted[a]).then(a.cmp(&b)));
        if let (Some(&high), Some(&low)) = (order.first(), order.last()) {
            Pick::push(&mut picks, limit, high, 0, format!("the highest prediction, {:.4}", predicted[high]));
            Pick::push(&mut picks, limit, low, 0, format!("the lowest prediction, {:.4}", predicted[low]));
        }
        let error = |i: usize| (predicted[i] - values[i]).abs();
        order.sort_by(|&a, &b| error(b).total_cmp(&error(a)).then(a.cmp(&b)));
        for i in order {
            Pick::push(&mut picks, limit, i, 0, format!("a large error: true {:.4}, predicted {:.4}", values[i], predicted[i]));
        }
        picks
    }

    /// predict's picks: the images in their listed order (a value has no confidence).
    pub fn predict_picks(&self, scores: &[Vec<f32>], limit: usize) -> Vec<Pick> {
        (0..scores.len()).take(limit).map(|i| Pick { position: i, target: 0, why: "the predicted value".into() }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{rows, Task};
    use super::*;

    #[test]
    fn a_regression_task_scales_by_the_training_split() {
        let t = Target::fit(&[1.0, 3.0], "age", RegressionLoss::Mse, None).unwrap();
        assert_eq!((t.mean, t.sd, Task::Regress(t.clone()).head_outputs()), (2.0, 1.0, 1));
        let e = |r: Result<Target>| format!("{:#}", r.expect_err("an error"));
        assert!(e(Target::fit(&[4.0, 4.0], "age", RegressionLoss::Mse, None)).contains("same target (4)"));
        assert!(e(Target::fit(&[1.0, 3.0], "age", RegressionLoss::Mse, Some(0.5))).contains("binary only"));
        // The predicted values are in the target's units; the loss is on the standardised
        // scale, as the network is trained.
        let out = Tensor::from_slice(&[0.5f32, -1.0]).view([2, 1]);
        let task = Task::Regress(t.clone());
        assert_eq!(t.predicted_values(&rows(&task.scores(&out))), vec![2.5, 1.0]);
        // A billion added to every target shifts the values by a billion, to the last unit.
        let far = Target::fit(&[1e9 + 1.0, 1e9 + 3.0], "age", RegressionLoss::Mse, None).unwrap();
        assert_eq!(far.predicted_values(&rows(&Task::Regress(far.clone()).scores(&out))), vec![1e9 + 2.5, 1e9 + 1.0]);
        let z = far.loss(&Tensor::from_slice(&[0.0f32]).view([1, 1]), &Tensor::from_slice(&[1e9 + 3.0])).double_value(&[]);
        assert!((z - 1.0).abs() < 1e-6, "the target 1e9 + 3 is one standard deviation above the mean: loss {z}");
        let y = Tensor::from_slice(&[2.5f64, 3.0]);
        let mse = t.loss(&out, &y).double_value(&[]);
        assert!((mse - (0.0 + 4.0) / 2.0).abs() < 1e-6, "{mse}");
        assert!((t.value_loss(&[2.5, 3.0], &[2.5, 1.0]) - mse).abs() < 1e-6, "the validation loss is the training loss");
        let huber = Target::fit(&[1.0, 3.0], "age", RegressionLoss::Huber, None).unwrap();
        assert!((huber.loss(&out, &y).double_value(&[]) - 0.75).abs() < 1e-6, "|d| = 2 costs 1.5");
        assert!((huber.value_loss(&[2.5, 3.0], &[2.5, 1.0]) - 0.75).abs() < 1e-9);
        let csv = String::from_utf8(t.predictions_csv(&["a.png".into()], Some(&["3".into()]), &[vec![0.5]], None).unwrap()).unwrap();
        assert_eq!(csv, "image_path,true_value,predicted_value,error\na.png,3,2.500000,-0.500000\n");
    }

    #[test]
    fn a_regression_shows_its_extremes_then_its_largest_errors() {
        // Mean 0 and standard deviation 1: the scores are the values.
        let t = Target::fit(&[-1.0, 1.0], "age", RegressionLoss::Mse, None).unwrap();
        let scores = vec![vec![5.0], vec![1.0], vec![3.0], vec![2.0]];
        let values = [5.0, 1.0, 9.0, 2.5];
        let picks = t.report_picks(&scores, &values, 3);
        assert_eq!(picks.iter().map(|p| p.position).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(picks.iter().all(|p| p.target == 0));
        assert!(picks[2].why.contains("true 9.0000, predicted 3.0000"));
        assert_eq!(t.predict_picks(&scores, 9).iter().map(|p| p.position).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }
}
