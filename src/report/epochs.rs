//! The report's training section: the loss, the task's figure and the learning rate per epoch,
//! and the table of every epoch.
use super::plots::{self, colour, LineChart, Series};
use super::{f4, opt4, Plot, ReportInput, Row, Table};
use crate::train::EpochRecord;

/// The x range of the per-epoch plots and their best-epoch marker.
/// (A cross-validation's folds each have their own best epoch: no marker.)
pub(super) fn epoch_axis(input: &ReportInput) -> ((f64, f64), Option<(f64, String)>) {
    let last = input.history.iter().map(|r| r.epoch).max().unwrap_or(1) as f64;
    let folds = input.history.iter().any(|r| r.fold.is_some());
    ((1.0, last.max(2.0)), (!folds).then(|| (input.best_epoch as f64, format!("best epoch ({})", input.best_epoch))))
}

/// One figure per epoch as a line, where the epochs have it; a cross-validation's, one line per
/// fold (its colour the fold's).
pub(super) fn epoch_series(h: &[EpochRecord], label: &str, i: usize, dashed: bool, f: &dyn Fn(&EpochRecord) -> Option<f64>) -> Vec<Series> {
    let mut folds: Vec<Option<usize>> = h.iter().map(|r| r.fold).collect();
    folds.dedup();
    folds
        .into_iter()
        .filter_map(|fold| {
            let pts: Vec<(f64, f64)> = h.iter().filter(|r| r.fold == fold).filter_map(|r| f(r).map(|v| (r.epoch as f64, v))).collect();
            let label = fold.map_or(label.to_string(), |k| format!("fold {k} {label}"));
            // Per fold, a fold's colour is its own: its training figures are dashed.
            let dashed = dashed || (fold.is_some() && label.contains(" train "));
            (!pts.is_empty()).then(|| Series {
                hover: pts.iter().map(|(e, v)| format!("{label}, epoch {e}: {v:.4}")).collect(),
                label,
                points: pts,
                colour: colour(fold.map_or(i, |k| k - 1)),
                dashed,
            })
        })
        .collect()
}

/// The y range of the series, from 0 when `floor0`, with a margin above.
pub(super) fn value_range(ss: &[Series], floor0: bool) -> (f64, f64) {
    let vals = ss.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = vals.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let lo = if floor0 { 0.0 } else { lo };
    (lo, if hi > lo { hi + (hi - lo) * 0.05 } else { lo + 1.0 })
}

/// The loss per epoch, the task's figure per epoch (`figure_plot`), then the learning rate.
pub(super) fn epoch_plots(input: &ReportInput, loss_name: &str, figure_plot: Plot) -> Vec<Plot> {
    let h = input.history;
    let last = h.iter().map(|r| r.epoch).max().unwrap_or(1) as f64;
    let (x_range, best) = epoch_axis(input);
    let mut out = Vec::new();
    let loss: Vec<Series> = [
        epoch_series(h, "train loss", 0, false, &|r| Some(r.train_loss)),
        epoch_series(h, "validation loss", 1, false, &|r| r.validation_loss),
    ]
    .into_iter()
    .flatten()
    .collect();
    let yr = value_range(&loss, true);
    out.push(Plot {
        svg: plots::line_chart(&LineChart { title: "Loss per epoch", x_label: "epoch", y_label: loss_name, x_range, y_range: yr, series: loss, marker: best, diagonal: false, integer_x: true }),
        guide: "Both curves should fall. A validation loss that rises while the training loss keeps falling means the model is memorising the training images (overfitting); the best epoch is the one kept.".into(),
    });
    out.push(figure_plot);
    // Every fold follows the same schedule: the first fold's rates stand for all.
    let first = h.first().and_then(|r| r.fold);
    let one: Vec<EpochRecord> = h.iter().filter(|r| r.fold == first).cloned().collect();
    let lr = vec![step_rates(&one)];
    let yr = value_range(&lr, true);
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

pub(super) fn epochs_table(input: &ReportInput) -> Table {
    let names = input.task.epoch_titles();
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
                name: r.fold.map_or(r.epoch.to_string(), |k| format!("fold {k}, {}", r.epoch)),
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
                class: if r.best { "best".into() } else { String::new() },
            }
        })
        .collect();
    Table { header, rows }
}
