//! The architectures: a registry of specs (name, input size, normalisation, builder) and one file
//! per family. Parameter names follow the reference implementations (torchvision, timm) so that
//! their state dicts load by name.
pub mod efficientnet_lite;
pub mod resnet;
pub mod weights;

use anyhow::Result;
use tch::{nn, nn::ModuleT, Tensor};

use crate::bail_input;
use crate::data::batches::{Normalization, IMAGENET};

/// A classifier: a backbone that yields pooled features, then dropout and a linear head.
#[derive(Debug)]
pub struct Network {
    backbone: Box<dyn ModuleT>,
    dropout: f64,
    head: nn::Linear,
}

impl Network {
    pub fn new(backbone: impl ModuleT + 'static, dropout: f64, head: nn::Linear) -> Self {
        Network { backbone: Box::new(backbone), dropout, head }
    }

    /// Logits. With `frozen_backbone`, the backbone runs in eval mode without gradient and only
    /// the head trains.
    pub fn forward(&self, xs: &Tensor, train: bool, frozen_backbone: bool) -> Tensor {
        let feats = if frozen_backbone {
            tch::no_grad(|| self.backbone.forward_t(xs, false))
        } else {
            self.backbone.forward_t(xs, train)
        };
        feats.dropout(self.dropout, train).apply(&self.head)
    }
}

/// Facts about one architecture; `build` makes it with a head of `num_classes`.
pub struct ModelSpec {
    pub name: &'static str,
    pub family: &'static str,
    pub reference: &'static str,
    pub default_size: i64,
    pub normalization: Normalization,
    /// The state-dict prefix of the classifier head, dropped from pretrained checkpoints.
    pub head_prefix: &'static str,
    pub build: fn(&nn::Path, i64) -> Network,
}

pub fn registry() -> &'static [ModelSpec] {
    const R: &[ModelSpec] = &[
        ModelSpec {
            name: "resnet18",
            family: "ResNet",
            reference: "torchvision.models.resnet18",
            default_size: 224,
            normalization: IMAGENET,
            head_prefix: "fc",
            build: resnet::resnet18,
        },
        ModelSpec {
            name: "resnet34",
            family: "ResNet",
            reference: "torchvision.models.resnet34",
            default_size: 224,
            normalization: IMAGENET,
            head_prefix: "fc",
            build: resnet::resnet34,
        },
        ModelSpec {
            name: "resnet50",
            family: "ResNet",
            reference: "torchvision.models.resnet50",
            default_size: 224,
            normalization: IMAGENET,
            head_prefix: "fc",
            build: resnet::resnet50,
        },
        ModelSpec {
            name: "efficientnet_lite0",
            family: "EfficientNet",
            reference: "timm efficientnet_lite0",
            default_size: 224,
            normalization: Normalization { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
            head_prefix: "classifier",
            build: efficientnet_lite::efficientnet_lite0,
        },
    ];
    R
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The spec called `name`; an unknown name is an error that suggests the nearest ones.
pub fn find(name: &str) -> Result<&'static ModelSpec> {
    let key = name.trim().to_ascii_lowercase();
    if let Some(s) = registry().iter().find(|s| s.name == key) {
        return Ok(s);
    }
    let mut near: Vec<_> = registry().iter().map(|s| (edit_distance(&key, s.name), s.name)).collect();
    near.sort();
    let names: Vec<_> = near.iter().take(3).map(|(_, n)| *n).collect();
    bail_input!(
        "unknown model '{name}'. Nearest: {}. `image-learner models` lists them all",
        names.join(", ")
    )
}

/// Number of parameters of a built model.
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(Tensor::numel).map(|n| n as i64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_suggests_nearest() {
        let e = format!("{:#}", find("resnet19").err().unwrap());
        assert!(e.contains("Nearest: resnet18"), "{e}");
        assert_eq!(find(" ResNet18 ").unwrap().name, "resnet18");
    }

    #[test]
    fn every_model_builds_and_classifies() {
        for spec in registry() {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = (spec.build)(&vs.root(), 3);
            let x = Tensor::zeros([2, 3, 64, 64], (tch::Kind::Float, tch::Device::Cpu));
            let y = net.forward(&x, false, false);
            assert_eq!(y.size(), [2, 3], "{}", spec.name);
            let names = vs.variables();
            assert!(names.keys().any(|k| k == &format!("{}.weight", spec.head_prefix)), "{}", spec.name);
        }
    }
}
