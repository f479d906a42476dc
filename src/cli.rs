//! Command-line interface: flags mirror the Galaxy form one for one. Parsing turns them into the
//! plain configuration values of `config`, nothing more.
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::config::{
    Augmentation, ColumnRef, DeviceChoice, PrecisionChoice, OptimizerKind, PredictionsScope, SplitFractions, Task, TrainConfig,
    ValidationMetric,
};
use crate::predict::PredictConfig;

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(format!("'{s}' is not true or false")),
    }
}

fn parse_with<T: std::str::FromStr<Err = anyhow::Error>>(s: &str) -> Result<T, String> {
    s.parse::<T>().map_err(|e| e.to_string())
}

#[derive(Parser, Debug)]
#[command(name = "image-learner", version, about = "Train and evaluate image classifiers from a ZIP of images and a CSV of labels")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a classifier and write the Best Model, report, history and predictions.
    Train(TrainArgs),
    /// Predict the class of new images with a Best Model.
    Predict(PredictArgs),
    /// List the model architectures.
    Models,
    /// Write the bundled synthetic sample (images ZIP + metadata CSV).
    Sample(SampleArgs),
    /// Install pretrained weights into the weights folder.
    #[command(subcommand)]
    Weights(WeightsCommand),
    /// Measure a model's training throughput (images/s) on random batches, as `train` steps.
    Throughput(ThroughputArgs),
}

#[derive(Args, Debug)]
pub struct ThroughputArgs {
    /// The model whose training step is timed (or, with --images, the data ingestion instead).
    #[arg(required_unless_present = "images")]
    pub model: Option<String>,
    /// Time reading, decoding and resizing this ZIP's images (with --metadata) instead.
    #[arg(long, requires = "metadata")]
    pub images: Option<PathBuf>,
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    #[arg(long, value_parser = parse_with::<ColumnRef>)]
    pub label_column: Option<ColumnRef>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: i64,
    #[arg(long, default_value_t = 96)]
    pub image_size: i64,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    #[arg(long, default_value = "auto", value_parser = parse_with::<PrecisionChoice>)]
    pub precision: PrecisionChoice,
    /// Keep the default contiguous (NCHW) layout instead of channels-last.
    #[arg(long)]
    pub contiguous: bool,
    #[arg(long, default_value = "cpu", value_parser = parse_with::<DeviceChoice>)]
    pub device: DeviceChoice,
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Subcommand, Debug)]
pub enum WeightsCommand {
    /// Download a model's published ImageNet weights (timm's hub, torchvision's URLs).
    Fetch {
        model: String,
        #[arg(long)]
        weights_dir: Option<PathBuf>,
    },
    /// Install a weights file you have (safetensors or a PyTorch state dict).
    Import {
        model: String,
        file: PathBuf,
        #[arg(long)]
        weights_dir: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// ZIP of images.
    #[arg(long)]
    pub images: PathBuf,
    /// CSV or TSV naming each image and its class.
    #[arg(long)]
    pub metadata: PathBuf,
    /// Folder for the outputs.
    #[arg(long, default_value = "out")]
    pub output_dir: PathBuf,
    /// classification or binary.
    #[arg(long, default_value = "classification", value_parser = parse_with::<Task>)]
    pub task: Task,
    /// Architecture (see `image-learner models`).
    #[arg(long, default_value = "resnet18")]
    pub model: String,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Start from pretrained ImageNet weights.
    #[arg(long, default_value = "false", action = ArgAction::Set, value_parser = parse_bool)]
    pub use_pretrained: bool,
    /// Train all layers (true) or only the new head (false).
    #[arg(long, default_value = "true", action = ArgAction::Set, value_parser = parse_bool)]
    pub fine_tune: bool,
    #[arg(long, default_value_t = 0.001)]
    pub learning_rate: f64,
    /// adam, adamw or sgd.
    #[arg(long, default_value = "adam", value_parser = parse_with::<OptimizerKind>)]
    pub optimizer: OptimizerKind,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Comma-separated: horizontal_flip, vertical_flip, rotate, blur, brightness, contrast.
    #[arg(long, value_delimiter = ',', value_parser = parse_with::<Augmentation>)]
    pub augmentation: Vec<Augmentation>,
    /// train/validation/test percentages.
    #[arg(long, default_value = "70/10/20", value_parser = parse_with::<SplitFractions>)]
    pub split: SplitFractions,
    /// Image column, by name or 1-based number.
    #[arg(long, value_parser = parse_with::<ColumnRef>)]
    pub image_column: Option<ColumnRef>,
    /// Label column, by name or 1-based number.
    #[arg(long, value_parser = parse_with::<ColumnRef>)]
    pub label_column: Option<ColumnRef>,
    /// Split column (train/validation/test or 0/1/2), by name or number.
    #[arg(long, value_parser = parse_with::<ColumnRef>)]
    pub split_column: Option<ColumnRef>,
    /// Keep all images of a group (e.g. lesion_id) in one split.
    #[arg(long, value_parser = parse_with::<ColumnRef>)]
    pub group_column: Option<ColumnRef>,
    /// Square input size in pixels (default: the images' size, at most the model's default).
    #[arg(long)]
    pub image_size: Option<i64>,
    /// Stop after this many epochs without validation improvement.
    #[arg(long)]
    pub early_stop: Option<usize>,
    /// loss, accuracy, macro_f1 or roc_auc.
    #[arg(long, default_value = "loss", value_parser = parse_with::<ValidationMetric>)]
    pub validation_metric: ValidationMetric,
    /// Threads (default: GALAXY_SLOTS, else all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_with::<DeviceChoice>)]
    pub device: DeviceChoice,
    /// auto (bf16 mixed precision on a CUDA GPU or a CPU with AMX, else float32), fp32 or bf16.
    #[arg(long, default_value = "auto", value_parser = parse_with::<PrecisionChoice>)]
    pub precision: PrecisionChoice,
    /// Folder of pretrained weights (default: IMAGE_LEARNER_WEIGHTS, else the user cache).
    #[arg(long)]
    pub weights_dir: Option<PathBuf>,
    /// Predictions CSV for the test images (test) or every image with its split (all).
    #[arg(long, default_value = "test", value_parser = parse_with::<PredictionsScope>)]
    pub predictions: PredictionsScope,
    /// Binary task: decision threshold on the second class's probability (default 0.5).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Evaluate the training images again after training, with the best weights in eval mode
    /// (one more pass over them); without it the train figures come from the best epoch's own
    /// training pass (augmented images, weights still changing), as Keras and timm report them.
    #[arg(long, default_value = "false", action = ArgAction::Set, value_parser = parse_bool)]
    pub evaluate_train: bool,
}

impl TrainArgs {
    pub fn into_config(self, command_line: String) -> TrainConfig {
        TrainConfig {
            images: self.images,
            metadata: self.metadata,
            output_dir: self.output_dir,
            task: self.task,
            model: self.model,
            epochs: self.epochs,
            batch_size: self.batch_size,
            use_pretrained: self.use_pretrained,
            fine_tune: self.fine_tune,
            learning_rate: self.learning_rate,
            optimizer: self.optimizer,
            weight_decay: self.weight_decay,
            seed: self.seed,
            augmentation: self.augmentation,
            split: self.split,
            image_column: self.image_column,
            label_column: self.label_column,
            split_column: self.split_column,
            group_column: self.group_column,
            image_size: self.image_size,
            early_stop: self.early_stop,
            validation_metric: self.validation_metric,
            threads: self.threads,
            device: self.device,
            precision: self.precision,
            weights_dir: self.weights_dir,
            predictions: self.predictions,
            threshold: self.threshold,
            evaluate_train: self.evaluate_train,
            command_line,
        }
    }
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Best Model ZIP written by `train`.
    #[arg(long)]
    pub model: PathBuf,
    /// ZIP of images to classify.
    #[arg(long)]
    pub images: PathBuf,
    /// Optional CSV naming the images (and their labels, to score against).
    #[arg(long)]
    pub metadata: Option<PathBuf>,
    /// Predictions CSV to write.
    #[arg(long, default_value = "predictions.csv")]
    pub output: PathBuf,
    /// HTML metrics page to write when the metadata has labels.
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[arg(long, value_parser = parse_with::<ColumnRef>)]
    pub image_column: Option<ColumnRef>,
    #[arg(long, value_parser = parse_with::<ColumnRef>)]
    pub label_column: Option<ColumnRef>,
    /// Evaluation batch size (default: the one the model was evaluated with).
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, default_value = "auto", value_parser = parse_with::<DeviceChoice>)]
    pub device: DeviceChoice,
    /// auto, fp32 or bf16 (as for train).
    #[arg(long, default_value = "auto", value_parser = parse_with::<PrecisionChoice>)]
    pub precision: PrecisionChoice,
}

impl PredictArgs {
    pub fn into_config(self) -> PredictConfig {
        PredictConfig {
            model: self.model,
            images: self.images,
            metadata: self.metadata,
            output: self.output,
            report: self.report,
            image_column: self.image_column,
            label_column: self.label_column,
            batch_size: self.batch_size,
            threads: self.threads,
            device: self.device,
            precision: self.precision,
        }
    }
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    #[arg(long, default_value = "test-data")]
    pub output_dir: PathBuf,
    #[arg(long, default_value_t = 60)]
    pub per_class: usize,
    #[arg(long, default_value_t = 48)]
    pub size: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}
