//! The plain configuration values that the command line is turned into. The core modules take
//! these, never the parsed arguments, so tests drive them directly.
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::input_error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classification,
    Binary,
}

impl FromStr for Task {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "classification" | "multiclass" | "multi_class" | "category" => Ok(Task::Classification),
            "binary" | "binary_classification" => Ok(Task::Binary),
            other => Err(input_error(format!(
                "unknown task '{other}': use 'classification' or 'binary'"
            ))),
        }
    }
}

/// One of the six augmentations of the existing tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Augmentation {
    HorizontalFlip,
    VerticalFlip,
    Rotate,
    Blur,
    Brightness,
    Contrast,
}

impl Augmentation {
    pub const ALL: [Augmentation; 6] = [
        Augmentation::HorizontalFlip,
        Augmentation::VerticalFlip,
        Augmentation::Rotate,
        Augmentation::Blur,
        Augmentation::Brightness,
        Augmentation::Contrast,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Augmentation::HorizontalFlip => "horizontal_flip",
            Augmentation::VerticalFlip => "vertical_flip",
            Augmentation::Rotate => "rotate",
            Augmentation::Blur => "blur",
            Augmentation::Brightness => "brightness",
            Augmentation::Contrast => "contrast",
        }
    }
}

impl FromStr for Augmentation {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let key = s.trim().to_ascii_lowercase().replace('-', "_");
        let key = key.strip_prefix("random_").unwrap_or(&key);
        Augmentation::ALL.into_iter().find(|a| a.name() == key).ok_or_else(|| {
            let names: Vec<_> = Augmentation::ALL.iter().map(|a| a.name()).collect();
            input_error(format!("unknown augmentation '{s}': use one of {}", names.join(", ")))
        })
    }
}

/// Train / validation / test fractions, in percent, summing to 100.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitFractions {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        SplitFractions { train: 70.0, validation: 10.0, test: 20.0 }
    }
}

impl FromStr for SplitFractions {
    type Err = anyhow::Error;
    /// Parses `70/10/20` (also with commas or as fractions `0.7/0.1/0.2`).
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = s.split(['/', ',', ':']).map(str::trim).collect();
        let bad = || {
            input_error(format!(
                "--split '{s}': give three numbers train/validation/test that sum to 100, e.g. 70/10/20"
            ))
        };
        if parts.len() != 3 {
            return Err(bad());
        }
        let mut v = [0f64; 3];
        for (slot, p) in v.iter_mut().zip(&parts) {
            *slot = p.parse::<f64>().map_err(|_| bad())?;
            if !slot.is_finite() || *slot < 0.0 {
                return Err(bad());
            }
        }
        let sum: f64 = v.iter().sum();
        if (sum - 1.0).abs() < 1e-6 {
            v.iter_mut().for_each(|x| *x *= 100.0);
        } else if (sum - 100.0).abs() > 1e-6 {
            return Err(input_error(format!(
                "--split '{s}': the three numbers sum to {sum}, not 100"
            )));
        }
        if v[0] <= 0.0 || v[2] <= 0.0 {
            return Err(input_error(format!(
                "--split '{s}': the train and test parts must be above 0"
            )));
        }
        Ok(SplitFractions { train: v[0], validation: v[1], test: v[2] })
    }
}

impl std::fmt::Display for SplitFractions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.train, self.validation, self.test)
    }
}

/// A column chosen by name or by 1-based number (Galaxy's column pickers pass numbers).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnRef {
    Name(String),
    Number(usize),
}

impl FromStr for ColumnRef {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        match s.parse::<usize>() {
            Ok(0) => Err(input_error("column numbers start at 1")),
            Ok(n) => Ok(ColumnRef::Number(n)),
            Err(_) if s.is_empty() => Err(input_error("empty column name")),
            Err(_) => Ok(ColumnRef::Name(s.to_string())),
        }
    }
}

impl std::fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnRef::Name(n) => write!(f, "'{n}'"),
            ColumnRef::Number(n) => write!(f, "number {n}"),
        }
    }
}

/// Which validation figure picks the best epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationMetric {
    Loss,
    Accuracy,
    MacroF1,
    RocAuc,
}

impl ValidationMetric {
    pub fn name(self) -> &'static str {
        match self {
            ValidationMetric::Loss => "loss",
            ValidationMetric::Accuracy => "accuracy",
            ValidationMetric::MacroF1 => "macro_f1",
            ValidationMetric::RocAuc => "roc_auc",
        }
    }
    pub fn higher_is_better(self) -> bool {
        !matches!(self, ValidationMetric::Loss)
    }
}

impl FromStr for ValidationMetric {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "loss" | "validation_loss" => Ok(ValidationMetric::Loss),
            "accuracy" | "acc" => Ok(ValidationMetric::Accuracy),
            "macro_f1" | "f1" => Ok(ValidationMetric::MacroF1),
            "roc_auc" | "auc" => Ok(ValidationMetric::RocAuc),
            other => Err(input_error(format!(
                "unknown validation metric '{other}': use loss, accuracy, macro_f1 or roc_auc"
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Adam,
    AdamW,
    Sgd,
}

impl FromStr for OptimizerKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "adam" => Ok(OptimizerKind::Adam),
            "adamw" => Ok(OptimizerKind::AdamW),
            "sgd" => Ok(OptimizerKind::Sgd),
            other => Err(input_error(format!("unknown optimizer '{other}': use adam, adamw or sgd"))),
        }
    }
}

/// Where the tensors live: `auto` picks CUDA when present.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| input_error(format!("unknown device '{s}': use auto, cpu, cuda or cuda:N"))),
        }
    }
}

fn default_precision() -> PrecisionChoice {
    PrecisionChoice::Auto
}

/// `--precision`: the floating-point precision of the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrecisionChoice {
    /// bf16 mixed precision where the hardware computes bf16 faster than float32 (a CPU with
    /// AMX, a CUDA GPU), float32 elsewhere.
    Auto,
    Fp32,
    /// bf16 automatic mixed precision: matrix products and convolutions in bf16, weights,
    /// reductions and the loss in float32.
    Bf16,
}

impl FromStr for PrecisionChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(PrecisionChoice::Auto),
            "fp32" | "float32" => Ok(PrecisionChoice::Fp32),
            "bf16" | "bfloat16" => Ok(PrecisionChoice::Bf16),
            other => Err(input_error(format!("unknown precision '{other}': use auto, fp32 or bf16"))),
        }
    }
}

/// Which images the Predictions CSV covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionsScope {
    Test,
    All,
}

impl FromStr for PredictionsScope {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "test" => Ok(PredictionsScope::Test),
            "all" => Ok(PredictionsScope::All),
            other => Err(input_error(format!("--predictions '{other}': use test or all"))),
        }
    }
}

/// Everything one training run needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    pub images: PathBuf,
    pub metadata: PathBuf,
    pub output_dir: PathBuf,
    pub task: Task,
    pub model: String,
    pub epochs: usize,
    pub batch_size: usize,
    pub use_pretrained: bool,
    pub fine_tune: bool,
    pub learning_rate: f64,
    pub optimizer: OptimizerKind,
    pub weight_decay: f64,
    pub seed: u64,
    pub augmentation: Vec<Augmentation>,
    pub split: SplitFractions,
    pub image_column: Option<ColumnRef>,
    pub label_column: Option<ColumnRef>,
    pub split_column: Option<ColumnRef>,
    pub group_column: Option<ColumnRef>,
    pub image_size: Option<i64>,
    pub early_stop: Option<usize>,
    pub validation_metric: ValidationMetric,
    pub threads: Option<usize>,
    pub device: DeviceChoice,
    #[serde(default = "default_precision")]
    pub precision: PrecisionChoice,
    pub weights_dir: Option<PathBuf>,
    pub predictions: PredictionsScope,
    /// Binary task: predict the second class when its probability reaches this (default: the
    /// more probable class, i.e. 0.5).
    #[serde(default)]
    pub threshold: Option<f32>,
    /// Evaluate the training images again with the best weights in eval mode (one more pass
    /// over them). Without it the train figures are the best epoch's own training pass.
    #[serde(default)]
    pub evaluate_train: bool,
    /// The command line as typed, for the report.
    pub command_line: String,
}

impl TrainConfig {
    /// A configuration with the tool's defaults for the given inputs.
    pub fn new(images: PathBuf, metadata: PathBuf, output_dir: PathBuf, model: &str) -> Self {
        TrainConfig {
            images,
            metadata,
            output_dir,
            task: Task::Classification,
            model: model.to_string(),
            precision: PrecisionChoice::Auto,
            epochs: 10,
            batch_size: 32,
            use_pretrained: false,
            fine_tune: true,
            learning_rate: 0.001,
            optimizer: OptimizerKind::Adam,
            weight_decay: 0.0,
            seed: 42,
            augmentation: Vec::new(),
            split: SplitFractions::default(),
            image_column: None,
            label_column: None,
            split_column: None,
            group_column: None,
            image_size: None,
            early_stop: None,
            validation_metric: ValidationMetric::Loss,
            evaluate_train: false,
            threads: None,
            device: DeviceChoice::Cpu,
            weights_dir: None,
            predictions: PredictionsScope::Test,
            threshold: None,
            command_line: String::new(),
        }
    }

    /// Checks the numeric options before any data is read.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.epochs == 0 {
            crate::bail_input!("--epochs must be at least 1");
        }
        if self.batch_size == 0 {
            crate::bail_input!("--batch-size must be at least 1");
        }
        if !self.learning_rate.is_finite() || self.learning_rate <= 0.0 {
            crate::bail_input!("--learning-rate must be a number above 0 (got {})", self.learning_rate);
        }
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            crate::bail_input!("--weight-decay must be 0 or more (got {})", self.weight_decay);
        }
        if let Some(s) = self.image_size {
            if !(16..=1024).contains(&s) {
                crate::bail_input!("--image-size must be between 16 and 1024 pixels (got {s})");
            }
        }
        if let Some(t) = self.threshold {
            if !(t > 0.0 && t < 1.0) {
                crate::bail_input!("--threshold must be between 0 and 1 (got {t})");
            }
        }
        if self.early_stop == Some(0) {
            crate::bail_input!("--early-stop must be at least 1 epoch (leave it out to train every epoch)");
        }
        if !self.use_pretrained && !self.fine_tune {
            crate::bail_input!(
                "--fine-tune false freezes the backbone, which only makes sense with --use-pretrained true"
            );
        }
        Ok(())
    }
}
