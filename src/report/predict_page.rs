//! `predict`'s metrics page, when its images have labels to score against.
use askama::Template;

use super::{headline_rows_for, matrices, per_class_table, MatrixRow, Table};
use crate::data::split::Split;
use crate::metrics::Figures;

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
