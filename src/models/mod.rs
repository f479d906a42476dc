//! The architectures: a registry of specs (name, input size, normalisation, builder) and one file
//! per family. Parameter names follow the reference implementations (torchvision, timm) so that
//! their state dicts load by name.
pub mod convnext;
pub mod densenet;
pub mod efficientnet;
pub mod efficientnet_lite;
pub mod kernels;
pub mod layers;
pub mod metaformer;
pub mod mobilenet;
pub mod resnet;
pub mod swin;
pub mod vgg;
pub mod vit;

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

/// How a family builds its network.
#[derive(Clone, Copy)]
pub enum Arch {
    /// A builder of a fixed architecture.
    Fixed(fn(&nn::Path, i64) -> Network),
    MetaFormer(&'static metaformer::Config),
    EfficientNet(&'static efficientnet::Variant),
    ConvNeXt(&'static convnext::Variant),
}

/// Facts about one architecture; `build` makes it with a head of `num_classes`.
pub struct ModelSpec {
    pub name: &'static str,
    pub family: &'static str,
    pub reference: String,
    pub default_size: usize,
    pub normalization: Normalization,
    /// The state-dict prefix of the classifier head, dropped from pretrained checkpoints.
    pub head_prefix: &'static str,
    pub arch: Arch,
}

impl ModelSpec {
    pub fn build(&self, p: &nn::Path, num_classes: i64) -> Network {
        match self.arch {
            Arch::Fixed(f) => f(p, num_classes),
            Arch::MetaFormer(cfg) => metaformer::build(p, cfg, num_classes),
            Arch::EfficientNet(v) => efficientnet::build(p, v, num_classes),
            Arch::ConvNeXt(v) => convnext::build(p, v, num_classes),
        }
    }
}

/// The path `a.b.c` under `p` (tch takes one component at a time).
pub fn sub_path<'a>(p: &nn::Path<'a>, dotted: &str) -> nn::Path<'a> {
    let mut parts = dotted.split('.');
    let first = p / parts.next().unwrap_or_default();
    parts.fold(first, |acc, c| acc / c)
}

fn fixed(
    name: &'static str,
    family: &'static str,
    reference: &str,
    norm: Normalization,
    head: &'static str,
    f: fn(&nn::Path, i64) -> Network,
) -> ModelSpec {
    ModelSpec {
        name,
        family,
        reference: reference.to_string(),
        default_size: 224,
        normalization: norm,
        head_prefix: head,
        arch: Arch::Fixed(f),
    }
}

fn family_of(name: &str) -> &'static str {
    if name.starts_with("caformer") {
        "CAFormer"
    } else if name.starts_with("convformer") {
        "ConvFormer"
    } else {
        "PoolFormerV2"
    }
}

pub fn registry() -> &'static [ModelSpec] {
    static REGISTRY: std::sync::OnceLock<Vec<ModelSpec>> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut r = vec![
            fixed("resnet18", "ResNet", "torchvision.models.resnet18", IMAGENET, "fc", resnet::resnet18),
            fixed("resnet34", "ResNet", "torchvision.models.resnet34", IMAGENET, "fc", resnet::resnet34),
            fixed("resnet50", "ResNet", "torchvision.models.resnet50", IMAGENET, "fc", resnet::resnet50),
            fixed("resnet101", "ResNet", "torchvision.models.resnet101", IMAGENET, "fc", resnet::resnet101),
            fixed("resnet152", "ResNet", "torchvision.models.resnet152", IMAGENET, "fc", resnet::resnet152),
            fixed(
                "resnext50_32x4d",
                "ResNeXt",
                "torchvision.models.resnext50_32x4d",
                IMAGENET,
                "fc",
                resnet::resnext50_32x4d,
            ),
            fixed(
                "wide_resnet50_2",
                "Wide ResNet",
                "torchvision.models.wide_resnet50_2",
                IMAGENET,
                "fc",
                resnet::wide_resnet50_2,
            ),
            fixed(
                "efficientnet_lite0",
                "EfficientNet",
                "timm efficientnet_lite0",
                Normalization { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
                "classifier",
                efficientnet_lite::efficientnet_lite0,
            ),
        ];
        let tv = |name: &str| format!("torchvision.models.{name}");
        for (name, size, v) in efficientnet::VARIANTS {
            r.push(ModelSpec {
                name,
                family: "EfficientNet",
                reference: tv(name),
                default_size: *size,
                normalization: IMAGENET,
                head_prefix: "classifier.1",
                arch: Arch::EfficientNet(v),
            });
        }
        r.extend([
            fixed("mobilenet_v2", "MobileNet", &tv("mobilenet_v2"), IMAGENET, "classifier.1", mobilenet::mobilenet_v2),
            fixed(
                "mobilenet_v3_small",
                "MobileNet",
                &tv("mobilenet_v3_small"),
                IMAGENET,
                "classifier.3",
                mobilenet::mobilenet_v3_small,
            ),
            fixed(
                "mobilenet_v3_large",
                "MobileNet",
                &tv("mobilenet_v3_large"),
                IMAGENET,
                "classifier.3",
                mobilenet::mobilenet_v3_large,
            ),
            fixed("densenet121", "DenseNet", &tv("densenet121"), IMAGENET, "classifier", densenet::densenet121),
            fixed("vgg16", "VGG", &tv("vgg16"), IMAGENET, "classifier.6", vgg::vgg16),
            fixed("vgg16_bn", "VGG", &tv("vgg16_bn"), IMAGENET, "classifier.6", vgg::vgg16_bn),
        ]);
        for (name, v) in convnext::VARIANTS {
            r.push(ModelSpec {
                name,
                family: "ConvNeXt",
                reference: tv(name),
                default_size: 224,
                normalization: IMAGENET,
                head_prefix: "classifier.2",
                arch: Arch::ConvNeXt(v),
            });
        }
        r.extend([
            fixed("vit_b_16", "Vision Transformer", &tv("vit_b_16"), IMAGENET, "heads.head", vit::vit_b_16),
            fixed("swin_t", "Swin Transformer", &tv("swin_t"), IMAGENET, "head", swin::swin_t),
        ]);
        for (base, cfg) in metaformer::VARIANTS {
            // CAFormer and ConvFormer come with 384x384 and ImageNet-21k-pretrained weight tags;
            // each is its own name (as in the existing tool), with its own default size.
            let tags: &[(&str, usize, &str)] = if cfg.mlp_head {
                &[
                    ("", 224, "sail_in1k"),
                    ("_384", 384, "sail_in1k_384"),
                    ("_in21ft1k", 224, "sail_in22k_ft_in1k"),
                    ("_384_in21ft1k", 384, "sail_in22k_ft_in1k_384"),
                ]
            } else {
                &[("", 224, "sail_in1k")]
            };
            for (suffix, size, tag) in tags {
                let name: &'static str = Box::leak(format!("{base}{suffix}").into_boxed_str());
                r.push(ModelSpec {
                    name,
                    family: family_of(base),
                    reference: format!("timm {base}.{tag}"),
                    default_size: *size,
                    normalization: IMAGENET,
                    head_prefix: metaformer::head_prefix(cfg),
                    arch: Arch::MetaFormer(cfg),
                });
            }
        }
        r
    })
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
    bail_input!("unknown model '{name}'. Nearest: {}. `image-learner models` lists them all", names.join(", "))
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
    fn the_galaxy_form_offers_exactly_the_registry() {
        let xml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/galaxy/macros.xml")).unwrap();
        let start = xml.find("<param name=\"model\"").unwrap();
        let end = start + xml[start..].find("</param>").unwrap();
        let mut offered: Vec<&str> =
            xml[start..end].split("<option value=\"").skip(1).map(|s| &s[..s.find('"').unwrap()]).collect();
        let mut names: Vec<&str> = registry().iter().map(|s| s.name).collect();
        offered.sort();
        names.sort();
        assert_eq!(offered, names);
    }

    #[test]
    fn every_model_builds_and_classifies() {
        // The largest variants are left to `image-learner models`; one per family here.
        for spec in registry().iter().filter(|s| !["36", "48", "_s24", "101", "152"].iter().any(|n| s.name.contains(n)))
        {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = spec.build(&vs.root(), 3);
            let x = Tensor::zeros([2, 3, 64, 64], (tch::Kind::Float, tch::Device::Cpu));
            let y = net.forward(&x, false, false);
            assert_eq!(y.size(), [2, 3], "{}", spec.name);
            let names = vs.variables();
            assert!(names.keys().any(|k| k == &format!("{}.weight", spec.head_prefix)), "{}", spec.name);
        }
    }
}
