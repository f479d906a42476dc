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
use crate::{device, explain, models, precision, report, runtime, train, weights};

pub struct RunSummary {
    pub output_dir: std::path::PathBuf,
    pub test: Figures,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub seconds: f64,
    pub image_size: usize,
}

pub fn run(cfg: &TrainConfig) -> Result<RunSummary> {
    let started = Instant::now();
    let setup = set_up(cfg)?;
    let Prepared { ing, plan, task, chosen, mut warnings } = ingest_and_split(cfg, setup.spec)?;
    let ingested = started.elapsed().as_secs_f64();
    // From here on the options are the ones that ran: the report and the Best Model record them.
    let cfg = &as_run(cfg, &task);
    let batch_size = train::fitting_batch_size(cfg.batch_size, plan.train.len(), &mut warnings);
    let (balance, balance_text) = task.class_balance(cfg.class_balance, &ing.images, &plan.train);
    announce(&warnings, &plan, &task, &setup, ing.images.size, balance_text.as_deref(), cfg.tta);

    // Fit.
    let model = train::start_model(setup.spec, &task, cfg.seed, cfg.use_pretrained.then_some(setup.weights_dir.as_path()), &setup.compute)?;
    let settings = train::TrainSettings::new(cfg, setup.spec, task.clone(), batch_size, balance, setup.compute);
    let set = Arc::new(ing.images);
    let training_started = Instant::now();
    let mut vs = model.vs;
    let outcome = train::fit(&model.net, &mut vs, &set, &plan.train, &plan.validation, &settings)?;
    let training = training_started.elapsed().as_secs_f64();
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
    let (task, decided) = task.fit_decisions(validation, cfg, &mut warnings);
    for w in &warnings[announced..] {
        eprintln!("warning: {w}");
    }
    eprintln!("{}", decided.describe());

    // Evaluate, then explain the report's test images.
    let evaluation_started = Instant::now();
    let evaluator = evaluation::Evaluator { task: &task, ..settings.evaluator(&model.net, &set) };
    let figures = FinalFigures::compute(&evaluator, &plan, &outcome.best_training_pass, outcome.best_validation_logits.as_ref(), cfg)?;
    let evaluation = evaluation_started.elapsed().as_secs_f64();
    let explaining_started = Instant::now();
    let explanations = explain::for_report(&evaluator, &plan.test, &figures.test_scores, cfg.explain, cfg.cam)?;
    let explaining = explaining_started.elapsed().as_secs_f64();

    // Outputs and report, staged and committed together.
    let outputs_started = Instant::now();
    let run = TrainedRun {
        cfg,
        spec: setup.spec,
        task: &task,
        task_chosen: chosen,
        class_balance: balance_text,
        decisions: &decided,
        set: &set,
        summary: &ing.summary,
        plan: &plan,
        outcome: &outcome,
        figures: &figures,
        explanations: &explanations,
        vs: &vs,
        batch_size,
        parameters: models::parameter_count(&vs),
        pretrained_file: model.pretrained_file,
        compute: setup.compute,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    };
    let html = report::train_report(&run)?;
    outputs::write_train_outputs(&run, html.as_bytes())?;
    let waited: f64 = outcome.history.iter().map(|r| r.data_wait_seconds).sum();
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
        best_epoch: outcome.best_epoch,
        epochs_run: outcome.history.len(),
        seconds,
        image_size: set.size,
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

/// The options as they run: the task's label smoothing and the test-time augmentation resolved.
fn as_run(cfg: &TrainConfig, task: &Task) -> TrainConfig {
    TrainConfig { label_smoothing: Some(task.label_smoothing(cfg.label_smoothing)), tta: cfg.tta.resolve(&cfg.augmentation), ..cfg.clone() }
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
