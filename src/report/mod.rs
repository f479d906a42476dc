//! The HTML Model Report: one self-contained page (inline CSS and SVG, thumbnails as data URIs,
//! no external resource). A view model of pre-formatted text is filled into
//! `templates/report.html`; an optional inline script adds tabs, sorting and a class filter, and
//! everything stays readable when Galaxy strips scripts.
mod classification;
mod epochs;
pub mod plots;
mod predict_page;
mod regression;
mod train_page;

pub use predict_page::{build_metrics_page, NO_LABELS_PAGE};
pub use train_page::train_report;
use epochs::{epoch_plots, epochs_table};

use askama::Template;
use base64::Engine;

use crate::data::split::Split;
use crate::explain::{overlay, Explained};
use crate::metrics::{self, Figures, Intervals, Metrics};
use crate::task::Task;
use crate::train::EpochRecord;
use plots::{colour, hex};

/// A label and value row.
pub struct Item {
    pub label: String,
    pub value: String,
}

/// A table row: its first cell, then the others.
#[derive(Clone)]
pub struct Row {
    pub name: String,
    pub values: Vec<String>,
    pub class: String,
}

#[derive(Clone)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Row>,
}

/// One confusion-matrix cell with its heat colour and hover text.
pub struct Cell {
    pub text: String,
    pub style: String,
    pub title: String,
}

pub struct MatrixRow {
    pub class: String,
    pub cells: Vec<Cell>,
}

pub struct Thumb {
    pub uri: String,
    pub caption: String,
}

/// An explained image: the image and its heatmap overlay, side by side.
pub struct Pair {
    pub image: String,
    pub overlay: String,
    pub caption: String,
}

pub struct Plot {
    pub svg: String,
    pub guide: String,
}

/// The report's account of a cross-validation: a note and a table of figures, one row per
/// figure with each fold's value, their mean ± standard deviation and the out-of-fold value.
#[derive(Clone)]
pub struct CrossValidationSection {
    pub note: String,
    pub table: Table,
}

#[derive(Template)]
#[template(path = "report.html")]
pub struct ReportPage {
    pub title: String,
    pub subtitle: String,
    pub warnings: Vec<String>,
    pub headline: Table,
    pub headline_note: String,
    pub run: Vec<Item>,
    pub command_line: String,
    pub data: Vec<Item>,
    pub split_method: String,
    pub split_counts: Table,
    pub training_note: String,
    pub cross_validation: Option<CrossValidationSection>,
    pub training_plots: Vec<Plot>,
    pub epochs: Table,
    pub test_note: String,
    pub test_table: Table,
    /// A regression's test section (true vs predicted, residuals, largest errors) replaces the
    /// classification one.
    pub regression: bool,
    pub classes: Vec<String>,
    pub class_colours: Vec<String>,
    pub matrix_counts: Vec<MatrixRow>,
    pub matrix_percent: Vec<MatrixRow>,
    pub test_plots: Vec<Plot>,
    pub confidence_plot: Plot,
    pub per_class: Table,
    pub gallery: Vec<Thumb>,
    pub gallery_note: String,
    pub calibration_note: String,
    pub calibration_table: Option<Table>,
    pub calibration_plots: Vec<Plot>,
    pub threshold_plots: Vec<Plot>,
    pub explain_note: String,
    pub explanations: Vec<Pair>,
    /// The colour scale, as a CSS gradient.
    pub legend: String,
}

pub fn f4(v: f64) -> String {
    format!("{v:.4}")
}

pub fn opt4(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), f4)
}

fn with_ci(v: f64, ci: Option<metrics::Interval>) -> String {
    match ci {
        Some(i) => format!("{v:.4} [{:.4}, {:.4}]", i.low, i.high),
        None => f4(v),
    }
}

/// What the report is made from.
pub struct ReportInput<'a> {
    pub title: String,
    pub run: Vec<Item>,
    pub command_line: String,
    pub data: Vec<Item>,
    pub warnings: Vec<String>,
    pub split_method: String,
    /// The task: its classes and how scores become decisions.
    pub task: &'a Task,
    /// Images per class in train, validation, test.
    pub split_counts: Vec<[usize; 3]>,
    pub history: &'a [EpochRecord],
    /// `--cross-validation`: what the folds measured, with the out-of-fold figures.
    pub cross_validation: Option<CrossValidationSection>,
    /// The learning-rate schedule in words.
    pub schedule: String,
    pub best_epoch: usize,
    pub validation_metric: &'a str,
    pub stopped_early: bool,
    pub per_split: Vec<(Split, &'a Figures)>,
    /// The train figures come from the best epoch's own training pass, not from evaluating the
    /// training images again.
    pub train_from_training_pass: bool,
    pub test_intervals: Option<&'a Intervals>,
    /// The test images' true classes (classification) or values (regression).
    pub test_truth: &'a [usize],
    pub test_values: &'a [f64],
    /// The test scores: probabilities, or for regression the predicted value.
    pub test_probs: &'a [Vec<f32>],
    pub test_names: &'a [String],
    /// RGB pixels (size x size x 3) of the test image at each position.
    pub test_pixels: &'a dyn Fn(usize) -> anyhow::Result<Vec<u8>>,
    pub image_size: usize,
    /// The test probabilities before the temperature (None when there is none).
    pub test_probs_uncalibrated: Option<&'a [Vec<f32>]>,
    /// Calibration figures before and after the temperature, per split.
    pub calibration: Option<Table>,
    pub calibration_note: String,
    /// Binary `--threshold auto`: the metric maximised and its value against every candidate
    /// threshold on the validation split.
    pub threshold_curve: Option<(&'a str, &'a [(f64, f64)])>,
    /// The explained test images (positions among the test images) and how they were made.
    pub explanations: &'a [Explained],
    pub explanation_method: String,
    /// The test-time augmentation behind the predictions (the heatmaps explain the image alone).
    pub tta: crate::config::Tta,
}

fn headline(input: &ReportInput) -> Table {
    let header = std::iter::once("Metric".to_string())
        .chain(input.per_split.iter().map(|(s, m)| match s {
            Split::Train if input.train_from_training_pass => format!("train, training pass* (n={})", m.n()),
            _ => format!("{} (n={})", s.name(), m.n()),
        }))
        .collect();
    Table { header, rows: headline_rows_for(&input.per_split, input.test_intervals) }
}

/// The headline table's rows: one per figure, one column per split.
fn headline_rows_for(per_split: &[(Split, &Figures)], test_intervals: Option<&Intervals>) -> Vec<Row> {
    let classification: Option<Vec<(Split, &Metrics)>> = per_split.iter().map(|(s, f)| f.classification().map(|m| (*s, m))).collect();
    match classification {
        Some(per_split) => classification::headline_rows(&per_split, test_intervals),
        None => regression::headline_rows(per_split, test_intervals),
    }
}

/// A figure with its interval, where it has one.
fn with_interval(v: f64, ci: Option<&Intervals>, figure: &str) -> String {
    with_ci(v, ci.and_then(|c| c.get(figure)))
}

fn heat(v: f64) -> String {
    // White to blue; dark cells get white text.
    let t = v.clamp(0.0, 1.0);
    let (r, g, b) = (255.0 - t * 225.0, 255.0 - t * 155.0, 255.0 - t * 75.0);
    let fg = if t > 0.55 { "#fff" } else { "#222" };
    format!("background:rgb({r:.0},{g:.0},{b:.0});color:{fg}")
}

fn matrices(m: &Metrics, classes: &[String]) -> (Vec<MatrixRow>, Vec<MatrixRow>) {
    let max = m.confusion_matrix.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let mut counts = Vec::new();
    let mut percent = Vec::new();
    for (t, row) in m.confusion_matrix.iter().enumerate() {
        let total: usize = row.iter().sum();
        counts.push(MatrixRow {
            class: classes[t].clone(),
            cells: row
                .iter()
                .enumerate()
                .map(|(p, &n)| Cell { text: n.to_string(), style: heat(n as f64 / max), title: format!("true {}, predicted {}: {n} images", classes[t], classes[p]) })
                .collect(),
        });
        percent.push(MatrixRow {
            class: classes[t].clone(),
            cells: row
                .iter()
                .enumerate()
                .map(|(p, &n)| {
                    let f = if total == 0 { 0.0 } else { n as f64 / total as f64 };
                    Cell {
                        text: if total == 0 { "-".into() } else { format!("{:.1}%", 100.0 * f) },
                        style: heat(f),
                        title: format!("{:.2}% of the true {} images were predicted {} ({n} of {total})", 100.0 * f, classes[t], classes[p]),
                    }
                })
                .collect(),
        });
    }
    (counts, percent)
}

fn png_uri(pixels: &[u8], size: usize) -> String {
    png_uri_within(pixels, size, 96)
}

/// A PNG data URI of the image, shrunk to `within` pixels square if it is larger.
fn png_uri_within(pixels: &[u8], size: usize, within: u32) -> String {
    let img = image::RgbImage::from_raw(size as u32, size as u32, pixels.to_vec()).expect("RGB image of the set's size");
    let img = if size as u32 > within { image::imageops::thumbnail(&img, within, within) } else { img };
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).expect("PNG encoding in memory");
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png.get_ref()))
}

/// The explained test images, each as the image and its overlay, and the section's note;
/// `output` is what a heatmap explains.
fn explanation_pairs(input: &ReportInput, output: &str) -> anyhow::Result<(Vec<Pair>, String)> {
    let pairs: Vec<Pair> = input
        .explanations
        .iter()
        .map(|e| {
            let pixels = (input.test_pixels)(e.position)?;
            Ok(Pair {
                image: png_uri_within(&pixels, input.image_size, 128),
                overlay: png_uri_within(&overlay::blend(&pixels, &e.heat), input.image_size, 128),
                caption: format!("{}: {}", crate::error::short(&input.test_names[e.position]), e.why),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let note = if pairs.is_empty() {
        "No test image was explained (--explain 0).".to_string()
    } else {
        format!(
            "Where the model looked, for {} test images: each image beside its heatmap ({}), which shows the regions that raised the score of {output}. Red marks the strongest evidence, blue none; each map is scaled to its own maximum, so compare where, not how much, between images. A model that looks at rulers, ink marks or the image border rather than the lesion has learned a shortcut.",
            pairs.len(),
            input.explanation_method
        ) + &match input.tta {
            crate::config::Tta::None => String::new(),
            t => format!(
                " The predictions average the image with its mirrors (test-time augmentation: {}); each heatmap explains the image as it is.",
                t.name()
            ),
        }
    };
    Ok((pairs, note))
}

fn per_class_table(m: &Metrics) -> Table {
    Table {
        header: ["Class", "Precision", "Recall (sensitivity)", "F1", "Specificity", "ROC-AUC", "Average precision", "Support"].map(String::from).to_vec(),
        rows: m
            .per_class
            .iter()
            .map(|c| Row {
                name: c.class.clone(),
                values: vec![f4(c.precision), f4(c.recall), f4(c.f1), f4(c.specificity), opt4(c.roc_auc), opt4(c.average_precision), c.support.to_string()],
                class: String::new(),
            })
            .collect(),
    }
}

fn split_counts_table(input: &ReportInput, part: &TaskPart) -> Table {
    let all = Row {
        name: "all".into(),
        values: (0..3).map(|s| input.split_counts.iter().map(|n| n[s]).sum::<usize>().to_string()).collect(),
        class: String::new(),
    };
    let per_class = part
        .classes
        .iter()
        .zip(&input.split_counts)
        .map(|(c, n)| Row { name: c.clone(), values: n.iter().map(|v| v.to_string()).collect(), class: String::new() });
    Table { header: [part.split_header, "Train", "Validation", "Test"].map(String::from).to_vec(), rows: per_class.chain(std::iter::once(all)).collect() }
}

fn headline_note(input: &ReportInput, how: &str) -> String {
    let train = if input.train_from_training_pass {
        "*Train figures are those of the best epoch's own training pass (augmented images, dropout and batch \
         statistics of training mode, weights still changing within the epoch), as Keras and timm report them; \
         the training images were not evaluated again (--evaluate-train true does that, at the cost of one \
         more pass over them). "
    } else {
        "Train figures: the training images evaluated again with the best weights, in eval mode. "
    };
    let resamples = input.test_intervals.map_or(0, |c| c.resamples);
    format!("{train}Test figures carry a 95% confidence interval in brackets ({resamples} bootstrap resamples of the test images). {how}")
}

/// What the report shows that depends on the task, made once by `classification::part` or
/// `regression::part`.
pub struct TaskPart {
    /// The training loss, as the loss plot names it.
    loss_name: String,
    /// The plot after the loss: the task's figures per epoch.
    figure_plot: Plot,
    /// What a heatmap explains.
    explained_output: &'static str,
    /// The first column of the split table.
    split_header: &'static str,
    /// How the test figures are computed, after the headline table.
    headline_note: &'static str,
    /// A regression's test section (true vs predicted, residuals, largest errors) replaces the
    /// classification one.
    regression: bool,
    classes: Vec<String>,
    matrix_counts: Vec<MatrixRow>,
    matrix_percent: Vec<MatrixRow>,
    test_plots: Vec<Plot>,
    confidence_plot: Plot,
    per_class: Table,
    calibration_plots: Vec<Plot>,
    threshold_plots: Vec<Plot>,
    gallery: Vec<Thumb>,
    gallery_note: String,
}

/// The report's one dispatch on the task: each kind's words and test section are in its file.
fn task_part(input: &ReportInput, test: &Figures) -> anyhow::Result<TaskPart> {
    match (input.task, test.classification()) {
        (Task::Classify(c), Some(m)) => classification::part(input, c, m),
        (Task::Regress(t), _) => regression::part(input, t),
        (Task::Classify(_), None) => unreachable!("a classification's figures are a classification's"),
    }
}

pub fn build(input: &ReportInput) -> anyhow::Result<String> {
    let test = input.per_split.iter().find(|(s, _)| *s == Split::Test).map(|(_, m)| *m).expect("test metrics");
    let part = task_part(input, test)?;
    let mut training_note = if input.cross_validation.is_some() {
        format!(
            "Each fold model's best epoch (highlighted) was chosen by validation {} on its own fold; the Best Model is the fold models together, and the test figures are theirs.",
            input.validation_metric
        )
    } else {
        format!(
            "The best epoch, {} (highlighted), was chosen by validation {} and its weights are the Best Model and the ones tested.",
            input.best_epoch, input.validation_metric
        )
    };
    if input.stopped_early {
        training_note.push_str(" Training stopped early: the validation figure had stopped improving.");
    }
    if input.history.iter().all(|r| r.validation_loss.is_none()) {
        training_note.push_str(" There was no validation split, so the last epoch was kept.");
    }
    let test_table = Table {
        header: vec!["Metric".into(), "Test".into()],
        rows: headline(input).rows.into_iter().map(|mut r| Row { values: vec![r.values.pop().unwrap_or_default()], ..r }).collect(),
    };
    let split_counts = split_counts_table(input, &part);
    let (explanations, explain_note) = explanation_pairs(input, part.explained_output)?;
    let headline_note = headline_note(input, part.headline_note);
    let mut training_plots = epoch_plots(input, &part.loss_name, part.figure_plot);
    training_plots.retain(|p| !p.svg.is_empty());
    let page = ReportPage {
        title: input.title.clone(),
        subtitle: format!("image-learner {}", env!("CARGO_PKG_VERSION")),
        warnings: input.warnings.clone(),
        headline: headline(input),
        headline_note,
        run: input.run.iter().map(|i| Item { label: i.label.clone(), value: i.value.clone() }).collect(),
        command_line: input.command_line.clone(),
        data: input.data.iter().map(|i| Item { label: i.label.clone(), value: i.value.clone() }).collect(),
        split_method: input.split_method.clone(),
        split_counts,
        training_note,
        cross_validation: input.cross_validation.clone(),
        training_plots,
        epochs: epochs_table(input),
        test_note: format!("{} test images, never seen in training or in choosing the best epoch.", test.n()),
        test_table,
        regression: part.regression,
        class_colours: (0..part.classes.len()).map(|c| hex(colour(c))).collect(),
        classes: part.classes,
        matrix_counts: part.matrix_counts,
        matrix_percent: part.matrix_percent,
        test_plots: part.test_plots,
        confidence_plot: part.confidence_plot,
        per_class: part.per_class,
        calibration_note: input.calibration_note.clone(),
        calibration_table: input.calibration.clone(),
        calibration_plots: part.calibration_plots,
        threshold_plots: part.threshold_plots,
        gallery_note: part.gallery_note,
        gallery: part.gallery,
        explain_note,
        explanations,
        legend: overlay::legend_gradient(),
    };
    Ok(page.render()?)
}
