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

/// The Training History. A cross-validation's has one block of epochs per fold, and a last
/// column, `fold`, that names it.
pub fn to_csv(history: &[EpochRecord], figures: [&str; 3]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let folds = history.iter().any(|r| r.fold.is_some());
    let mut header = columns(figures);
    if folds {
        header.push("fold".into());
    }
    w.write_record(header)?;
    let opt = |v: Option<f64>| v.map(fmt_float).unwrap_or_default();
    for r in history {
        let validation = r.validation.unwrap_or([None; 3]);
        let mut record = vec![
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
            r.best.to_string(),
            format!("{:.3}", r.seconds),
            format!("{:.3}", r.data_wait_seconds),
        ];
        if folds {
            record.push(r.fold.map(|f| f.to_string()).unwrap_or_default());
        }
        w.write_record(record)?;
    }
    Ok(w.into_inner()?)
}
