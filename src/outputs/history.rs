//! Training History: one row per epoch.
use anyhow::Result;

use crate::outputs::fmt_float;
use crate::train::EpochRecord;

pub const COLUMNS: [&str; 13] = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "train_macro_f1",
    "train_roc_auc",
    "validation_loss",
    "validation_accuracy",
    "validation_macro_f1",
    "validation_roc_auc",
    "learning_rate",
    "is_best",
    "seconds",
    "data_wait_seconds",
];

/// The columns that hold wall-clock times (the rest repeat exactly for the same seed).
pub const TIME_COLUMNS: std::ops::Range<usize> = 11..13;

pub fn to_csv(history: &[EpochRecord], best_epoch: usize) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS)?;
    let opt = |v: Option<f64>| v.map(fmt_float).unwrap_or_default();
    for r in history {
        w.write_record([
            r.epoch.to_string(),
            fmt_float(r.train_loss),
            fmt_float(r.train_accuracy),
            fmt_float(r.train_macro_f1),
            opt(r.train_roc_auc),
            opt(r.validation_loss),
            opt(r.validation_accuracy),
            opt(r.validation_macro_f1),
            opt(r.validation_roc_auc),
            fmt_float(r.learning_rate),
            (r.epoch == best_epoch).to_string(),
            format!("{:.3}", r.seconds),
            format!("{:.3}", r.data_wait_seconds),
        ])?;
    }
    Ok(w.into_inner()?)
}
