//! The five files of a training run, made from what the run produced and committed together.
use anyhow::Result;
use tch::nn;

use crate::config::{PredictionsScope, TrainConfig};
use crate::data::split::{Split, SplitPlan};
use crate::data::{ImageSet, IngestSummary};
use crate::decisions::Decisions;
use crate::evaluation::{self, FinalFigures};
use crate::metrics;
use crate::models::ModelSpec;
use crate::precision::Compute;
use crate::task::Task;
use crate::train::TrainOutcome;
use crate::weights::bundle::{self, BundleConfig};

use super::{history, OutputSet, BEST_MODEL, HISTORY, METRICS, PREDICTIONS, REPORT};

/// Everything a training run produced, for its outputs and its report.
pub struct TrainedRun<'a> {
    pub cfg: &'a TrainConfig,
    pub spec: &'static ModelSpec,
    pub task: &'a Task,
    /// `--task auto`: what it chose and why.
    pub task_chosen: Option<String>,
    /// A classification's `--class-balance`: what it did, in words.
    pub class_balance: Option<String>,
    pub decisions: &'a Decisions,
    pub set: &'a ImageSet,
    pub summary: &'a IngestSummary,
    pub plan: &'a SplitPlan,
    pub outcome: &'a TrainOutcome,
    pub figures: &'a FinalFigures,
    /// The report's explained test images.
    pub explanations: &'a [crate::explain::Explained],
    /// The best epoch's weights: the model's, or each fold model's in fold order.
    pub members: Vec<&'a nn::VarStore>,
    /// `--cross-validation`: the fold models and their out-of-fold predictions.
    pub cross_validation: Option<&'a crate::cross_validation::CrossValidation>,
    pub batch_size: usize,
    pub parameters: i64,
    pub pretrained_file: Option<std::path::PathBuf>,
    pub compute: Compute,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

impl TrainedRun<'_> {
    /// The image references of `indices`, as the CSV wrote them.
    pub fn names(&self, indices: &[usize]) -> Vec<String> {
        indices.iter().map(|&i| self.set.names[i].clone()).collect()
    }

    /// The true class names (regression: values) of `indices`.
    fn truth(&self, indices: &[usize]) -> Vec<String> {
        self.task.truth_names(self.set, indices)
    }

    /// The Predictions CSV: the test images, or every image with its split. A
    /// cross-validation's non-test images carry their out-of-fold predictions, their split
    /// written as `fold k`.
    fn predictions(&self) -> Result<Vec<u8>> {
        let (plan, f) = (self.plan, self.figures);
        if self.cfg.predictions == PredictionsScope::Test {
            return self.task.predictions_csv(&self.names(&plan.test), Some(&self.truth(&plan.test)), &f.test_scores, None);
        }
        if let Some(cv) = self.cross_validation {
            let pool = &cv.folds.pool;
            let mut names = self.names(pool);
            let mut truth = self.truth(pool);
            let mut scores = cv.oof_scores.clone();
            let mut splits: Vec<String> = cv.folds.fold.iter().map(|k| format!("fold {}", k + 1)).collect();
            names.extend(self.names(&plan.test));
            truth.extend(self.truth(&plan.test));
            scores.extend(f.test_scores.iter().cloned());
            splits.extend(std::iter::repeat_n(Split::Test.name().to_string(), plan.test.len()));
            return self.task.predictions_csv(&names, Some(&truth), &scores, Some(&splits));
        }
        let (mut names, mut truth, mut scores, mut splits) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for which in Split::ALL {
            let ix = plan.indices(which);
            let s = match which {
                Split::Train => f.train_scores.clone().expect("train images evaluated for --predictions all"),
                Split::Validation => f.validation_scores.clone().unwrap_or_default(),
                Split::Test => f.test_scores.clone(),
            };
            names.extend(self.names(ix));
            truth.extend(self.truth(ix));
            scores.extend(s);
            splits.extend(std::iter::repeat_n(which.name().to_string(), ix.len()));
        }
        self.task.predictions_csv(&names, Some(&truth), &scores, Some(&splits))
    }

    /// metrics.json: every split's figures and the test intervals.
    fn metrics_json(&self) -> Result<Vec<u8>> {
        let f = self.figures;
        let json = serde_json::json!({
            "test": &f.test,
            "test_95ci": &f.test_intervals,
            "validation": &f.validation,
            "train": &f.train,
            "train_figures_from": if f.train_scores.is_some() {
                "the training images evaluated again with the best weights (eval mode)"
            } else {
                "the best epoch's own training pass (augmented images, train mode)"
            },
            "best_epoch": self.outcome.best_epoch,
            "task": self.task.kind(),
            "task_chosen": &self.task_chosen,
            "class_balance": &self.class_balance,
            "classes": self.task.classes(),
            "target": self.task.target(),
            "decisions": self.decisions,
            "calibration_bins": metrics::calibration::RELIABILITY_BINS,
            "image_cache": &self.summary.cache,
        });
        let mut json = json;
        if let Some(cv) = self.cross_validation {
            json["cross_validation"] = cv.to_json();
        }
        Ok(serde_json::to_vec_pretty(&json)?)
    }

    /// The Best Model's config.json: what `predict` needs to use the best epoch's weights.
    fn bundle_config(&self) -> BundleConfig {
        BundleConfig {
            format_version: bundle::FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            architecture: self.spec.name.to_string(),
            task: self.task.kind(),
            classes: self.task.classes().to_vec(),
            image_size: self.set.size,
            normalization: self.spec.normalization,
            best_epoch: self.outcome.best_epoch,
            eval_batch_size: evaluation::batch_size(self.batch_size),
            options: self.cfg.clone(),
            temperature: self.task.temperature(),
            threshold: self.task.threshold(),
            threshold_source: self.decisions.threshold_source.clone(),
            target: self.task.target().cloned(),
            members: self.cross_validation.map_or_else(Vec::new, |cv| {
                cv.models
                    .iter()
                    .enumerate()
                    .map(|(i, m)| bundle::Member { weights: bundle::member_file(i + 1), fold: i + 1, best_epoch: m.outcome.best_epoch, temperature: m.task.temperature() })
                    .collect()
            }),
        }
    }
}

/// Writes the run's five files into the output folder, all or none.
pub fn write_train_outputs(run: &TrainedRun, report_html: &[u8]) -> Result<()> {
    let dir = &run.cfg.output_dir;
    let mut set = OutputSet::new();
    set.stage(&dir.join(PREDICTIONS), &run.predictions()?)?;
    set.stage(&dir.join(HISTORY), &history::to_csv(&run.outcome.history, run.task.epoch_columns())?)?;
    set.stage(&dir.join(METRICS), &run.metrics_json()?)?;
    // Written straight into its file, member by member: the archive is never held in memory.
    let config = run.bundle_config();
    set.stage_with(&dir.join(BEST_MODEL), &mut |f| bundle::write_zip(f, &run.members, &config).map(drop))?;
    set.stage(&dir.join(REPORT), report_html)?;
    set.commit()
}
