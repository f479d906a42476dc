//! The HTML Model Report: a view model of pre-formatted text filled into an Askama template.
//! Self-contained: inline CSS, no script or resource from elsewhere.
use askama::Template;

use crate::data::split::Split;
use crate::metrics::Metrics;

/// A label and value row.
pub struct Item {
    pub label: String,
    pub value: String,
}

pub struct MetricRow {
    pub name: String,
    pub values: Vec<String>,
}

pub struct ConfusionRow {
    pub class: String,
    pub cells: Vec<String>,
}

#[derive(Template)]
#[template(path = "report.html")]
pub struct ReportPage {
    pub title: String,
    pub generated: String,
    pub run: Vec<Item>,
    pub command_line: String,
    pub data: Vec<Item>,
    pub warnings: Vec<String>,
    pub split_header: Vec<String>,
    pub split_counts: Vec<MetricRow>,
    pub split_method: String,
    pub headline_header: Vec<String>,
    pub headline: Vec<MetricRow>,
    pub epoch_header: Vec<String>,
    pub epochs: Vec<MetricRow>,
    pub training_note: String,
    pub per_class_header: Vec<String>,
    pub per_class: Vec<MetricRow>,
    pub classes: Vec<String>,
    pub confusion: Vec<ConfusionRow>,
    pub test_note: String,
}

pub fn f4(v: f64) -> String {
    format!("{v:.4}")
}

pub fn opt4(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), f4)
}

/// Headline metrics, one row per metric, one column per split.
pub fn headline_rows(per_split: &[(Split, &Metrics)]) -> (Vec<String>, Vec<MetricRow>) {
    let header = std::iter::once("Metric".to_string())
        .chain(per_split.iter().map(|(s, m)| format!("{} (n={})", s.name(), m.n)))
        .collect();
    let rows: [(&str, fn(&Metrics) -> String); 7] = [
        ("Accuracy", |m| f4(m.accuracy)),
        ("Precision (macro)", |m| f4(m.macro_precision)),
        ("Recall (macro)", |m| f4(m.macro_recall)),
        ("F1 (macro)", |m| f4(m.macro_f1)),
        ("ROC-AUC (one-vs-rest, macro)", |m| opt4(m.roc_auc_macro)),
        ("Cohen's kappa", |m| f4(m.cohen_kappa)),
        ("Log loss", |m| f4(m.log_loss)),
    ];
    let rows = rows
        .iter()
        .map(|(name, f)| MetricRow { name: name.to_string(), values: per_split.iter().map(|(_, m)| f(m)).collect() })
        .collect();
    (header, rows)
}

pub fn render(page: &ReportPage) -> anyhow::Result<String> {
    Ok(page.render()?)
}
