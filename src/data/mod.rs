//! From the ZIP and the CSV to decoded images in memory: metadata table, archive matching,
//! decoding, splitting, augmentation and batching each have a module here.
pub mod archive;
pub mod augment;
pub mod batches;
pub mod images;
pub mod metadata;
pub mod split;

use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use crate::bail_input;
use archive::Archive;
use metadata::{ColumnChoice, Metadata};

/// Every matched image decoded once, kept as 8-bit RGB (N x size x size x 3).
pub struct ImageSet {
    pub size: usize,
    pub pixels: Vec<u8>,
    /// Class index of each image (index into `classes`).
    pub labels: Vec<usize>,
    /// The metadata row's image reference, as written in the CSV.
    pub names: Vec<String>,
    /// The ZIP entry each image came from.
    pub entries: Vec<String>,
    pub classes: Vec<String>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.size * self.size * 3;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// What ingestion found, for stderr and the report.
#[derive(Clone, Debug, Serialize)]
pub struct IngestSummary {
    pub metadata_file: String,
    pub archive_file: String,
    pub rows: usize,
    pub matched: usize,
    pub rows_without_image: usize,
    pub missing_examples: Vec<String>,
    pub images_without_row: usize,
    pub unused_examples: Vec<String>,
    pub skipped_entries: usize,
    pub image_column: String,
    pub label_column: String,
    pub split_column: Option<String>,
    pub group_column: Option<String>,
    pub delimiter: String,
    pub encoding: String,
    pub warnings: Vec<String>,
}

/// The square size images are resized to.
#[derive(Clone, Copy, Debug)]
pub enum SizePolicy {
    /// Exactly this size (`--image-size`, or a saved model's size).
    Fixed(usize),
    /// The first image's larger side, between 32 and `max` (the model's default size): small
    /// images are not blown up to the model's ImageNet size.
    FromImages { max: usize },
}

/// A decoded data set with the metadata rows it came from (same order).
pub struct Ingested {
    pub images: ImageSet,
    /// Whether every row had a label (always so for training).
    pub labelled: bool,
    pub rows: Vec<metadata::Row>,
    pub summary: IngestSummary,
}

/// Reads the metadata, matches it to the ZIP, and decodes every matched image at `size`.
/// `classes`: the class list to use (prediction with a saved model); `None` takes the sorted
/// distinct labels. Rows whose label is not a known class are an error.
pub fn ingest(
    zip_path: &Path,
    meta: Metadata,
    size: SizePolicy,
    classes: Option<&[String]>,
) -> Result<Ingested> {
    let mut archive = Archive::open(zip_path)?;
    let report = archive.match_rows(&meta.rows)?;
    if report.matched.is_empty() {
        let ex: Vec<_> = meta.rows.iter().take(3).map(|r| r.image.as_str()).collect();
        let zex: Vec<_> = archive.entries.iter().take(3).map(|e| e.name.as_str()).collect();
        bail_input!(
            "no row of {} names an image in {}: the column '{}' holds e.g. {} while the ZIP holds e.g. {}. \
             Check the image column (--image-column) and the ZIP",
            meta.file_name,
            archive.display_name,
            meta.image_column,
            ex.join(", "),
            zex.join(", ")
        );
    }
    let classes: Vec<String> = match classes {
        Some(c) => c.to_vec(),
        None => {
            let mut c: Vec<String> = report.matched.iter().map(|&(r, _)| meta.rows[r].label.clone()).collect();
            c.sort();
            c.dedup();
            c
        }
    };
    let mut labels = Vec::with_capacity(report.matched.len());
    let mut labelled = true;
    for &(r, _) in &report.matched {
        let row = &meta.rows[r];
        if row.label.is_empty() {
            labelled = false;
            labels.push(0);
            continue;
        }
        match classes.iter().position(|c| *c == row.label) {
            Some(l) => labels.push(l),
            None => bail_input!(
                "{} line {}: label '{}' is not one of the model's classes ({})",
                meta.file_name,
                row.line,
                row.label,
                classes.join(", ")
            ),
        }
    }
    let mut raw = Vec::with_capacity(report.matched.len());
    for &(_, e) in &report.matched {
        raw.push(archive.read(e)?);
    }
    let size = match size {
        SizePolicy::Fixed(s) => s,
        SizePolicy::FromImages { max } => {
            let first = image::ImageReader::new(std::io::Cursor::new(&raw[0]))
                .with_guessed_format()
                .ok()
                .and_then(|r| r.into_dimensions().ok());
            first.map_or(max, |(w, h)| (w.max(h) as usize).clamp(32, max))
        }
    };
    let entries: Vec<String> = report.matched.iter().map(|&(_, e)| archive.entries[e].name.clone()).collect();
    let decoded: Vec<Vec<u8>> = raw
        .par_iter()
        .zip(&entries)
        .map(|(bytes, name)| {
            images::decode_rgb(bytes, name, size as u32)
                .map_err(|e| crate::error::input_error(format!("{}: {e:#}", archive.display_name)))
        })
        .collect::<Result<_>>()?;
    drop(raw);
    let mut pixels = Vec::with_capacity(decoded.len() * size * size * 3);
    for d in decoded {
        pixels.extend_from_slice(&d);
    }
    let rows: Vec<metadata::Row> = report.matched.iter().map(|&(r, _)| meta.rows[r].clone()).collect();
    let summary = IngestSummary {
        metadata_file: meta.file_name.clone(),
        archive_file: archive.display_name.clone(),
        rows: meta.rows.len(),
        matched: report.matched.len(),
        rows_without_image: report.missing.len(),
        missing_examples: report.missing.iter().take(5).map(|(l, i)| format!("line {l}: {i}")).collect(),
        images_without_row: report.unused.len(),
        unused_examples: report.unused.iter().take(5).cloned().collect(),
        skipped_entries: archive.skipped,
        image_column: meta.image_column.clone(),
        label_column: meta.label_column.clone(),
        split_column: meta.split_column.clone(),
        group_column: meta.group_column.clone(),
        delimiter: match meta.delimiter {
            b'\t' => "tab".into(),
            d => (d as char).to_string(),
        },
        encoding: meta.encoding.to_string(),
        warnings: meta.warnings.clone(),
    };
    Ok(Ingested {
        images: ImageSet { size, pixels, labels, names: rows.iter().map(|r| r.image.clone()).collect(), entries, classes },
        labelled,
        rows,
        summary,
    })
}

/// Reads the metadata file with the given column choice.
pub fn read_metadata(path: &Path, choice: &ColumnChoice) -> Result<Metadata> {
    metadata::read_metadata(path, choice)
}
