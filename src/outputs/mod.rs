//! The files a run leaves: the Best Model bundle, the Training History, the Predictions and the
//! metrics. Each is written to a temporary name beside its target and renamed when complete.
pub mod bundle;
pub mod history;
pub mod predictions;

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

pub const BEST_MODEL: &str = "best_model.zip";
pub const HISTORY: &str = "training_history.csv";
pub const PREDICTIONS: &str = "predictions.csv";
pub const REPORT: &str = "report.html";
pub const METRICS: &str = "metrics.json";

/// Writes `bytes` to `path` through a temporary file in the same folder, then renames it, so
/// that `path` is either absent or complete.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().context("output path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(crate::error::input_error(format!("cannot write {}: {e}", path.display())));
    }
    Ok(())
}

/// Makes sure the output folder exists and is writable before any work starts.
pub fn prepare_output_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        crate::error::input_error(format!("cannot create the output folder {}: {e}", dir.display()))
    })?;
    let probe = dir.join(format!(".image-learner-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        crate::error::input_error(format!("the output folder {} is not writable: {e}", dir.display()))
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// A float for CSV: fixed, round-trippable text.
pub fn fmt_float(v: f64) -> String {
    if v.is_finite() { format!("{v}") } else { String::new() }
}
