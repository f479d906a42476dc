//! The program's command line: one subcommand per file of `commands/`, each taking its options
//! struct from `config` as its flags (the Galaxy form's parameters, one for one).
use clap::{Parser, Subcommand};

use image_learner::config::{PredictConfig, SampleConfig, ThroughputConfig, TrainConfig, WeightsConfig};

#[derive(Parser, Debug)]
#[command(name = "image-learner", version, about = "Train and evaluate image classifiers from a ZIP of images and a CSV of labels")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a classifier and write the Best Model, report, history and predictions.
    Train(TrainConfig),
    /// Predict the class of new images with a Best Model.
    Predict(PredictConfig),
    /// List the model architectures.
    Models,
    /// Write the bundled synthetic sample (images ZIP + metadata CSV).
    Sample(SampleConfig),
    /// Install pretrained weights into the weights folder.
    #[command(subcommand)]
    Weights(WeightsConfig),
    /// Measure a model's training throughput (images/s) on random batches, as `train` steps.
    Throughput(ThroughputConfig),
}

/// The command line as typed, quoted for a shell, for the report.
pub fn typed_command_line() -> String {
    std::env::args().map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" ")
}

fn shell_quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}
