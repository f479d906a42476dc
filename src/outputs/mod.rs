//! The files a run leaves: the Best Model bundle, the Training History, the Predictions, the
//! metrics, the report and predict's explanations, committed together by `commit`: all of them,
//! or none.
pub mod commit;
pub mod explanations;
pub mod history;
mod train_run;

pub use commit::{output_error, OutputSet};
pub use train_run::{write_train_outputs, TrainedRun};

use std::path::Path;

use anyhow::Result;

pub const BEST_MODEL: &str = "best_model.zip";
pub const HISTORY: &str = "training_history.csv";
pub const PREDICTIONS: &str = "predictions.csv";
pub const REPORT: &str = "report.html";
pub const METRICS: &str = "metrics.json";

/// SIGINT / SIGTERM / SIGHUP: outputs are either all committed or none. A signal during a
/// commit waits for it to end; then what is staged is removed and the process exits at once with
/// 128 + the signal number.
pub fn install_signal_handlers() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let committed = commit::stop_for_signal();
            if committed {
                eprintln!("image-learner: stopped by signal {sig} after every output was written");
            } else {
                eprintln!("image-learner: stopped by signal {sig}; no output was written");
            }
            // SAFETY: _exit ends the process without running destructors of libtorch's globals,
            // which may be in use by the training thread.
            unsafe { libc::_exit(128 + sig) };
        }
    });
}

/// Writes `bytes` to `path` so that `path` is either as it was or complete.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut set = OutputSet::new();
    set.stage(path, bytes)?;
    set.commit()
}

/// The file `path` names, spelled one way: its folder resolved (`.`, `..`, symbolic links), or
/// the whole path where it exists (a link to a file is that file). Two outputs that name the same
/// file compare equal however they are written.
pub fn resolved(path: &Path) -> std::path::PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (std::fs::canonicalize(dir), path.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => path.to_path_buf(),
    }
}

/// Refuses two options that name the same output file (`--output pred.csv --report ./pred.csv`):
/// one would overwrite the other. `outputs` are (option, path) pairs.
pub fn check_distinct(outputs: &[(&str, &Path)]) -> Result<()> {
    for (i, (a, pa)) in outputs.iter().enumerate() {
        for (b, pb) in &outputs[..i] {
            if resolved(pa) == resolved(pb) {
                crate::bail_input!(
                    "{b} ({}) and {a} ({}) name the same file, so one would overwrite the other: give each its own file",
                    pb.display(),
                    pa.display()
                );
            }
        }
    }
    Ok(())
}

/// Makes sure the output folder exists and is writable before any work starts.
pub fn prepare_output_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| output_error(dir, e))?;
    commit::clean_stale(dir);
    let probe = dir.join(format!(".image-learner-{}.probe.partial", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| output_error(dir, e))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// A float for CSV: fixed, round-trippable text.
pub fn fmt_float(v: f64) -> String {
    if v.is_finite() { format!("{v}") } else { String::new() }
}
