//! The train command's report: the run's facts laid out as the page's items and figures.
use anyhow::Result;

use super::{build, Item, ReportInput};
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
        None => format!("{n}x{n} (from the images; {}'s default is {}x{})", spec.name, spec.default_size, spec.default_size),
    };
    let augs: Vec<&str> = cfg.augmentation.iter().map(|a| a.name()).collect();
    vec![
        item("Model", format!("{} ({})", spec.name, spec.reference)),
        item("Parameters", run.parameters.to_string()),
        item("Input size", size_note),
        item("Task", run.task.describe()),
        item("Epochs", format!("{} requested, {} run", cfg.epochs, run.outcome.history.len())),
        item("Batch size", run.batch_size.to_string()),
        item("Pretrained weights", run.pretrained_file.as_ref().map_or("no (random initialisation)".into(), |p| p.display().to_string())),
        item("Fine-tune", if cfg.fine_tune { "all layers".into() } else { "head only (backbone frozen)".into() }),
        item("Optimizer", format!("{:?}, learning rate {}, weight decay {}", cfg.optimizer, cfg.learning_rate, cfg.weight_decay)),
        item("Augmentation", if augs.is_empty() { "none".into() } else { augs.join(", ") }),
        item("Data split", cfg.split.to_string()),
        item("Best epoch chosen by", format!("validation {}", cfg.validation_metric.name())),
        item("Early stopping", cfg.early_stop.map_or("off".into(), |n| format!("after {n} epochs without improvement"))),
        item("Random seed", cfg.seed.to_string()),
        item("Device", crate::device::describe(run.compute.device)),
        item("Arithmetic", run.compute.describe()),
        item("Wall time", format!("{:.1} s", run.seconds)),
        item("Software", format!("image-learner {}, libtorch 2.13.0 (tch 0.26)", env!("CARGO_PKG_VERSION"))),
    ]
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
    let split_counts: Vec<[usize; 3]> = (0..set.classes.len())
        .map(|c| Split::ALL.map(|s| plan.indices(s).iter().filter(|&&i| set.labels[i] == c).count()))
        .collect();
    let test_names = run.names(&plan.test);
    let pixels = |pos: usize| set.image(plan.test[pos]).to_vec();
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
        best_epoch: run.outcome.best_epoch,
        validation_metric: run.cfg.validation_metric.name(),
        stopped_early: run.outcome.stopped_early,
        per_split: f.per_split(),
        train_from_training_pass: f.train_scores.is_none(),
        test_intervals: f.test_intervals.as_ref(),
        test_truth: &f.test_truth,
        test_probs: &f.test_scores,
        test_names: &test_names,
        test_pixels: &pixels,
        image_size: set.size,
    })
}
