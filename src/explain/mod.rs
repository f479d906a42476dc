//! Explanations: where the model looked. Class activation maps from gradients at each family's
//! target layer (a fact in the family's file): Grad-CAM (Selvaraju et al., 2017) weighs the
//! layer's channels by their mean gradient; HiResCAM (Draelos & Carin, 2020) multiplies gradient
//! and activation element by element, so that the map shows what the score used. The maps are
//! normalised as pytorch-grad-cam normalises them, so that ours and the reference's can be
//! compared number for number.
//! Which images to explain, and for which output, is the task's choice (`Task::report_picks`,
//! `Task::predict_picks`).
pub mod overlay;

use anyhow::{Context, Result};
use tch::{Kind, Tensor};

pub use crate::config::{CamMethod as Method, ExplainCount as Count};
use crate::data::batches::EpochBatches;
use crate::evaluation::{batch_tensors, Evaluator};
use crate::models::{Layout, Network, Tap};
use crate::task::Pick;

/// The target layer's activation as NCHW.
fn to_nchw(t: &Tensor, layout: Layout) -> Tensor {
    match layout {
        Layout::Nchw => t.shallow_clone(),
        Layout::Nhwc => t.permute([0, 3, 1, 2]),
        Layout::ClassTokenThenGrid => {
            let (b, n, c) = t.size3().expect("tokens are (batch, tokens, channels)");
            let side = ((n - 1) as f64).sqrt().round() as i64;
            t.narrow(1, 1, n - 1).reshape([b, side, side, c]).permute([0, 3, 1, 2])
        }
    }
}

/// Each map of a (N, H, W) batch shifted to start at 0 and divided by its maximum (plus 1e-7, so
/// that an all-zero map stays zero), as pytorch-grad-cam's `scale_cam_image`.
fn scale(maps: &Tensor) -> Tensor {
    let low = maps.amin([1, 2], true);
    let shifted = maps - low;
    let high = shifted.amax([1, 2], true);
    shifted / (high + 1e-7)
}

/// The maps of a normalised batch `images` (N, 3, H, W) for output `targets[i]` of image i (a
/// class, or 0 for a regression's value): (N, H, W) in [0, 1], at the input's size. The model
/// runs in eval mode in float32; gradients are taken at the target layer only, so that no
/// parameter's gradient and no batch-norm statistic changes.
pub fn heatmaps(net: &Network, images: &Tensor, targets: &[i64], method: Method) -> Result<Tensor> {
    tch::with_grad(|| {
        // The input asks for a gradient so that the graph exists even with frozen weights.
        let x = images.to_kind(Kind::Float).detach().set_requires_grad(true);
        let mut tap = Tap::wanted();
        let logits = net.forward_tapped(&x, &mut tap);
        let (output, activation, layout) = tap.take().context("the architecture recorded no target layer for explanations")?;
        let index = Tensor::from_slice(targets).to_device(logits.device()).unsqueeze(1);
        let score = logits.to_kind(Kind::Float).gather(1, &index, false).sum(Kind::Float);
        let grad = Tensor::run_backward(&[score], &[&output], false, false).remove(0);
        let a = to_nchw(&activation.detach().to_kind(Kind::Float), layout);
        let g = to_nchw(&grad.to_kind(Kind::Float), layout);
        let cam = match method {
            Method::GradCam => (g.mean_dim([2i64, 3].as_slice(), true, Kind::Float) * a).sum_dim_intlist(1i64, false, Kind::Float),
            Method::HiResCam => (g * a).sum_dim_intlist(1i64, false, Kind::Float),
        };
        let (h, w) = (images.size()[2], images.size()[3]);
        let cam = scale(&cam.relu()).unsqueeze(1).upsample_bilinear2d([h, w], false, None, None).squeeze_dim(1);
        Ok(scale(&cam.clamp_min(0.0)))
    })
}

/// Images explained a few at a time, to bound the memory the backward pass needs.
const BATCH: usize = 8;

/// The maps of images `indices` of the evaluator's set, for `targets` (one per image), each
/// `size * size` values in [0, 1], row by row.
pub fn explain(ev: &Evaluator, indices: &[usize], targets: &[i64], method: Method) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(indices.len());
    let batches = EpochBatches::evaluation(ev.set.clone(), indices, BATCH, ev.normalization);
    for (b, chunk) in batches.zip(targets.chunks(BATCH)) {
        let (x, _) = batch_tensors(&b?, ev.set.size, ev.compute);
        let maps = heatmaps(ev.net, &x, chunk, method)?.to_device(tch::Device::Cpu).contiguous();
        for m in maps.split(1, 0) {
            out.push(Vec::<f32>::try_from(m.flatten(0, -1))?);
        }
    }
    Ok(out)
}

/// An explained image: its position in the list explained, why it was picked, the output
/// explained, and its heatmap (`size * size` values in [0, 1]).
#[derive(Clone, Debug)]
pub struct Explained {
    pub position: usize,
    pub why: String,
    pub target: i64,
    pub heat: Vec<f32>,
}

/// The heatmaps of `picks` among images `images` of the members' set. An ensemble's map is the
/// mean of its members' maps, each scaled to [0, 1] as one model's is.
pub fn explain_picks(members: &[Evaluator], images: &[usize], picks: Vec<Pick>, method: Method) -> Result<Vec<Explained>> {
    let indices: Vec<usize> = picks.iter().map(|p| images[p.position]).collect();
    let targets: Vec<i64> = picks.iter().map(|p| p.target).collect();
    let mut maps: Vec<Vec<f32>> = Vec::new();
    for ev in members {
        let these = explain(ev, &indices, &targets, method)?;
        if maps.is_empty() {
            maps = these;
        } else {
            for (m, t) in maps.iter_mut().zip(these) {
                m.iter_mut().zip(t).for_each(|(a, b)| *a += b);
            }
        }
    }
    if members.len() > 1 {
        let k = members.len() as f32;
        maps.iter_mut().for_each(|m| m.iter_mut().for_each(|v| *v /= k));
    }
    Ok(picks.into_iter().zip(maps).map(|(p, heat)| Explained { position: p.position, why: p.why, target: p.target, heat }).collect())
}

/// The report's explanations of the test images `test`, scored `scores` as `task` decides: at
/// most `count`.
pub fn for_report(members: &[Evaluator], task: &crate::task::Task, test: &[usize], scores: &[Vec<f32>], count: Count, method: Method) -> Result<Vec<Explained>> {
    let limit = count.of(test.len());
    if limit == 0 || members.is_empty() {
        return Ok(Vec::new());
    }
    let picks = task.report_picks(members[0].set, test, scores, limit);
    explain_picks(members, test, picks, method)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::data::store::Store;
    use crate::data::ImageSet;
    use crate::task::Task;

    /// An ensemble's heatmap is the mean of its members' heatmaps, image by image (at 96 pixels,
    /// so that ResNet's last stage has a 3x3 grid to map).
    #[test]
    fn an_ensembles_map_is_the_mean_of_its_members_maps() {
        let n = 3;
        let set = Arc::new(ImageSet {
            size: 96,
            store: Store::Ram((0..n * 96 * 96 * 3).map(|i| ((i * 37 + i / 101 * 11) % 251) as u8).collect()),
            labels: vec![0, 1, 0],
            targets: Vec::new(),
            names: (0..n).map(|i| format!("{i}.png")).collect(),
            classes: vec!["a".into(), "b".into()],
        });
        let spec = crate::models::find("resnet18").unwrap();
        let task = Task::for_training(crate::task::TaskKind::Classification, &set.classes, None, "label", "m.csv").unwrap();
        let compute = crate::precision::Compute::cpu();
        let images = [0, 1, 2];
        let picks = || images.iter().map(|&i| Pick { position: i, target: (i % 2) as i64, why: String::new() }).collect::<Vec<_>>();
        let flat = |maps: &[Explained]| maps.iter().all(|e| e.heat.iter().all(|&v| v == e.heat[0]));
        // Random weights can leave every map of a model flat (all zero after the ReLU): such a
        // pair would prove nothing, so the pair used is the first whose maps are not all flat.
        for seed in 0..8 {
            let nets: Vec<(tch::nn::VarStore, Network)> = [seed, seed + 100]
                .iter()
                .map(|&s| {
                    tch::manual_seed(s);
                    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
                    let net = spec.build(&vs.root(), 2);
                    (vs, net)
                })
                .collect();
            let members: Vec<Evaluator> = nets
                .iter()
                .map(|(_, net)| Evaluator { net, task: &task, set: &set, batch_size: 8, normalization: spec.normalization, compute: &compute, tta: crate::config::Tta::None })
                .collect();
            let one = explain_picks(&members[..1], &images, picks(), Method::GradCam).unwrap();
            let other = explain_picks(&members[1..], &images, picks(), Method::GradCam).unwrap();
            if flat(&one) || flat(&other) {
                continue;
            }
            let both = explain_picks(&members, &images, picks(), Method::GradCam).unwrap();
            for ((b, x), y) in both.iter().zip(&one).zip(&other) {
                assert_eq!(b.heat.len(), 96 * 96);
                for ((&m, &p), &q) in b.heat.iter().zip(&x.heat).zip(&y.heat) {
                    assert!((m - (p + q) / 2.0).abs() < 1e-6, "{m} against ({p} + {q}) / 2");
                }
            }
            assert!(one.iter().zip(&other).any(|(x, y)| x.heat != y.heat), "the members' maps differ");
            return;
        }
        panic!("no pair of random models gave maps that are not flat");
    }
}
