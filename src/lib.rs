//! image-learner: train and evaluate image classifiers from a ZIP of images and a CSV of labels.
//!
//! The data flows one way: `data` (CSV, ZIP, decoding, split, augmentation, batches) ->
//! `models` -> `train` -> `metrics` -> `outputs` and `report`. `pipeline` runs the `train`
//! command through them; `predict` applies a saved model.
pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod metrics;
pub mod models;
pub mod optimizer;
pub mod outputs;
pub mod pipeline;
pub mod precision;
pub mod predict;
pub mod report;
pub mod synth;
pub mod train;
