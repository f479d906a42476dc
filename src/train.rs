//! The training loop: optimiser, epochs, validation, best-epoch selection and early stopping.
//! The loss and the scores come from the task; each epoch's validation pass is `evaluation`'s.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tch::{nn, Tensor};

use crate::bail_input;
use crate::config::{OptimizerKind, TrainConfig, ValidationMetric};
use crate::data::batches::{self, EpochBatches, Normalization};
use crate::data::ImageSet;
use crate::evaluation::{self, ScoreRows, TrainingPass};
use crate::models::{ModelSpec, Network};
use crate::optimizer::Optimizer;
use crate::schedule::{self, Schedule};
use crate::precision::Compute;
use crate::data::balance::Balance;
use crate::task::Task;

pub struct TrainSettings {
    pub model: &'static str,
    pub task: Task,
    pub epochs: usize,
    pub batch_size: usize,
    /// The learning rate of every step: its peak and shape.
    pub schedule: schedule::Plan,
    pub optimizer: OptimizerKind,
    pub weight_decay: f64,
    /// `--ema-decay` (0: no moving average).
    pub ema_decay: f64,
    pub label_smoothing: f64,
    /// What the training does about unequal classes (`data::balance`).
    pub balance: Balance,
    pub early_stop: Option<usize>,
    pub validation_metric: ValidationMetric,
    /// Freeze everything but the head (`--fine-tune false`).
    pub frozen_backbone: bool,
    /// `--freeze-epochs`: the first epochs train the head (and batch norm) alone.
    pub freeze_epochs: usize,
    /// `--backbone-lr-mult` and `--layer-decay`.
    pub backbone_lr_mult: f64,
    pub layer_decay: f64,
    /// Which variables form the head and each backbone stage.
    pub spec: &'static ModelSpec,
    pub head_prefix: String,
    pub augmentation: crate::data::augment::Plan,
    /// `--tta`: the views every evaluation pass averages.
    pub tta: crate::config::Tta,
    pub seed: u64,
    pub compute: Compute,
    pub normalization: Normalization,
    /// Cross-validation: this model's fold and the number of folds (1-based), for the log and
    /// the Training History.
    pub fold: Option<(usize, usize)>,
    /// A bar over the whole run, when this model is one of several (cross-validation); else
    /// each epoch draws its own.
    pub run_bar: Option<RunBar>,
}

/// A progress bar of `len` steps, counted as `what`, with its message (the fold and epoch) first.
fn bar(len: u64, what: &str) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(&format!("  {{msg}} [{{bar:30}}] {{pos}}/{{len}} {what}, {{eta}} left"))
            .expect("valid template")
            .progress_chars("=> "),
    )
}

/// The progress bar of a run that trains several models one after another (cross-validation's
/// folds). Its length is every model's planned steps; a model that stops early (early stopping,
/// or a loss that became NaN) takes its unrun steps off, so the bar ends full and its time left
/// stays honest.
#[derive(Clone)]
pub struct RunBar {
    bar: ProgressBar,
    planned: Vec<u64>,
}

impl RunBar {
    /// A bar for models that plan `planned[m]` steps each, drawn on the terminal (hidden where
    /// stderr is not one, as in Galaxy's logs).
    pub fn new(planned: Vec<u64>) -> RunBar {
        RunBar { bar: bar(planned.iter().sum(), "batches of the run"), planned }
    }

    /// The steps done so far, to pass to `settle` when model `m` ends.
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Model `m` has ended; it began at `started` (`position` then). Its unrun steps leave the
    /// bar's length.
    pub fn settle(&self, m: usize, started: u64) {
        let done = self.bar.position().saturating_sub(started);
        let unrun = self.planned[m].saturating_sub(done);
        self.bar.set_length(self.bar.length().unwrap_or(0).saturating_sub(unrun));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl TrainSettings {
    /// The loop's settings from the train options; `batch_size` as `fitting_batch_size` chose it.
    pub fn new(cfg: &TrainConfig, spec: &'static ModelSpec, task: Task, batch_size: usize, balance: Balance, compute: Compute) -> TrainSettings {
        TrainSettings {
            model: spec.name,
            task,
            epochs: cfg.epochs,
            batch_size,
            schedule: schedule::Plan::from_config(cfg),
            optimizer: cfg.optimizer,
            weight_decay: cfg.weight_decay,
            ema_decay: cfg.ema_decay.unwrap_or(0.0),
            label_smoothing: cfg.label_smoothing.unwrap_or(0.0),
            balance,
            early_stop: cfg.early_stop,
            validation_metric: cfg.validation_metric,
            frozen_backbone: !cfg.fine_tune,
            freeze_epochs: cfg.freeze_epochs,
            backbone_lr_mult: cfg.backbone_lr_mult,
            layer_decay: cfg.layer_decay,
            spec,
            head_prefix: spec.head_prefix.to_string(),
            augmentation: crate::data::augment::Plan { augs: cfg.augmentation.clone(), crop_scale: cfg.crop_scale.0 },
            tta: cfg.tta,
            seed: cfg.seed,
            compute,
            normalization: spec.normalization,
            fold: None,
            run_bar: None,
        }
    }

    /// The evaluation pass of this run's validation and final figures.
    pub fn evaluator<'a>(&'a self, net: &'a Network, set: &'a Arc<ImageSet>) -> evaluation::Evaluator<'a> {
        evaluation::Evaluator {
            net,
            task: &self.task,
            set,
            batch_size: evaluation::batch_size(self.batch_size),
            normalization: self.normalization,
            compute: &self.compute,
            tta: self.tta,
        }
    }
}

/// The training batch size: the one asked for, or the training set's size when that is smaller
/// (with a warning).
pub fn fitting_batch_size(asked: usize, training_images: usize, warnings: &mut Vec<String>) -> usize {
    if asked <= training_images {
        return asked;
    }
    warnings.push(format!(
        "--batch-size {asked} is larger than the training set ({training_images} images); using {training_images}"
    ));
    training_images
}

/// A model ready to train: its variables, its network, and the pretrained file it started from.
pub struct StartedModel {
    pub vs: nn::VarStore,
    pub net: Network,
    pub pretrained_file: Option<std::path::PathBuf>,
}

/// Builds `spec` with the task's head, seeded; loads the pretrained backbone from `weights_dir`
/// when given; lays the weights out for `compute`.
pub fn start_model(spec: &ModelSpec, task: &Task, seed: u64, weights_dir: Option<&std::path::Path>, compute: &Compute) -> Result<StartedModel> {
    tch::manual_seed(seed as i64);
    let mut vs = nn::VarStore::new(compute.device);
    let net = spec.build(&vs.root(), task.head_outputs());
    let pretrained_file = match weights_dir {
        Some(dir) => Some(crate::weights::load_pretrained(&mut vs, spec, dir)?),
        None => None,
    };
    compute.prepare(&vs);
    Ok(StartedModel { vs, net, pretrained_file })
}

#[derive(Clone, Debug, Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    /// The task's epoch figures (`Task::epoch_columns`: accuracy, macro F1 and ROC-AUC, or MAE,
    /// RMSE and R²). Train figures come from the epoch's own (augmented, train-mode) batches.
    pub train: [Option<f64>; 3],
    pub validation_loss: Option<f64>,
    pub validation: Option<[Option<f64>; 3]>,
    /// The figure that picks the best epoch (validation loss, accuracy, ...).
    pub validation_score: Option<f64>,
    /// The rate of the epoch's last step.
    pub learning_rate: f64,
    /// The rate of each of the epoch's steps (for the report's plot).
    #[serde(skip)]
    pub step_learning_rates: Vec<f64>,
    pub seconds: f64,
    /// Seconds the trainer spent waiting for batches.
    pub data_wait_seconds: f64,
    /// Whether this is its model's best epoch, the one kept.
    pub best: bool,
    /// Cross-validation: the fold whose model ran this epoch (1-based).
    pub fold: Option<usize>,
}

pub struct TrainOutcome {
    pub history: Vec<EpochRecord>,
    /// The learning-rate schedule the run followed.
    pub schedule: Schedule,
    pub best_epoch: usize,
    pub stopped_early: bool,
    /// Set when the loss became NaN or infinite: the epoch, and training stopped there.
    pub diverged_at: Option<usize>,
    /// The best epoch's validation logits, in `val_idx` order (None without validation images).
    /// The restored best weights give exactly these again, so they are not recomputed.
    pub best_validation_logits: Option<Vec<Vec<f32>>>,
    /// The best epoch's own training pass (augmented images, train mode).
    pub best_training_pass: TrainingPass,
    /// The figure that chose the best epoch: `--validation-metric`, or the loss when that figure
    /// could not be measured on the validation split (with why).
    pub validation_metric: ValidationMetric,
    pub metric_fallback: Option<String>,
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

/// The first variable (parameter or buffer) of `vs` holding a NaN or an infinity, by name.
pub fn first_non_finite(vs: &nn::VarStore) -> Option<String> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| vars.into_iter().find(|(_, t)| t.isfinite().all().int64_value(&[]) == 0).map(|(k, _)| k))
}

/// Whether the model normalises with batch statistics (it has running means and variances).
fn has_batch_norm(vs: &nn::VarStore) -> bool {
    vs.variables().keys().any(|k| k.ends_with("running_var"))
}

/// Test hook: `IMAGE_LEARNER_FAULT_OOM_STEP=N` makes training step N ask libtorch for far more
/// memory than any machine has, so that running out of memory in a step can be tested.
fn fault_oom_step() -> Option<usize> {
    std::env::var("IMAGE_LEARNER_FAULT_OOM_STEP").ok().and_then(|v| v.parse().ok())
}

/// Test hook: `IMAGE_LEARNER_FAULT_NAN_EPOCH=N` makes the loss of epoch N read as NaN, so the
/// divergence handling can be tested without waiting for a real divergence.
fn fault_nan_epoch() -> Option<usize> {
    std::env::var("IMAGE_LEARNER_FAULT_NAN_EPOCH").ok().and_then(|v| v.parse().ok())
}

/// Each variable's share of the scheduled rate: 1 for the head; for a backbone stage k of n
/// (0 the stem), `backbone_lr_mult * layer_decay^(n - k)`, so the last stage gets one decay
/// less than the stage before it and one more than the head, as timm's layer decay counts.
pub fn rate_multipliers(spec: &ModelSpec, names: &[String], backbone_lr_mult: f64, layer_decay: f64) -> HashMap<String, f64> {
    let (stage, n) = spec.stages(names.iter().map(String::as_str));
    names
        .iter()
        .map(|name| {
            let m = match stage.get(name.as_str()) {
                Some(&k) => backbone_lr_mult * layer_decay.powi((n - k) as i32),
                None => 1.0,
            };
            (name.clone(), m)
        })
        .collect()
}

/// The variables that `--freeze-epochs` holds still: the backbone's, except batch norm's scale
/// and shift, which keep training (as fastai's `freeze` does with `train_bn`), as do its
/// running statistics.
pub fn frozen_at_start(spec: &ModelSpec, vs: &nn::VarStore) -> Vec<Tensor> {
    let vars = vs.variables();
    let is_batch_norm = |name: &str| {
        let module = name.rsplit_once('.').map_or("", |(m, _)| m);
        vars.contains_key(&format!("{module}.running_mean"))
    };
    vars.iter()
        .filter(|(name, v)| v.requires_grad() && !spec.is_head(name) && !is_batch_norm(name))
        .map(|(_, v)| v.shallow_clone())
        .collect()
}

/// One epoch's pass over the training images: the images in the order seen with their scores
/// (the training figures), the loss and where the time went.
struct EpochPass {
    images: Vec<usize>,
    scores: ScoreRows,
    loss_sum: f64,
    seen: usize,
    /// Seconds spent waiting for the next batch.
    wait: f64,
    step_rates: Vec<f64>,
    /// The loss became NaN or infinite: the pass stopped at that step.
    diverged: bool,
}

/// What each training step uses and updates.
struct Trainer<'a> {
    net: &'a Network,
    set: &'a Arc<ImageSet>,
    s: &'a TrainSettings,
    opt: Optimizer,
    schedule: Schedule,
    ema: Option<crate::ema::Ema>,
    class_weights: Option<Tensor>,
    steps_per_epoch: usize,
}

impl Trainer<'_> {
    /// Epoch `epoch` over the training images `train_idx`, batch by batch, with a progress bar.
    fn epoch(&mut self, train_idx: &[usize], epoch: usize) -> Result<EpochPass> {
        let s = self.s;
        let batches = EpochBatches::training(
            self.set.clone(),
            train_idx,
            s.batch_size,
            s.normalization,
            s.augmentation.clone(),
            s.seed,
            epoch,
            s.balance == Balance::Sampler,
        );
        let fold = s.fold.map_or(String::new(), |(k, n)| format!("fold {k}/{n}, "));
        let bar = match &s.run_bar {
            Some(run) => run.bar.clone(),
            None => bar(self.steps_per_epoch as u64, "batches"),
        };
        bar.set_message(format!("{fold}epoch {epoch}/{}", s.epochs));
        let mut pass = EpochPass {
            images: Vec::with_capacity(train_idx.len()),
            scores: ScoreRows::new(train_idx.len()),
            loss_sum: 0.0,
            seen: 0,
            wait: 0.0,
            step_rates: Vec::with_capacity(self.steps_per_epoch),
            diverged: false,
        };
        let mut waited = Instant::now();
        for (i, b) in batches.enumerate() {
            let b = b?;
            pass.wait += waited.elapsed().as_secs_f64();
            let rate = self.schedule.at((epoch - 1) * self.steps_per_epoch + i);
            pass.step_rates.push(rate.lr);
            let Some((loss, scores)) = self.step(&b, rate, epoch, i + 1)? else {
                pass.diverged = true;
                break;
            };
            let n = b.labels.len();
            pass.loss_sum += loss * n as f64;
            pass.seen += n;
            pass.scores.push(&scores);
            pass.images.extend_from_slice(&b.indices);
            bar.inc(1);
            waited = Instant::now();
        }
        if s.run_bar.is_none() {
            bar.finish_and_clear();
        }
        Ok(pass)
    }

    /// Training step `step` (from 1) of epoch `epoch` on batch `b` at the scheduled `rate`: the
    /// forward pass, the loss, the update and the moving average. Returns the loss and the
    /// batch's scores (a tensor), or None when the loss is not finite.
    fn step(&mut self, b: &batches::Batch, rate: schedule::StepRate, epoch: usize, step: usize) -> Result<Option<(f64, Tensor)>> {
        let s = self.s;
        if fault_oom_step() == Some(step) {
            let _ = Tensor::zeros([1 << 50], (tch::Kind::Float, s.compute.device));
        }
        self.opt.set_rate(rate.lr, rate.momentum);
        let (x, y) = evaluation::batch_tensors(b, self.set.size, &s.compute);
        let (logits, loss) = s.compute.run(|| {
            let logits = self.net.forward(&x, true, s.frozen_backbone);
            let loss = s.task.loss(&logits, &y, s.label_smoothing, self.class_weights.as_ref());
            (logits, loss)
        });
        self.opt.backward_step(&loss)?;
        if let Some(e) = &mut self.ema {
            e.update();
        }
        let mut l = loss.double_value(&[]);
        if fault_nan_epoch() == Some(epoch) {
            l = f64::NAN;
        }
        Ok(l.is_finite().then(|| (l, s.task.scores(&logits.detach()))))
    }
}

/// Epoch `epoch`'s row of the Training History, logged as one line: the training pass's loss
/// and figures, the validation figures `val` and their `score`, the rates and the time.
fn summarise_epoch(s: &TrainSettings, set: &ImageSet, epoch: usize, pass: &EpochPass, val: Option<&crate::metrics::Figures>, score: Option<f64>, started: Instant) -> EpochRecord {
    let train_m = s.task.figures(set, &pass.images, &pass.scores.to_rows());
    let record = EpochRecord {
        epoch,
        train_loss: pass.loss_sum / pass.seen.max(1) as f64,
        train: train_m.epoch_values(),
        validation_loss: val.map(|m| m.loss()),
        validation: val.map(|m| m.epoch_values()),
        validation_score: score,
        learning_rate: pass.step_rates.last().copied().unwrap_or(s.schedule.peak),
        step_learning_rates: pass.step_rates.clone(),
        seconds: started.elapsed().as_secs_f64(),
        data_wait_seconds: pass.wait,
        best: false,
        fold: s.fold.map(|(k, _)| k),
    };
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    let short = s.task.log_figure();
    let fold = s.fold.map_or(String::new(), |(k, n)| format!("fold {k}/{n}, "));
    eprintln!(
        "{fold}epoch {epoch}/{}: train loss {:.4} {short} {} | validation loss {} {short} {} | {:.1} s",
        s.epochs,
        record.train_loss,
        fmt(record.train[0]),
        fmt(record.validation_loss),
        fmt(record.validation.and_then(|v| v[0])),
        record.seconds
    );
    record
}

/// Readies the variables for training: refuses batches of one image for batch normalisation,
/// freezes the backbone (`--fine-tune false`), gives each variable its rate multiplier in the
/// optimiser, and freezes the backbone for the first `--freeze-epochs`, returning those variables.
fn prepare(vs: &nn::VarStore, s: &TrainSettings) -> Result<(Optimizer, Vec<Tensor>)> {
    if s.batch_size < 2 && !s.frozen_backbone && has_batch_norm(vs) {
        // One image per batch gives batch normalisation no variance: its running statistics
        // become NaN and so does every prediction (PyTorch refuses this too).
        bail_input!(
            "{} normalises each batch, which needs at least 2 images per batch; the training batches \
             would hold 1. Use --batch-size 2 or more (or a model without batch normalisation, \
             such as convnext_tiny or caformer_s18)",
            s.model
        );
    }
    if s.frozen_backbone {
        let head = format!("{}.", s.head_prefix);
        for (name, var) in vs.variables() {
            if !name.starts_with(&head) {
                let _ = var.set_requires_grad(false);
            }
        }
    }
    let names: Vec<String> = vs.variables().into_keys().collect();
    let multipliers = rate_multipliers(s.spec, &names, s.backbone_lr_mult, s.layer_decay);
    let opt = Optimizer::new(vs, s.optimizer, s.schedule.peak, s.weight_decay, |n| multipliers[n])?;
    if s.backbone_lr_mult < 1.0 || s.layer_decay < 1.0 {
        let m = opt.multipliers();
        eprintln!("learning rates: the head at the scheduled rate, the backbone at {:.4} to {:.4} times it", m[0], m[m.len() - 2]);
    }
    let frozen = if s.freeze_epochs > 0 { frozen_at_start(s.spec, vs) } else { Vec::new() };
    for v in &frozen {
        let _ = v.set_requires_grad(false);
    }
    Ok((opt, frozen))
}

/// Why the validation split cannot measure `metric` (ROC-AUC needs two classes), so that the best
/// epoch is chosen by the loss, which every split measures; None when it can.
fn unmeasurable(val: &crate::metrics::Figures, metric: ValidationMetric) -> Option<String> {
    val.value(metric).is_none().then(|| {
        format!(
            "validation {} cannot be measured on this validation split (it needs images of two classes or more); \
             the best epoch is chosen by the validation loss instead",
            metric.name()
        )
    })
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
    let (opt, mut frozen) = prepare(vs, s)?;
    let steps_per_epoch = batches::training_steps(train_idx.len(), s.batch_size);
    let class_weights = match &s.balance {
        Balance::Weights(w) => Some(Tensor::from_slice(&w.iter().map(|&v| v as f32).collect::<Vec<f32>>()).to_device(s.compute.device)),
        _ => None,
    };
    let mut trainer = Trainer {
        net,
        set,
        s,
        opt,
        schedule: Schedule::new(s.schedule, steps_per_epoch),
        ema: crate::ema::Ema::new(vs, s.ema_decay),
        class_weights,
        steps_per_epoch,
    };
    let validator = s.evaluator(net, set);
    let mut history = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    let mut best_state = None;
    let mut best_validation_logits = None;
    let mut best_training_pass = TrainingPass::default();
    let mut since_best = 0;
    let mut stopped_early = false;
    let mut diverged_at = None;
    let mut metric = s.validation_metric;
    let mut metric_fallback = None;
    for epoch in 1..=s.epochs {
        if epoch == s.freeze_epochs + 1 && !frozen.is_empty() {
            eprintln!("epoch {epoch}: the backbone joins the training");
            for v in frozen.drain(..) {
                let _ = v.set_requires_grad(true);
            }
        }
        let started = Instant::now();
        let pass = trainer.epoch(train_idx, epoch)?;
        let mut what = "the training loss".to_string();
        if pass.diverged {
            diverged_at = Some(epoch);
        } else if let Some(name) = first_non_finite(vs) {
            // A finite loss can hide non-finite weights or batch statistics: check them all.
            what = format!("the model's '{name}'");
            diverged_at = Some(epoch);
        }
        if let Some(e) = diverged_at {
            eprintln!("epoch {e}: {what} became NaN or infinite; training stops here (try a lower --learning-rate)");
            break;
        }
        // Validated, and saved when best, with the averaged weights.
        if let Some(e) = &mut trainer.ema {
            e.swap();
        }
        let val_logits = (!val_idx.is_empty()).then(|| validator.logits(val_idx)).transpose()?;
        let val = val_logits.as_ref().map(|l| s.task.figures(set, val_idx, &s.task.probabilities(l)));
        if let Some(why) = val.as_ref().and_then(|m| unmeasurable(m, metric)) {
            eprintln!("warning: {why}");
            metric = ValidationMetric::Loss;
            metric_fallback = Some(why);
            // Earlier epochs' scores were of the other figure.
            best = None;
        }
        let score = val.as_ref().and_then(|m| m.value(metric));
        history.push(summarise_epoch(s, set, epoch, &pass, val.as_ref(), score, started));
        // Without validation images (or a score), the last epoch counts as the best.
        let improved = match (score, best) {
            (None, _) => true,
            (Some(_), None) => true,
            (Some(v), Some((_, b))) => {
                if metric.higher_is_better() { v > b } else { v < b }
            }
        };
        if improved {
            best = Some((epoch, score.unwrap_or(f64::NAN)));
            best_state = Some(snapshot(vs));
            best_validation_logits = val_logits;
            best_training_pass = TrainingPass {
                images: pass.images,
                scores: pass.scores,
                representative: s.balance != Balance::Sampler && trainer.ema.is_none(),
            };
            since_best = 0;
        }
        if let Some(e) = &mut trainer.ema {
            e.swap();
        }
        if !improved {
            since_best += 1;
            if s.early_stop.is_some_and(|patience| since_best >= patience) {
                eprintln!("early stopping: no validation improvement for {since_best} epochs");
                stopped_early = true;
                break;
            }
        }
    }
    // A run that stopped within the frozen epochs leaves the model trainable, as it found it.
    for v in frozen.drain(..) {
        let _ = v.set_requires_grad(true);
    }
    let Some((best_epoch, _)) = best else {
        bail_input!(
            "training became NaN or infinite in the first epoch, so there is no model to keep; \
             lower --learning-rate (now {}) and check the images",
            s.schedule.peak
        );
    };
    restore(vs, best_state.as_ref().expect("state saved with the best epoch"));
    if let Some(r) = history.iter_mut().find(|r| r.epoch == best_epoch) {
        r.best = true;
    }
    Ok(TrainOutcome {
        history,
        schedule: trainer.schedule,
        best_epoch,
        stopped_early,
        diverged_at,
        best_validation_logits,
        best_training_pass,
        validation_metric: metric,
        metric_fallback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight 32x32 images of two classes (bright and dark), six to train on and two to validate.
    fn tiny_set() -> Arc<ImageSet> {
        let n = 8;
        let pixels = (0..n).flat_map(|i| {
            let level = if i % 2 == 0 { 200u8 } else { 40 };
            (0..32 * 32 * 3).map(move |p| level.wrapping_add((p * 7 + i * 13) as u8 % 50))
        });
        Arc::new(ImageSet {
            size: 32,
            store: crate::data::store::Store::Ram(pixels.collect()),
            labels: (0..n).map(|i| i % 2).collect(),
            targets: Vec::new(),
            names: (0..n).map(|i| format!("{i}.png")).collect(),
            classes: vec!["bright".into(), "dark".into()],
        })
    }

    fn state(vs: &nn::VarStore) -> HashMap<String, Tensor> {
        snapshot(vs)
    }

    /// `--freeze-epochs 1 --epochs 1`: the backbone's convolutions are bit-identical after the
    /// epoch, the head and batch norm's scale, shift and statistics have moved.
    #[test]
    fn a_frozen_epoch_trains_the_head_and_batch_norm_alone() {
        let spec = crate::models::find("resnet18").unwrap();
        let classes = vec!["bright".to_string(), "dark".to_string()];
        let task = Task::for_training(crate::config::TaskKind::Classification, &classes, None, "y", "m.csv").unwrap();
        let started = start_model(spec, &task, 3, None, &Compute::cpu()).unwrap();
        let mut vs = started.vs;
        let mut cfg = TrainConfig::new("-".into(), "-".into(), "-".into(), "resnet18");
        (cfg.epochs, cfg.freeze_epochs, cfg.seed) = (2, 1, 3);
        let mut s = TrainSettings::new(&cfg, spec, task, 3, Balance::None, Compute::cpu());
        // One epoch of a two-epoch plan: the first, frozen one.
        s.epochs = 1;
        let before = state(&vs);
        let set = tiny_set();
        fit(&started.net, &mut vs, &set, &[0, 1, 2, 3, 4, 5], &[6, 7], &s).unwrap();
        let after = state(&vs);
        let moved = |name: &str| !before[name].equal(&after[name]);
        for name in ["conv1.weight", "layer1.0.conv1.weight", "layer4.1.conv2.weight", "layer2.0.downsample.0.weight"] {
            assert!(!moved(name), "{name} moved in the frozen epoch");
        }
        for name in ["fc.weight", "fc.bias", "bn1.weight", "bn1.bias", "bn1.running_mean", "layer4.1.bn2.weight", "layer3.0.downsample.1.running_var"] {
            assert!(moved(name), "{name} did not move");
        }
        // Every variable is trainable again afterwards, and an unfrozen epoch moves the body too.
        assert!(vs.variables()["layer1.0.conv1.weight"].requires_grad());
        s.epochs = 2;
        s.freeze_epochs = 1;
        fit(&started.net, &mut vs, &set, &[0, 1, 2, 3, 4, 5], &[], &s).unwrap();
        assert!(!before["conv1.weight"].equal(&state(&vs)["conv1.weight"]), "the second epoch trains the backbone");
    }

    /// Two models on one run bar: the first's epochs advance the shared bar (not a bar of their
    /// own), and the second, stopped after one of its two planned epochs, takes its unrun steps
    /// off the length, so the bar ends full.
    #[test]
    fn a_run_bar_counts_every_models_steps_and_ends_full() {
        let spec = crate::models::find("resnet18").unwrap();
        let classes = vec!["bright".to_string(), "dark".to_string()];
        let task = Task::for_training(crate::config::TaskKind::Classification, &classes, None, "y", "m.csv").unwrap();
        let mut cfg = TrainConfig::new("-".into(), "-".into(), "-".into(), "resnet18");
        (cfg.epochs, cfg.seed) = (2, 3);
        let train_idx = [0, 1, 2, 3, 4, 5];
        // Batches of 4 on 6 images: 2 steps an epoch, 4 a model.
        let per_model = (batches::training_steps(train_idx.len(), 4) * cfg.epochs) as u64;
        assert_eq!(per_model, 4);
        let run = RunBar::new(vec![per_model, per_model]);
        let set = tiny_set();
        for (m, epochs) in [(0, 2), (1, 1)] {
            let started_model = start_model(spec, &task, 3, None, &Compute::cpu()).unwrap();
            let mut vs = started_model.vs;
            let mut s = TrainSettings { fold: Some((m + 1, 2)), run_bar: Some(run.clone()), ..TrainSettings::new(&cfg, spec, task.clone(), 4, Balance::None, Compute::cpu()) };
            s.epochs = epochs;
            let started = run.position();
            fit(&started_model.net, &mut vs, &set, &train_idx, &[6, 7], &s).unwrap();
            assert_eq!(run.position() - started, 2 * epochs as u64, "model {m}'s steps on the run's bar");
            run.settle(m, started);
        }
        assert_eq!(run.position(), 6);
        assert_eq!(run.bar.length(), Some(6), "the second model's two unrun steps left the length");
    }

    #[test]
    fn layer_decay_gives_each_stage_a_power_of_the_decay() {
        let spec = crate::models::find("resnet18").unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _ = spec.build(&vs.root(), 2);
        let names: Vec<String> = vs.variables().into_keys().collect();
        let m = rate_multipliers(spec, &names, 0.5, 0.8);
        // Five stages (stem, layer1-4): layer4 one decay below the head, the stem five.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-15;
        assert_eq!(m["fc.weight"], 1.0);
        assert!(close(m["layer4.0.conv1.weight"], 0.5 * 0.8));
        assert!(close(m["layer1.1.bn2.bias"], 0.5 * 0.8f64.powi(4)));
        assert!(close(m["conv1.weight"], 0.5 * 0.8f64.powi(5)));
        assert!(close(m["bn1.running_mean"], m["conv1.weight"]));
        let plain = rate_multipliers(spec, &names, 1.0, 1.0);
        assert!(plain.values().all(|&v| v == 1.0));
    }

    #[test]
    fn a_non_finite_buffer_is_found_by_name() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _ = nn::batch_norm2d(&vs.root() / "bn", 4, Default::default());
        let _ = nn::linear(&vs.root() / "fc", 4, 2, Default::default());
        assert_eq!(first_non_finite(&vs), None);
        assert!(has_batch_norm(&vs));
        tch::no_grad(|| {
            let mut v = vs.variables()["bn.running_var"].shallow_clone();
            let _ = v.fill_(f64::NAN);
        });
        assert_eq!(first_non_finite(&vs).as_deref(), Some("bn.running_var"));
        tch::no_grad(|| {
            let mut w = vs.variables()["fc.weight"].shallow_clone();
            let _ = w.fill_(f64::INFINITY);
        });
        assert_eq!(first_non_finite(&vs).as_deref(), Some("bn.running_var"), "the first by name");
    }
}
