//! From the ZIP and the CSV to decoded images: metadata table, archive matching, decoding, where
//! the decoded images live, splitting, augmentation and batching each have a module here.
pub mod archive;
pub mod augment;
pub mod balance;
pub mod batches;
pub mod folds;
pub mod images;
pub mod metadata;
pub mod split;
pub mod store;

use std::borrow::Cow;
use std::path::Path;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;

use crate::bail_input;
use crate::config::CacheChoice;
use archive::Archive;
use metadata::Metadata;
use store::{CachePlan, Store};

/// The matched images, each 8-bit RGB, size x size x 3, with their labels.
pub struct ImageSet {
    pub size: usize,
    pub store: Store,
    /// Class index of each image (index into `classes`); 0 for regression.
    pub labels: Vec<usize>,
    /// Regression: each image's true value (NaN where the row has none); empty otherwise.
    pub targets: Vec<f64>,
    /// The metadata row's image reference, as written in the CSV.
    pub names: Vec<String>,
    /// The classes (empty for regression).
    pub classes: Vec<String>,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    /// The true values of images `indices` (regression).
    pub fn values(&self, indices: &[usize]) -> Vec<f64> {
        indices.iter().map(|&i| self.targets[i]).collect()
    }
    /// The true classes of images `indices`.
    pub fn truth(&self, indices: &[usize]) -> Vec<usize> {
        indices.iter().map(|&i| self.labels[i]).collect()
    }
    /// Image `i`, decoded; an error where it must be read from the ZIP again and cannot be.
    pub fn image(&self, i: usize) -> Result<Cow<'_, [u8]>> {
        self.store.image(i, &self.names[i], self.size)
    }
    /// Images `indices`, decoded, in that order.
    pub fn images(&self, indices: &[usize]) -> Result<Vec<Cow<'_, [u8]>>> {
        self.store.images(indices, &self.names, self.size)
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
    /// Where the decoded images are kept, and why.
    pub cache: CachePlan,
}

/// The square size images are resized to.
#[derive(Clone, Copy, Debug)]
pub enum SizePolicy {
    /// Exactly this size (`--image-size`, or a saved model's size).
    Fixed(usize),
    /// The first image's larger side, between `min` (at least 32) and `max` (the model's default
    /// size): small images are not blown up to the model's ImageNet size.
    FromImages { min: usize, max: usize },
}

/// A decoded data set with the metadata rows it came from (same order).
pub struct Ingested {
    pub images: ImageSet,
    /// Whether every row had a label (always so for training).
    pub labelled: bool,
    pub rows: Vec<metadata::Row>,
    pub summary: IngestSummary,
}

impl Ingested {
    /// Logs how the rows met the images, and returns ingestion's warnings for the report: its
    /// own, and the rows that name no image.
    pub fn announce(&self) -> Vec<String> {
        let s = &self.summary;
        eprintln!(
            "data: {} of {} rows matched an image in {}; {} rows without an image; {} images without a row",
            s.matched, s.rows, s.archive_file, s.rows_without_image, s.images_without_row
        );
        eprintln!("decoded images: {}", s.cache.describe());
        let mut warnings = s.warnings.clone();
        if s.rows_without_image > 0 {
            warnings.push(format!(
                "{} rows of {} name no image in {} (e.g. {}); they are left out",
                s.rows_without_image,
                s.metadata_file,
                s.archive_file,
                s.missing_examples.join("; ")
            ));
        }
        warnings
    }
}

/// What the label column holds.
#[derive(Clone, Copy, Debug)]
pub enum Labels<'a> {
    /// Class names: these (prediction with a saved model), or `None` for the sorted distinct
    /// labels. A row whose label is not a known class is an error.
    Classes(Option<&'a [String]>),
    /// Numbers (regression). A label that is not a number is an error (training leaves such
    /// rows out first: `metadata::numeric_rows`).
    Values,
}

/// Reads the metadata, matches it to the ZIP, and decodes every matched image at `size`: those
/// that decode are the data set, kept in memory or read again per batch as `cache` decides.
pub fn ingest(zip_path: &Path, meta: Metadata, size: SizePolicy, labels_are: Labels, cache: (CacheChoice, store::Reads)) -> Result<Ingested> {
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
    let truth = read_labels(&meta, &report.matched, labels_are)?;
    let size = choose_size(&mut archive, &report.matched, size);
    let cache = store::plan(cache.0, cache.1, report.matched.len(), size, store::Budget::of_this_job().as_ref());
    let decoded = decode_all(&mut archive, &report.matched, size, cache.in_memory())?;

    let mut warnings = meta.warnings.clone();
    warnings.extend(decoded.warnings(&archive.display_name, size));
    if let Some((line, image, first)) = report.repeated.first() {
        warnings.push(format!(
            "{} rows of {} name an image that an earlier row, with the same label, already names (e.g. line {line} \
             '{}' is line {first}'s image); each image is used once",
            report.repeated.len(),
            meta.file_name,
            crate::error::short(image)
        ));
    }
    // From here on only the images that decoded count as matched.
    let kept = &decoded.kept;
    let labels: Vec<usize> = kept.iter().map(|&k| truth.labels[k]).collect();
    let targets: Vec<f64> = if truth.targets.is_empty() { Vec::new() } else { kept.iter().map(|&k| truth.targets[k]).collect() };
    let report = archive::MatchReport { matched: kept.iter().map(|&k| report.matched[k]).collect(), ..report };
    let rows: Vec<metadata::Row> = report.matched.iter().map(|&(r, _)| meta.rows[r].clone()).collect();
    let store = match cache.in_memory() {
        true => Store::Ram(decoded.pixels),
        false => Store::Zip { reader: archive.entry_reader(), entries: report.matched.iter().map(|&(_, e)| archive.entries[e].index).collect() },
    };
    let summary = summarise(&meta, &archive, &report, warnings, cache);
    Ok(Ingested {
        images: ImageSet {
            size,
            store,
            labels,
            targets,
            names: rows.iter().map(|r| r.image.clone()).collect(),
            classes: truth.classes,
        },
        labelled: truth.labelled,
        rows,
        summary,
    })
}

/// The label of each matched row, read as `labels_are` says.
struct Truth {
    classes: Vec<String>,
    /// Class index per matched row (0 for a regression or a row without a label).
    labels: Vec<usize>,
    /// Regression: the value per matched row (NaN where missing); empty otherwise.
    targets: Vec<f64>,
    labelled: bool,
}

fn read_labels(meta: &Metadata, matched: &[(usize, usize)], labels_are: Labels) -> Result<Truth> {
    let regression = matches!(labels_are, Labels::Values);
    let classes: Vec<String> = match labels_are {
        Labels::Values => Vec::new(),
        Labels::Classes(Some(c)) => c.to_vec(),
        Labels::Classes(None) => {
            let mut c: Vec<String> = matched.iter().map(|&(r, _)| meta.rows[r].label.clone()).collect();
            c.sort();
            c.dedup();
            c
        }
    };
    let mut labels = Vec::with_capacity(matched.len());
    let mut targets = Vec::new();
    let mut labelled = true;
    for &(r, _) in matched {
        let row = &meta.rows[r];
        // A regression target that is missing (empty, NA, ...) leaves just that image unscored;
        // training has dropped such rows already, so only `predict` meets them.
        if regression && metadata::is_missing(&row.label) {
            targets.push(f64::NAN);
            labels.push(0);
            continue;
        }
        if row.label.is_empty() {
            labelled = false;
            labels.push(0);
            if regression {
                targets.push(f64::NAN);
            }
            continue;
        }
        if regression {
            match metadata::parse_value(&row.label) {
                Some(v) => targets.push(v),
                None => bail_input!(
                    "{} line {}: the value '{}' in the column '{}' is not a number, and this model predicts a number",
                    meta.file_name,
                    row.line,
                    crate::error::short(&row.label),
                    meta.label_column
                ),
            }
            labels.push(0);
            continue;
        }
        // A saved model's classes are matched as training unified labels: exactly, else by case
        // or numeric value ("NV" is "nv", "1.0" is "1").
        let found = classes.iter().position(|c| *c == row.label).or_else(|| {
            let key = metadata::label_key(&row.label);
            classes.iter().position(|c| metadata::label_key(c) == key)
        });
        match found {
            Some(l) => labels.push(l),
            None => bail_input!(
                "{} line {}: label '{}' is not one of the model's classes ({})",
                meta.file_name,
                row.line,
                crate::error::short(&row.label),
                classes.join(", ")
            ),
        }
    }
    Ok(Truth { classes, labels, targets, labelled })
}

/// The square size the policy gives for these images.
fn choose_size(archive: &mut Archive, matched: &[(usize, usize)], policy: SizePolicy) -> usize {
    match policy {
        SizePolicy::Fixed(s) => s,
        SizePolicy::FromImages { min, max } => {
            // The first image whose size can be read: a damaged first image must not pick it.
            let mut dims = None;
            for &(_, e) in matched {
                let Ok(bytes) = archive.read(e) else { continue };
                dims = image::ImageReader::new(std::io::Cursor::new(&bytes))
                    .with_guessed_format()
                    .ok()
                    .and_then(|r| r.into_dimensions().ok())
                    .filter(|&(w, h)| w > 0 && h > 0);
                if dims.is_some() {
                    break;
                }
            }
            dims.map_or(max, |(w, h)| (w.max(h) as usize).clamp(min.clamp(32, max), max))
        }
    }
}

/// The matched images, decoded.
struct Decoded {
    /// The decoded images, when kept.
    pixels: Vec<u8>,
    /// Positions (in the matched list) of the images that decoded, in order.
    kept: Vec<usize>,
    /// Why each image that did not decode was left out.
    skipped: Vec<String>,
    /// How many were smaller than 8x8 and enlarged.
    tiny: usize,
}

impl Decoded {
    fn warnings(&self, archive: &str, size: usize) -> Vec<String> {
        let mut w = Vec::new();
        if !self.skipped.is_empty() {
            w.push(format!(
                "{} image(s) in {archive} could not be used and were left out: {}{}",
                self.skipped.len(),
                self.skipped.iter().take(5).cloned().collect::<Vec<_>>().join("; "),
                if self.skipped.len() > 5 { "; ..." } else { "" }
            ));
        }
        if self.tiny > 0 {
            w.push(format!("{} image(s) are smaller than 8x8 pixels and were enlarged to {size}x{size}", self.tiny));
        }
        w
    }
}

/// Reads and decodes in chunks, so that at most one chunk of compressed bytes is held at once;
/// keeps the pixels when `keep`. An image that cannot be decoded is left out with a warning naming
/// it; none decoding is an error.
fn decode_all(archive: &mut Archive, matched: &[(usize, usize)], size: usize, keep: bool) -> Result<Decoded> {
    let mut out = Decoded { pixels: Vec::with_capacity(if keep { matched.len() * size * size * 3 } else { 0 }), kept: Vec::with_capacity(matched.len()), skipped: Vec::new(), tiny: 0 };
    // Chunks of at most 256 images or 512 MiB of decompressed bytes.
    const CHUNK: usize = 256;
    const CHUNK_BYTES: usize = 512 << 20;
    let mut next = 0;
    while next < matched.len() {
        let start = next;
        let mut raw = Vec::new();
        let mut bytes = 0;
        while next < matched.len() && raw.len() < CHUNK && bytes < CHUNK_BYTES {
            let data = archive.read(matched[next].1)?;
            bytes += data.len();
            raw.push(data);
            next += 1;
        }
        let decoded: Vec<Result<(Vec<u8>, bool), String>> = raw
            .par_iter()
            .zip(&matched[start..next])
            .map(|(bytes, &(_, e))| {
                let name = crate::error::short(&archive.entries[e].name);
                images::decode_rgb(bytes, &name, size as u32).map_err(|err| format!("{err:#}"))
            })
            .collect();
        for (j, d) in decoded.into_iter().enumerate() {
            match d {
                Ok((px, small)) => {
                    if keep {
                        out.pixels.extend_from_slice(&px);
                    }
                    out.kept.push(start + j);
                    out.tiny += usize::from(small);
                }
                Err(msg) => out.skipped.push(msg),
            }
        }
    }
    if out.kept.is_empty() {
        bail_input!(
            "none of the {} matched images in {} could be decoded: {}",
            matched.len(),
            archive.display_name,
            out.skipped.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        );
    }
    Ok(out)
}

/// What ingestion found, for the log and the report.
fn summarise(meta: &Metadata, archive: &Archive, report: &archive::MatchReport, warnings: Vec<String>, cache: CachePlan) -> IngestSummary {
    IngestSummary {
        metadata_file: meta.file_name.clone(),
        archive_file: archive.display_name.clone(),
        rows: meta.rows.len(),
        matched: report.matched.len(),
        rows_without_image: report.missing.len(),
        missing_examples: report.missing.iter().take(5).map(|(l, i)| format!("line {l}: {}", crate::error::short(i))).collect(),
        images_without_row: report.unused.len(),
        unused_examples: report.unused.iter().take(5).map(|n| crate::error::short(n)).collect(),
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
        warnings,
        cache,
    }
}

/// Opens a file the user gave (`what` names it in messages): a missing file, a folder, a pipe or
/// a device is refused with a message naming the path, and so is one larger than `max_bytes`.
pub fn open_input(path: &Path, what: &str, max_bytes: u64) -> Result<std::fs::File> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound { "no such file".to_string() } else { e.to_string() };
        crate::error::input_error(format!("cannot open the {what} {shown}: {why}"))
    })?;
    if meta.is_dir() {
        bail_input!("the {what} {shown} is a folder; give the file itself");
    }
    if !meta.is_file() {
        bail_input!("the {what} {shown} is not a regular file (a pipe or a device?); give a file");
    }
    if meta.len() > max_bytes {
        bail_input!("the {what} {shown} is {} MiB, more than the {} MiB such a file can be", meta.len() >> 20, max_bytes >> 20);
    }
    std::fs::File::open(path).map_err(|e| crate::error::input_error(format!("cannot open the {what} {shown}: {e}")))
}
