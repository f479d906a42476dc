//! The training loop: optimiser, epochs, validation, best-epoch selection, early stopping, and
//! the evaluation pass that every split and `predict` share.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use crate::bail_input;
use crate::config::{Augmentation, OptimizerKind, ValidationMetric};
use crate::data::batches::{Batch, EpochBatches, Normalization};
use crate::data::ImageSet;
use crate::metrics;
use crate::models::Network;
use crate::optimizer::Optimizer;
use crate::precision::Compute;

pub struct TrainSettings {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub optimizer: OptimizerKind,
    pub weight_decay: f64,
    pub early_stop: Option<usize>,
    pub validation_metric: ValidationMetric,
    /// Freeze everything but the head (`--fine-tune false`).
    pub frozen_backbone: bool,
    pub head_prefix: String,
    pub augmentation: Vec<Augmentation>,
    pub seed: u64,
    pub compute: Compute,
    pub normalization: Normalization,
}

#[derive(Clone, Debug, Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// Train figures come from the epoch's own (augmented, train-mode) batches.
    pub train_macro_f1: f64,
    pub train_roc_auc: Option<f64>,
    pub validation_loss: Option<f64>,
    pub validation_accuracy: Option<f64>,
    pub validation_macro_f1: Option<f64>,
    pub validation_roc_auc: Option<f64>,
    /// The figure that picks the best epoch (validation loss, accuracy, ...).
    pub validation_score: Option<f64>,
    pub learning_rate: f64,
    pub seconds: f64,
    /// Seconds the trainer spent waiting for batches.
    pub data_wait_seconds: f64,
}

pub struct TrainOutcome {
    pub history: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub stopped_early: bool,
    /// Set when the loss became NaN or infinite: the epoch, and training stopped there.
    pub diverged_at: Option<usize>,
    /// The best epoch's validation probabilities, in `val_idx` order (None without validation
    /// images). The restored best weights give exactly these again, so they are not recomputed.
    pub best_validation_probs: Option<Vec<Vec<f32>>>,
    /// The best epoch's own training pass (augmented images, train mode): the truth and the
    /// probabilities, in the order the batches came.
    pub best_training_pass: (Vec<usize>, Vec<Vec<f32>>),
}

fn snapshot(vs: &nn::VarStore) -> HashMap<String, Tensor> {
    tch::no_grad(|| vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect())
}

fn restore(vs: &nn::VarStore, state: &HashMap<String, Tensor>) {
    tch::no_grad(|| {
        for (k, mut v) in vs.variables() {
            v.copy_(&state[&k]);
        }
    });
}

fn to_device(b: &Batch, size: usize, compute: &Compute) -> (Tensor, Tensor) {
    let n = b.labels.len() as i64;
    let s = size as i64;
    let x = Tensor::from_slice(&b.pixels).view([n, 3, s, s]);
    let y = Tensor::from_slice(&b.labels);
    (compute.input(x), y.to_device(compute.device))
}

/// Softmax probabilities for images `indices` of `set`, in that order, in eval mode.
pub fn predict_probs(
    net: &Network,
    set: &Arc<ImageSet>,
    indices: &[usize],
    batch_size: usize,
    norm: Normalization,
    compute: &Compute,
) -> Vec<Vec<f32>> {
    let k = set.classes.len();
    let mut out = Vec::with_capacity(indices.len());
    tch::no_grad(|| {
        for b in EpochBatches::evaluation(set.clone(), indices, batch_size, norm) {
            let (x, _) = to_device(&b, set.size, compute);
            let p = compute.run(|| net.forward(&x, false, false)).softmax(-1, Kind::Float).to_device(Device::Cpu);
            let flat: Vec<f32> = Vec::<f32>::try_from(p.flatten(0, -1)).expect("float probabilities");
            out.extend(flat.chunks(k).map(<[f32]>::to_vec));
        }
    });
    out
}

/// The batch size of every evaluation pass (validation during training, the final evaluation,
/// `predict`): one value, so that the final figures reuse the validation pass bit for bit.
pub fn evaluation_batch_size(training_batch_size: usize) -> usize {
    training_batch_size.max(64)
}

/// Test hook: `IMAGE_LEARNER_FAULT_NAN_EPOCH=N` makes the loss of epoch N read as NaN, so the
/// divergence handling can be tested without waiting for a real divergence.
fn fault_nan_epoch() -> Option<usize> {
    std::env::var("IMAGE_LEARNER_FAULT_NAN_EPOCH").ok().and_then(|v| v.parse().ok())
}

fn validation_score(metric: ValidationMetric, m: &metrics::Metrics) -> Option<f64> {
    match metric {
        ValidationMetric::Loss => Some(m.log_loss),
        ValidationMetric::Accuracy => Some(m.accuracy),
        ValidationMetric::MacroF1 => Some(m.macro_f1),
        ValidationMetric::RocAuc => m.roc_auc_macro,
    }
}

/// Trains `net` (whose variables live in `vs`) and leaves the best epoch's weights in `vs`.
pub fn fit(
    net: &Network,
    vs: &mut nn::VarStore,
    set: &Arc<ImageSet>,
    train_idx: &[usize],
    val_idx: &[usize],
    s: &TrainSettings,
) -> Result<TrainOutcome> {
    if s.frozen_backbone {
        let head = format!("{}.", s.head_prefix);
        for (name, var) in vs.variables() {
            if !name.starts_with(&head) {
                let _ = var.set_requires_grad(false);
            }
        }
    }
    let mut opt = Optimizer::new(vs, s.optimizer, s.learning_rate, s.weight_decay)?;
    let mut history = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    let mut best_state = None;
    let mut best_validation_probs = None;
    let mut best_training_pass = (Vec::new(), Vec::new());
    let mut since_best = 0;
    let mut stopped_early = false;
    let mut diverged_at = None;
    for epoch in 1..=s.epochs {
        let started = Instant::now();
        let batches = EpochBatches::training(
            set.clone(),
            train_idx,
            s.batch_size,
            s.normalization,
            s.augmentation.clone(),
            s.seed,
            epoch,
        );
        let n_batches = train_idx.len().div_ceil(s.batch_size) as u64;
        let bar = ProgressBar::new(n_batches).with_style(
            ProgressStyle::with_template("  epoch {msg} [{bar:30}] {pos}/{len} batches, {eta} left")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("{epoch}/{}", s.epochs));
        let (mut loss_sum, mut seen) = (0f64, 0usize);
        let mut epoch_truth: Vec<usize> = Vec::with_capacity(train_idx.len());
        let mut epoch_probs: Vec<Vec<f32>> = Vec::with_capacity(train_idx.len());
        let mut wait = 0f64;
        let mut waited = Instant::now();
        for b in batches {
            wait += waited.elapsed().as_secs_f64();
            let (x, y) = to_device(&b, set.size, &s.compute);
            let (logits, loss) = s.compute.run(|| {
                let logits = net.forward(&x, true, s.frozen_backbone);
                let loss = logits.cross_entropy_for_logits(&y);
                (logits, loss)
            });
            opt.backward_step(&loss)?;
            let mut l = loss.double_value(&[]);
            if fault_nan_epoch() == Some(epoch) {
                l = f64::NAN;
            }
            if !l.is_finite() {
                diverged_at = Some(epoch);
                break;
            }
            let n = b.labels.len();
            loss_sum += l * n as f64;
            seen += n;
            let probs = logits.detach().softmax(-1, Kind::Float).to_device(Device::Cpu);
            let flat = Vec::<f32>::try_from(probs.flatten(0, -1)).expect("float probabilities");
            epoch_probs.extend(flat.chunks(set.classes.len()).map(<[f32]>::to_vec));
            epoch_truth.extend(b.labels.iter().map(|&l| l as usize));
            bar.inc(1);
            waited = Instant::now();
        }
        bar.finish_and_clear();
        if let Some(e) = diverged_at {
            eprintln!("epoch {e}: the training loss became NaN or infinite; training stops here (try a lower --learning-rate)");
            break;
        }
        let val_probs = (!val_idx.is_empty())
            .then(|| predict_probs(net, set, val_idx, evaluation_batch_size(s.batch_size), s.normalization, &s.compute));
        let val = val_probs.as_ref().map(|probs| {
            let truth: Vec<usize> = val_idx.iter().map(|&i| set.labels[i]).collect();
            metrics::compute(&truth, probs, &set.classes)
        });
        let (val_loss, val_acc) = (val.as_ref().map(|m| m.log_loss), val.as_ref().map(|m| m.accuracy));
        let score = val.as_ref().and_then(|m| validation_score(s.validation_metric, m));
        let train_m = metrics::compute(&epoch_truth, &epoch_probs, &set.classes);
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: train_m.accuracy,
            train_macro_f1: train_m.macro_f1,
            train_roc_auc: train_m.roc_auc_macro,
            validation_loss: val_loss,
            validation_accuracy: val_acc,
            validation_macro_f1: val.as_ref().map(|m| m.macro_f1),
            validation_roc_auc: val.as_ref().and_then(|m| m.roc_auc_macro),
            validation_score: score,
            learning_rate: s.learning_rate,
            seconds: started.elapsed().as_secs_f64(),
            data_wait_seconds: wait,
        };
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        eprintln!(
            "epoch {epoch}/{}: train loss {:.4} acc {:.4} | validation loss {} acc {} | {:.1} s",
            s.epochs,
            record.train_loss,
            record.train_accuracy,
            fmt(val_loss),
            fmt(val_acc),
            record.seconds
        );
        history.push(record);
        // Without validation images (or a score), the last epoch counts as the best.
        let improved = match (score, best) {
            (None, _) => true,
            (Some(_), None) => true,
            (Some(v), Some((_, b))) => {
                if s.validation_metric.higher_is_better() { v > b } else { v < b }
            }
        };
        if improved {
            best = Some((epoch, score.unwrap_or(f64::NAN)));
            best_state = Some(snapshot(vs));
            best_validation_probs = val_probs;
            best_training_pass = (epoch_truth, epoch_probs);
            since_best = 0;
        } else {
            since_best += 1;
            if s.early_stop.is_some_and(|patience| since_best >= patience) {
                eprintln!("early stopping: no validation improvement for {since_best} epochs");
                stopped_early = true;
                break;
            }
        }
    }
    let Some((best_epoch, _)) = best else {
        bail_input!(
            "the training loss became NaN in the first epoch, so there is no model to keep; \
             lower --learning-rate (now {}) and check the images",
            s.learning_rate
        );
    };
    restore(vs, best_state.as_ref().expect("state saved with the best epoch"));
    Ok(TrainOutcome { history, best_epoch, stopped_early, diverged_at, best_validation_probs, best_training_pass })
}
