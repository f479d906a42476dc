//! Parses the command line and dispatches to `commands`; the work happens in the library.
mod cli;

use clap::Parser;

use cli::{Cli, Command};
use image_learner::commands;
use image_learner::error::{exit_code, EXIT_OK};
use image_learner::outputs;

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(mut cfg) => {
            cfg.command_line = cli::typed_command_line();
            let s = commands::train::run(&cfg)?;
            let kept = match s.fold_best_epochs.as_slice() {
                [] => format!("best epoch {} of {}, test", s.best_epoch, s.epochs_run),
                folds => {
                    let epochs: Vec<String> = folds.iter().map(ToString::to_string).collect();
                    format!("{} fold models (best epochs {}); their ensemble's test", folds.len(), epochs.join(", "))
                }
            };
            eprintln!("done in {:.1} s: {kept} {}", s.seconds, s.test.headline());
            println!("{}", s.output_dir.join(outputs::REPORT).display());
        }
        Command::Predict(cfg) => {
            let s = commands::predict::run(&cfg)?;
            eprintln!("{} images predicted into {}", s.images, cfg.output.display());
            if let Some(m) = s.metrics {
                eprintln!("{} images scored against the labels: {}", m.n(), m.headline());
            }
            if s.explained > 0 {
                eprintln!("{} images explained into {}", s.explained, commands::predict::explanations_path(&cfg).display());
            }
        }
        Command::Models => commands::models::run(),
        Command::Sample(cfg) => commands::sample::run(&cfg)?,
        Command::Weights(cfg) => commands::weights::run(&cfg)?,
        Command::Throughput(cfg) => commands::throughput::run(&cfg)?,
    }
    Ok(())
}

fn main() {
    outputs::install_signal_handlers();
    image_learner::error::capture_panics();
    let cli = Cli::parse();
    let e = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli))) {
        Ok(Ok(())) => exit(EXIT_OK),
        Ok(Err(e)) => e,
        // libtorch's failures reach Rust as panics in tch: turned into the error they stand for.
        Err(_) => image_learner::error::from_panic(),
    };
    eprintln!("image-learner: error: {e:#}");
    exit(exit_code(&e));
}

/// Ends the process with `code` once stdout and stderr are flushed, without running libtorch's
/// static destructors. Those walk registrations spread over its hundreds of megabytes of code and
/// fault those pages in, which made the end of every run its peak resident size (about 120 MB
/// over training's); every output is already written, synced and committed by then.
fn exit(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; `run` has returned, so nothing of ours is unwritten.
    unsafe { libc::_exit(code) }
}
