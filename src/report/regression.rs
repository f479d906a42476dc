//! A regression's parts of the report: the headline figures per split, true against predicted,
//! the residuals, and the test images with the largest errors.
use super::plots::{self, colour, LineChart, Scatter, Series};
use super::{opt4, png_uri, with_interval, Plot, ReportInput, Row, Table, TaskPart, Thumb};
use crate::data::split::Split;
use crate::metrics::regression::RegressionMetrics;
use crate::metrics::{Figures, Intervals};
use crate::task::Target;

/// How the regression figures are computed, for the note under the headline table.
const HEADLINE_NOTE: &str = "MAE, RMSE and the mean error are in the target's units; MAPE is a fraction of the true value, \
    left out when a true value is 0. R² and explained variance follow scikit-learn (0 for a constant truth), Pearson's r and \
    Spearman's ρ (average ranks for ties) SciPy; \"n/a\" marks a figure that is undefined on these images.";

/// The test images with the largest errors shown.
const LARGEST_ERRORS: usize = 12;

/// One row per figure, one column per split; the test column carries the intervals.
pub fn headline_rows(per_split: &[(Split, &Figures)], test_intervals: Option<&Intervals>) -> Vec<Row> {
    type F = fn(&RegressionMetrics) -> Option<f64>;
    let figures: [(&str, &str, F); 9] = [
        ("MAE (mean absolute error)", "mae", |m| Some(m.mae)),
        ("RMSE (root mean squared error)", "rmse", |m| Some(m.rmse)),
        ("MSE (mean squared error)", "mse", |m| Some(m.mse)),
        ("R²", "r2", |m| Some(m.r2)),
        ("Explained variance", "explained_variance", |m| Some(m.explained_variance)),
        ("Pearson's r", "pearson_r", |m| m.pearson_r),
        ("Spearman's ρ", "spearman_rho", |m| m.spearman_rho),
        ("MAPE (fraction of the true value)", "mape", |m| m.mape),
        ("Mean error (predicted - true)", "", |m| Some(m.mean_error)),
    ];
    let cell = |split: Split, f: &Figures, key: &str, get: F| -> String {
        let Some(m) = f.regression() else { return String::new() };
        match (get(m), split) {
            (Some(v), Split::Test) => with_interval(v, test_intervals, key),
            (v, _) => opt4(v),
        }
    };
    let mut rows: Vec<Row> = figures
        .iter()
        .map(|&(name, key, get)| Row {
            name: name.to_string(),
            values: per_split.iter().map(|&(s, f)| cell(s, f, key, get)).collect(),
            class: String::new(),
        })
        .collect();
    rows.push(Row { name: "Loss (training objective)".into(), values: per_split.iter().map(|(_, f)| super::f4(f.loss())).collect(), class: String::new() });
    rows.push(Row { name: "Images".into(), values: per_split.iter().map(|(_, f)| f.n().to_string()).collect(), class: String::new() });
    rows
}

/// The report's regression parts: no confusion matrix, calibration or threshold; the test
/// section's plots and largest errors instead.
pub fn part(input: &ReportInput, t: &Target) -> anyhow::Result<TaskPart> {
    let (plots, gallery, gallery_note) = section(input, t)?;
    Ok(TaskPart {
        loss_name: format!("{} (standardised target)", t.loss.name().to_uppercase()),
        figure_plot: mae_plot(input),
        explained_output: "the predicted value",
        split_header: "Images",
        headline_note: HEADLINE_NOTE,
        regression: true,
        classes: Vec::new(),
        matrix_counts: Vec::new(),
        matrix_percent: Vec::new(),
        test_plots: plots,
        confidence_plot: Plot { svg: String::new(), guide: String::new() },
        per_class: Table { header: Vec::new(), rows: Vec::new() },
        calibration_plots: Vec::new(),
        threshold_plots: Vec::new(),
        gallery,
        gallery_note,
    })
}

/// Train and validation MAE per epoch.
fn mae_plot(input: &ReportInput) -> Plot {
    let (x_range, best) = super::epochs::epoch_axis(input);
    let h = input.history;
    let mae: Vec<Series> = [
        super::epochs::epoch_series(h, "train MAE", 0, false, &|r| r.train[0]),
        super::epochs::epoch_series(h, "validation MAE", 1, false, &|r| r.validation.and_then(|v| v[0])),
    ]
    .into_iter()
    .flatten()
    .collect();
    let y_range = super::epochs::value_range(&mae, true);
    Plot {
        svg: plots::line_chart(&LineChart { title: "Mean absolute error per epoch", x_label: "epoch", y_label: "MAE (target units)", x_range, y_range, series: mae, marker: best, diagonal: false, integer_x: true }),
        guide: "Lower is better: the typical distance between the predicted and the true value. A validation MAE that rises while the training MAE keeps falling is a sign of overfitting.".into(),
    }
}

/// A range around `values` with a little margin, never empty.
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 1.0 };
    (lo - pad, hi + pad)
}

/// Equal-width bins over `values` (at least one), as edges and counts.
fn histogram_bins(values: &[f64], bins: usize) -> (Vec<f64>, Vec<usize>) {
    let (lo, hi) = padded(values.iter().copied());
    let width = (hi - lo) / bins as f64;
    let edges: Vec<f64> = (0..=bins).map(|i| lo + width * i as f64).collect();
    let mut counts = vec![0usize; bins];
    for v in values {
        counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
    }
    (edges, counts)
}

/// The test section's plots (true against predicted, residuals, the errors' distribution), the
/// largest errors and their note.
fn section(input: &ReportInput, t: &Target) -> anyhow::Result<(Vec<Plot>, Vec<Thumb>, String)> {
    let truth = input.test_values;
    let predicted = t.predicted_values(input.test_probs);
    let residual: Vec<f64> = predicted.iter().zip(truth).map(|(p, t)| p - t).collect();
    let column = t.column.as_str();
    let name = |i: usize| crate::error::short(&input.test_names[i]);
    let hover: Vec<String> = (0..truth.len())
        .map(|i| format!("{}: true {:.3}, predicted {:.3}, error {:+.3}", name(i), truth[i], predicted[i], residual[i]))
        .collect();
    let both = padded(truth.iter().chain(&predicted).copied());
    let versus: Vec<(f64, f64)> = truth.iter().copied().zip(predicted.iter().copied()).collect();
    let true_label = format!("true {column}");
    let predicted_label = format!("predicted {column}");
    let scatter = plots::scatter(&Scatter {
        title: "True against predicted (test)",
        x_label: &true_label,
        y_label: &predicted_label,
        x_range: both,
        y_range: both,
        points: &versus,
        hover: &hover,
        line: ((both.0, both.0), (both.1, both.1)),
        line_label: "identity (perfect prediction)",
    });
    let residuals: Vec<(f64, f64)> = predicted.iter().copied().zip(residual.iter().copied()).collect();
    let x = padded(predicted.iter().copied());
    let spread = residual.iter().fold(0f64, |m, r| m.max(r.abs())).max(1e-9) * 1.05;
    let residual_plot = plots::scatter(&Scatter {
        title: "Residuals against predicted (test)",
        x_label: &predicted_label,
        y_label: "error (predicted - true)",
        x_range: x,
        y_range: (-spread, spread),
        points: &residuals,
        hover: &hover,
        line: ((x.0, 0.0), (x.1, 0.0)),
        line_label: "no error",
    });
    let (edges, counts) = histogram_bins(&residual, 20);
    let histogram = plots::histogram("Distribution of the errors (test)", "error (predicted - true)", "an error of", &edges, &[("test images".into(), counts, colour(0))]);
    let plots = vec![
        Plot {
            svg: scatter,
            guide: "Each dot is a test image. On the grey line the prediction equals the truth. Dots flatter than the line mean the model pulls its predictions towards the average (common when it has learned little); a curve or a fan means it errs more in some range.".into(),
        },
        Plot {
            svg: residual_plot,
            guide: "The errors should scatter evenly around zero at every predicted value. A slope or a funnel shape shows where the model is biased or less certain.".into(),
        },
        Plot {
            svg: histogram,
            guide: "How large the errors are, and whether they lean one way: a distribution centred off zero is a systematic bias, long tails are images the model gets badly wrong.".into(),
        },
    ];
    let mut order: Vec<usize> = (0..truth.len()).collect();
    order.sort_by(|&a, &b| residual[b].abs().total_cmp(&residual[a].abs()).then(a.cmp(&b)));
    let gallery: Vec<Thumb> = order
        .iter()
        .take(LARGEST_ERRORS)
        .map(|&i| {
            Ok(Thumb {
                uri: png_uri(&(input.test_pixels)(i)?, input.image_size),
                caption: format!("{}: true {:.4}, predicted {:.4} (error {:+.4})", name(i), truth[i], predicted[i], residual[i]),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let gallery_note = format!(
        "The {} test images with the largest absolute errors: worth a look for label errors or images unlike the rest.",
        gallery.len()
    );
    Ok((plots, gallery, gallery_note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bins_cover_every_value() {
        let (edges, counts) = histogram_bins(&[-1.0, 0.0, 0.5, 3.0], 4);
        assert_eq!(edges.len(), 5);
        assert_eq!(counts.iter().sum::<usize>(), 4);
        assert!(edges[0] < -1.0 && edges[4] > 3.0);
        let (_, one) = histogram_bins(&[2.0, 2.0], 3);
        assert_eq!(one.iter().sum::<usize>(), 2, "a single value still lands in a bin");
    }
}
