//! Evaluation, shared by training (each epoch's validation pass), the final figures and
//! `predict`: a model's outputs for a list of images, in eval mode, turned into scores by the
//! task; the final figures of a run; and the model of a saved Best Model, ready for that.
use std::sync::Arc;

use anyhow::Result;
use tch::{nn, Tensor};

use crate::config::{PredictionsScope, TrainConfig};
use crate::data::batches::{Batch, EpochBatches, Normalization};
use crate::data::split::{Split, SplitPlan};
use crate::data::ImageSet;
use crate::metrics::{Figures, Intervals};
use crate::models::{self, Network};
use crate::precision::Compute;
use crate::task::Task;
use crate::weights::bundle::Bundle;

/// A batch's images and labels (regression: targets) as tensors on the compute device, in its
/// layout.
pub fn batch_tensors(b: &Batch, size: usize, compute: &Compute) -> (Tensor, Tensor) {
    let n = b.labels.len() as i64;
    let s = size as i64;
    let x = Tensor::from_slice(&b.pixels).view([n, 3, s, s]);
    let y = if b.targets.is_empty() { Tensor::from_slice(&b.labels) } else { Tensor::from_slice(&b.targets) };
    (compute.input(x), y.to_device(compute.device))
}

pub use crate::task::rows;

/// What an evaluation pass needs: the model, the task, the images and how to run them.
pub struct Evaluator<'a> {
    pub net: &'a Network,
    pub task: &'a Task,
    pub set: &'a Arc<ImageSet>,
    pub batch_size: usize,
    pub normalization: Normalization,
    pub compute: &'a Compute,
}

impl Evaluator<'_> {
    /// The network's outputs (logits, as float32) for images `indices` of the set, in that
    /// order, in eval mode.
    pub fn logits(&self, indices: &[usize]) -> Vec<Vec<f32>> {
        let mut out = Vec::with_capacity(indices.len());
        tch::no_grad(|| {
            for b in EpochBatches::evaluation(self.set.clone(), indices, self.batch_size, self.normalization) {
                let (x, _) = batch_tensors(&b, self.set.size, self.compute);
                out.extend(rows(&self.compute.run(|| self.net.forward(&x, false, false)).to_kind(tch::Kind::Float)));
            }
        });
        out
    }

    /// The task's scores for images `indices`, in that order.
    pub fn scores(&self, indices: &[usize]) -> Vec<Vec<f32>> {
        self.task.probabilities(&self.logits(indices))
    }
}

/// The batch size of every evaluation pass (validation during training, the final evaluation,
/// `predict`): one value, so that the final figures reuse the validation pass bit for bit.
pub fn batch_size(training_batch_size: usize) -> usize {
    training_batch_size.max(64)
}

/// The model of a Best Model, its weights loaded, ready for evaluation.
pub fn network_from_bundle(b: &Bundle, compute: &Compute) -> Result<(nn::VarStore, Network, &'static models::ModelSpec)> {
    let spec = models::find(&b.config.architecture)?;
    let mut vs = nn::VarStore::new(compute.device);
    let net = spec.build(&vs.root(), b.task().head_outputs());
    crate::weights::copy_variables(&mut vs, None, &b.tensors)?;
    compute.prepare(&vs);
    Ok((vs, net, spec))
}

/// The final figures of a training run, per split, and the scores behind them.
pub struct FinalFigures {
    pub train: Figures,
    pub validation: Option<Figures>,
    pub test: Figures,
    /// The training images evaluated again with the best weights (None: the train figures are
    /// the best epoch's own training pass).
    pub train_scores: Option<Vec<Vec<f32>>>,
    pub validation_scores: Option<Vec<Vec<f32>>>,
    pub test_scores: Vec<Vec<f32>>,
    /// The network's outputs behind the validation and test scores (before the temperature).
    pub validation_logits: Option<Vec<Vec<f32>>>,
    pub test_logits: Vec<Vec<f32>>,
    /// Bootstrap 95% intervals of the test figures.
    pub test_intervals: Option<Intervals>,
}

impl FinalFigures {
    /// Validation: the best epoch's pass, which the restored weights repeat exactly. Train: the
    /// best epoch's own training pass, unless asked to evaluate the training images again (or
    /// every image's prediction is wanted). Test: evaluated now, once. Validation and test are
    /// decided as `ev.task` decides (its temperature and threshold).
    /// `best_training_pass`: the best epoch's images and scores; `best_validation`: its
    /// validation logits.
    pub fn compute(
        ev: &Evaluator,
        plan: &SplitPlan,
        best_training_pass: &(Vec<usize>, Vec<Vec<f32>>),
        best_validation: Option<&Vec<Vec<f32>>>,
        cfg: &TrainConfig,
    ) -> FinalFigures {
        let (task, set) = (ev.task, ev.set.as_ref());
        // The sampler's training pass saw a balanced draw, not the training split; with a moving
        // average, the pass ran on the model's own weights, not the averaged ones kept.
        let again = cfg.evaluate_train
            || cfg.predictions == PredictionsScope::All
            || cfg.class_balance == crate::config::ClassBalance::Sampler
            || cfg.ema_decay > 0.0;
        let train_scores = again.then(|| ev.scores(&plan.train));
        let train = match &train_scores {
            Some(p) => task.figures(set, &plan.train, p),
            None => task.figures(set, &best_training_pass.0, &best_training_pass.1),
        };
        let validation_logits = best_validation.cloned();
        let validation_scores = validation_logits.as_ref().map(|l| task.probabilities(l));
        let validation = validation_scores.as_ref().map(|p| task.figures(set, &plan.validation, p));
        let test_logits = ev.logits(&plan.test);
        let test_scores = task.probabilities(&test_logits);
        let test = task.figures(set, &plan.test, &test_scores);
        let test_intervals = task.intervals(set, &plan.test, &test_scores, cfg.seed);
        FinalFigures {
            train,
            validation,
            test,
            train_scores,
            validation_scores,
            test_scores,
            validation_logits,
            test_logits,
            test_intervals,
        }
    }

    /// The figures per split, in split order (no validation entry without validation images).
    pub fn per_split(&self) -> Vec<(Split, &Figures)> {
        let mut out = vec![(Split::Train, &self.train)];
        if let Some(v) = &self.validation {
            out.push((Split::Validation, v));
        }
        out.push((Split::Test, &self.test));
        out
    }
}
