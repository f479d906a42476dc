//! The train command's report: the run's facts laid out as the page's items and figures.
use anyhow::Result;

use super::{build, f4, Item, ReportInput, Row, Table};
use crate::data::split::Split;
use crate::outputs::TrainedRun;

fn item(label: &str, value: String) -> Item {
    Item { label: label.to_string(), value }
}

/// Every option and fact of the run, as the report's "Run" table shows it.
fn run_items(run: &TrainedRun) -> Vec<Item> {
    let (cfg, spec) = (run.cfg, run.spec);
    let n = run.set.size;
    let size_note = match cfg.image_size {
        Some(_) => format!("{n}x{n} (--image-size)"),
        None if cfg.use_pretrained => format!(
            "{n}x{n} (from the images, at least {} for the pretrained weights; {}'s default is {}x{})",
            crate::config::least_image_size(true, spec.default_size),
            spec.name,
            spec.default_size,
            spec.default_size
        ),
        None => format!("{n}x{n} (from the images; {}'s default is {}x{})", spec.name, spec.default_size, spec.default_size),
    };
    let augs: Vec<String> = cfg
        .augmentation
        .iter()
        .map(|&a| match a {
            crate::config::Augmentation::RandomResizedCrop => {
                format!("{} ({} to {} of the area)", a.name(), cfg.crop_scale.0[0], cfg.crop_scale.0[1])
            }
            _ => a.name().to_string(),
        })
        .collect();
    vec![
        item("Model", format!("{} ({})", spec.name, spec.reference)),
        item("Parameters", run.parameters.to_string()),
        item("Input size", size_note),
        item("Task", run.task.describe()),
        item("Task chosen by", run.task_chosen.clone().unwrap_or_else(|| format!("--task {}", cfg.task.name()))),
        item("Epochs", format!("{} requested, {} run", cfg.epochs, run.outcome.history.len())),
        item("Batch size", run.batch_size.to_string()),
        item("Decoded images", run.summary.cache.describe()),
        item("Pretrained weights", run.pretrained_file.as_ref().map_or("no (random initialisation)".into(), |p| p.display().to_string())),
        item("Fine-tune", fine_tune_words(cfg)),
        item(
            "Optimizer",
            format!(
                "{:?}, learning rate {} ({}), weight decay {}{}",
                cfg.optimizer,
                cfg.learning_rate,
                if cfg.lr_schedule == crate::config::LrScheduleKind::Constant && cfg.warmup_epochs == 0.0 {
                    "constant".to_string()
                } else {
                    format!("peak; schedule: {}", run.outcome.schedule.describe())
                },
                cfg.weight_decay,
                match cfg.label_smoothing {
                    Some(v) if v > 0.0 => format!(", label smoothing {v}"),
                    _ => String::new(),
                }
            ),
        ),
        item(
            "Moving average of the weights",
            if let Some(d) = cfg.ema_decay.filter(|d| *d > 0.0) {
                format!("decay {d}: validation, the best epoch and the Best Model use the averaged weights")
            } else {
                "off".into()
            },
        ),
        item("Augmentation", if augs.is_empty() { "none".into() } else { augs.join(", ") }),
        item("Test-time augmentation", format!("{} (the validation and test figures)", cfg.tta.describe())),
        item("Data split", cfg.split.to_string()),
        item(
            "Best epoch chosen by",
            match &run.outcome.metric_fallback {
                Some(why) => format!("validation loss: {why}"),
                None => format!("validation {}", cfg.validation_metric.name()),
            },
        ),
        item("Early stopping", cfg.early_stop.map_or("off".into(), |n| format!("after {n} epochs without improvement"))),
        item("Random seed", cfg.seed.to_string()),
        item("Device", crate::device::describe(run.compute.device)),
        item("Arithmetic", run.compute.describe()),
        item("Wall time", format!("{:.1} s", run.seconds)),
        item(
            "Software",
            format!("image-learner {}, libtorch {} (tch {})", env!("CARGO_PKG_VERSION"), crate::shim::torch_version(), env!("IMAGE_LEARNER_TCH_VERSION")),
        ),
    ]
    .into_iter()
    .chain(decision_items(run))
    .collect()
}

/// Which layers trained, when, and at what share of the rate.
fn fine_tune_words(cfg: &crate::config::TrainConfig) -> String {
    if !cfg.fine_tune {
        return "head only (backbone frozen)".into();
    }
    let mut out = match cfg.freeze_epochs {
        0 => "all layers".to_string(),
        1 => "the head alone (and batch norm) in epoch 1, then all layers".to_string(),
        n => format!("the head alone (and batch norm) in epochs 1-{n}, then all layers"),
    };
    if cfg.backbone_lr_mult < 1.0 {
        out += &format!("; the backbone at {} times the rate of the head", cfg.backbone_lr_mult);
    }
    if cfg.layer_decay < 1.0 {
        out += &format!("; each backbone stage at {} times the rate of the stage after it", cfg.layer_decay);
    }
    out
}

/// A classifier's class balancing, and the decisions fitted after training: its temperature and
/// a binary task's threshold. A regression has none of these (its task says no class balance,
/// its decisions none fitted).
fn decision_items(run: &TrainedRun) -> Vec<Item> {
    let mut items: Vec<Item> = run.class_balance.iter().map(|b| item("Class balance", b.clone())).collect();
    items.extend(run.decisions.items().into_iter().map(|(label, value)| item(label, value)));
    items
}

/// ECE, log loss and Brier score of validation and test before and after the temperature (None
/// when the probabilities were not calibrated), and what the section says. `test_before`: the
/// test probabilities at temperature 1.
fn calibration(run: &TrainedRun, test_before: Option<&[Vec<f32>]>) -> (Option<Table>, String) {
    let f = run.figures;
    let bins = crate::metrics::calibration::RELIABILITY_BINS;
    let Some(test_before) = test_before else {
        return (None, format!("The probabilities are the network's own ({}). Calibration error (ECE) uses {bins} equal-width bins of confidence.", run.decisions.temperature_source));
    };
    let raw = run.task.uncalibrated();
    let mut rows = Vec::new();
    let validation_before = f.validation_logits.as_ref().map(|l| raw.probabilities(l));
    let (set, plan) = (run.set, run.plan);
    let splits = [
        (Split::Validation, validation_before.as_deref(), &plan.validation, f.validation.as_ref().and_then(|v| v.classification())),
        (Split::Test, Some(test_before), &plan.test, f.test.classification()),
    ];
    for (split, probs, images, after) in splits {
        let (Some(probs), Some(after)) = (probs, after) else { continue };
        let figures = raw.figures(set, images, probs);
        let Some(before) = figures.classification() else { continue };
        let pair = |b: f64, a: f64| vec![f4(b), f4(a)];
        rows.push(Row {
            name: format!("{} (n={})", split.name(), after.n),
            values: [pair(before.ece, after.ece), pair(before.log_loss, after.log_loss), pair(before.brier_score, after.brier_score)].concat(),
            class: String::new(),
        });
    }
    let header = ["Split", "ECE before", "ECE after", "Log loss before", "Log loss after", "Brier before", "Brier after"].map(String::from).to_vec();
    let note = format!(
        "Temperature scaling divides every logit by {:.4} before the softmax: it was {}. It never changes which class is most probable, only how sure the model says it is; the test figures above are after it. ECE uses {bins} equal-width bins of confidence.",
        run.task.temperature(), run.decisions.temperature_source
    );
    (Some(Table { header, rows }), note)
}

/// What ingestion read and matched, as the report's "Data" table shows it.
fn data_items(run: &TrainedRun) -> Vec<Item> {
    let s = run.summary;
    let mut items = vec![
        item("Images", s.archive_file.clone()),
        item("Metadata", format!("{} ({}, delimiter '{}')", s.metadata_file, s.encoding, s.delimiter)),
        item(
            "Columns",
            format!(
                "image: '{}', label: '{}'{}{}",
                s.image_column,
                s.label_column,
                s.split_column.as_ref().map_or(String::new(), |c| format!(", split: '{c}'")),
                s.group_column.as_ref().map_or(String::new(), |c| format!(", group: '{c}'"))
            ),
        ),
        item("Rows matched to an image", format!("{} of {}", s.matched, s.rows)),
        item("Rows without an image", s.rows_without_image.to_string()),
        item("Images without a row", s.images_without_row.to_string()),
        item("ZIP entries skipped (folders, __MACOSX, dot-files, non-images)", s.skipped_entries.to_string()),
    ];
    if !s.missing_examples.is_empty() {
        items.push(item("Rows without an image, e.g.", s.missing_examples.join("; ")));
    }
    if !s.unused_examples.is_empty() {
        items.push(item("Images without a row, e.g.", s.unused_examples.join("; ")));
    }
    items
}

/// The HTML Model Report of a training run.
pub fn train_report(run: &TrainedRun) -> Result<String> {
    let (set, plan, f) = (run.set, run.plan, run.figures);
    let split_counts = run.task.split_counts(set, plan);
    let (test_truth, test_values) = run.task.answers(set, &plan.test);
    let test_names = run.names(&plan.test);
    let pixels = |pos: usize| Ok(set.image(plan.test[pos])?.into_owned());
    let uncalibrated = (run.task.temperature() != 1.0).then(|| run.task.uncalibrated().probabilities(&f.test_logits));
    let (calibration, calibration_note) = calibration(run, uncalibrated.as_deref());
    build(&ReportInput {
        title: format!("Image Learner report: {} on {}", run.spec.name, run.summary.archive_file),
        run: run_items(run),
        command_line: run.cfg.command_line.clone(),
        data: data_items(run),
        warnings: run.warnings.clone(),
        split_method: plan.method.clone(),
        task: run.task,
        split_counts,
        history: &run.outcome.history,
        cross_validation: run.cross_validation.map(cross_validation_section),
        schedule: run.outcome.schedule.describe(),
        best_epoch: run.outcome.best_epoch,
        validation_metric: run.outcome.validation_metric.name(),
        stopped_early: run.outcome.stopped_early,
        per_split: f.per_split(),
        train_from_training_pass: f.train_scores.is_none(),
        test_intervals: f.test_intervals.as_ref(),
        test_truth: &test_truth,
        test_values: &test_values,
        test_probs: &f.test_scores,
        test_names: &test_names,
        test_pixels: &pixels,
        image_size: set.size,
        test_probs_uncalibrated: uncalibrated.as_deref(),
        calibration,
        calibration_note,
        threshold_curve: run.decisions.threshold_curve.as_ref().map(|(m, c)| (m.name(), c.as_slice())),
        explanations: run.explanations,
        explanation_method: format!("{} at {} of {}", run.cfg.cam.title(), run.spec.cam_target, run.spec.name),
        tta: run.cfg.tta,
    })
}

/// The cross-validation's table: each figure per fold, the folds' mean ± standard deviation, and
/// the out-of-fold value with its bootstrap interval.
fn cross_validation_section(cv: &crate::cross_validation::CrossValidation) -> super::CrossValidationSection {
    let k = cv.folds.k;
    let mut header = vec!["Figure".to_string()];
    header.extend((1..=k).map(|f| format!("Fold {f}")));
    header.extend(["Mean ± SD".to_string(), "Out-of-fold (95% interval)".to_string()]);
    let oof = serde_json::to_value(&cv.oof).unwrap_or_default();
    let rows = cv
        .per_fold()
        .into_iter()
        .map(|(name, values)| {
            let (mean, sd) = crate::cross_validation::mean_sd(&values);
            let mut cells: Vec<String> = values.iter().map(|v| f4(*v)).collect();
            cells.push(format!("{} ± {}", f4(mean), f4(sd)));
            let pooled = oof.get(&name).and_then(serde_json::Value::as_f64).map_or("-".to_string(), f4);
            let ci = cv.oof_intervals.as_ref().and_then(|i| i.get(&name));
            cells.push(match ci {
                Some(i) => format!("{pooled} ({}-{})", f4(i.low), f4(i.high)),
                None => pooled,
            });
            Row { name, values: cells, class: String::new() }
        })
        .collect();
    let sizes: Vec<String> = (0..k).map(|f| cv.folds.fold.iter().filter(|&&x| x == f).count().to_string()).collect();
    let epochs: Vec<String> = cv.models.iter().map(|m| m.outcome.best_epoch.to_string()).collect();
    let note = format!(
        "{k} fold models; fold k's model trained on the other folds and was validated on fold k ({} images per fold; best epochs {}). \
         The out-of-fold figures score every non-test image with the one model that never trained on it: \
         with their intervals and the folds' spread, they are the figures to quote in a paper.",
        sizes.join(", "),
        epochs.join(", ")
    );
    super::CrossValidationSection { note, table: super::Table { header, rows } }
}
