//! k-fold cross-validation (`--cross-validation K`): model k trains on every fold but k and picks
//! its best epoch on fold k. Each image outside the test split is then scored by the one model
//! that never trained on it (its out-of-fold prediction), and the K models together are the Best
//! Model: an ensemble whose scores are the mean of its members', each after its own fold's
//! temperature.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use tch::nn;

use crate::config::TrainConfig;
use crate::data::folds::Folds;
use crate::data::ImageSet;
use crate::decisions::Decisions;
use crate::metrics::{Figures, Intervals};
use crate::models::{ModelSpec, Network};
use crate::precision::Compute;
use crate::task::Task;
use crate::train::{self, TrainOutcome, TrainSettings};

/// One fold's model, trained on the other folds.
pub struct FoldModel {
    pub vs: nn::VarStore,
    pub net: Network,
    /// The task as this model decides: its temperature fitted on its validation fold.
    pub task: Task,
    pub decisions: Decisions,
    pub outcome: TrainOutcome,
    /// Its validation fold's figures (its out-of-fold predictions).
    pub figures: Figures,
    pub batch_size: usize,
    pub pretrained_file: Option<PathBuf>,
}

/// The K fold models and their out-of-fold predictions.
pub struct CrossValidation {
    pub folds: Folds,
    pub models: Vec<FoldModel>,
    /// The out-of-fold scores, in `folds.pool` order, each calibrated by its fold's temperature.
    pub oof_scores: Vec<Vec<f32>>,
    pub oof: Figures,
    pub oof_intervals: Option<Intervals>,
}

/// What every fold's training shares.
pub struct Shared<'a> {
    pub cfg: &'a TrainConfig,
    pub spec: &'static ModelSpec,
    pub task: &'a Task,
    pub compute: Compute,
    /// The pretrained weights' folder, when pretrained.
    pub weights_dir: Option<&'a std::path::Path>,
}

/// Trains the K fold models, one after another, and scores the out-of-fold images.
pub fn fit_folds(sh: &Shared, set: &Arc<ImageSet>, folds: Folds, warnings: &mut Vec<String>) -> Result<CrossValidation> {
    let (cfg, task) = (sh.cfg, sh.task);
    let mut models = Vec::with_capacity(folds.k);
    let mut oof_by_image: Vec<Option<Vec<f32>>> = vec![None; set.len()];
    let planned = (0..folds.k).map(|f| folds.planned_steps(f, cfg.batch_size, cfg.epochs) as u64).collect();
    let run_bar = train::RunBar::new(planned);
    for f in 0..folds.k {
        let (train_idx, val_idx) = (folds.train(f), folds.validation(f));
        eprintln!("fold {}/{}: {} images train, {} validate", f + 1, folds.k, train_idx.len(), val_idx.len());
        let batch_size = train::fitting_batch_size(cfg.batch_size, train_idx.len(), warnings);
        let (balance, _) = task.class_balance(cfg.class_balance, set, &train_idx);
        let model = train::start_model(sh.spec, task, cfg.seed, sh.weights_dir, &sh.compute)?;
        let settings = TrainSettings {
            fold: Some((f + 1, folds.k)),
            run_bar: Some(run_bar.clone()),
            ..TrainSettings::new(cfg, sh.spec, task.clone(), batch_size, balance, sh.compute)
        };
        let mut vs = model.vs;
        let started = run_bar.position();
        let outcome = train::fit(&model.net, &mut vs, set, &train_idx, &val_idx, &settings)?;
        run_bar.settle(f, started);
        if let Some(e) = outcome.diverged_at {
            warnings.push(format!(
                "fold {}: training became NaN or infinite in epoch {e}; it stopped there and the best earlier epoch ({}) was kept",
                f + 1,
                outcome.best_epoch
            ));
        }
        let logits = outcome.best_validation_logits.as_deref().expect("every fold validates on its own images");
        let truth = set.truth(&val_idx);
        let (fold_task, decisions) = task.fit_decisions(Some((logits, truth.as_slice())), cfg, warnings);
        let scores = fold_task.probabilities(logits);
        let figures = fold_task.figures(set, &val_idx, &scores);
        for (&i, s) in val_idx.iter().zip(scores) {
            oof_by_image[i] = Some(s);
        }
        models.push(FoldModel { vs, net: model.net, task: fold_task, decisions, outcome, figures, batch_size, pretrained_file: model.pretrained_file });
    }
    run_bar.finish();
    let oof_scores: Vec<Vec<f32>> = folds.pool.iter().map(|&i| oof_by_image[i].take().expect("each pool image is in one fold")).collect();
    let oof = task.figures(set, &folds.pool, &oof_scores);
    let oof_intervals = task.intervals(set, &folds.pool, &oof_scores, cfg.seed);
    Ok(CrossValidation { folds, models, oof_scores, oof, oof_intervals })
}

impl CrossValidation {
    /// Each member's temperature, in fold order.
    pub fn temperatures(&self) -> Vec<f32> {
        self.models.iter().map(|m| m.task.temperature()).collect()
    }

    /// The figures every fold has, by name: each fold's value, in fold order.
    pub fn per_fold(&self) -> Vec<(String, Vec<f64>)> {
        let jsons: Vec<serde_json::Value> = self.models.iter().map(|m| serde_json::to_value(&m.figures).unwrap_or_default()).collect();
        let Some(first) = jsons.first().and_then(|j| j.as_object()) else { return Vec::new() };
        first
            .keys()
            .filter_map(|name| {
                let values: Option<Vec<f64>> = jsons.iter().map(|j| j.get(name).and_then(serde_json::Value::as_f64)).collect();
                values.filter(|_| name != "n").map(|v| (name.clone(), v))
            })
            .collect()
    }

    /// metrics.json's `cross_validation`: the folds, the out-of-fold figures with their
    /// intervals, and each fold's figures with their mean and standard deviation.
    pub fn to_json(&self) -> serde_json::Value {
        let per_fold: serde_json::Map<String, serde_json::Value> = self
            .per_fold()
            .into_iter()
            .map(|(name, v)| {
                let (mean, sd) = mean_sd(&v);
                (name, serde_json::json!({ "folds": v, "mean": mean, "sd": sd }))
            })
            .collect();
        serde_json::json!({
            "folds": self.folds.k,
            "images_per_fold": (0..self.folds.k).map(|f| self.folds.fold.iter().filter(|&&x| x == f).count()).collect::<Vec<_>>(),
            "best_epochs": self.models.iter().map(|m| m.outcome.best_epoch).collect::<Vec<_>>(),
            "temperatures": self.temperatures(),
            "out_of_fold": &self.oof,
            "out_of_fold_95ci": &self.oof_intervals,
            "per_fold": per_fold,
        })
    }
}

/// The mean and the sample standard deviation (n - 1) of `v`.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}
