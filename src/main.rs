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
            eprintln!(
                "done in {:.1} s: best epoch {} of {}, test accuracy {:.4}, macro F1 {:.4}",
                s.seconds, s.best_epoch, s.epochs_run, s.test.accuracy, s.test.macro_f1
            );
            println!("{}", s.output_dir.join(outputs::REPORT).display());
        }
        Command::Predict(cfg) => {
            let s = commands::predict::run(&cfg)?;
            eprintln!("{} images predicted into {}", s.images, cfg.output.display());
            if let Some(m) = s.metrics {
                eprintln!("against the labels: accuracy {:.4}, macro F1 {:.4}", m.accuracy, m.macro_f1);
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
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("image-learner: error: {e:#}");
        std::process::exit(exit_code(&e));
    }
    std::process::exit(EXIT_OK);
}
