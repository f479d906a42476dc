//! The files a run leaves: the Best Model bundle, the Training History, the Predictions, the
//! metrics and the report. Each is written to a temporary name beside its target and renamed when complete.
pub mod history;
mod train_run;

pub use train_run::{write_train_outputs, TrainedRun};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};

pub const BEST_MODEL: &str = "best_model.zip";
pub const HISTORY: &str = "training_history.csv";
pub const PREDICTIONS: &str = "predictions.csv";
pub const REPORT: &str = "report.html";
pub const METRICS: &str = "metrics.json";

/// The staging folder of the run in progress, for the signal handler to remove.
static STAGING: Mutex<Option<PathBuf>> = Mutex::new(None);
/// Set while the staged outputs are being renamed into place: a signal then waits for it.
pub static COMMITTING: AtomicBool = AtomicBool::new(false);
/// Set once a run's outputs are all in place.
pub static COMMITTED: AtomicBool = AtomicBool::new(false);

/// The outputs of one run, written into a hidden folder inside the output folder and moved into
/// place together at the end, so that a run stopped at any moment leaves all of them or none.
pub struct Staging {
    dir: PathBuf,
    out: PathBuf,
    files: Vec<String>,
}

impl Staging {
    pub fn new(out: &Path) -> Result<Staging> {
        let dir = out.join(format!(".image-learner-staging-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| output_error(&dir, e))?;
        *STAGING.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.clone());
        Ok(Staging { dir, out: out.to_path_buf(), files: Vec::new() })
    }

    /// Writes one output file into the staging folder.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(name);
        let result = std::fs::File::create(&path).and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
        result.map_err(|e| output_error(&self.out.join(name), e))?;
        self.files.push(name.to_string());
        Ok(())
    }

    /// Moves every staged file into the output folder. Signals wait until this is done.
    pub fn commit(mut self) -> Result<()> {
        COMMITTING.store(true, Ordering::SeqCst);
        let result = self.files.iter().try_for_each(|name| {
            std::fs::rename(self.dir.join(name), self.out.join(name)).map_err(|e| output_error(&self.out.join(name), e))
        });
        self.files.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
        *STAGING.lock().unwrap_or_else(|e| e.into_inner()) = None;
        COMMITTED.store(result.is_ok(), Ordering::SeqCst);
        COMMITTING.store(false, Ordering::SeqCst);
        result
    }
}

impl Drop for Staging {
    /// A run that fails before committing leaves nothing behind.
    fn drop(&mut self) {
        if !self.files.is_empty() || self.dir.exists() {
            let _ = std::fs::remove_dir_all(&self.dir);
            *STAGING.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// SIGINT / SIGTERM: outputs are either all committed or none. A signal during the final renames
/// waits for them; otherwise the staged files are removed and the process exits at once with
/// 128 + the signal number.
pub fn install_signal_handlers() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            while COMMITTING.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            abandon_staging();
            let code = if sig == SIGINT { crate::error::EXIT_SIGINT } else { crate::error::EXIT_SIGTERM };
            if COMMITTED.load(Ordering::SeqCst) {
                eprintln!("image-learner: stopped by signal {sig} after every output was written");
            } else {
                eprintln!("image-learner: stopped by signal {sig}; no output was written");
            }
            // SAFETY: _exit ends the process without running destructors of libtorch's globals,
            // which may be in use by the training thread.
            unsafe { libc::_exit(code) };
        }
    });
}

/// Removes the staging folder of an interrupted run (called from the signal handler).
pub fn abandon_staging() {
    if let Some(dir) = STAGING.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn output_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => " (the disk is full: free space or choose another --output-dir)",
        Some(libc::EACCES) | Some(libc::EROFS) | Some(libc::EPERM) => " (no permission: choose another --output-dir)",
        _ => "",
    };
    crate::error::error(crate::error::ErrorKind::Output, format!("cannot write {}: {e}{hint}", path.display()))
}

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
        return Err(output_error(path, e));
    }
    Ok(())
}

/// Makes sure the output folder exists and is writable before any work starts.
pub fn prepare_output_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| output_error(dir, e))?;
    let probe = dir.join(format!(".image-learner-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| output_error(dir, e))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// A float for CSV: fixed, round-trippable text.
pub fn fmt_float(v: f64) -> String {
    if v.is_finite() { format!("{v}") } else { String::new() }
}
