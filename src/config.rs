//! Every option of every command, defined once: each struct is both the command's flags (clap
//! reads the `#[arg]` attributes, defaults included) and the plain value the library takes, so
//! tests build them with `parse` and the Best Model stores the train options as they were used.
//! The program's top-level parser (`src/cli.rs`) belongs to the binary.
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{ArgAction, Args, Parser};
use serde::{Deserialize, Serialize};

use crate::error::input_error;

/// The range of `--image-size` (a model family may need more: `ModelSpec::min_size`).
pub const MIN_IMAGE_SIZE: usize = 16;

/// With pretrained weights and no `--image-size`, images smaller than this are enlarged to it.
/// On the tutorial's 96-pixel images, 128 with flip TTA gained 4.0 points of balanced accuracy
/// over 96 without, paired over 3 seeds; the run took 1.81x as long (docs/performance.md, the
/// recipe benchmark).
pub const PRETRAINED_MIN_SIZE: usize = 128;

/// The least input size without `--image-size` for a model whose default size is `default_size`:
/// `PRETRAINED_MIN_SIZE` with pretrained weights (never above the default), else none.
pub fn least_image_size(pretrained: bool, default_size: usize) -> usize {
    if pretrained { PRETRAINED_MIN_SIZE.min(default_size) } else { 0 }
}
pub const MAX_IMAGE_SIZE: usize = 1024;
/// A classification's label smoothing when `--label-smoothing` is left out: 6 points of balanced
/// accuracy over the seeds on the tutorial's images (`docs/performance.md`, the recipe benchmark).
pub const LABEL_SMOOTHING: f64 = 0.1;
/// A classification's moving average of the weights when `--ema-decay` is left out: this decay
/// for a run of at least `EMA_MIN_STEPS` training steps, none for a shorter one. The average
/// spans about 1/(1 - 0.99) = 100 steps. Over 3 seeds it gained on every seed in runs of 930 steps
/// (the tutorial's images, 30 epochs: +1.5 points of balanced accuracy) and 1,400 (the imbalanced
/// dermoscopy set: +3.3, and +4.0 of accuracy); it changed nothing beyond the spread in 310 steps
/// and lost 2 points, every seed, in 70: a short run's average lags its own weights
/// (docs/performance.md, the recipe benchmark).
pub const EMA_DECAY: f64 = 0.99;
pub const EMA_MIN_STEPS: usize = 500;

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(format!("'{s}' is not true or false")),
    }
}

fn parse_with<T: FromStr<Err = anyhow::Error>>(s: &str) -> Result<T, String> {
    s.parse::<T>().map_err(|e| e.to_string())
}

/// `--task`, as the form offers it (what each means is `task::Task`'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Chosen from the label column (`task::infer`); never the task of a trained model.
    Auto,
    Classification,
    Binary,
    Regression,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Auto => "auto",
            TaskKind::Classification => "classification",
            TaskKind::Binary => "binary",
            TaskKind::Regression => "regression",
        }
    }
}

impl FromStr for TaskKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "auto" => Ok(TaskKind::Auto),
            "classification" | "multiclass" | "multi_class" | "category" => Ok(TaskKind::Classification),
            "binary" | "binary_classification" => Ok(TaskKind::Binary),
            "regression" | "number" | "numeric" => Ok(TaskKind::Regression),
            other => Err(input_error(format!("unknown task '{other}': use auto, classification, binary or regression"))),
        }
    }
}

/// `--loss` of a regression: what the standardised target's errors cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegressionLoss {
    #[default]
    Mse,
    Mae,
    /// Smooth L1 with delta 1 (in standard deviations of the target).
    Huber,
}

impl RegressionLoss {
    pub fn name(self) -> &'static str {
        match self {
            RegressionLoss::Mse => "mse",
            RegressionLoss::Mae => "mae",
            RegressionLoss::Huber => "huber",
        }
    }
}

impl FromStr for RegressionLoss {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mse" | "l2" => Ok(RegressionLoss::Mse),
            "mae" | "l1" => Ok(RegressionLoss::Mae),
            "huber" | "smooth_l1" => Ok(RegressionLoss::Huber),
            other => Err(input_error(format!("unknown loss '{other}': use mse, mae or huber"))),
        }
    }
}

/// One of the six augmentations of the existing tool, or of the field's three.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Augmentation {
    HorizontalFlip,
    VerticalFlip,
    Rotate,
    Blur,
    Brightness,
    Contrast,
    RandomResizedCrop,
    ColorJitter,
    TrivialAugment,
}

impl Augmentation {
    pub const ALL: [Augmentation; 9] = [
        Augmentation::HorizontalFlip,
        Augmentation::VerticalFlip,
        Augmentation::Rotate,
        Augmentation::Blur,
        Augmentation::Brightness,
        Augmentation::Contrast,
        Augmentation::RandomResizedCrop,
        Augmentation::ColorJitter,
        Augmentation::TrivialAugment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Augmentation::HorizontalFlip => "horizontal_flip",
            Augmentation::VerticalFlip => "vertical_flip",
            Augmentation::Rotate => "rotate",
            Augmentation::Blur => "blur",
            Augmentation::Brightness => "brightness",
            Augmentation::Contrast => "contrast",
            Augmentation::RandomResizedCrop => "random_resized_crop",
            Augmentation::ColorJitter => "color_jitter",
            Augmentation::TrivialAugment => "trivial_augment",
        }
    }
}

impl FromStr for Augmentation {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let key = s.trim().to_ascii_lowercase().replace('-', "_");
        let short = key.strip_prefix("random_").unwrap_or(&key);
        Augmentation::ALL.into_iter().find(|a| a.name() == key || a.name() == short).ok_or_else(|| {
            let names: Vec<_> = Augmentation::ALL.iter().map(|a| a.name()).collect();
            input_error(format!("unknown augmentation '{s}': use one of {}", names.join(", ")))
        })
    }
}

/// `--crop-scale`: the lower and upper share of the image's area a random-resized crop keeps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CropScale(pub [f64; 2]);

impl CropScale {
    /// The share of the area a crop keeps unless `--crop-scale` says otherwise. torchvision's
    /// default lower bound, 0.08, would often crop a lesion out of its own image.
    pub const DEFAULT: CropScale = CropScale([0.35, 1.0]);
}

impl Default for CropScale {
    fn default() -> Self {
        CropScale::DEFAULT
    }
}

impl std::fmt::Display for CropScale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.0[0], self.0[1])
    }
}

impl FromStr for CropScale {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let bad = |why: &str| {
            input_error(format!("--crop-scale '{s}': {why}; give the lower and upper share of the area, such as 0.35,1"))
        };
        let parts: Vec<&str> = s.split([',', '/', ':']).map(str::trim).collect();
        let [lo, hi] = parts[..] else { return Err(bad("two numbers are needed")) };
        let (lo, hi) = (lo.parse::<f64>().map_err(|_| bad("not a number"))?, hi.parse::<f64>().map_err(|_| bad("not a number"))?);
        if !(lo > 0.0 && lo <= 1.0 && hi > 0.0 && hi <= 1.0) {
            return Err(bad("each share must be above 0 and at most 1"));
        }
        if lo > hi {
            return Err(bad("the lower share is above the upper one"));
        }
        Ok(CropScale([lo, hi]))
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
    /// The mean of the classes' recalls: the figure the ISIC challenges rank by.
    BalancedAccuracy,
    MacroF1,
    RocAuc,
    Mae,
    Rmse,
    R2,
}

impl ValidationMetric {
    pub fn name(self) -> &'static str {
        match self {
            ValidationMetric::Loss => "loss",
            ValidationMetric::Accuracy => "accuracy",
            ValidationMetric::BalancedAccuracy => "balanced_accuracy",
            ValidationMetric::MacroF1 => "macro_f1",
            ValidationMetric::RocAuc => "roc_auc",
            ValidationMetric::Mae => "mae",
            ValidationMetric::Rmse => "rmse",
            ValidationMetric::R2 => "r2",
        }
    }
    pub fn higher_is_better(self) -> bool {
        !matches!(self, ValidationMetric::Loss | ValidationMetric::Mae | ValidationMetric::Rmse)
    }
    /// Whether the metric is a regression figure (else a classification one; loss is both).
    pub fn for_regression(self) -> Option<bool> {
        match self {
            ValidationMetric::Loss => None,
            ValidationMetric::Mae | ValidationMetric::Rmse | ValidationMetric::R2 => Some(true),
            _ => Some(false),
        }
    }
}

impl FromStr for ValidationMetric {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "loss" | "validation_loss" => Ok(ValidationMetric::Loss),
            "accuracy" | "acc" => Ok(ValidationMetric::Accuracy),
            "balanced_accuracy" => Ok(ValidationMetric::BalancedAccuracy),
            "macro_f1" | "f1" => Ok(ValidationMetric::MacroF1),
            "roc_auc" | "auc" => Ok(ValidationMetric::RocAuc),
            "mae" => Ok(ValidationMetric::Mae),
            "rmse" => Ok(ValidationMetric::Rmse),
            "r2" | "r_squared" => Ok(ValidationMetric::R2),
            other => Err(input_error(format!(
                "unknown validation metric '{other}': use loss, accuracy, balanced_accuracy, macro_f1 or roc_auc (classification), \
                 or loss, mae, rmse or r2 (regression)"
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

/// `--lr-schedule`: how the learning rate moves over the run (`schedule`); `--learning-rate` is
/// its peak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrScheduleKind {
    /// The peak throughout (after any warmup).
    #[default]
    Constant,
    /// Half a cosine from the peak down to `--min-lr` over the steps after the warmup (timm's
    /// default shape).
    Cosine,
    /// PyTorch's `OneCycleLR`: up from peak/25 to the peak, then down to peak/250000, with the
    /// momentum (Adam's first beta) moving against it.
    OneCycle,
    /// The peak times `--lr-step-gamma` after every `--lr-step-epochs` epochs (PyTorch's
    /// `StepLR`), or without a period at 1/2 and 3/4 of the epochs after the warmup (`MultiStepLR`).
    Step,
}

impl LrScheduleKind {
    pub fn name(self) -> &'static str {
        match self {
            LrScheduleKind::Constant => "constant",
            LrScheduleKind::Cosine => "cosine",
            LrScheduleKind::OneCycle => "onecycle",
            LrScheduleKind::Step => "step",
        }
    }
}

impl FromStr for LrScheduleKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "constant" | "none" => Ok(LrScheduleKind::Constant),
            "cosine" => Ok(LrScheduleKind::Cosine),
            "onecycle" => Ok(LrScheduleKind::OneCycle),
            "step" => Ok(LrScheduleKind::Step),
            _ => Err(input_error(format!("unknown learning-rate schedule '{}': use constant, cosine, onecycle or step", s.trim()))),
        }
    }
}

/// `--tta`: test-time augmentation, the views of each image whose predictions are averaged
/// (their softmax for a classification, their values for a regression).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tta {
    /// Flip when the training flips images horizontally (the mirror is then a view the model
    /// has learned), else none; resolved before training (`resolve`), so a Best Model records
    /// what ran.
    Auto,
    /// The image alone (and what a Best Model without the field predicts with).
    #[default]
    None,
    /// The image and its horizontal mirror.
    Flip,
    /// Those two, the vertical mirror and the image turned by 180 degrees.
    Flip4,
}

impl Tta {
    /// The views that run for a model trained with `augmentation`: `auto` becomes flip when it
    /// flips images horizontally, else none. On the tutorial's images, with horizontal flips,
    /// flip added 1.9 points of balanced accuracy, paired over 3 seeds (docs/performance.md).
    pub fn resolve(self, augmentation: &[Augmentation]) -> Tta {
        match self {
            Tta::Auto if augmentation.contains(&Augmentation::HorizontalFlip) => Tta::Flip,
            Tta::Auto => Tta::None,
            chosen => chosen,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tta::Auto => "auto",
            Tta::None => "none",
            Tta::Flip => "flip",
            Tta::Flip4 => "flip4",
        }
    }

    /// In words, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Tta::Auto => "auto: flip when the training flips images horizontally, else none",
            Tta::None => "none: each image seen once",
            Tta::Flip => "flip: the mean of the predictions for each image and its horizontal mirror",
            Tta::Flip4 => "flip4: the mean of the predictions for each image, its two mirrors and its turn by 180 degrees",
        }
    }
}

impl FromStr for Tta {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Tta::Auto),
            "none" => Ok(Tta::None),
            "flip" => Ok(Tta::Flip),
            "flip4" => Ok(Tta::Flip4),
            _ => Err(input_error(format!("unknown test-time augmentation '{}': use auto, none, flip or flip4", s.trim()))),
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

/// `--precision`: the floating-point precision of the forward pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrecisionChoice {
    #[default]
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

/// `--threshold`: a binary decision threshold tuned on the validation split, or a fixed one.
/// Serialised as the fixed value, `null` for auto (as earlier Best Models stored it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ThresholdChoice(pub Option<f32>);

impl ThresholdChoice {
    pub fn fixed(self) -> Option<f32> {
        self.0
    }
}

impl FromStr for ThresholdChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auto") {
            return Ok(ThresholdChoice(None));
        }
        match s.parse::<f32>() {
            Ok(t) if t > 0.0 && t < 1.0 => Ok(ThresholdChoice(Some(t))),
            _ => Err(input_error(format!("--threshold '{s}': use auto or a number between 0 and 1"))),
        }
    }
}

/// What `--threshold auto` maximises on the validation split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMetric {
    F1,
    Accuracy,
    BalancedAccuracy,
    Precision,
    Recall,
    Mcc,
    Youden,
}

impl ThresholdMetric {
    pub const ALL: [ThresholdMetric; 7] = [
        ThresholdMetric::F1,
        ThresholdMetric::Accuracy,
        ThresholdMetric::BalancedAccuracy,
        ThresholdMetric::Precision,
        ThresholdMetric::Recall,
        ThresholdMetric::Mcc,
        ThresholdMetric::Youden,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ThresholdMetric::F1 => "f1",
            ThresholdMetric::Accuracy => "accuracy",
            ThresholdMetric::BalancedAccuracy => "balanced_accuracy",
            ThresholdMetric::Precision => "precision",
            ThresholdMetric::Recall => "recall",
            ThresholdMetric::Mcc => "mcc",
            ThresholdMetric::Youden => "youden",
        }
    }
}

impl FromStr for ThresholdMetric {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let key = s.trim().to_ascii_lowercase().replace('-', "_");
        ThresholdMetric::ALL.into_iter().find(|m| m.name() == key).ok_or_else(|| {
            let names: Vec<_> = ThresholdMetric::ALL.iter().map(|m| m.name()).collect();
            input_error(format!("unknown threshold metric '{}': use one of {}", s.trim(), names.join(", ")))
        })
    }
}

/// `--calibrate`: rescale the logits so that the probabilities match the validation split.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationChoice {
    #[default]
    Temperature,
    None,
}

impl FromStr for CalibrationChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "temperature" | "temperature_scaling" => Ok(CalibrationChoice::Temperature),
            "none" | "off" | "false" => Ok(CalibrationChoice::None),
            other => Err(input_error(format!("unknown calibration '{other}': use temperature or none"))),
        }
    }
}

/// `--class-balance`: what a classification's training does about unequal class sizes
/// (`data::balance`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassBalance {
    #[default]
    None,
    /// Inverse-frequency class weights in the loss.
    Loss,
    /// Each epoch draws its images so that every class comes up equally often.
    Sampler,
    /// Class weights when the largest training class is at least 3x the smallest.
    Auto,
}

impl FromStr for ClassBalance {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "off" => Ok(ClassBalance::None),
            "loss" | "weights" => Ok(ClassBalance::Loss),
            "sampler" | "sampling" => Ok(ClassBalance::Sampler),
            "auto" => Ok(ClassBalance::Auto),
            other => Err(input_error(format!("unknown class balance '{other}': use none, loss, sampler or auto"))),
        }
    }
}

/// `--cam`: how the explanations combine the target layer's channels into one map
/// (`explain`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CamMethod {
    /// Channels weighted by their mean gradient (Selvaraju et al., 2017).
    #[default]
    GradCam,
    /// Gradient times activation, element by element (Draelos & Carin, 2020).
    HiResCam,
}

impl CamMethod {
    pub fn name(self) -> &'static str {
        match self {
            CamMethod::GradCam => "gradcam",
            CamMethod::HiResCam => "hirescam",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            CamMethod::GradCam => "Grad-CAM",
            CamMethod::HiResCam => "HiResCAM",
        }
    }
}

impl fmt::Display for CamMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CamMethod {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "gradcam" | "grad-cam" => Ok(CamMethod::GradCam),
            "hirescam" => Ok(CamMethod::HiResCam),
            other => Err(input_error(format!("unknown --cam '{other}': use gradcam or hirescam"))),
        }
    }
}

/// `--explain`: how many images to explain, a number (0: none) or all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplainCount {
    Images(usize),
    All,
}

impl ExplainCount {
    /// At most this many of `n` images.
    pub fn of(self, n: usize) -> usize {
        match self {
            ExplainCount::Images(k) => k.min(n),
            ExplainCount::All => n,
        }
    }
}

impl fmt::Display for ExplainCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExplainCount::Images(n) => write!(f, "{n}"),
            ExplainCount::All => f.write_str("all"),
        }
    }
}

impl FromStr for ExplainCount {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(ExplainCount::All);
        }
        s.parse::<usize>().map(ExplainCount::Images).map_err(|_| {
            input_error(format!("--explain '{s}' is not a number of images: give 0 (no explanations), a positive whole number, or all"))
        })
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

/// `--cache`: where the decoded images are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheChoice {
    /// Memory when the decoded images fit the job's memory, else the ZIP.
    #[default]
    Auto,
    /// Decoded once and kept in memory.
    Ram,
    /// Read from the ZIP and decoded again for every batch.
    None,
}

impl FromStr for CacheChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(CacheChoice::Auto),
            "ram" => Ok(CacheChoice::Ram),
            "none" => Ok(CacheChoice::None),
            other => Err(input_error(format!("--cache '{other}': use auto, ram or none"))),
        }
    }
}

/// The metadata's image and label columns, as `train` and `predict` take them.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct Columns {
    /// Image column, by name or 1-based number (default: found by name).
    #[arg(long, value_parser = parse_with::<ColumnRef>)]
    pub image_column: Option<ColumnRef>,
    /// Label column, by name or 1-based number (default: found by name).
    #[arg(long, value_parser = parse_with::<ColumnRef>)]
    pub label_column: Option<ColumnRef>,
}

/// Where and how the arithmetic runs, as `train` and `predict` take it.
#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct Runtime {
    /// Threads (default: GALAXY_SLOTS, else all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_with::<DeviceChoice>)]
    pub device: DeviceChoice,
    /// auto (bf16 mixed precision on a CUDA GPU or a CPU with AMX, else float32), fp32 or bf16.
    #[arg(long, default_value = "auto", value_parser = parse_with::<PrecisionChoice>)]
    #[serde(default = "PrecisionChoice::default")]
    pub precision: PrecisionChoice,
    /// Where the decoded images are kept: auto (train: in memory when they fit GALAXY_MEMORY_MB,
    /// else the memory available, less 1 GiB for libtorch and the model, otherwise read from the
    /// ZIP for every batch; predict: read from the ZIP), ram or none.
    #[arg(long, default_value = "auto", value_parser = parse_with::<CacheChoice>)]
    // How the images were held changes no result: a Best Model does not record it.
    #[serde(skip)]
    pub cache: CacheChoice,
}

/// Where pretrained weights are kept, as `train` and `weights fetch|import` take it.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct WeightsDir {
    /// Folder of pretrained weights (default: IMAGE_LEARNER_WEIGHTS, else the user cache).
    #[arg(long)]
    pub weights_dir: Option<PathBuf>,
}

/// `image-learner train`: everything one training run needs.
#[derive(Args, Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    /// ZIP of images.
    #[arg(long)]
    pub images: PathBuf,
    /// CSV or TSV naming each image and its class.
    #[arg(long)]
    pub metadata: PathBuf,
    /// Folder for the outputs.
    #[arg(long, default_value = "out")]
    pub output_dir: PathBuf,
    /// auto, classification, binary or regression (auto: chosen from the label column).
    #[arg(long, default_value = "classification", value_parser = parse_with::<TaskKind>)]
    pub task: TaskKind,
    /// Regression loss: mse, mae or huber.
    #[arg(long, default_value = "mse", value_parser = parse_with::<RegressionLoss>)]
    #[serde(default)]
    pub loss: RegressionLoss,
    /// Architecture (see `image-learner models`).
    #[arg(long, default_value = "caformer_s18_384")]
    pub model: String,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Start from pretrained ImageNet weights (installed with `image-learner weights`).
    #[arg(long, default_value = "true", action = ArgAction::Set, value_parser = parse_bool)]
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
    /// How the learning rate moves: constant, cosine, onecycle or step (--learning-rate is the peak).
    #[arg(long, default_value = "constant", value_parser = parse_with::<LrScheduleKind>)]
    #[serde(default)]
    pub lr_schedule: LrScheduleKind,
    /// Epochs at the start whose rate rises linearly to the peak; a fraction such as 0.5 is
    /// allowed (onecycle: its rising phase, 30% of the run when 0).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Cosine schedule: the rate it falls to by the last step (default: the peak / 100).
    #[arg(long, allow_negative_numbers = true)]
    #[serde(default)]
    pub min_lr: Option<f64>,
    /// Step schedule: epochs between decays (default: a third of the epochs after the warmup).
    #[arg(long)]
    #[serde(default)]
    pub lr_step_epochs: Option<usize>,
    /// Step schedule: the factor applied at each decay.
    #[arg(long, default_value_t = 0.1)]
    #[serde(default = "default_step_gamma")]
    pub lr_step_gamma: f64,
    /// Keep an exponential moving average of the weights with this decay (0: off): validation,
    /// the best epoch and the Best Model use the averaged weights. Default for a classification:
    /// `EMA_DECAY` when the run has at least `EMA_MIN_STEPS` training steps, else off; a
    /// regression: off.
    #[arg(long, allow_negative_numbers = true)]
    #[serde(default)]
    pub ema_decay: Option<f64>,
    /// Train only the new head for this many epochs first (batch norm keeps training), then
    /// everything; the schedule, warmup included, starts at the unfreeze.
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub freeze_epochs: usize,
    /// The pretrained backbone's learning rate as a share of the head's (1: the same).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    #[serde(default = "one")]
    pub backbone_lr_mult: f64,
    /// Each backbone stage's learning rate as a share of the next one's, the head's being the
    /// full rate (1: no decay; 0.7 is usual).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    #[serde(default = "one")]
    pub layer_decay: f64,
    /// Classification: the share of each training target spread evenly over all classes (0: none;
    /// default 0.1 for a classification, `LABEL_SMOOTHING`; a regression has none).
    #[arg(long, allow_negative_numbers = true)]
    #[serde(default)]
    pub label_smoothing: Option<f64>,
    /// Classification: none, loss (class weights), sampler (classes drawn equally) or auto (class
    /// weights when the classes are unequal; nothing for a regression). Auto is the default: on
    /// the imbalanced dermoscopy set it gained 10 points of balanced accuracy for 3.5 of plain
    /// accuracy (docs/performance.md, the recipe benchmark).
    #[arg(long, default_value = "auto", value_parser = parse_with::<ClassBalance>)]
    #[serde(default)]
    pub class_balance: ClassBalance,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Comma-separated: horizontal_flip, vertical_flip, rotate, blur, brightness, contrast
    /// (each to half the images), random_resized_crop, color_jitter, trivial_augment (to all).
    #[arg(long, value_delimiter = ',', value_parser = parse_with::<Augmentation>)]
    pub augmentation: Vec<Augmentation>,
    /// Test-time augmentation of the validation and test images (and, by default, of `predict`
    /// with the Best Model): auto (flip when --augmentation has horizontal_flip, else none), none,
    /// flip or flip4.
    #[arg(long, default_value = "auto", value_parser = parse_with::<Tta>)]
    #[serde(default)]
    pub tta: Tta,
    /// random_resized_crop: the lower and upper share of the image's area a crop keeps.
    #[arg(long, default_value = "0.35,1", value_parser = parse_with::<CropScale>)]
    #[serde(default)]
    pub crop_scale: CropScale,
    /// train/validation/test percentages.
    #[arg(long, default_value = "70/10/20", value_parser = parse_with::<SplitFractions>)]
    pub split: SplitFractions,
    #[command(flatten)]
    #[serde(flatten)]
    pub columns: Columns,
    /// Split column (train/validation/test or 0/1/2), by name or number.
    #[arg(long, value_parser = parse_with::<ColumnRef>)]
    pub split_column: Option<ColumnRef>,
    /// Keep all images of a group (e.g. lesion_id) in one split.
    #[arg(long, value_parser = parse_with::<ColumnRef>)]
    pub group_column: Option<ColumnRef>,
    /// Square input size in pixels (default: the images' size, at most the model's default, and
    /// with pretrained weights at least 128).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Stop after this many epochs without validation improvement.
    #[arg(long)]
    pub early_stop: Option<usize>,
    /// k-fold cross-validation (0: off; else 3 to 10 folds): the images outside the test split are
    /// dealt into K folds (stratified, and grouped by --group-column); model k trains on the
    /// others and validates on fold k; the Best Model is the K models' ensemble.
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub cross_validation: usize,
    /// loss, accuracy, balanced_accuracy, macro_f1 or roc_auc; for regression loss, mae, rmse or r2.
    #[arg(long, default_value = "loss", value_parser = parse_with::<ValidationMetric>)]
    pub validation_metric: ValidationMetric,
    #[command(flatten)]
    #[serde(flatten)]
    pub runtime: Runtime,
    #[command(flatten)]
    #[serde(flatten)]
    pub weights: WeightsDir,
    /// Predictions CSV for the test images (test) or every image with its split (all).
    #[arg(long, default_value = "test", value_parser = parse_with::<PredictionsScope>)]
    pub predictions: PredictionsScope,
    /// Binary task: the decision threshold on the second class's probability: auto (tuned on the
    /// validation split, see --threshold-metric) or a number between 0 and 1.
    #[arg(long, default_value = "auto", value_parser = parse_with::<ThresholdChoice>)]
    #[serde(default)]
    pub threshold: ThresholdChoice,
    /// What --threshold auto maximises on the validation split: f1, accuracy, balanced_accuracy,
    /// precision, recall, mcc or youden (the scores of the second class).
    #[arg(long, default_value = "f1", value_parser = parse_with::<ThresholdMetric>)]
    #[serde(default = "default_threshold_metric")]
    pub threshold_metric: ThresholdMetric,
    /// temperature (fitted on the validation split by minimising its log loss) or none.
    #[arg(long, default_value = "temperature", value_parser = parse_with::<CalibrationChoice>)]
    #[serde(default = "no_calibration")]
    pub calibrate: CalibrationChoice,
    /// Evaluate the training images again after training, with the best weights in eval mode
    /// (one more pass over them); without it the train figures come from the best epoch's own
    /// training pass (augmented images, weights still changing), as Keras and timm report them.
    #[arg(long, default_value = "false", action = ArgAction::Set, value_parser = parse_bool)]
    #[serde(default)]
    pub evaluate_train: bool,
    /// How many test images the report explains with a heatmap: one correct per class, then the
    /// most confident mistakes (0: none; at most 64).
    #[arg(long, default_value = "12", allow_negative_numbers = true, value_parser = parse_with::<ExplainCount>)]
    #[serde(default = "default_explain")]
    pub explain: ExplainCount,
    /// How the heatmaps are made: gradcam or hirescam.
    #[arg(long, default_value = "gradcam", value_parser = parse_with::<CamMethod>)]
    #[serde(default)]
    pub cam: CamMethod,
    /// The command line as typed, for the report.
    #[arg(skip)]
    pub command_line: String,
}

/// The fewest and most folds `--cross-validation` takes.
pub const FOLDS: std::ops::RangeInclusive<usize> = 3..=10;

/// The most test images the report explains: each is two thumbnails in the page.
pub const MAX_REPORT_EXPLANATIONS: usize = 64;

fn default_explain() -> ExplainCount {
    ExplainCount::Images(12)
}

fn default_step_gamma() -> f64 {
    0.1
}

fn one() -> f64 {
    1.0
}

fn default_threshold_metric() -> ThresholdMetric {
    ThresholdMetric::F1
}

/// A Best Model written before `--calibrate` existed was not calibrated.
fn no_calibration() -> CalibrationChoice {
    CalibrationChoice::None
}

/// Parses one command's options from flags alone, as the command line would.
fn parse_options<T: Args>(flags: &[&str]) -> anyhow::Result<T> {
    #[derive(Parser)]
    struct One<T: Args> {
        #[command(flatten)]
        options: T,
    }
    let argv = std::iter::once("image-learner").chain(flags.iter().copied());
    Ok(One::<T>::try_parse_from(argv).map_err(|e| input_error(e.to_string()))?.options)
}

impl TrainConfig {
    /// The command line's defaults for these inputs and this model.
    pub fn new(images: PathBuf, metadata: PathBuf, output_dir: PathBuf, model: &str) -> Self {
        let mut cfg: TrainConfig = parse_options(&["--images", "-", "--metadata", "-", "--model", model])
            .expect("the defaults parse");
        (cfg.images, cfg.metadata, cfg.output_dir) = (images, metadata, output_dir);
        cfg
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
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            crate::bail_input!("--warmup-epochs must be 0 or more (got {})", self.warmup_epochs);
        }
        if self.warmup_epochs >= self.epochs as f64 {
            crate::bail_input!(
                "--warmup-epochs {} leaves no epoch at the full learning rate: it must be below --epochs ({})",
                self.warmup_epochs,
                self.epochs
            );
        }
        if let Some(m) = self.min_lr {
            if !(m.is_finite() && m >= 0.0 && m < self.learning_rate) {
                crate::bail_input!(
                    "--min-lr must be at least 0 and below --learning-rate ({}); got {m}",
                    self.learning_rate
                );
            }
            if self.lr_schedule != LrScheduleKind::Cosine {
                crate::bail_input!("--min-lr is the floor of the cosine schedule: add --lr-schedule cosine, or leave --min-lr out");
            }
        }
        if self.lr_step_epochs == Some(0) {
            crate::bail_input!("--lr-step-epochs must be at least 1");
        }
        if !(self.lr_step_gamma > 0.0 && self.lr_step_gamma <= 1.0) {
            crate::bail_input!("--lr-step-gamma must be above 0 and at most 1 (got {}); 0.1 is usual", self.lr_step_gamma);
        }
        if self.freeze_epochs >= self.epochs {
            crate::bail_input!(
                "--freeze-epochs {} leaves no epoch to train the whole model: it must be below --epochs ({})",
                self.freeze_epochs,
                self.epochs
            );
        }
        if self.freeze_epochs > 0 && self.warmup_epochs >= (self.epochs - self.freeze_epochs) as f64 {
            crate::bail_input!(
                "--warmup-epochs {} starts after the {} frozen epochs and leaves no epoch at the full rate: \
                 it must be below --epochs minus --freeze-epochs ({})",
                self.warmup_epochs,
                self.freeze_epochs,
                self.epochs - self.freeze_epochs
            );
        }
        if self.freeze_epochs > 0 && !self.fine_tune {
            crate::bail_input!(
                "--freeze-epochs trains the head alone before fine-tuning every layer, but --fine-tune false \
                 never trains the backbone: use one or the other"
            );
        }
        for (name, v) in [("--backbone-lr-mult", self.backbone_lr_mult), ("--layer-decay", self.layer_decay)] {
            if !(v > 0.0 && v <= 1.0) {
                crate::bail_input!("{name} must be above 0 and at most 1 (got {v}); 1 leaves the rates alone");
            }
            if v < 1.0 && !self.fine_tune {
                crate::bail_input!("{name} sets the backbone's rate, but --fine-tune false does not train the backbone");
            }
        }
        if let Some(v) = self.ema_decay.filter(|v| !(*v >= 0.0 && *v < 1.0)) {
            crate::bail_input!("--ema-decay must be at least 0 and below 1 (got {v}); 0.99 is usual, 0 turns it off");
        }
        if let Some(v) = self.label_smoothing.filter(|v| !(*v >= 0.0 && *v < 1.0)) {
            crate::bail_input!("--label-smoothing must be at least 0 and below 1 (got {v}); 0.1 is usual");
        }
        if let Some(s) = self.image_size {
            if !(MIN_IMAGE_SIZE..=MAX_IMAGE_SIZE).contains(&s) {
                crate::bail_input!("--image-size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} pixels (got {s})");
            }
        }
        if let Some(t) = self.threshold.fixed() {
            if !(t > 0.0 && t < 1.0) {
                crate::bail_input!("--threshold must be between 0 and 1 (got {t})");
            }
        }
        if !matches!(self.explain, ExplainCount::Images(n) if n <= MAX_REPORT_EXPLANATIONS) {
            crate::bail_input!(
                "--explain {} is more than the report shows: give at most {MAX_REPORT_EXPLANATIONS} test images (predict --explain all explains every image)",
                self.explain
            );
        }
        if self.cross_validation != 0 && !FOLDS.contains(&self.cross_validation) {
            crate::bail_input!(
                "--cross-validation {}: use 0 (no cross-validation) or a number of folds from {} to {}",
                self.cross_validation,
                FOLDS.start(),
                FOLDS.end()
            );
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

/// `image-learner predict`: a Best Model applied to a ZIP of images.
#[derive(Args, Clone, Debug)]
pub struct PredictConfig {
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
    #[command(flatten)]
    pub columns: Columns,
    /// Evaluation batch size (default: the one the model was evaluated with).
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[command(flatten)]
    pub runtime: Runtime,
    /// How many images to explain with a heatmap, the least confident first: a number (0: none)
    /// or all. The overlays go into the --explanations ZIP.
    #[arg(long, default_value = "0", allow_negative_numbers = true, value_parser = parse_with::<ExplainCount>)]
    pub explain: ExplainCount,
    /// ZIP of the explanations (default: explanations.zip beside --output).
    #[arg(long)]
    pub explanations: Option<PathBuf>,
    /// gradcam or hirescam.
    #[arg(long, default_value = "gradcam", value_parser = parse_with::<CamMethod>)]
    pub cam: CamMethod,
    /// Test-time augmentation: auto, none, flip or flip4 (default: the Best Model's own; auto:
    /// flip for a model trained with horizontal flips).
    #[arg(long, value_parser = parse_with::<Tta>)]
    pub tta: Option<Tta>,
}

/// `image-learner throughput`: a model's training step, or the ingestion, timed.
#[derive(Args, Clone, Debug)]
pub struct ThroughputConfig {
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
    pub batch_size: usize,
    #[arg(long, default_value_t = 96)]
    pub image_size: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    #[arg(long, default_value = "auto", value_parser = parse_with::<PrecisionChoice>)]
    pub precision: PrecisionChoice,
    /// Keep the default contiguous (NCHW) layout instead of channels-last.
    #[arg(long)]
    pub contiguous: bool,
    /// Update a moving average of the weights after every step, as `train --ema-decay` does.
    #[arg(long, default_value_t = 0.0)]
    pub ema_decay: f64,
    #[arg(long, default_value = "cpu", value_parser = parse_with::<DeviceChoice>)]
    pub device: DeviceChoice,
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `image-learner sample`: the bundled synthetic data set.
#[derive(Args, Clone, Debug)]
pub struct SampleConfig {
    #[arg(long, default_value = "test-data")]
    pub output_dir: PathBuf,
    #[arg(long, default_value_t = 60)]
    pub per_class: usize,
    #[arg(long, alias = "size", default_value_t = 48)]
    pub image_size: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// JPEG images (quality 90) instead of PNG, as photographs and dermoscopy images come.
    #[arg(long)]
    pub jpeg: bool,
}

/// `image-learner weights fetch|import`.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum WeightsConfig {
    /// Download a model's published ImageNet weights (timm's hub, torchvision's URLs).
    Fetch {
        model: String,
        #[command(flatten)]
        weights: WeightsDir,
    },
    /// Install a weights file you have (safetensors or a PyTorch state dict).
    Import {
        model: String,
        file: PathBuf,
        #[command(flatten)]
        weights: WeightsDir,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The default a Galaxy tool XML gives the parameter `name`: its `value`, its selected option,
    /// or its `checked` state; None when it has none.
    fn galaxy_default(xml: &str, name: &str) -> Option<String> {
        let start = xml.find(&format!("<param name=\"{name}\""))?;
        let tag_end = start + xml[start..].find('>')?;
        let tag = &xml[start..tag_end];
        let attr = |tag: &str, a: &str| -> Option<String> {
            let i = tag.find(&format!(" {a}=\""))? + a.len() + 3;
            Some(tag[i..i + tag[i..].find('"')?].to_string())
        };
        if let Some(v) = attr(tag, "value") {
            return Some(v);
        }
        if let Some(c) = attr(tag, "checked") {
            return Some(c);
        }
        if tag.ends_with('/') {
            return None;
        }
        let body = &xml[tag_end..tag_end + xml[tag_end..].find("</param>")?];
        body.split("<option ").skip(1).find(|o| o.contains("selected=\"true\"")).and_then(|o| attr(&format!(" {o}"), "value"))
    }

    #[derive(Parser)]
    struct Train {
        #[command(flatten)]
        options: TrainConfig,
    }

    #[test]
    fn the_galaxy_forms_defaults_are_the_command_lines() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/galaxy/");
        // The form's inputs (not its tests, which set values of their own) and the macros.
        let tool = std::fs::read_to_string(format!("{dir}image_learner.xml")).unwrap();
        let xml = tool[..tool.find("<tests>").unwrap()].to_string() + &std::fs::read_to_string(format!("{dir}macros.xml")).unwrap();
        let cmd = Train::command();
        let cli_default = |id: &str| -> Option<String> {
            let arg = cmd.get_arguments().find(|a| a.get_id() == id).unwrap_or_else(|| panic!("no option {id}"));
            arg.get_default_values().first().map(|v| v.to_string_lossy().into_owned())
        };
        let same = |a: &str, b: &str| a == b || matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y);
        // (form parameter, option): every parameter of the form that has a command-line twin.
        let pairs = [
            ("task", "task"),
            ("model", "model"),
            ("epochs", "epochs"),
            ("batch_size", "batch_size"),
            ("use_pretrained", "use_pretrained"),
            ("fine_tune", "fine_tune"),
            ("learning_rate", "learning_rate"),
            ("random_seed", "seed"),
            ("augmentation", "augmentation"),
            ("crop_scale", "crop_scale"),
            ("tta", "tta"),
            ("split_choice", "split"),
            ("image_column", "image_column"),
            ("label_column", "label_column"),
            ("split_column", "split_column"),
            ("group_column", "group_column"),
            ("image_size", "image_size"),
            ("early_stop", "early_stop"),
            ("validation_metric", "validation_metric"),
            ("threshold_mode", "threshold"),
            ("threshold_metric", "threshold_metric"),
            ("calibrate", "calibrate"),
            ("loss", "loss"),
            ("label_smoothing", "label_smoothing"),
            ("class_balance", "class_balance"),
            ("lr_schedule", "lr_schedule"),
            ("warmup_epochs", "warmup_epochs"),
            ("min_lr", "min_lr"),
            ("ema_decay", "ema_decay"),
            ("freeze_epochs", "freeze_epochs"),
            ("backbone_lr_mult", "backbone_lr_mult"),
            ("layer_decay", "layer_decay"),
            ("lr_step_epochs", "lr_step_epochs"),
            ("lr_step_gamma", "lr_step_gamma"),
            ("predictions", "predictions"),
            ("evaluate_train", "evaluate_train"),
            ("explain", "explain"),
            ("cam", "cam"),
        ];
        for (param, id) in pairs {
            let (form, cli) = (galaxy_default(&xml, param), cli_default(id));
            match (&form, &cli) {
                (Some(f), Some(c)) => assert!(same(f, c), "{param}: the form's default is {f}, --{id}'s is {c}"),
                (None, None) => {}
                _ => panic!("{param}: the form's default is {form:?}, --{id}'s is {cli:?}"),
            }
        }
        // The helper reads what it should: a selected option, a value, a checkbox, none.
        assert_eq!(galaxy_default(&xml, "split_choice").as_deref(), Some("70/10/20"));
        assert_eq!(galaxy_default(&xml, "epochs").as_deref(), Some("10"));
        assert_eq!(galaxy_default(&xml, "evaluate_train").as_deref(), Some("false"));
        assert_eq!(galaxy_default(&xml, "early_stop"), None);
        assert_eq!(galaxy_default(&xml, "image_column"), None);
    }

    #[test]
    fn a_config_made_in_code_has_the_command_lines_defaults() {
        let cfg = TrainConfig::new("a.zip".into(), "a.csv".into(), "out".into(), "resnet18");
        assert_eq!((cfg.model.as_str(), cfg.epochs, cfg.batch_size, cfg.seed), ("resnet18", 10, 32, 42));
        assert_eq!(cfg.runtime.device, DeviceChoice::Auto);
        assert!(cfg.use_pretrained && cfg.fine_tune);
        assert_eq!(cfg.images, PathBuf::from("a.zip"));
    }

    #[test]
    fn auto_tta_flips_a_model_trained_with_horizontal_flips_only() {
        let cfg = TrainConfig::new("a.zip".into(), "a.csv".into(), "out".into(), "resnet18");
        assert_eq!(cfg.tta, Tta::Auto, "the default");
        assert_eq!(Tta::Auto.resolve(&[Augmentation::Rotate, Augmentation::HorizontalFlip]), Tta::Flip);
        assert_eq!(Tta::Auto.resolve(&[Augmentation::VerticalFlip, Augmentation::TrivialAugment]), Tta::None);
        assert_eq!(Tta::Auto.resolve(&[]), Tta::None);
        for chosen in [Tta::None, Tta::Flip, Tta::Flip4] {
            assert_eq!(chosen.resolve(&[Augmentation::HorizontalFlip]), chosen, "a choice stays");
        }
    }
}
