//! Training History: one row per epoch.
use anyhow::Result;

use crate::outputs::fmt_float;
use crate::train::EpochRecord;

pub const COLUMNS: [&str; 9] = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "validation_loss",
    "validation_accuracy",
    "learning_rate",
    "seconds",
    "data_wait_seconds",
    "is_best",
];

pub fn to_csv(history: &[EpochRecord], best_epoch: usize) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS)?;
    let opt = |v: Option<f64>| v.map(fmt_float).unwrap_or_default();
    for r in history {
        w.write_record([
            r.epoch.to_string(),
            fmt_float(r.train_loss),
            fmt_float(r.train_accuracy),
            opt(r.validation_loss),
            opt(r.validation_accuracy),
            fmt_float(r.learning_rate),
            format!("{:.3}", r.seconds),
            format!("{:.3}", r.data_wait_seconds),
            (r.epoch == best_epoch).to_string(),
        ])?;
    }
    Ok(w.into_inner()?)
}
