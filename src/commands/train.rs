//! `image-learner train`: options checked -> data ingested -> split -> model fitted -> every
//! split evaluated -> outputs and report written, all or none.
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use crate::config::{TrainConfig, Tta};
use crate::data::{self, metadata::ColumnChoice, split, SizePolicy};
use crate::evaluation::{self, FinalFigures};
use crate::metrics::Figures;
use crate::outputs::{self, TrainedRun};
use crate::task::{self, Task, TaskKind};
use crate::cross_validation::{self, CrossValidation};
use crate::data::ImageSet;
use crate::{device, explain, models, precision, report, runtime, train, weights};

pub struct RunSummary {
    pub output_dir: std::path::PathBuf,
    pub test: Figures,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub seconds: f64,
    pub image_size: usize,
    /// `--cross-validation`: the fold models' best epochs (empty: one model).
    pub fold_best_epochs: Vec<usize>,
}

pub fn run(cfg: &TrainConfig) -> Result<RunSummary> {
    let started = Instant::now();
    let setup = set_up(cfg)?;
    let Prepared { ing, mut plan, task, chosen, mut warnings } = ingest_and_split(cfg, setup.spec)?;
    let folds = (cfg.cross_validation > 0).then(|| cross_validation_folds(cfg, &ing, &mut plan)).transpose()?;
    let ingested = started.elapsed().as_secs_f64();
    let batch_size = train::fitting_batch_size(cfg.batch_size, plan.train.len(), &mut warnings);
    // The steps each model plans (a cross-validation: the fold model with the fewest) decide the
    // default moving average.
    let steps = match &folds {
        None => cfg.epochs * crate::data::batches::training_steps(plan.train.len(), batch_size),
        Some(f) => (0..f.k).map(|m| f.planned_steps(m, cfg.batch_size, cfg.epochs)).min().unwrap_or(0),
    };
    // From here on the options are the ones that ran: the report and the Best Model record them.
    let cfg = &announce_default_ema(cfg, as_run(cfg, &task, steps), steps);
    let (balance, balance_text) = task.class_balance(cfg.class_balance, &ing.images, &plan.train);
    announce(&warnings, &plan, &task, &setup, ing.images.size, balance_text.as_deref(), cfg.tta);
    let set = Arc::new(ing.images);
    let training_started = Instant::now();
    let fitted = match folds {
        None => fit_one(cfg, &setup, &task, &set, &plan, batch_size, balance, &mut warnings)?,
        Some(folds) => fit_folds(cfg, &setup, &task, &set, folds, &mut warnings)?,
    };
    let training = training_started.elapsed().as_secs_f64();
    eprintln!("{}", fitted.decided.describe());
    // The steps' freed blocks are no use to the evaluation, whose batches have other shapes: kept,
    // they would sit under its peak.
    runtime::give_back_freed_memory();

    // Evaluate, then explain the report's test images.
    let evaluation_started = Instant::now();
    let members = fitted.evaluators(&setup, &set, batch_size, cfg.tta);
    let figures = match fitted.cv() {
        None => FinalFigures::compute(&members[0], &plan, &fitted.outcome.best_training_pass, fitted.outcome.best_validation_logits.as_ref(), cfg)?,
        Some(cv) => ensemble_figures(&members, &fitted.task, cv, &plan, cfg)?,
    };
    let evaluation = evaluation_started.elapsed().as_secs_f64();
    let explaining_started = Instant::now();
    let explanations = explain::for_report(&members, &fitted.task, &plan.test, &figures.test_scores, cfg.explain, cfg.cam)?;
    let explaining = explaining_started.elapsed().as_secs_f64();
    drop(members);
    runtime::give_back_freed_memory();

    // Outputs and report, staged and committed together.
    let outputs_started = Instant::now();
    let stores = fitted.stores();
    let parameters = models::parameter_count(stores[0]);
    let run = TrainedRun {
        cfg,
        spec: setup.spec,
        task: &fitted.task,
        task_chosen: chosen,
        class_balance: balance_text,
        decisions: &fitted.decided,
        set: &set,
        summary: &ing.summary,
        plan: &plan,
        outcome: &fitted.outcome,
        figures: &figures,
        explanations: &explanations,
        members: stores,
        cross_validation: fitted.cv(),
        batch_size,
        parameters,
        pretrained_file: fitted.pretrained_file.clone(),
        compute: setup.compute,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    };
    let html = report::train_report(&run)?;
    outputs::write_train_outputs(&run, html.as_bytes())?;
    let waited: f64 = fitted.outcome.history.iter().map(|r| r.data_wait_seconds).sum();
    eprintln!(
        "time: data {ingested:.1} s, training {training:.1} s (waiting for batches {:.1}%), final evaluation {evaluation:.1} s, explanations {explaining:.1} s, report and outputs {:.1} s",
        100.0 * waited / training.max(1e-9),
        outputs_started.elapsed().as_secs_f64()
    );
    let seconds = run.seconds;
    drop(run);
    Ok(RunSummary {
        output_dir: cfg.output_dir.clone(),
        test: figures.test,
        best_epoch: fitted.outcome.best_epoch,
        epochs_run: fitted.outcome.history.len(),
        seconds,
        image_size: set.size,
        fold_best_epochs: fitted.cv().map_or_else(Vec::new, |cv| cv.models.iter().map(|m| m.outcome.best_epoch).collect()),
    })
}

/// The networks a run keeps.
enum Kept {
    /// One model's weights and network.
    One(tch::nn::VarStore, models::Network),
    /// A cross-validation's K fold models.
    Folds(CrossValidation),
}

/// The model a run keeps, its decisions fitted: one network, or a cross-validation's K.
struct Fitted {
    kept: Kept,
    /// What decides on the kept scores (an ensemble's: its members' mean).
    task: Task,
    decided: crate::decisions::Decisions,
    /// One model's training; a cross-validation's folds' epochs, one block per fold.
    outcome: train::TrainOutcome,
    pretrained_file: Option<std::path::PathBuf>,
}

impl Fitted {
    fn cv(&self) -> Option<&CrossValidation> {
        match &self.kept {
            Kept::One(..) => None,
            Kept::Folds(cv) => Some(cv),
        }
    }

    /// The kept weights: the model's, or each fold model's in fold order.
    fn stores(&self) -> Vec<&tch::nn::VarStore> {
        match &self.kept {
            Kept::One(vs, _) => vec![vs],
            Kept::Folds(cv) => cv.models.iter().map(|m| &m.vs).collect(),
        }
    }

    /// An evaluation pass per kept network, each deciding as its own task does.
    fn evaluators<'a>(&'a self, setup: &'a Setup, set: &'a Arc<ImageSet>, batch_size: usize, tta: Tta) -> Vec<evaluation::Evaluator<'a>> {
        let ev = |net, task| evaluation::Evaluator {
            net,
            task,
            set,
            batch_size: evaluation::batch_size(batch_size),
            normalization: setup.spec.normalization,
            compute: &setup.compute,
            tta,
        };
        match &self.kept {
            Kept::One(_, net) => vec![ev(net, &self.task)],
            Kept::Folds(cv) => cv.models.iter().map(|m| ev(&m.net, &m.task)).collect(),
        }
    }
}

/// One model: trained on the train split, its best epoch chosen and its decisions fitted on the
/// validation split.
#[allow(clippy::too_many_arguments)]
fn fit_one(cfg: &TrainConfig, setup: &Setup, task: &Task, set: &Arc<ImageSet>, plan: &split::SplitPlan, batch_size: usize, balance: crate::data::balance::Balance, warnings: &mut Vec<String>) -> Result<Fitted> {
    let model = train::start_model(setup.spec, task, cfg.seed, cfg.use_pretrained.then_some(setup.weights_dir.as_path()), &setup.compute)?;
    let settings = train::TrainSettings::new(cfg, setup.spec, task.clone(), batch_size, balance, setup.compute);
    let mut vs = model.vs;
    let outcome = train::fit(&model.net, &mut vs, set, &plan.train, &plan.validation, &settings)?;
    if let Some(e) = outcome.diverged_at {
        warnings.push(format!(
            "training became NaN or infinite in epoch {e}; it stopped there and the best earlier epoch ({}) was kept",
            outcome.best_epoch
        ));
    }
    // Decide: the temperature and the binary threshold, fitted on the validation split.
    let validation_truth = set.truth(&plan.validation);
    let validation = outcome.best_validation_logits.as_deref().map(|l| (l, validation_truth.as_slice()));
    let announced = warnings.len();
    let (task, decided) = task.fit_decisions(validation, cfg, warnings);
    for w in &warnings[announced..] {
        eprintln!("warning: {w}");
    }
    Ok(Fitted { kept: Kept::One(vs, model.net), task, decided, outcome, pretrained_file: model.pretrained_file })
}

/// K fold models (`cross_validation`), and the decisions of their ensemble.
fn fit_folds(cfg: &TrainConfig, setup: &Setup, task: &Task, set: &Arc<ImageSet>, folds: crate::data::folds::Folds, warnings: &mut Vec<String>) -> Result<Fitted> {
    let shared = cross_validation::Shared {
        cfg,
        spec: setup.spec,
        task,
        compute: setup.compute,
        weights_dir: cfg.use_pretrained.then_some(setup.weights_dir.as_path()),
    };
    let announced = warnings.len();
    let cv = cross_validation::fit_folds(&shared, set, folds, warnings)?;
    eprintln!("cross-validation: out-of-fold {} over {} images", cv.oof.headline(), cv.folds.pool.len());
    let truth = set.truth(&cv.folds.pool);
    let (ensemble, decided) = task.ensemble_decisions(&cv.oof_scores, &truth, &cv.temperatures(), cfg, warnings);
    for w in &warnings[announced..] {
        eprintln!("warning: {w}");
    }
    let first = &cv.models[0].outcome;
    let mut outcome = train::TrainOutcome {
        history: Vec::new(),
        schedule: first.schedule.clone(),
        best_epoch: 0,
        stopped_early: false,
        diverged_at: None,
        best_validation_logits: None,
        best_training_pass: Default::default(),
        validation_metric: first.validation_metric,
        metric_fallback: first.metric_fallback.clone(),
    };
    for m in &cv.models {
        outcome.history.extend_from_slice(&m.outcome.history);
        outcome.stopped_early |= m.outcome.stopped_early;
    }
    // The record's one best epoch: the folds' mean, rounded (each fold's own is in the history).
    let k = cv.models.len();
    outcome.best_epoch = (cv.models.iter().map(|m| m.outcome.best_epoch).sum::<usize>() + k / 2) / k;
    let pretrained_file = cv.models[0].pretrained_file.clone();
    Ok(Fitted { kept: Kept::Folds(cv), task: ensemble, decided, outcome, pretrained_file })
}

/// The images outside the test split dealt into `--cross-validation` folds; the plan's train
/// split becomes all of them (each fold model trains on most and validates on the rest).
fn cross_validation_folds(cfg: &TrainConfig, ing: &data::Ingested, plan: &mut split::SplitPlan) -> Result<crate::data::folds::Folds> {
    let folds = crate::data::folds::deal(ing, plan, cfg.cross_validation, cfg.seed)?;
    let k = cfg.cross_validation;
    let grouped = ing.summary.group_column.as_ref().map_or(String::new(), |g| format!(", grouped by '{g}'"));
    let from = match &ing.summary.split_column {
        Some(col) => format!(" The column '{col}' chose the test split; its train and validation rows were dealt into the folds."),
        None => String::new(),
    };
    plan.method = format!(
        "{} Cross-validation: the {} images outside the test split were dealt into {k} folds, stratified{grouped} (seed {}); fold model k trained on the other folds and validated on fold k.{from}",
        plan.method,
        folds.pool.len(),
        cfg.seed
    );
    (plan.train, plan.validation) = (folds.pool.clone(), Vec::new());
    Ok(folds)
}

/// A cross-validation's final figures: the ensemble's on the test split; the train figures from
/// the fold models' best training passes pooled (or the ensemble's on every non-test image,
/// when asked to evaluate them again or when a pass does not stand for its kept weights). The
/// out-of-fold figures are the cross-validation's own (`CrossValidation::oof`).
fn ensemble_figures(members: &[evaluation::Evaluator], task: &Task, cv: &CrossValidation, plan: &split::SplitPlan, cfg: &TrainConfig) -> Result<FinalFigures> {
    let set = members[0].set.as_ref();
    let again = cfg.evaluate_train || cv.models.iter().any(|m| !m.outcome.best_training_pass.representative);
    let train_scores = again.then(|| evaluation::mean_scores(members, &plan.train)).transpose()?;
    let train = match &train_scores {
        Some(s) => task.figures(set, &plan.train, s),
        None => {
            let images: Vec<usize> = cv.models.iter().flat_map(|m| m.outcome.best_training_pass.images.iter().copied()).collect();
            let scores: Vec<Vec<f32>> = cv.models.iter().flat_map(|m| m.outcome.best_training_pass.scores.to_rows()).collect();
            task.figures(set, &images, &scores)
        }
    };
    let test_scores = evaluation::mean_scores(members, &plan.test)?;
    let test = task.figures(set, &plan.test, &test_scores);
    let test_intervals = task.intervals(set, &plan.test, &test_scores, cfg.seed);
    Ok(FinalFigures {
        train,
        validation: None,
        test,
        train_scores,
        validation_scores: None,
        test_scores,
        validation_logits: None,
        test_logits: Vec::new(),
        test_intervals,
    })
}

/// What the run computes on, checked before any data is read.
struct Setup {
    spec: &'static models::ModelSpec,
    compute: precision::Compute,
    weights_dir: std::path::PathBuf,
}

/// Options, model, output folder, threads, device and weights: all checked before any data.
fn set_up(cfg: &TrainConfig) -> Result<Setup> {
    cfg.validate()?;
    let spec = models::find(&cfg.model)?;
    spec.check_image_size(cfg.image_size)?;
    outputs::prepare_output_dir(&cfg.output_dir)?;
    runtime::configure(cfg.runtime.threads);
    let compute = precision::Compute::resolve(device::resolve(cfg.runtime.device)?, cfg.runtime.precision)?;
    let weights_dir = weights::weights_dir(cfg.weights.weights_dir.as_deref());
    if cfg.use_pretrained {
        weights::fetch::ensure(spec, &weights_dir)?;
    }
    Ok(Setup { spec, compute, weights_dir })
}

/// The images, their split and the task they make, with the warnings found on the way.
struct Prepared {
    ing: data::Ingested,
    plan: split::SplitPlan,
    task: Task,
    /// Why `--task auto` chose the task it did (None when the task was given).
    chosen: Option<String>,
    warnings: Vec<String>,
}

/// The options as they run: the task's label smoothing and moving average (for a run of `steps`
/// training steps) and the test-time augmentation resolved.
fn as_run(cfg: &TrainConfig, task: &Task, steps: usize) -> TrainConfig {
    TrainConfig {
        label_smoothing: Some(task.label_smoothing(cfg.label_smoothing)),
        ema_decay: Some(task.ema_decay(cfg.ema_decay, steps)),
        tta: cfg.tta.resolve(&cfg.augmentation),
        ..cfg.clone()
    }
}

/// Says so in the log when the run's length switched the moving average on by default.
fn announce_default_ema(asked: &TrainConfig, run: TrainConfig, steps: usize) -> TrainConfig {
    if let (None, Some(d)) = (asked.ema_decay, run.ema_decay.filter(|d| *d > 0.0)) {
        eprintln!(
            "moving average of the weights: decay {d}, the default for a classification of at least {} training steps (this run plans {steps}); --ema-decay 0 turns it off",
            crate::config::EMA_MIN_STEPS
        );
    }
    run
}


/// The input size: `--image-size`, else the images' own, at most the model's default size. With
/// pretrained weights, smaller images are enlarged to at least `config::PRETRAINED_MIN_SIZE`
/// (or the model's default size, if smaller): the weights learnt their features at 224 pixels.
fn size_policy(cfg: &TrainConfig, spec: &models::ModelSpec) -> SizePolicy {
    let min = crate::config::least_image_size(cfg.use_pretrained, spec.default_size);
    cfg.image_size.map_or(SizePolicy::FromImages { min, max: spec.default_size }, SizePolicy::Fixed)
}

/// CSV + ZIP -> decoded images -> split, and the task: a classification's from its classes, a
/// regression's from its training split's values (its scale is the training split's).
fn ingest_and_split(cfg: &TrainConfig, spec: &models::ModelSpec) -> Result<Prepared> {
    let mut meta = data::metadata::read_metadata(&cfg.metadata, &ColumnChoice::for_training(cfg))?;
    let (mut kind, mut chosen, mut warnings) = task::choose(cfg.task, &mut meta)?;
    let ing = data::ingest(&cfg.images, meta, size_policy(cfg, spec), task::labels_to_read(kind), (cfg.runtime.cache, data::store::Reads::EveryEpoch))?;
    if let Some(why) = task::threshold_makes_binary(kind, cfg.threshold.fixed(), &ing.images.classes) {
        eprintln!("task: {why}");
        (kind, chosen) = (TaskKind::Binary, Some(why));
    }
    warnings.extend(ing.announce());
    let s = &ing.summary;
    let classification = (kind != TaskKind::Regression)
        .then(|| Task::for_training(kind, &ing.images.classes, cfg.threshold.fixed(), &s.label_column, &s.metadata_file))
        .transpose()?;
    let plan = split::plan(&ing, &cfg.split, cfg.seed)?;
    warnings.extend(plan.warnings.iter().cloned());
    let task = match classification {
        Some(task) => task,
        None => Task::for_regression(&ing.images.values(&plan.train), &s.label_column, cfg.loss, cfg.threshold.fixed())?,
    };
    task.check_options(cfg)?;
    Ok(Prepared { ing, plan, task, chosen, warnings })
}

/// The log's account of what is about to train: warnings, split, task, input, model, device.
fn announce(warnings: &[String], plan: &split::SplitPlan, task: &Task, setup: &Setup, size: usize, balance: Option<&str>, tta: Tta) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
    eprintln!(
        "split: {} train, {} validation, {} test; {}; input {size}x{size}; model {} on {}",
        plan.train.len(),
        plan.validation.len(),
        plan.test.len(),
        task.brief(),
        setup.spec.name,
        device::describe(setup.compute.device),
    );
    eprintln!("split method: {}", plan.method);
    if let Some(text) = balance {
        eprintln!("class balance: {text}");
    }
    if tta != Tta::None {
        eprintln!("test-time augmentation of the validation and test images: {}", tta.describe());
    }
    eprintln!("arithmetic: {}", setup.compute.describe());
}
