//! image-learner: train, evaluate and apply image classifiers from a ZIP of images and a CSV of
//! labels.
//!
//! Data flows one way, and each module depends only on those before it (`tests/it/layers.rs`
//! checks it): `error`, `shim` (the C++ kernels' declarations) -> `config` (every option) ->
//! `device`, `precision`, `runtime` (where and how the arithmetic runs) -> `data` (CSV, ZIP,
//! decoding, split, augmentation, batches) -> `models` (one file per family, with its facts),
//! `optimizer`, `schedule` (each step's learning rate), `ema` (the weights' moving average) ->
//! `metrics` -> `decisions` (temperature and threshold methods) -> `task` (what differs between
//! tasks: classification and regression, behind one enum) -> `weights` (checkpoints, pretrained weights, the Best Model bundle) -> `evaluation` ->
//! `explain` (Grad-CAM) -> `train` -> `outputs`, `synth` -> `report` -> `commands` (one short
//! orchestrator per subcommand).
pub mod commands;
pub mod config;
pub mod cross_validation;
pub mod data;
pub mod decisions;
pub mod device;
pub mod ema;
pub mod error;
pub mod evaluation;
pub mod explain;
pub mod metrics;
pub mod models;
pub mod optimizer;
pub mod outputs;
pub mod precision;
pub mod report;
pub mod runtime;
pub mod schedule;
mod shim;
pub mod synth;
pub mod task;
pub mod train;
pub mod weights;
