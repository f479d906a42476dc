//! Parses the command line and dispatches; the work happens in the library.
use clap::Parser;

use image_learner::cli::{Cli, Command, WeightsCommand};
use image_learner::error::{exit_code, EXIT_OK, EXIT_SIGINT, EXIT_SIGTERM};
use image_learner::{bench, models, pipeline, precision, predict, synth};

fn shell_quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => {
            let line = std::env::args().map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" ");
            let s = pipeline::run_train(&args.into_config(line))?;
            eprintln!(
                "done in {:.1} s: best epoch {} of {}, test accuracy {:.4}, macro F1 {:.4}",
                s.seconds, s.best_epoch, s.epochs_run, s.test.accuracy, s.test.macro_f1
            );
            println!("{}", s.output_dir.join(image_learner::outputs::REPORT).display());
        }
        Command::Predict(args) => {
            let cfg = args.into_config();
            let s = predict::run_predict(&cfg)?;
            eprintln!("{} images predicted into {}", s.images, cfg.output.display());
            if let Some(m) = s.metrics {
                eprintln!("against the labels: accuracy {:.4}, macro F1 {:.4}", m.accuracy, m.macro_f1);
            }
        }
        Command::Throughput(a) => {
            pipeline::configure_runtime(a.threads);
            let mut compute = precision::Compute::resolve(image_learner::device::resolve(a.device)?, a.precision)?;
            compute.channels_last = !a.contiguous;
            let line = match (&a.images, &a.metadata, &a.model) {
                (Some(images), Some(metadata), _) => {
                    serde_json::to_string(&bench::ingestion(images, metadata, a.label_column.clone(), a.image_size)?)?
                }
                (_, _, Some(model)) => {
                    serde_json::to_string(&bench::throughput(model, a.batch_size, a.image_size, a.warmup, a.steps, &compute)?)?
                }
                _ => anyhow::bail!("name a model, or --images and --metadata"),
            };
            println!("{line}");
        }
        Command::Models => {
            use std::io::Write;
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = writeln!(std::io::stdout().lock(), "{}", models::listing(&models::weights::weights_dir(None)));
        }
        Command::Weights(w) => {
            let (model, dir) = match &w {
                WeightsCommand::Fetch { model, weights_dir } | WeightsCommand::Import { model, weights_dir, .. } => {
                    (models::find(model)?, models::weights::weights_dir(weights_dir.as_deref()))
                }
            };
            let path = match &w {
                WeightsCommand::Fetch { .. } => models::weights::fetch(model, &dir)?,
                WeightsCommand::Import { file, .. } => models::weights::import(model, file, &dir)?,
            };
            eprintln!("{} weights installed: {}", model.name, path.display());
        }
        Command::Sample(a) => {
            synth::write_sample(&a.output_dir, a.per_class, a.size, a.seed)?;
            eprintln!("sample written to {}", a.output_dir.display());
        }
    }
    Ok(())
}

/// SIGINT / SIGTERM: outputs are either all committed or none. A signal during the final renames
/// waits for them; otherwise the staged files are removed and the process exits at once with
/// 128 + the signal number.
fn install_signal_handlers() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            while image_learner::outputs::COMMITTING.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            image_learner::outputs::abandon_staging();
            let code = if sig == SIGINT { EXIT_SIGINT } else { EXIT_SIGTERM };
            if image_learner::outputs::COMMITTED.load(std::sync::atomic::Ordering::SeqCst) {
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

fn main() {
    install_signal_handlers();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("image-learner: error: {e:#}");
        std::process::exit(exit_code(&e));
    }
    std::process::exit(EXIT_OK);
}
