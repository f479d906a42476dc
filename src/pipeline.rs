//! The `train` command from end to end: options checked, data ingested and split, the model
//! trained, every split evaluated, and the outputs written. Data flows one way:
//! ZIP + CSV -> ImageSet -> splits -> trained model -> probabilities -> metrics -> files.
use crate::precision::Compute;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use tch::nn;

use crate::bail_input;
use crate::config::{PredictionsScope, Task, TrainConfig};
use crate::data::metadata::ColumnChoice;
use crate::data::split::{self, Split};
use crate::data::{self, SizePolicy};
use crate::metrics::{self, Metrics};
use crate::models::{self, weights};
use crate::outputs::{self, bundle, history, predictions};
use crate::report::{self, Item, ReportInput};
use crate::train::{self, TrainSettings};

pub struct RunSummary {
    pub output_dir: PathBuf,
    pub test: Metrics,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub seconds: f64,
    pub input_size: usize,
}

/// Sets up the process for a run: the allocator (`keep_freed_memory`), and the threads for
/// libtorch and the decoders: `--threads`, else `GALAXY_SLOTS`, else all cores.
pub fn configure_runtime(threads: Option<usize>) -> usize {
    keep_freed_memory();
    let n = threads
        .or_else(|| std::env::var("GALAXY_SLOTS").ok().and_then(|s| s.trim().parse().ok()))
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    tch::set_num_threads(n as i32);
    let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    n
}

/// Keeps memory that libtorch frees in the process for the next training step, instead of
/// handing it back to the kernel. glibc's defaults return every block over 128 KiB (a threshold
/// it raises only as far as the largest block freed so far) and trim the heap's free top, so each
/// step's activations and gradients were mapped, faulted in and zeroed again: 1.2-1.5 million
/// page faults and 5-6 s of system time in a 3-epoch resnet18 run at 96x96, against about 0.3
/// million and 1-2 s with this. Blocks up to 32 MiB (glibc's ceiling for this setting) come from
/// the heap and a free top of up to 1 GiB is kept; the peak resident size stays near the peak in
/// use (0-14% above glibc's default in those runs).
/// Returns whether glibc took both settings (always false on another C library).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes two tuning values of glibc's allocator; both are in range.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

fn split_of(cfg: &TrainConfig, ing: &data::Ingested, warnings: &mut Vec<String>) -> Result<(Vec<Split>, String)> {
    let set = &ing.images;
    let s = &ing.summary;
    if let Some(col) = &s.split_column {
        let values: Vec<(usize, Option<String>)> = ing.rows.iter().map(|r| (r.line, r.split.clone())).collect();
        let (splits, carved) = split::from_column(&values, &set.labels, &set.classes, col, &cfg.split, cfg.seed)?;
        let how = if carved {
            format!("Split from the column '{col}'; it has no validation rows, so validation was carved from train (stratified, seed {}).", cfg.seed)
        } else {
            format!("Split from the column '{col}'.")
        };
        return Ok((splits, how));
    }
    if let Some(col) = &s.group_column {
        let groups: Vec<String> = ing.rows.iter().map(|r| r.group.clone().unwrap_or_else(|| format!("row:{}", r.line))).collect();
        let missing = ing.rows.iter().filter(|r| r.group.is_none()).count();
        if missing > 0 {
            warnings.push(format!("{missing} rows have no value in the group column '{col}'; each is its own group"));
        }
        let splits = split::grouped(&set.labels, &groups, &set.classes, &cfg.split, cfg.seed)?;
        return Ok((
            splits,
            format!(
                "Stratified {} split grouped by '{col}': all images of one group are in one split (seed {}).",
                cfg.split, cfg.seed
            ),
        ));
    }
    let splits = split::stratified(&set.labels, &set.classes, &cfg.split, cfg.seed)?;
    Ok((splits, format!("Stratified random {} split by class (seed {}).", cfg.split, cfg.seed)))
}

pub fn run_train(cfg: &TrainConfig) -> Result<RunSummary> {
    let started = Instant::now();
    cfg.validate()?;
    let spec = models::find(&cfg.model)?;
    outputs::prepare_output_dir(&cfg.output_dir)?;
    configure_runtime(cfg.threads);
    let compute = crate::precision::Compute::resolve(crate::device::resolve(cfg.device)?, cfg.precision)?;
    let device = compute.device;
    let weights_dir = weights::weights_dir(cfg.weights_dir.as_deref());
    if cfg.use_pretrained {
        // Fail before the data is read when the weights are missing.
        weights::require(spec, &weights_dir)?;
    }

    let choice = ColumnChoice {
        image: cfg.image_column.clone(),
        label: cfg.label_column.clone(),
        split: cfg.split_column.clone(),
        group: cfg.group_column.clone(),
        label_optional: false,
    };
    let meta = data::metadata::read_metadata(&cfg.metadata, &choice)?;
    let size = match cfg.image_size {
        Some(s) => SizePolicy::Fixed(s as usize),
        None => SizePolicy::FromImages { max: spec.default_size as usize },
    };
    let ing = data::ingest(&cfg.images, meta, size, None)?;
    let ingested = started.elapsed().as_secs_f64();
    let mut warnings = ing.summary.warnings.clone();
    let s = &ing.summary;
    eprintln!(
        "data: {} of {} rows matched an image in {}; {} rows without an image; {} images without a row",
        s.matched, s.rows, s.archive_file, s.rows_without_image, s.images_without_row
    );
    if s.rows_without_image > 0 {
        warnings.push(format!(
            "{} rows of {} name no image in {} (e.g. {}); they are left out",
            s.rows_without_image,
            s.metadata_file,
            s.archive_file,
            s.missing_examples.join("; ")
        ));
    }
    let set = &ing.images;
    let k = set.classes.len();
    if k < 2 {
        bail_input!(
            "{} has a single class ('{}'): a classifier needs at least two classes in the label column '{}'",
            s.metadata_file,
            set.classes[0],
            s.label_column
        );
    }
    if cfg.threshold.is_some() && cfg.task != Task::Binary {
        bail_input!("--threshold applies to --task binary only");
    }
    if cfg.task == Task::Binary && k != 2 {
        bail_input!(
            "--task binary needs exactly two classes; the label column '{}' has {k} ({}). Use --task classification",
            s.label_column,
            set.classes.join(", ")
        );
    }

    let (splits, split_method) = split_of(cfg, &ing, &mut warnings)?;
    let groups: Option<Vec<String>> = s.group_column.as_ref().map(|_| ing.rows.iter().map(|r| r.group.clone().unwrap_or_default()).collect());
    warnings.extend(split::leakage_warnings(&set.names, &splits, groups.as_deref(), s.group_column.as_deref()));
    let idx = |which: Split| -> Vec<usize> { (0..splits.len()).filter(|&i| splits[i] == which).collect() };
    let (train_idx, val_idx, test_idx) = (idx(Split::Train), idx(Split::Validation), idx(Split::Test));
    let mut batch_size = cfg.batch_size;
    if batch_size > train_idx.len() {
        warnings.push(format!(
            "--batch-size {batch_size} is larger than the training set ({} images); using {}",
            train_idx.len(),
            train_idx.len()
        ));
        batch_size = train_idx.len();
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let input_size = set.size;
    eprintln!(
        "split: {} train, {} validation, {} test; {} classes; input {input_size}x{input_size}; model {} on {}",
        train_idx.len(),
        val_idx.len(),
        test_idx.len(),
        k,
        spec.name,
        crate::device::describe(device)
    );
    eprintln!("arithmetic: {}", compute.describe());

    tch::manual_seed(cfg.seed as i64);
    let mut vs = nn::VarStore::new(device);
    let net = spec.build(&vs.root(), k as i64);
    let pretrained_file = if cfg.use_pretrained {
        Some(weights::load_pretrained(&mut vs, spec, &weights_dir)?)
    } else {
        None
    };
    compute.prepare(&vs);
    let n_params = models::parameter_count(&vs);
    let settings = TrainSettings {
        epochs: cfg.epochs,
        batch_size,
        learning_rate: cfg.learning_rate,
        optimizer: cfg.optimizer,
        weight_decay: cfg.weight_decay,
        early_stop: cfg.early_stop,
        validation_metric: cfg.validation_metric,
        frozen_backbone: !cfg.fine_tune,
        head_prefix: spec.head_prefix.to_string(),
        augmentation: cfg.augmentation.clone(),
        seed: cfg.seed,
        compute,
        normalization: spec.normalization,
    };
    let set = Arc::new(ing.images);
    let training_started = Instant::now();
    let outcome = train::fit(&net, &mut vs, &set, &train_idx, &val_idx, &settings)?;
    let training = training_started.elapsed().as_secs_f64();
    let evaluation_started = Instant::now();
    if let Some(e) = outcome.diverged_at {
        warnings.push(format!(
            "the training loss became NaN or infinite in epoch {e}; training stopped and the best earlier epoch ({}) was kept",
            outcome.best_epoch
        ));
    }

    // The final figures. Validation: the best epoch's pass, which the restored weights repeat
    // exactly. Train: the best epoch's own training pass, unless asked to evaluate the training
    // images again (or every image's prediction is wanted). Test: evaluated now, once.
    let eval_batch = train::evaluation_batch_size(batch_size);
    let truth_idx = |indices: &[usize]| -> Vec<usize> { indices.iter().map(|&i| set.labels[i]).collect() };
    let score = |truth: &[usize], probs: &[Vec<f32>]| metrics::compute_with_threshold(truth, probs, &set.classes, cfg.threshold);
    let evaluate = |indices: &[usize]| -> Vec<Vec<f32>> {
        train::predict_probs(&net, &set, indices, eval_batch, spec.normalization, &compute)
    };
    let evaluate_train = cfg.evaluate_train || cfg.predictions == PredictionsScope::All;
    let train_probs = evaluate_train.then(|| evaluate(&train_idx));
    let train_m = match &train_probs {
        Some(p) => score(&truth_idx(&train_idx), p),
        None => score(&outcome.best_training_pass.0, &outcome.best_training_pass.1),
    };
    let val_probs = outcome.best_validation_probs;
    let val_m = val_probs.as_ref().map(|p| score(&truth_idx(&val_idx), p));
    let test_probs = evaluate(&test_idx);
    let test_m = score(&truth_idx(&test_idx), &test_probs);

    let evaluation = evaluation_started.elapsed().as_secs_f64();
    let outputs_started = Instant::now();
    // Outputs.
    let out = &cfg.output_dir;
    let name_of = |ix: &[usize]| -> Vec<String> { ix.iter().map(|&i| set.names[i].clone()).collect() };
    let truth_of = |ix: &[usize]| -> Vec<String> { ix.iter().map(|&i| set.classes[set.labels[i]].clone()).collect() };
    let preds = match cfg.predictions {
        PredictionsScope::Test => predictions::to_csv(&name_of(&test_idx), Some(&truth_of(&test_idx)), &test_probs, &set.classes, None, cfg.threshold)?,
        PredictionsScope::All => {
            let mut names = Vec::new();
            let mut truth = Vec::new();
            let mut probs = Vec::new();
            let mut split_names = Vec::new();
            for (which, ix) in [(Split::Train, &train_idx), (Split::Validation, &val_idx), (Split::Test, &test_idx)] {
                let p = match which {
                    Split::Train => train_probs.clone().expect("train images evaluated for --predictions all"),
                    Split::Validation => val_probs.clone().unwrap_or_default(),
                    Split::Test => test_probs.clone(),
                };
                names.extend(name_of(ix));
                truth.extend(truth_of(ix));
                probs.extend(p);
                split_names.extend(std::iter::repeat_n(which.name().to_string(), ix.len()));
            }
            predictions::to_csv(&names, Some(&truth), &probs, &set.classes, Some(&split_names), cfg.threshold)?
        }
    };
    let hist = history::to_csv(&outcome.history, outcome.best_epoch)?;
    let bundle_cfg = bundle::BundleConfig {
        format_version: bundle::FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        architecture: spec.name.to_string(),
        task: cfg.task,
        classes: set.classes.clone(),
        input_size: input_size as i64,
        normalization: spec.normalization,
        best_epoch: outcome.best_epoch,
        eval_batch_size: eval_batch,
        options: cfg.clone(),
    };
    let model_zip = bundle::to_zip(&vs, &bundle_cfg)?;
    let test_truth: Vec<usize> = test_idx.iter().map(|&i| set.labels[i]).collect();
    let intervals = metrics::bootstrap(&test_truth, &test_probs, &set.classes, 1000, cfg.seed, cfg.threshold);
    let metrics_json = serde_json::json!({
        "test": &test_m,
        "test_95ci": &intervals,
        "validation": &val_m,
        "train": &train_m,
        "train_figures_from": if train_probs.is_some() {
            "the training images evaluated again with the best weights (eval mode)"
        } else {
            "the best epoch's own training pass (augmented images, train mode)"
        },
        "best_epoch": outcome.best_epoch,
        "classes": &set.classes,
    });
    let seconds = started.elapsed().as_secs_f64();

    let mut per_split: Vec<(Split, &Metrics)> = vec![(Split::Train, &train_m)];
    if let Some(v) = &val_m {
        per_split.push((Split::Validation, v));
    }
    per_split.push((Split::Test, &test_m));
    let item = |l: &str, v: String| Item { label: l.to_string(), value: v };
    let size_note = match cfg.image_size {
        Some(_) => format!("{input_size}x{input_size} (--image-size)"),
        None => format!(
            "{input_size}x{input_size} (from the images; {}'s default is {}x{})",
            spec.name, spec.default_size, spec.default_size
        ),
    };
    let augs: Vec<&str> = cfg.augmentation.iter().map(|a| a.name()).collect();
    let run = vec![
        item("Model", format!("{} ({})", spec.name, spec.reference)),
        item("Parameters", n_params.to_string()),
        item("Input size", size_note),
        item("Task", match cfg.threshold {
            Some(t) => format!("binary, decision threshold {t} on the probability of '{}'", set.classes[1]),
            None => format!("{:?}", cfg.task).to_lowercase(),
        }),
        item("Epochs", format!("{} requested, {} run", cfg.epochs, outcome.history.len())),
        item("Batch size", batch_size.to_string()),
        item("Pretrained weights", pretrained_file.map_or("no (random initialisation)".into(), |p| p.display().to_string())),
        item("Fine-tune", if cfg.fine_tune { "all layers".into() } else { "head only (backbone frozen)".into() }),
        item("Optimizer", format!("{:?}, learning rate {}, weight decay {}", cfg.optimizer, cfg.learning_rate, cfg.weight_decay)),
        item("Augmentation", if augs.is_empty() { "none".into() } else { augs.join(", ") }),
        item("Data split", cfg.split.to_string()),
        item("Best epoch chosen by", format!("validation {}", cfg.validation_metric.name())),
        item("Early stopping", cfg.early_stop.map_or("off".into(), |n| format!("after {n} epochs without improvement"))),
        item("Random seed", cfg.seed.to_string()),
        item("Device", crate::device::describe(device)),
        item("Arithmetic", compute.describe()),
        item("Wall time", format!("{seconds:.1} s")),
        item("Software", format!("image-learner {}, libtorch 2.13.0 (tch 0.26)", env!("CARGO_PKG_VERSION"))),
    ];
    let s = &ing.summary;
    let mut data_items = vec![
        item("Images", s.archive_file.clone()),
        item("Metadata", format!("{} ({}, delimiter '{}')", s.metadata_file, s.encoding, s.delimiter)),
        item("Columns", format!("image: '{}', label: '{}'{}{}", s.image_column, s.label_column,
            s.split_column.as_ref().map_or(String::new(), |c| format!(", split: '{c}'")),
            s.group_column.as_ref().map_or(String::new(), |c| format!(", group: '{c}'")))),
        item("Rows matched to an image", format!("{} of {}", s.matched, s.rows)),
        item("Rows without an image", s.rows_without_image.to_string()),
        item("Images without a row", s.images_without_row.to_string()),
        item("ZIP entries skipped (folders, __MACOSX, dot-files, non-images)", s.skipped_entries.to_string()),
    ];
    if !s.missing_examples.is_empty() {
        data_items.push(item("Rows without an image, e.g.", s.missing_examples.join("; ")));
    }
    if !s.unused_examples.is_empty() {
        data_items.push(item("Images without a row, e.g.", s.unused_examples.join("; ")));
    }
    let split_counts: Vec<[usize; 3]> = (0..k)
        .map(|c| [&train_idx, &val_idx, &test_idx].map(|ix| ix.iter().filter(|&&i| set.labels[i] == c).count()))
        .collect();
    let test_names = name_of(&test_idx);
    let pixels = |pos: usize| set.image(test_idx[pos]).to_vec();
    let html = report::build(&ReportInput {
        title: format!("Image Learner report: {} on {}", spec.name, s.archive_file),
        run,
        command_line: cfg.command_line.clone(),
        data: data_items,
        warnings: warnings.clone(),
        split_method,
        classes: &set.classes,
        split_counts,
        history: &outcome.history,
        best_epoch: outcome.best_epoch,
        validation_metric: cfg.validation_metric.name(),
        stopped_early: outcome.stopped_early,
        per_split,
        train_from_training_pass: train_probs.is_none(),
        test_intervals: intervals.as_ref(),
        test_truth: &test_truth,
        test_probs: &test_probs,
        test_names: &test_names,
        test_pixels: &pixels,
        image_size: input_size,
    })?;

    let mut staging = outputs::Staging::new(out)?;
    staging.write(outputs::PREDICTIONS, &preds)?;
    staging.write(outputs::HISTORY, &hist)?;
    staging.write(outputs::METRICS, &serde_json::to_vec_pretty(&metrics_json)?)?;
    staging.write(outputs::BEST_MODEL, &model_zip)?;
    staging.write(outputs::REPORT, html.as_bytes())?;
    staging.commit()?;
    let waited: f64 = outcome.history.iter().map(|r| r.data_wait_seconds).sum();
    eprintln!(
        "time: data {ingested:.1} s, training {training:.1} s (waiting for batches {:.1}%), final evaluation {evaluation:.1} s, report and outputs {:.1} s",
        100.0 * waited / training.max(1e-9),
        outputs_started.elapsed().as_secs_f64()
    );
    Ok(RunSummary {
        output_dir: out.clone(),
        test: test_m,
        best_epoch: outcome.best_epoch,
        epochs_run: outcome.history.len(),
        seconds,
        input_size,
    })
}

/// Used by `predict` and tests: the model of a bundle, ready for evaluation.
pub fn network_from_bundle(
    b: &bundle::Bundle,
    compute: &Compute,
) -> Result<(nn::VarStore, models::Network, &'static models::ModelSpec)> {
    let spec = models::find(&b.config.architecture)?;
    let mut vs = nn::VarStore::new(compute.device);
    let net = spec.build(&vs.root(), b.config.classes.len() as i64);
    weights::copy_variables(&mut vs, None, &b.tensors)?;
    compute.prepare(&vs);
    Ok((vs, net, spec))
}
