//! The `predict` command: a Best Model and a ZIP of images (optionally a CSV naming them, with
//! labels to score against) give a predictions CSV.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::config::{ColumnRef, DeviceChoice};
use crate::data::archive::Archive;
use crate::data::metadata::{ColumnChoice, Metadata, Row};
use crate::data::{self, SizePolicy};
use crate::metrics;
use crate::outputs::{self, bundle, predictions};
use crate::pipeline;
use crate::train;

pub struct PredictConfig {
    pub model: PathBuf,
    pub images: PathBuf,
    pub metadata: Option<PathBuf>,
    pub output: PathBuf,
    /// A metrics page, written when the images have labels.
    pub report: Option<PathBuf>,
    pub image_column: Option<ColumnRef>,
    pub label_column: Option<ColumnRef>,
    pub batch_size: Option<usize>,
    pub threads: Option<usize>,
    pub device: DeviceChoice,
    pub precision: crate::config::PrecisionChoice,
}

pub struct PredictSummary {
    pub images: usize,
    pub metrics: Option<metrics::Metrics>,
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

pub fn run_predict(cfg: &PredictConfig) -> Result<PredictSummary> {
    let b = bundle::read(&cfg.model)?;
    pipeline::configure_runtime(cfg.threads);
    let compute = crate::precision::Compute::resolve(crate::device::resolve(cfg.device)?, cfg.precision)?;
    let meta = match &cfg.metadata {
        Some(path) => data::metadata::read_metadata(
            path,
            &ColumnChoice {
                image: cfg.image_column.clone(),
                label: cfg.label_column.clone(),
                split: None,
                group: None,
                label_optional: true,
            },
        )?,
        None => rows_from_archive(&cfg.images)?,
    };
    let ing = data::ingest(&cfg.images, meta, SizePolicy::Fixed(b.config.input_size as usize), Some(&b.config.classes))?;
    let s = &ing.summary;
    if s.rows_without_image > 0 {
        eprintln!("warning: {} rows name no image in {} (e.g. {})", s.rows_without_image, s.archive_file, s.missing_examples.join("; "));
    }
    let (_vs, net, _) = pipeline::network_from_bundle(&b, &compute)?;
    let set = Arc::new(ing.images);
    let indices: Vec<usize> = (0..set.len()).collect();
    let batch = cfg.batch_size.unwrap_or(b.config.eval_batch_size).max(1);
    let probs = train::predict_probs(&net, &set, &indices, batch, b.config.normalization, &compute);
    let truth: Option<Vec<String>> = ing.labelled.then(|| set.labels.iter().map(|&l| set.classes[l].clone()).collect());
    let csv = predictions::to_csv(&set.names, truth.as_deref(), &probs, &set.classes, None, b.config.options.threshold)?;
    outputs::write_atomic(&cfg.output, &csv)?;
    let metrics = ing.labelled.then(|| metrics::compute_with_threshold(&set.labels, &probs, &set.classes, b.config.options.threshold));
    if let (Some(path), Some(m)) = (&cfg.report, &metrics) {
        let title = format!("Image Learner predictions: {} on {}", b.config.architecture, s.archive_file);
        let subtitle = format!("{} images scored against the labels of {}", m.n, s.metadata_file);
        outputs::write_atomic(path, crate::report::build_metrics_page(&title, &subtitle, m, &set.classes)?.as_bytes())?;
    } else if let Some(path) = &cfg.report {
        let page = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>No labels</title></head><body>\
                    <h1>No labels to score against</h1><p>The metadata has no label column (or some rows have no label), \
                    so the predictions were not scored.</p></body></html>";
        outputs::write_atomic(path, page.as_bytes())?;
    }
    Ok(PredictSummary { images: set.len(), metrics })
}
