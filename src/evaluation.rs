//! Evaluation, shared by training (each epoch's validation pass), the final figures and
//! `predict`: a model's outputs for a list of images, in eval mode, turned into scores by the
//! task; the final figures of a run; and the model of a saved Best Model, ready for that.
use std::sync::Arc;

use anyhow::Result;
use tch::{nn, Tensor};

use crate::config::{PredictionsScope, TrainConfig, Tta};
use crate::data::batches::{Batch, EpochBatches, Normalization};
use crate::data::split::{Split, SplitPlan};
use crate::data::ImageSet;
use crate::metrics::{Figures, Intervals};
use crate::models::{self, Network};
use crate::precision::Compute;
use crate::task::Task;
use crate::weights::bundle::Bundle;

/// A batch's images and labels (regression: targets) as tensors on the compute device, in its
/// layout.
pub fn batch_tensors(b: &Batch, size: usize, compute: &Compute) -> (Tensor, Tensor) {
    let n = b.labels.len() as i64;
    let s = size as i64;
    let x = Tensor::from_slice(&b.pixels).view([n, 3, s, s]);
    let y = if b.targets.is_empty() { Tensor::from_slice(&b.labels) } else { Tensor::from_slice(&b.targets) };
    (compute.input(x), y.to_device(compute.device))
}

pub use crate::task::{rows, ScoreRows};

/// What an evaluation pass needs: the model, the task, the images and how to run them.
pub struct Evaluator<'a> {
    pub net: &'a Network,
    pub task: &'a Task,
    pub set: &'a Arc<ImageSet>,
    pub batch_size: usize,
    pub normalization: Normalization,
    pub compute: &'a Compute,
    pub tta: Tta,
}

/// The views of a batch (N x 3 x H x W) that `tta` averages over, the batch itself first.
pub fn views(x: &Tensor, tta: Tta) -> Vec<Tensor> {
    let mut out = vec![x.shallow_clone()];
    // `auto` is resolved before evaluation (`Tta::resolve`); unresolved, it adds no view.
    if matches!(tta, Tta::Flip | Tta::Flip4) {
        out.push(x.flip([3]));
    }
    if tta == Tta::Flip4 {
        out.push(x.flip([2]));
        out.push(x.flip([2, 3]));
    }
    out
}

impl Evaluator<'_> {
    /// The network's outputs (logits, as float32) for images `indices` of the set, in that
    /// order, in eval mode; with test-time augmentation, the task's combination of the views'
    /// outputs, which it reads as it reads logits.
    pub fn logits(&self, indices: &[usize]) -> Result<Vec<Vec<f32>>> {
        let mut out = ScoreRows::new(indices.len());
        tch::no_grad(|| {
            for b in EpochBatches::evaluation(self.set.clone(), indices, self.batch_size, self.normalization) {
                let (x, _) = batch_tensors(&b?, self.set.size, self.compute);
                let outputs: Vec<Tensor> = views(&x, self.tta)
                    .iter()
                    .map(|v| self.compute.run(|| self.net.forward(v, false, false)).to_kind(tch::Kind::Float))
                    .collect();
                out.push(&self.task.combine_views(&outputs));
            }
            Ok::<(), anyhow::Error>(())
        })?;
        Ok(out.to_rows())
    }

    /// The task's scores for images `indices`, in that order.
    pub fn scores(&self, indices: &[usize]) -> Result<Vec<Vec<f32>>> {
        Ok(self.task.probabilities(&self.logits(indices)?))
    }
}

/// The batch size of every evaluation pass (validation during training, the final evaluation,
/// `predict`): one value, so that the final figures reuse the validation pass bit for bit.
pub fn batch_size(training_batch_size: usize) -> usize {
    training_batch_size.max(64)
}

/// The mean of the members' scores for images `indices`, in that order: an ensemble's
/// probabilities (a regression's values) are the average of its members', each scored by its
/// own task (its fold's temperature). One member: its own scores.
pub fn mean_scores(members: &[Evaluator], indices: &[usize]) -> Result<Vec<Vec<f32>>> {
    if let [one] = members {
        return one.scores(indices);
    }
    let mut sum: Vec<Vec<f64>> = Vec::new();
    for ev in members {
        let scores = ev.scores(indices)?;
        if sum.is_empty() {
            sum = scores.iter().map(|r| vec![0.0; r.len()]).collect();
        }
        for (s, r) in sum.iter_mut().zip(&scores) {
            for (a, &v) in s.iter_mut().zip(r) {
                *a += f64::from(v);
            }
        }
    }
    let k = members.len() as f64;
    Ok(sum.into_iter().map(|r| r.into_iter().map(|v| (v / k) as f32).collect()).collect())
}

/// The networks of a Best Model, their weights loaded, ready for evaluation: one, or one per
/// member of a cross-validated Best Model, in member order.
pub fn networks_from_bundle(b: &Bundle, compute: &Compute) -> Result<(Vec<(nn::VarStore, Network)>, &'static models::ModelSpec)> {
    let spec = models::find(&b.config.architecture)?;
    let mut out = Vec::with_capacity(b.weights.len());
    for tensors in &b.weights {
        let mut vs = nn::VarStore::new(compute.device);
        let net = spec.build(&vs.root(), b.task().head_outputs());
        crate::weights::copy_variables(&mut vs, None, tensors)?;
        compute.prepare(&vs);
        out.push((vs, net));
    }
    Ok((out, spec))
}

/// One epoch's pass over the training images, in train mode on augmented images: the images in
/// the order the batches came, and their scores.
#[derive(Default)]
pub struct TrainingPass {
    pub images: Vec<usize>,
    pub scores: ScoreRows,
    /// Whether these scores stand for the kept weights on the training split. Not after a
    /// sampler's balanced draw (other images, some twice), nor with a moving average (the pass
    /// ran on the model's own weights, not the averaged ones kept).
    pub representative: bool,
}

/// The final figures of a training run, per split, and the scores behind them.
pub struct FinalFigures {
    pub train: Figures,
    pub validation: Option<Figures>,
    pub test: Figures,
    /// The training images evaluated again with the best weights (None: the train figures are
    /// the best epoch's own training pass).
    pub train_scores: Option<Vec<Vec<f32>>>,
    pub validation_scores: Option<Vec<Vec<f32>>>,
    pub test_scores: Vec<Vec<f32>>,
    /// The network's outputs behind the validation and test scores (before the temperature).
    pub validation_logits: Option<Vec<Vec<f32>>>,
    pub test_logits: Vec<Vec<f32>>,
    /// Bootstrap 95% intervals of the test figures.
    pub test_intervals: Option<Intervals>,
}

impl FinalFigures {
    /// Validation: the best epoch's pass, which the restored weights repeat exactly. Train: the
    /// best epoch's own training pass, unless asked to evaluate the training images again (or
    /// every image's prediction is wanted, or the pass does not stand for the kept weights).
    /// Test: evaluated now, once. Validation and test are decided as `ev.task` decides (its
    /// temperature and threshold).
    /// `best_training_pass`: the best epoch's images and scores; `best_validation`: its
    /// validation logits.
    pub fn compute(
        ev: &Evaluator,
        plan: &SplitPlan,
        best_training_pass: &TrainingPass,
        best_validation: Option<&Vec<Vec<f32>>>,
        cfg: &TrainConfig,
    ) -> Result<FinalFigures> {
        let (task, set) = (ev.task, ev.set.as_ref());
        let again = cfg.evaluate_train || cfg.predictions == PredictionsScope::All || !best_training_pass.representative;
        let train_scores = again.then(|| ev.scores(&plan.train)).transpose()?;
        let train = match &train_scores {
            Some(p) => task.figures(set, &plan.train, p),
            None => task.figures(set, &best_training_pass.images, &best_training_pass.scores.to_rows()),
        };
        let validation_logits = best_validation.cloned();
        let validation_scores = validation_logits.as_ref().map(|l| task.probabilities(l));
        let validation = validation_scores.as_ref().map(|p| task.figures(set, &plan.validation, p));
        let test_logits = ev.logits(&plan.test)?;
        let test_scores = task.probabilities(&test_logits);
        let test = task.figures(set, &plan.test, &test_scores);
        let test_intervals = task.intervals(set, &plan.test, &test_scores, cfg.seed);
        Ok(FinalFigures {
            train,
            validation,
            test,
            train_scores,
            validation_scores,
            test_scores,
            validation_logits,
            test_logits,
            test_intervals,
        })
    }

    /// The figures per split, in split order (no validation entry without validation images).
    pub fn per_split(&self) -> Vec<(Split, &Figures)> {
        let mut out = vec![(Split::Train, &self.train)];
        if let Some(v) = &self.validation {
            out.push((Split::Validation, v));
        }
        out.push((Split::Test, &self.test));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::{hflip, vflip};
    use crate::data::store::Store;

    /// Six 32x32 images of two classes, with no symmetry of their own.
    fn images() -> ImageSet {
        let n = 6;
        ImageSet {
            size: 32,
            store: Store::Ram((0..n * 32 * 32 * 3).map(|i| ((i * 31 + i / 97 * 7) % 253) as u8).collect()),
            labels: (0..n).map(|i| i % 2).collect(),
            targets: Vec::new(),
            names: (0..n).map(|i| format!("{i}.png")).collect(),
            classes: vec!["a".into(), "b".into()],
        }
    }

    /// The same set with each image passed through `f`.
    fn transformed(set: &ImageSet, f: impl Fn(&mut [u8])) -> Arc<ImageSet> {
        let mut pixels: Vec<u8> = set.images(&(0..set.len()).collect::<Vec<_>>()).unwrap().concat();
        pixels.chunks_exact_mut(32 * 32 * 3).for_each(&f);
        Arc::new(ImageSet { store: Store::Ram(pixels), labels: set.labels.clone(), targets: Vec::new(), names: set.names.clone(), classes: set.classes.clone(), size: 32 })
    }

    fn probabilities(net: &Network, task: &Task, set: &Arc<ImageSet>, tta: Tta) -> Vec<Vec<f32>> {
        let compute = Compute::cpu();
        let ev = Evaluator { net, task, set, batch_size: 4, normalization: crate::data::batches::IMAGENET, compute: &compute, tta };
        ev.scores(&(0..set.len()).collect::<Vec<_>>()).unwrap()
    }

    fn classifier() -> Task {
        Task::for_training(crate::config::TaskKind::Classification, &["a".into(), "b".into()], None, "y", "m.csv").unwrap()
    }

    /// A model that averages over the image before anything else cannot tell an image from its
    /// mirrors: every kind of TTA leaves its probabilities as they were.
    #[test]
    fn tta_changes_nothing_for_a_model_blind_to_flips() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let head = nn::linear(&vs.root() / "fc", 3, 2, Default::default());
        let net = Network::new(|x, _, _| x.mean_dim(&[2i64, 3][..], false, tch::Kind::Float), 0.0, head);
        let (task, set) = (classifier(), Arc::new(images()));
        let plain = probabilities(&net, &task, &set, Tta::None);
        for tta in [Tta::Flip, Tta::Flip4] {
            let with = probabilities(&net, &task, &set, tta);
            let worst = plain.iter().flatten().zip(with.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-6, "{tta:?} moved a probability by {worst}");
        }
    }

    /// On resnet18, flip's probabilities are the mean of those of the images and of their
    /// mirrors, each predicted alone; flip4's the mean over the four views.
    /// An ensemble's scores are the mean of its members' probabilities, each member after its
    /// own temperature, to 1e-6.
    #[test]
    fn an_ensemble_scores_the_mean_of_its_members_probabilities() {
        let spec = models::find("resnet18").unwrap();
        let set = Arc::new(images());
        let compute = Compute::cpu();
        let nets: Vec<(nn::VarStore, Network)> = (0..3)
            .map(|seed| {
                tch::manual_seed(10 + seed);
                let vs = nn::VarStore::new(tch::Device::Cpu);
                let net = spec.build(&vs.root(), 2);
                (vs, net)
            })
            .collect();
        let tasks: Vec<Task> = [0.7f32, 1.0, 2.5].iter().map(|&t| classifier().at_temperature(t)).collect();
        let members: Vec<Evaluator> = nets
            .iter()
            .zip(&tasks)
            .map(|((_, net), task)| Evaluator { net, task, set: &set, batch_size: 4, normalization: crate::data::batches::IMAGENET, compute: &compute, tta: Tta::None })
            .collect();
        let all: Vec<usize> = (0..set.len()).collect();
        let alone: Vec<Vec<Vec<f32>>> = nets.iter().zip(&tasks).map(|((_, net), task)| probabilities(net, task, &set, Tta::None)).collect();
        assert_ne!(alone[0], alone[1]);
        let mean = mean_scores(&members, &all).unwrap();
        for (i, row) in mean.iter().enumerate() {
            for (c, &p) in row.iter().enumerate() {
                let expected = alone.iter().map(|a| f64::from(a[i][c])).sum::<f64>() / 3.0;
                assert!((f64::from(p) - expected).abs() < 1e-6, "image {i}, class {c}: {p} against {expected}");
            }
        }
        assert_eq!(mean_scores(&members[..1], &all).unwrap(), alone[0], "one member: its own scores");
    }

    #[test]
    fn tta_is_the_mean_of_the_separate_passes() {
        let spec = models::find("resnet18").unwrap();
        tch::manual_seed(2);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = spec.build(&vs.root(), 2);
        let task = classifier();
        let base = images();
        let views = [
            Arc::new(images()),
            transformed(&base, |im| hflip(im, 32)),
            transformed(&base, |im| vflip(im, 32)),
            transformed(&base, |im| {
                hflip(im, 32);
                vflip(im, 32)
            }),
        ];
        let alone: Vec<Vec<Vec<f32>>> = views.iter().map(|v| probabilities(&net, &task, v, Tta::None)).collect();
        for (tta, n) in [(Tta::Flip, 2), (Tta::Flip4, 4)] {
            let with = probabilities(&net, &task, &views[0], tta);
            for (i, row) in with.iter().enumerate() {
                for (c, &p) in row.iter().enumerate() {
                    let mean = alone[..n].iter().map(|v| v[i][c]).sum::<f32>() / n as f32;
                    assert!((p - mean).abs() < 1e-6, "{tta:?}: image {i} class {c}: {p} against the mean {mean}");
                }
            }
            assert_ne!(with, alone[0], "{tta:?} changed nothing on a model that sees flips");
        }
        // A regression averages its values.
        let reg = Task::for_regression(&[0.0, 10.0], "v", crate::config::RegressionLoss::Mse, None).unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = spec.build(&vs.root(), 1);
        let values = |set: &Arc<ImageSet>, tta| probabilities(&net, &reg, set, tta);
        let with = values(&views[0], Tta::Flip);
        let (a, b) = (values(&views[0], Tta::None), values(&views[1], Tta::None));
        for i in 0..with.len() {
            assert!((with[i][0] - (a[i][0] + b[i][0]) / 2.0).abs() < 1e-4, "image {i}: {} against {} and {}", with[i][0], a[i][0], b[i][0]);
        }
    }
}
