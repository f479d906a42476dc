//! `image-learner predict`: a Best Model read -> images ingested (every image of the ZIP, or
//! those a CSV names) -> scored -> the Predictions CSV, and with labels a metrics page.
use std::sync::Arc;

use anyhow::Result;

use crate::config::PredictConfig;
use crate::data::archive::Archive;
use crate::data::metadata::{ColumnChoice, Metadata, Row};
use crate::data::{self, SizePolicy};
use crate::evaluation::{self, Evaluator};
use crate::weights::bundle;
use crate::{device, explain, metrics, outputs, precision, report, runtime};

pub struct PredictSummary {
    pub images: usize,
    pub metrics: Option<metrics::Figures>,
    /// How many images the Explanations ZIP explains.
    pub explained: usize,
}

/// Every image of the ZIP, in archive order, as metadata rows without labels.
fn rows_from_archive(zip: &std::path::Path) -> Result<Metadata> {
    let archive = Archive::open(zip)?;
    let rows = archive
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| Row { line: i + 1, image: e.name.clone(), label: String::new(), split: None, group: None })
        .collect();
    Ok(Metadata {
        file_name: "(all images in the ZIP)".into(),
        delimiter: b',',
        encoding: "UTF-8",
        headers: vec!["image_path".into()],
        image_column: "image_path".into(),
        label_column: String::new(),
        split_column: None,
        group_column: None,
        rows,
        warnings: Vec::new(),
    })
}

pub fn run(cfg: &PredictConfig) -> Result<PredictSummary> {
    if cfg.explanations.is_some() && cfg.explain == crate::config::ExplainCount::Images(0) {
        crate::bail_input!("--explanations names a ZIP for the explanations, but --explain is 0: give --explain N (or all) to write it");
    }
    let mut named: Vec<(&str, &std::path::Path)> = vec![("--output", &cfg.output)];
    if let Some(r) = &cfg.report {
        named.push(("--report", r));
    }
    let explanations = explanations_path(cfg);
    if cfg.explain != crate::config::ExplainCount::Images(0) {
        named.push((if cfg.explanations.is_some() { "--explanations" } else { "the explanations (beside --output)" }, &explanations));
    }
    outputs::check_distinct(&named)?;
    let b = bundle::read(&cfg.model)?;
    let task = b.task();
    runtime::configure(cfg.runtime.threads);
    let compute = precision::Compute::resolve(device::resolve(cfg.runtime.device)?, cfg.runtime.precision)?;
    let meta = match &cfg.metadata {
        Some(path) => data::metadata::read_metadata(path, &ColumnChoice::for_prediction(&cfg.columns))?,
        None => rows_from_archive(&cfg.images)?,
    };
    task.check_labels(&meta.rows, &meta.label_column, &meta.file_name)?;
    let ing = data::ingest(&cfg.images, meta, SizePolicy::Fixed(b.config.image_size), task.labels(), (cfg.runtime.cache, data::store::Reads::Once))?;
    let s = &ing.summary;
    eprintln!("decoded images: {}", s.cache.describe());
    if s.rows_without_image > 0 {
        eprintln!("warning: {} rows name no image in {} (e.g. {})", s.rows_without_image, s.archive_file, s.missing_examples.join("; "));
    }
    let (nets, spec) = evaluation::networks_from_bundle(&b, &compute)?;
    if nets.len() > 1 {
        eprintln!("model: an ensemble of {} fold models; each image's scores are their mean", nets.len());
    }
    let set = Arc::new(ing.images);
    let indices: Vec<usize> = (0..set.len()).collect();
    let batch_size = cfg.batch_size.unwrap_or(b.config.eval_batch_size).max(1);
    let tta = cfg.tta.unwrap_or(b.config.options.tta).resolve(&b.config.options.augmentation);
    if tta != crate::config::Tta::None {
        eprintln!("test-time augmentation: {}", tta.describe());
    }
    let member_tasks = b.member_tasks();
    let members: Vec<Evaluator> = nets
        .iter()
        .zip(&member_tasks)
        .map(|((_, net), task)| Evaluator { net, task, set: &set, batch_size, normalization: b.config.normalization, compute: &compute, tta })
        .collect();
    let scores = evaluation::mean_scores(&members, &indices)?;
    // A regression scores only the images with a true value; the others are still predicted.
    let scored = task.scored(&set, &indices);
    let labelled = ing.labelled && !scored.is_empty();
    if ing.labelled && scored.len() < indices.len() {
        let lines: Vec<usize> = indices.iter().filter(|&&i| !set.targets[i].is_finite()).map(|&i| ing.rows[i].line).collect();
        eprintln!(
            "warning: {} of {} images have no value in the column '{}' of {} (lines {}): predicted, but not scored",
            lines.len(),
            indices.len(),
            ing.summary.label_column,
            s.metadata_file,
            data::metadata::line_list(&lines)
        );
    }
    let truth: Option<Vec<String>> = labelled.then(|| task.written_truth(&set, &ing.rows));
    // The predictions and the page are committed together: both, or neither.
    let mut files = outputs::OutputSet::new();
    files.stage(&cfg.output, &task.predictions_csv(&set.names, truth.as_deref(), &scores, None)?)?;
    let explained = cfg.explain.of(indices.len());
    if explained > 0 {
        let picks = task.predict_picks(&scores, explained);
        let maps = explain::explain_picks(&members, &indices, picks, cfg.cam)?;
        let output = |t: i64| task.output_name(t);
        let method = format!("{} at {}", cfg.cam.title(), spec.cam_target);
        files.stage(&explanations_path(cfg), &outputs::explanations::zip(&set, &indices, &maps, &output, &method)?)?;
    }
    let metrics = labelled.then(|| {
        let scored_scores: Vec<Vec<f32>> = scored.iter().map(|&i| scores[i].clone()).collect();
        task.figures(&set, &scored, &scored_scores)
    });
    if let Some(path) = &cfg.report {
        let page = match &metrics {
            Some(m) => {
                let title = format!("Image Learner predictions: {} on {}", b.config.architecture, s.archive_file);
                let subtitle = format!("{} images scored against the labels of {}", m.n(), s.metadata_file);
                report::build_metrics_page(&title, &subtitle, m, task.classes())?
            }
            None => report::NO_LABELS_PAGE.to_string(),
        };
        files.stage(path, page.as_bytes())?;
    }
    files.commit()?;
    Ok(PredictSummary { images: set.len(), metrics, explained })
}

/// Where the Explanations ZIP goes: `--explanations`, else beside the predictions.
pub fn explanations_path(cfg: &PredictConfig) -> std::path::PathBuf {
    cfg.explanations.clone().unwrap_or_else(|| cfg.output.with_file_name("explanations.zip"))
}
