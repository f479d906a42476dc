//! The HTML Model Report: one self-contained page (inline CSS and SVG, thumbnails as data URIs,
//! no external resource). A view model of pre-formatted text is filled into
//! `templates/report.html`; an optional inline script adds tabs, sorting and a class filter, and
//! everything stays readable when Galaxy strips scripts.
pub mod plots;
mod regression;
mod train_page;

pub use train_page::train_report;

use askama::Template;
use base64::Engine;

use crate::data::split::Split;
use crate::explain::{overlay, Explained};
use crate::metrics::{self, Figures, Intervals, Metrics};
use crate::task::Task;
use crate::train::EpochRecord;
use plots::{colour, hex, LineChart, Series};

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
    pub test_pixels: &'a dyn Fn(usize) -> Vec<u8>,
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
        Some(per_split) => classification_rows(&per_split, test_intervals),
        None => regression::headline_rows(per_split, test_intervals),
    }
}

/// A figure with its interval, where it has one.
fn with_interval(v: f64, ci: Option<&Intervals>, figure: &str) -> String {
    with_ci(v, ci.and_then(|c| c.get(figure)))
}

fn classification_rows(per_split: &[(Split, &Metrics)], test_intervals: Option<&Intervals>) -> Vec<Row> {
    let ci = |s: Split| if s == Split::Test { test_intervals } else { None };
    type F<'f> = Box<dyn Fn(&Metrics, Option<&Intervals>) -> String + 'f>;
    let mut rows: Vec<(String, F)> = vec![
        ("Accuracy".into(), Box::new(|m, c| with_interval(m.accuracy, c, "accuracy"))),
        ("Balanced accuracy".into(), Box::new(|m, _| f4(m.balanced_accuracy))),
        ("Precision (macro)".into(), Box::new(|m, _| f4(m.macro_precision))),
        ("Recall (macro)".into(), Box::new(|m, _| f4(m.macro_recall))),
        ("F1 (macro)".into(), Box::new(|m, c| with_interval(m.macro_f1, c, "macro_f1"))),
        ("F1 (weighted)".into(), Box::new(|m, _| f4(m.weighted_f1))),
        (
            "ROC-AUC (one-vs-rest, macro)".into(),
            Box::new(|m, c| match m.roc_auc_macro {
                Some(v) => with_interval(v, c, "roc_auc_macro"),
                None => "n/a".into(),
            }),
        ),
    ];
    // Every split has the same classes, so the same k.
    let ks: Vec<usize> = per_split.first().map_or(Vec::new(), |(_, m)| m.top_k_accuracy.iter().map(|t| t.k).collect());
    for (i, k) in ks.into_iter().enumerate() {
        rows.push((format!("Top-{k} accuracy"), Box::new(move |m, _| m.top_k_accuracy.get(i).map_or("n/a".into(), |t| f4(t.accuracy)))));
    }
    rows.extend([
        ("Cohen's kappa".to_string(), Box::new(|m: &Metrics, _: Option<&Intervals>| f4(m.cohen_kappa)) as F),
        ("Matthews correlation".into(), Box::new(|m, _| f4(m.matthews_corrcoef))),
        ("Log loss".into(), Box::new(|m, _| f4(m.log_loss))),
        ("Brier score".into(), Box::new(|m, _| f4(m.brier_score))),
        (format!("Expected calibration error ({} bins)", metrics::calibration::RELIABILITY_BINS), Box::new(|m, _| f4(m.ece))),
        ("Images".into(), Box::new(|m, _| m.n.to_string())),
    ]);
    rows.iter()
        .map(|(name, f)| Row { name: name.clone(), values: per_split.iter().map(|(s, m)| f(m, ci(*s))).collect(), class: String::new() })
        .collect()
}

fn epoch_plots(input: &ReportInput) -> Vec<Plot> {
    let h = input.history;
    let last = h.last().map_or(1.0, |r| r.epoch as f64);
    let x_range = (1.0, last.max(2.0));
    let best = Some((input.best_epoch as f64, format!("best epoch ({})", input.best_epoch)));
    let series = |label: &str, i: usize, dashed: bool, f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Option<Series> {
        let pts: Vec<(f64, f64)> = h.iter().filter_map(|r| f(r).map(|v| (r.epoch as f64, v))).collect();
        (!pts.is_empty()).then(|| Series {
            label: label.to_string(),
            hover: pts.iter().map(|(e, v)| format!("{label}, epoch {e}: {v:.4}")).collect(),
            points: pts,
            colour: colour(i),
            dashed,
        })
    };
    let range = |ss: &[Series], floor0: bool| -> (f64, f64) {
        let vals = ss.iter().flat_map(|s| s.points.iter().map(|p| p.1));
        let (lo, hi) = vals.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let lo = if floor0 { 0.0 } else { lo };
        (lo, if hi > lo { hi + (hi - lo) * 0.05 } else { lo + 1.0 })
    };
    let mut out = Vec::new();
    let loss: Vec<Series> = [
        series("train loss", 0, false, &|r| Some(r.train_loss)),
        series("validation loss", 1, false, &|r| r.validation_loss),
    ]
    .into_iter()
    .flatten()
    .collect();
    let yr = range(&loss, true);
    let loss_name = match &input.task.target {
        Some(t) => format!("{} (standardised target)", t.loss.name().to_uppercase()),
        None => "cross-entropy".to_string(),
    };
    out.push(Plot {
        svg: plots::line_chart(&LineChart { title: "Loss per epoch", x_label: "epoch", y_label: &loss_name, x_range, y_range: yr, series: loss, marker: best.clone(), diagonal: false, integer_x: true }),
        guide: "Both curves should fall. A validation loss that rises while the training loss keeps falling means the model is memorising the training images (overfitting); the best epoch is the one kept.".into(),
    });
    if input.task.is_regression() {
        let mae: Vec<Series> = [series("train MAE", 0, false, &|r| r.train[0]), series("validation MAE", 1, false, &|r| r.validation.and_then(|v| v[0]))]
            .into_iter()
            .flatten()
            .collect();
        let yr = range(&mae, true);
        out.push(Plot {
            svg: plots::line_chart(&LineChart { title: "Mean absolute error per epoch", x_label: "epoch", y_label: "MAE (target units)", x_range, y_range: yr, series: mae, marker: best, diagonal: false, integer_x: true }),
            guide: "Lower is better: the typical distance between the predicted and the true value. A validation MAE that rises while the training MAE keeps falling is a sign of overfitting.".into(),
        });
    } else {
        let acc: Vec<Series> = [
            series("train accuracy", 0, false, &|r| r.train[0]),
            series("validation accuracy", 1, false, &|r| r.validation.and_then(|v| v[0])),
            series("validation macro F1", 2, true, &|r| r.validation.and_then(|v| v[1])),
        ]
        .into_iter()
        .flatten()
        .collect();
        out.push(Plot {
            svg: plots::line_chart(&LineChart { title: "Accuracy per epoch", x_label: "epoch", y_label: "fraction", x_range, y_range: (0.0, 1.02), series: acc, marker: best, diagonal: false, integer_x: true }),
            guide: "Higher is better. A large gap between train and validation accuracy is a sign of overfitting; validation figures rising and falling from epoch to epoch mean the validation set is small.".into(),
        });
    }
    let lr = vec![step_rates(h)];
    let yr = range(&lr, true);
    out.push(Plot {
        svg: plots::line_chart(&LineChart { title: "Learning rate", x_label: "epoch", y_label: "learning rate", x_range: (0.0, last.max(1.0)), y_range: (0.0, yr.1), series: lr, marker: None, diagonal: false, integer_x: true }),
        guide: format!("The step size of the optimiser at each training step ({} schedule); epoch e ends at e on the axis.", input.schedule),
    });
    out
}

/// The most points the learning-rate plot draws: a long run's steps are thinned evenly.
const MAX_RATE_POINTS: usize = 600;

/// The rate of every training step, at x = (epoch - 1) + (step / steps in the epoch).
fn step_rates(h: &[EpochRecord]) -> Series {
    let mut pts: Vec<(f64, f64)> = Vec::new();
    for r in h {
        let n = r.step_learning_rates.len().max(1) as f64;
        if r.step_learning_rates.is_empty() {
            pts.push((r.epoch as f64, r.learning_rate));
        }
        pts.extend(r.step_learning_rates.iter().enumerate().map(|(i, &lr)| ((r.epoch - 1) as f64 + (i + 1) as f64 / n, lr)));
    }
    let keep = pts.len().div_ceil(MAX_RATE_POINTS).max(1);
    let last = pts.last().copied();
    let mut pts: Vec<(f64, f64)> = pts.into_iter().step_by(keep).collect();
    if let Some(l) = last.filter(|l| pts.last() != Some(l)) {
        pts.push(l);
    }
    Series {
        label: "learning rate".into(),
        hover: pts.iter().map(|(x, v)| format!("learning rate at epoch {x:.2}: {v:.3e}")).collect(),
        points: pts,
        colour: colour(3),
        dashed: false,
    }
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

fn curve_series(label: String, i: usize, pts: Vec<(f64, f64)>, dashed: bool, what: (&str, &str)) -> Series {
    // Hover text on every point, up to 400 per curve (evenly spread beyond that, so that the
    // report of a large test set stays small).
    let step = pts.len().div_ceil(400).max(1);
    let hover = pts
        .iter()
        .enumerate()
        .map(|(k, (x, y))| if k % step == 0 || k + 1 == pts.len() { format!("{label}: {} {x:.3}, {} {y:.3}", what.0, what.1) } else { String::new() })
        .collect();
    Series { label, points: pts, colour: colour(i), dashed, hover }
}

/// Test images per tenth of confidence (the probability of the decided class), right and wrong,
/// decided as the task decides (a binary threshold included), as the confusion matrix is.
fn confidence_counts(input: &ReportInput) -> (Vec<usize>, Vec<usize>) {
    let mut right = vec![0usize; 10];
    let mut wrong = vec![0usize; 10];
    for (p, &t) in input.test_probs.iter().zip(input.test_truth) {
        let pred = input.task.decide(p);
        let b = ((p[pred] * 10.0) as usize).min(9);
        if pred == t { right[b] += 1 } else { wrong[b] += 1 }
    }
    (right, wrong)
}

/// ROC and precision-recall curves per class, then the confidence histogram.
fn test_plots(input: &ReportInput, m: &Metrics) -> (Vec<Plot>, Plot) {
    let k = input.task.classes.len();
    let probs = input.test_probs;
    let mut roc = Vec::new();
    let mut pr = Vec::new();
    let mut grid: Vec<f64> = Vec::new();
    let mut per_class_roc = Vec::new();
    for c in 0..k {
        let scores: Vec<f64> = probs.iter().map(|p| p[c] as f64).collect();
        let pos: Vec<bool> = input.test_truth.iter().map(|&t| t == c).collect();
        let cm = &m.per_class[c];
        if let Some(auc) = cm.roc_auc {
            let pts = metrics::roc_curve(&scores, &pos);
            grid.extend(pts.iter().map(|p| p.0));
            per_class_roc.push(pts.clone());
            roc.push(curve_series(format!("{} (AUC {auc:.3})", input.task.classes[c]), c, pts, false, ("FPR", "TPR")));
        }
        if let Some(ap) = cm.average_precision {
            pr.push(curve_series(format!("{} (AP {ap:.3})", input.task.classes[c]), c, metrics::pr_curve(&scores, &pos), false, ("recall", "precision")));
        }
    }
    if k > 2 && !per_class_roc.is_empty() {
        // Micro average: every (image, class) pair as one binary decision.
        let scores: Vec<f64> = probs.iter().flat_map(|p| p.iter().map(|&v| v as f64)).collect();
        let pos: Vec<bool> = input.test_truth.iter().flat_map(|&t| (0..k).map(move |c| c == t)).collect();
        let micro_auc = metrics::roc_auc(&scores, &pos).unwrap_or(f64::NAN);
        roc.push(curve_series(format!("micro average (AUC {micro_auc:.3})"), 7, metrics::roc_curve(&scores, &pos), true, ("FPR", "TPR")));
        // Macro average: the mean of the per-class curves on a common FPR grid.
        grid.sort_by(f64::total_cmp);
        grid.dedup();
        let interp = |pts: &[(f64, f64)], x: f64| -> f64 {
            // The highest TPR reached at or before FPR x (step interpolation from the right).
            let mut y = 0.0;
            for w in pts.windows(2) {
                if w[1].0 <= x {
                    y = w[1].1;
                } else if w[0].0 <= x && w[1].0 > x {
                    let t = if w[1].0 > w[0].0 { (x - w[0].0) / (w[1].0 - w[0].0) } else { 1.0 };
                    y = y.max(w[0].1 + t * (w[1].1 - w[0].1));
                }
            }
            y
        };
        let macro_pts: Vec<(f64, f64)> = grid.iter().map(|&x| (x, per_class_roc.iter().map(|c| interp(c, x)).sum::<f64>() / per_class_roc.len() as f64)).collect();
        let auc = m.roc_auc_macro.map_or(String::new(), |a| format!(" (AUC {a:.3})"));
        roc.push(curve_series(format!("macro average{auc}"), 9, macro_pts, true, ("FPR", "TPR")));
    }
    let out = vec![
        Plot {
            svg: plots::line_chart(&LineChart { title: "ROC curves (one class vs the rest)", x_label: "false positive rate", y_label: "true positive rate", x_range: (0.0, 1.0), y_range: (0.0, 1.02), series: roc, marker: None, diagonal: true, integer_x: false }),
            guide: "Each curve shows how many images of a class are found (up) against how many others are wrongly flagged (right) as the threshold moves. A curve hugging the top-left corner (AUC near 1) is good; the grey diagonal (AUC 0.5) is guessing.".into(),
        },
        Plot {
            svg: plots::line_chart(&LineChart { title: "Precision-recall curves", x_label: "recall", y_label: "precision", x_range: (0.0, 1.0), y_range: (0.0, 1.02), series: pr, marker: None, diagonal: false, integer_x: false }),
            guide: "For rare classes this is more telling than the ROC curve: a good curve stays high (precise) as it moves right (finding more of the class). AP is the area under it; a class's prevalence is what guessing would give.".into(),
        },
    ];
    let bins: Vec<f64> = (0..=10).map(|i| i as f64 / 10.0).collect();
    let (right, wrong) = confidence_counts(input);
    let confidence = Plot {
        svg: plots::histogram("Confidence of correct and wrong predictions", "confidence (probability of the predicted class)", "confidence", &bins, &[("correct".into(), right, colour(2)), ("wrong".into(), wrong, colour(3))]),
        guide: "A trustworthy model is confident when right (green bars to the right) and unsure when wrong (red bars to the left). Many confident wrong predictions mean the confidence should not be taken at face value.".into(),
    };
    (out, confidence)
}

/// Reliability diagrams of the test images: the top label (after and, if there is one, before
/// the temperature), then one-vs-rest per class for up to 10 classes.
fn calibration_plots(input: &ReportInput) -> Vec<Plot> {
    use metrics::calibration::{reliability, top_label, Bin, RELIABILITY_BINS};
    let points = |bins: &[Bin]| -> Vec<(f64, f64)> { bins.iter().map(|b| (b.mean_score, b.hit_rate)).collect() };
    let hover = |label: &str, bins: &[Bin], what: &str| -> Vec<String> {
        bins.iter().map(|b| format!("{label}: mean {what} {:.3}, observed {:.3}, {} images", b.mean_score, b.hit_rate, b.count)).collect()
    };
    let top = |probs: &[Vec<f32>]| {
        let decided: Vec<usize> = probs.iter().map(|p| input.task.decide(p)).collect();
        let conf: Vec<f64> = probs.iter().zip(&decided).map(|(p, &d)| p[d] as f64).collect();
        let right: Vec<bool> = decided.iter().zip(input.test_truth).map(|(d, t)| d == t).collect();
        top_label(&conf, &right)
    };
    let after = top(input.test_probs);
    let mut series = Vec::new();
    let mut add = |label: String, c: usize, bins: &[Bin], dashed: bool| {
        let hover = hover(&label, bins, "confidence");
        series.push(Series { label, points: points(bins), colour: colour(c), dashed, hover });
    };
    let calibrated = input.test_probs_uncalibrated.is_some();
    add(format!("{} (ECE {:.3})", if calibrated { "after temperature" } else { "model" }, after.ece), 0, &after.bins, false);
    if let Some(before) = input.test_probs_uncalibrated {
        let b = top(before);
        add(format!("before temperature (ECE {:.3})", b.ece), 3, &b.bins, true);
    }
    let mut out = vec![Plot {
        svg: plots::line_chart(&LineChart { title: "Reliability: confidence against accuracy (test)", x_label: "confidence (probability of the decided class)", y_label: "share decided right", x_range: (0.0, 1.0), y_range: (0.0, 1.02), series, marker: None, diagonal: true, integer_x: false }),
        guide: format!(
            "Test images binned by confidence ({RELIABILITY_BINS} equal bins; a point per non-empty bin). On the grey diagonal, a model that says 80% is right 80% of the time. Below it the model is overconfident, above it underconfident. ECE is the images-weighted mean gap to the diagonal."
        ),
    }];
    let k = input.task.classes.len();
    if k <= 10 {
        let mut per_class = Vec::new();
        for c in 0..k {
            let scores: Vec<f64> = input.test_probs.iter().map(|p| p[c] as f64).collect();
            let hits: Vec<bool> = input.test_truth.iter().map(|&t| t == c).collect();
            let bins = reliability(&scores, &hits, RELIABILITY_BINS);
            let label = input.task.classes[c].clone();
            let hover = hover(&label, &bins, "probability");
            per_class.push(Series { label, points: points(&bins), colour: colour(c), dashed: false, hover });
        }
        out.push(Plot {
            svg: plots::line_chart(&LineChart { title: "Reliability per class (one vs the rest, test)", x_label: "predicted probability of the class", y_label: "share that is the class", x_range: (0.0, 1.0), y_range: (0.0, 1.02), series: per_class, marker: None, diagonal: true, integer_x: false }),
            guide: "For each class, images binned by the probability given to that class, against how many of them really are that class. Curves near the diagonal mean the class's probabilities can be read as they are.".into(),
        });
    }
    out
}

/// Binary `--threshold auto`: the validation metric against the threshold, the choice marked.
fn threshold_plots(input: &ReportInput) -> Vec<Plot> {
    let (Some((metric, curve)), Some(t)) = (input.threshold_curve, input.task.threshold) else { return Vec::new() };
    let series = curve_series(format!("validation {metric}"), 0, curve.to_vec(), false, ("threshold", metric));
    let low = curve.iter().map(|p| p.1).fold(0f64, f64::min);
    vec![Plot {
        svg: plots::line_chart(&LineChart { title: "Decision threshold (validation split)", x_label: "threshold on the probability of the second class", y_label: metric, x_range: (0.0, 1.0), y_range: (low.min(0.0), 1.02), series: vec![series], marker: Some((f64::from(t), format!("chosen {t:.3}"))), diagonal: false, integer_x: false }),
        guide: format!("Each candidate threshold (a midpoint between neighbouring validation scores) against the validation {metric} it gives; the marked one is the Best Model's, used for the test figures above and by predict. A flat top means many thresholds do as well."),
    }]
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

/// The most confidently misclassified test images, decided as the task decides.
fn gallery(input: &ReportInput) -> Vec<Thumb> {
    let mut wrong: Vec<(usize, f32)> = input
        .test_probs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let pred = input.task.decide(p);
            (pred != input.test_truth[i]).then_some((i, p[pred]))
        })
        .collect();
    wrong.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    wrong
        .iter()
        .take(12)
        .map(|&(i, conf)| {
            let pred = input.task.decide(&input.test_probs[i]);
            Thumb {
                uri: png_uri(&(input.test_pixels)(i), input.image_size),
                caption: format!(
                    "{}: true {}, predicted {} ({:.1}%)",
                    crate::error::short(&input.test_names[i]),
                    crate::error::short(&input.task.classes[input.test_truth[i]]),
                    crate::error::short(&input.task.classes[pred]),
                    100.0 * conf
                ),
            }
        })
        .collect()
}

/// The explained test images, each as the image and its overlay, and the section's note.
fn explanation_pairs(input: &ReportInput) -> (Vec<Pair>, String) {
    let pairs: Vec<Pair> = input
        .explanations
        .iter()
        .map(|e| {
            let pixels = (input.test_pixels)(e.position);
            Pair {
                image: png_uri_within(&pixels, input.image_size, 128),
                overlay: png_uri_within(&overlay::blend(&pixels, &e.heat), input.image_size, 128),
                caption: format!("{}: {}", crate::error::short(&input.test_names[e.position]), e.why),
            }
        })
        .collect();
    let output = if input.task.is_regression() { "the predicted value" } else { "the class named" };
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
    (pairs, note)
}

#[derive(Template)]
#[template(path = "predict_report.html")]
struct MetricsPage {
    title: String,
    subtitle: String,
    metrics: Table,
    classes: Vec<String>,
    matrix: Vec<MatrixRow>,
    per_class: Table,
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

/// `predict`'s page when the images have no labels to score against.
pub const NO_LABELS_PAGE: &str = "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>No labels</title></head><body>\
    <h1>No labels to score against</h1><p>The metadata has no label column (or some rows have no label), \
    so the predictions were not scored.</p></body></html>";

/// The metrics page of `predict` against labelled images.
pub fn build_metrics_page(title: &str, subtitle: &str, figures: &Figures, classes: &[String]) -> anyhow::Result<String> {
    let input_rows = headline_rows_for(&[(Split::Test, figures)], None);
    let (matrix, per_class) = match figures.classification() {
        Some(m) => (matrices(m, classes).0, per_class_table(m)),
        None => (Vec::new(), Table { header: Vec::new(), rows: Vec::new() }),
    };
    Ok(MetricsPage {
        title: title.to_string(),
        subtitle: subtitle.to_string(),
        metrics: Table { header: vec!["Metric".into(), format!("Value (n={})", figures.n())], rows: input_rows },
        classes: classes.to_vec(),
        matrix,
        per_class,
    }
    .render()?)
}

/// The classification parts of the test section.
struct ClassificationSection {
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

fn classification_section(input: &ReportInput, test: &Metrics) -> ClassificationSection {
    let (matrix_counts, matrix_percent) = matrices(test, &input.task.classes);
    let gallery = gallery(input);
    let (test_plots, confidence_plot) = test_plots(input, test);
    ClassificationSection {
        matrix_counts,
        matrix_percent,
        test_plots,
        confidence_plot,
        per_class: per_class_table(test),
        calibration_plots: calibration_plots(input),
        threshold_plots: threshold_plots(input),
        gallery_note: if gallery.is_empty() {
            "No test image was misclassified.".into()
        } else {
            format!("The {} misclassified test images the model was most sure about: worth a look for label errors or confusing cases.", gallery.len())
        },
        gallery,
    }
}

fn split_counts_table(input: &ReportInput) -> Table {
    let all = Row {
        name: "all".into(),
        values: (0..3).map(|s| input.split_counts.iter().map(|n| n[s]).sum::<usize>().to_string()).collect(),
        class: String::new(),
    };
    let per_class = input
        .task
        .classes
        .iter()
        .zip(&input.split_counts)
        .map(|(c, n)| Row { name: c.clone(), values: n.iter().map(|v| v.to_string()).collect(), class: String::new() });
    let first = if input.task.is_regression() { "Images" } else { "Class" };
    Table { header: [first, "Train", "Validation", "Test"].map(String::from).to_vec(), rows: per_class.chain(std::iter::once(all)).collect() }
}

fn epochs_table(input: &ReportInput) -> Table {
    let names = if input.task.is_regression() { ["MAE", "RMSE", "R²"] } else { ["accuracy", "macro F1", "ROC-AUC"] };
    let mut header = vec!["Epoch".to_string(), "Train loss".into()];
    header.extend(names[..2].iter().map(|n| format!("Train {n}")));
    header.push("Validation loss".into());
    header.extend(names.iter().map(|n| format!("Validation {n}")));
    header.extend(["Learning rate".to_string(), "Seconds".into()]);
    let rows = input
        .history
        .iter()
        .map(|r| {
            let v = r.validation.unwrap_or([None; 3]);
            Row {
                name: r.epoch.to_string(),
                values: vec![
                    f4(r.train_loss),
                    opt4(r.train[0]),
                    opt4(r.train[1]),
                    opt4(r.validation_loss),
                    opt4(v[0]),
                    opt4(v[1]),
                    opt4(v[2]),
                    format!("{}", r.learning_rate),
                    format!("{:.1}", r.seconds),
                ],
                class: if r.epoch == input.best_epoch { "best".into() } else { String::new() },
            }
        })
        .collect();
    Table { header, rows }
}

fn headline_note(input: &ReportInput) -> String {
    let train = if input.train_from_training_pass {
        "*Train figures are those of the best epoch's own training pass (augmented images, dropout and batch \
         statistics of training mode, weights still changing within the epoch), as Keras and timm report them; \
         the training images were not evaluated again (--evaluate-train true does that, at the cost of one \
         more pass over them). "
    } else {
        "Train figures: the training images evaluated again with the best weights, in eval mode. "
    };
    let resamples = input.test_intervals.map_or(0, |c| c.resamples);
    let how = if input.task.is_regression() {
        regression::HEADLINE_NOTE
    } else {
        "Macro averages weigh every class equally, weighted averages by class size. Following scikit-learn, \
         macro averages run over the classes present in the truth or the predictions, a ratio whose denominator \
         is zero counts as 0, and ROC-AUC is averaged over the classes that have both positive and negative test images."
    };
    format!("{train}Test figures carry a 95% confidence interval in brackets ({resamples} bootstrap resamples of the test images). {how}")
}

pub fn build(input: &ReportInput) -> anyhow::Result<String> {
    let test = input.per_split.iter().find(|(s, _)| *s == Split::Test).map(|(_, m)| *m).expect("test metrics");
    let k = input.task.classes.len();
    let mut training_note = format!(
        "The best epoch, {} (highlighted), was chosen by validation {} and its weights are the Best Model and the ones tested.",
        input.best_epoch, input.validation_metric
    );
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
    let mut training_plots = epoch_plots(input);
    training_plots.retain(|p| !p.svg.is_empty());
    let empty = || Table { header: Vec::new(), rows: Vec::new() };
    let (c, regression) = match test.classification() {
        Some(m) => (classification_section(input, m), None),
        None => {
            let r = regression::section(input);
            let none = ClassificationSection {
                matrix_counts: Vec::new(),
                matrix_percent: Vec::new(),
                test_plots: Vec::new(),
                confidence_plot: Plot { svg: String::new(), guide: String::new() },
                per_class: empty(),
                calibration_plots: Vec::new(),
                threshold_plots: Vec::new(),
                gallery_note: r.gallery_note.clone(),
                gallery: Vec::new(),
            };
            (none, Some(r))
        }
    };
    let (explanations, explain_note) = explanation_pairs(input);
    let (test_plots, gallery, gallery_note) = match regression {
        Some(r) => (r.plots, r.gallery, r.gallery_note),
        None => (c.test_plots, c.gallery, c.gallery_note),
    };
    let page = ReportPage {
        title: input.title.clone(),
        subtitle: format!("image-learner {}", env!("CARGO_PKG_VERSION")),
        warnings: input.warnings.clone(),
        headline: headline(input),
        headline_note: headline_note(input),
        run: input.run.iter().map(|i| Item { label: i.label.clone(), value: i.value.clone() }).collect(),
        command_line: input.command_line.clone(),
        data: input.data.iter().map(|i| Item { label: i.label.clone(), value: i.value.clone() }).collect(),
        split_method: input.split_method.clone(),
        split_counts: split_counts_table(input),
        training_note,
        training_plots,
        epochs: epochs_table(input),
        test_note: format!("{} test images, never seen in training or in choosing the best epoch.", test.n()),
        test_table,
        regression: input.task.is_regression(),
        classes: input.task.classes.to_vec(),
        class_colours: (0..k).map(|c| hex(colour(c))).collect(),
        matrix_counts: c.matrix_counts,
        matrix_percent: c.matrix_percent,
        test_plots,
        confidence_plot: c.confidence_plot,
        per_class: c.per_class,
        calibration_note: input.calibration_note.clone(),
        calibration_table: input.calibration.clone(),
        calibration_plots: c.calibration_plots,
        threshold_plots: c.threshold_plots,
        gallery_note,
        gallery,
        explain_note,
        explanations,
        legend: overlay::legend_gradient(),
    };
    Ok(page.render()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskKind;

    #[test]
    fn with_a_threshold_the_gallery_and_histogram_agree_with_the_confusion_matrix() {
        let classes = vec!["benign".to_string(), "malignant".to_string()];
        let task = Task::for_training(TaskKind::Binary, &classes, Some(0.3), "label", "m.csv").unwrap();
        // Image 0 is malignant with p(malignant) = 0.35: argmax says benign (a mistake), the
        // threshold 0.3 says malignant (right). Image 1 is benign with p(malignant) = 0.32: argmax
        // is right, the threshold makes it a mistake at confidence 0.32.
        let probs = vec![vec![0.65, 0.35], vec![0.68, 0.32]];
        let truth = vec![1, 0];
        let m = task.metrics(&truth, &probs);
        assert_eq!(m.confusion_matrix, vec![vec![0, 1], vec![0, 1]]);
        let m = Figures::Classification(m);
        // A name of a megabyte is shortened in the caption.
        let long = format!("{}b.png", "x".repeat(1 << 20));
        let names = vec!["a.png".to_string(), long];
        let pixels = |_: usize| vec![0u8; 4 * 4 * 3];
        let input = ReportInput {
            title: String::new(),
            run: Vec::new(),
            command_line: String::new(),
            data: Vec::new(),
            warnings: Vec::new(),
            split_method: String::new(),
            task: &task,
            split_counts: vec![[1, 0, 1], [1, 0, 1]],
            history: &[],
            schedule: String::new(),
            best_epoch: 1,
            validation_metric: "loss",
            stopped_early: false,
            per_split: vec![(Split::Test, &m)],
            train_from_training_pass: true,
            test_intervals: None,
            test_truth: &truth,
            test_values: &[],
            test_probs: &probs,
            test_names: &names,
            test_pixels: &pixels,
            image_size: 4,
            test_probs_uncalibrated: None,
            calibration: None,
            calibration_note: String::new(),
            threshold_curve: None,
            explanations: &[],
            explanation_method: String::new(),
            tta: crate::config::Tta::None,
        };
        let shown: Vec<String> = gallery(&input).into_iter().map(|t| t.caption).collect();
        assert_eq!(shown.len(), 1);
        assert!(shown[0].starts_with("xxx") && shown[0].ends_with("xb.png (1048581 characters): true benign, predicted malignant (32.0%)"), "{}", &shown[0][..40]);
        assert!(shown[0].len() < 250);
        let (right, wrong) = confidence_counts(&input);
        assert_eq!((right[3], wrong[3]), (1, 1), "one right at 0.35, one wrong at 0.32: {right:?} {wrong:?}");
        assert_eq!(right.iter().sum::<usize>() + wrong.iter().sum::<usize>(), 2);
    }
}
