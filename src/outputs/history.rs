//! Training History: one row per epoch.
use anyhow::Result;

use crate::outputs::fmt_float;
use crate::train::EpochRecord;

/// The columns of a task whose epoch figures are `figures` (`Task::epoch_columns`): for
/// classification epoch, train_loss, train_accuracy, train_macro_f1, train_roc_auc, the same four
/// for validation, then learning_rate, is_best, seconds and data_wait_seconds.
pub fn columns(figures: [&str; 3]) -> Vec<String> {
    let mut c = vec!["epoch".to_string()];
    for split in ["train", "validation"] {
        c.push(format!("{split}_loss"));
        c.extend(figures.iter().map(|f| format!("{split}_{f}")));
    }
    c.extend(["learning_rate", "is_best", "seconds", "data_wait_seconds"].map(String::from));
    c
}

/// The columns that hold wall-clock times (the rest repeat exactly for the same seed).
pub const TIME_COLUMNS: std::ops::Range<usize> = 11..13;

pub fn to_csv(history: &[EpochRecord], best_epoch: usize, figures: [&str; 3]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(columns(figures))?;
    let opt = |v: Option<f64>| v.map(fmt_float).unwrap_or_default();
    for r in history {
        let validation = r.validation.unwrap_or([None; 3]);
        w.write_record([
            r.epoch.to_string(),
            fmt_float(r.train_loss),
            opt(r.train[0]),
            opt(r.train[1]),
            opt(r.train[2]),
            opt(r.validation_loss),
            opt(validation[0]),
            opt(validation[1]),
            opt(validation[2]),
            fmt_float(r.learning_rate),
            (r.epoch == best_epoch).to_string(),
            format!("{:.3}", r.seconds),
            format!("{:.3}", r.data_wait_seconds),
        ])?;
    }
    Ok(w.into_inner()?)
}
