//! The architectures: one file per family, holding the family's network and its facts (its
//! `specs()`: names, default sizes, normalisation, head, published weights, checkpoint name maps,
//! extra buffers), and the registry that collects them. Parameter names follow the reference
//! implementations (torchvision, timm) so that their state dicts load by name.
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

use std::collections::HashMap;

use anyhow::Result;
use tch::{nn, Tensor};

use crate::bail_input;
use crate::data::batches::Normalization;

/// A backbone: pooled features of a batch, recording its Grad-CAM target layer into the tap when
/// the tap asks for it.
pub type Backbone = Box<dyn Fn(&Tensor, bool, &mut Tap) -> Tensor + Send>;

/// How a target layer lays out its activation, so that it can be read as NCHW.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    /// Channels last (Swin).
    Nhwc,
    /// A class token, then one token per patch of a square grid (ViT).
    ClassTokenThenGrid,
}

/// What a forward pass leaves for an explanation: the target layer's output (a tensor of the
/// autograd graph, to take gradients against) and the activation read from it. They differ only
/// where the reference reads the activation after an in-place operation (DenseNet's final ReLU).
#[derive(Default)]
pub struct Tap {
    wanted: bool,
    recorded: Option<(Tensor, Tensor, Layout)>,
}

impl Tap {
    /// A tap that records.
    pub fn wanted() -> Tap {
        Tap { wanted: true, recorded: None }
    }

    pub fn is_wanted(&self) -> bool {
        self.wanted
    }

    /// Records `output` as the target layer's output and its activation.
    pub fn record(&mut self, output: &Tensor, layout: Layout) {
        self.record_with(output, output, layout);
    }

    /// Records `output` for the gradient and `activation` as what the layer hands on.
    pub fn record_with(&mut self, output: &Tensor, activation: &Tensor, layout: Layout) {
        if self.wanted {
            self.recorded = Some((output.shallow_clone(), activation.shallow_clone(), layout));
        }
    }

    /// The recorded output, activation and layout.
    pub fn take(&mut self) -> Option<(Tensor, Tensor, Layout)> {
        self.recorded.take()
    }
}

/// A classifier: a backbone that yields pooled features, then dropout and a linear head.
pub struct Network {
    backbone: Backbone,
    dropout: f64,
    head: nn::Linear,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").field("dropout", &self.dropout).field("head", &self.head).finish_non_exhaustive()
    }
}

impl Network {
    pub fn new(backbone: impl Fn(&Tensor, bool, &mut Tap) -> Tensor + Send + 'static, dropout: f64, head: nn::Linear) -> Self {
        Network { backbone: Box::new(backbone), dropout, head }
    }

    /// Logits. With `frozen_backbone`, the backbone runs in eval mode without gradient and only
    /// the head trains.
    pub fn forward(&self, xs: &Tensor, train: bool, frozen_backbone: bool) -> Tensor {
        let feats = if frozen_backbone {
            tch::no_grad(|| (self.backbone)(xs, false, &mut Tap::default()))
        } else {
            (self.backbone)(xs, train, &mut Tap::default())
        };
        feats.dropout(self.dropout, train).apply(&self.head)
    }

    /// Eval-mode logits, with the target layer recorded into `tap`.
    pub fn forward_tapped(&self, xs: &Tensor, tap: &mut Tap) -> Tensor {
        (self.backbone)(xs, false, tap).apply(&self.head)
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

/// Renames a checkpoint's parameters from another naming scheme to the model's.
pub type NameMap = fn(&ModelSpec, HashMap<String, Tensor>) -> HashMap<String, Tensor>;

/// An integer buffer that PyTorch's state dict carries and the model computes instead:
/// its name, shape and values.
pub struct Buffer {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<i64>,
}

/// Facts about one architecture, each set in its family's file; `build` makes it with a head of
/// `num_classes`.
pub struct ModelSpec {
    pub name: &'static str,
    pub family: &'static str,
    pub reference: String,
    pub default_size: usize,
    /// The smallest square input the network's downsampling leaves a feature map for
    /// (a test checks it against a forward pass at that size and one pixel less).
    pub min_size: usize,
    pub normalization: Normalization,
    /// The state-dict prefix of the classifier head, dropped from pretrained checkpoints.
    pub head_prefix: &'static str,
    pub arch: Arch,
    /// Where its published ImageNet weights are, for `weights fetch`.
    pub weights_url: Option<String>,
    /// Renames the parameters of checkpoints published under other names.
    pub checkpoint_names: Option<NameMap>,
    /// The integer buffer, if any, that a saved state dict carries beside the variable `name`
    /// (so that a Best Model loads into the reference with `strict=True`).
    pub extra_buffer: Option<fn(&str) -> Option<Buffer>>,
    /// The layer whose activation the explanations read, as a path in the reference model
    /// (pytorch-grad-cam's choice for the family); the family's network records it in the tap.
    pub cam_target: &'static str,
    /// The stage of a backbone parameter, by name, as a sort key: stem lowest, the last stage
    /// highest (`--layer-decay` gives each stage a rate; `stages` ranks the keys).
    pub stage_key: fn(&str) -> u32,
}

impl ModelSpec {
    /// Refuses an `--image-size` below what the network's downsampling needs.
    pub fn check_image_size(&self, size: Option<usize>) -> Result<()> {
        if let Some(size) = size.filter(|&s| s < self.min_size) {
            bail_input!(
                "--image-size {size} is too small for {}: its downsampling needs at least {} pixels; use --image-size {} or more",
                self.name,
                self.min_size,
                self.min_size
            );
        }
        Ok(())
    }

    /// Whether the variable `name` belongs to the classifier head that the task adds.
    pub fn is_head(&self, name: &str) -> bool {
        name.strip_prefix(self.head_prefix).is_some_and(|rest| rest.starts_with('.'))
    }

    /// Each backbone variable's stage, numbered from 0 (the stem) to the number of stages less
    /// one, and the number of stages; the head's variables are left out. A `stage_key` of
    /// `u32::MAX` puts a variable in the last stage.
    pub fn stages<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> (HashMap<&'a str, usize>, usize) {
        let mut keyed: Vec<(&str, u32)> = names.into_iter().filter(|n| !self.is_head(n)).map(|n| (n, (self.stage_key)(n))).collect();
        let last = keyed.iter().map(|&(_, k)| k).filter(|&k| k != u32::MAX).max().unwrap_or(0);
        for (_, k) in &mut keyed {
            *k = (*k).min(last);
        }
        let mut keys: Vec<u32> = keyed.iter().map(|&(_, k)| k).collect();
        keys.sort_unstable();
        keys.dedup();
        let stage = keyed.into_iter().map(|(n, k)| (n, keys.binary_search(&k).expect("a key of this list"))).collect();
        (stage, keys.len())
    }

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

/// A model's safetensors file on timm's hub, by timm's `name.tag`.
pub fn timm_hub(id: &str) -> String {
    format!("https://huggingface.co/timm/{id}/resolve/main/model.safetensors")
}

/// A torchvision weights file (its DEFAULT ImageNet weights, as torchvision 0.28 lists them).
pub fn torchvision_url(file: &str) -> String {
    format!("https://download.pytorch.org/models/{file}")
}

/// The spec of a fixed architecture at 224x224, with nothing extra: families add their facts.
pub fn fixed(
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
        min_size: crate::config::MIN_IMAGE_SIZE,
        normalization: norm,
        head_prefix: head,
        arch: Arch::Fixed(f),
        weights_url: None,
        checkpoint_names: None,
        extra_buffer: None,
        cam_target: "",
        stage_key: |_| 0,
    }
}

/// The number after `prefix` in a parameter's name: `numbered("layer3.1.conv1.weight", "layer")`
/// is 3, `numbered("features.12.0.weight", "features.")` is 12.
pub fn numbered(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// Every architecture, family by family.
pub fn registry() -> &'static [ModelSpec] {
    static REGISTRY: std::sync::OnceLock<Vec<ModelSpec>> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        [
            resnet::specs(),
            efficientnet_lite::specs(),
            efficientnet::specs(),
            mobilenet::specs(),
            densenet::specs(),
            vgg::specs(),
            convnext::specs(),
            vit::specs(),
            swin::specs(),
            metaformer::specs(),
        ]
        .into_iter()
        .flatten()
        .collect()
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

    /// Each family's stages, counted on the built model, and a few parameters placed by hand
    /// from the reference's module tree.
    #[test]
    fn every_family_splits_its_backbone_into_stages() {
        let expected = [
            ("resnet18", 5, vec![("conv1.weight", 0), ("layer1.0.bn1.weight", 1), ("layer4.1.conv2.weight", 4)]),
            ("efficientnet_lite0", 8, vec![("bn1.weight", 0), ("blocks.0.0.conv_dw.weight", 1), ("conv_head.weight", 7)]),
            ("efficientnet_b0", 9, vec![("features.0.0.weight", 0), ("features.8.0.weight", 8)]),
            ("mobilenet_v2", 19, vec![("features.18.0.weight", 18)]),
            ("mobilenet_v3_small", 13, vec![("features.12.0.weight", 12), ("classifier.0.weight", 12)]),
            ("densenet121", 5, vec![("features.norm0.weight", 0), ("features.transition1.conv.weight", 1), ("features.norm5.weight", 4)]),
            ("vgg16", 6, vec![("features.2.weight", 0), ("features.5.weight", 1), ("features.28.weight", 4), ("classifier.0.weight", 5)]),
            ("vgg16_bn", 6, vec![("features.4.weight", 0), ("features.7.weight", 1), ("features.41.running_mean", 4), ("classifier.3.weight", 5)]),
            ("convnext_tiny", 5, vec![("features.0.0.weight", 0), ("features.2.1.weight", 2), ("features.3.0.block.0.weight", 2), ("classifier.0.weight", 4)]),
            ("swin_t", 5, vec![("features.0.0.weight", 0), ("features.6.reduction.weight", 4), ("norm.weight", 4)]),
            ("vit_b_16", 13, vec![("class_token", 0), ("conv_proj.weight", 0), ("encoder.layers.encoder_layer_11.ln_1.weight", 12), ("encoder.ln.weight", 12)]),
            ("caformer_s18", 5, vec![("stem.conv.weight", 0), ("stages.3.blocks.0.norm1.weight", 4), ("head.fc.fc1.weight", 4)]),
            ("convformer_s18", 5, vec![("stages.0.blocks.0.norm1.weight", 1)]),
            ("poolformerv2_s12", 5, vec![("stages.1.blocks.0.norm1.weight", 2), ("head.norm.weight", 4)]),
            ("resnext50_32x4d", 5, vec![("layer2.0.downsample.1.weight", 2)]),
            ("wide_resnet50_2", 5, vec![("layer3.0.conv1.weight", 3)]),
        ];
        let families: std::collections::HashSet<&str> = registry().iter().map(|s| s.family).collect();
        let covered: std::collections::HashSet<&str> = expected.iter().map(|(n, _, _)| find(n).unwrap().family).collect();
        assert_eq!(families, covered, "every family has a case here");
        for (name, count, placed) in expected {
            let spec = find(name).unwrap();
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let _ = spec.build(&vs.root(), 3);
            let names: Vec<String> = vs.variables().into_keys().collect();
            let (stage, n) = spec.stages(names.iter().map(String::as_str));
            assert_eq!(n, count, "{name}: stages");
            assert_eq!(stage.len(), names.iter().filter(|v| !spec.is_head(v)).count(), "{name}: every backbone variable has one");
            assert!(names.iter().any(|v| spec.is_head(v)) && !stage.keys().any(|v| spec.is_head(v)), "{name}: the head has none");
            for (var, s) in placed {
                assert_eq!(stage.get(var), Some(&s), "{name}: {var}");
            }
        }
    }

    #[test]
    fn every_model_names_where_its_weights_are_published() {
        for spec in registry() {
            let url = spec.weights_url.as_deref().unwrap_or_else(|| panic!("{} has no weights URL", spec.name));
            // timm's hub id or torchvision's file starts with the model's base name.
            let base = spec.name.trim_end_matches("_in21ft1k").trim_end_matches("_384");
            let file = url.trim_start_matches("https://huggingface.co/timm/").trim_start_matches("https://download.pytorch.org/models/");
            assert!(file.starts_with(&format!("{base}.")) || file.starts_with(&format!("{base}-")) || file.starts_with(&format!("{base}_")), "{}: {url}", spec.name);
        }
        let tag = |name: &str| find(name).unwrap().weights_url.clone().unwrap();
        assert_eq!(tag("caformer_s18_384_in21ft1k"), timm_hub("caformer_s18.sail_in22k_ft_in1k_384"));
        assert_eq!(tag("resnet18"), timm_hub("resnet18.tv_in1k"));
        assert_eq!(tag("efficientnet_b5"), torchvision_url("efficientnet_b5_lukemelas-1a07897c.pth"));
        assert!(find("swin_t").unwrap().extra_buffer.is_some() && find("resnet18").unwrap().extra_buffer.is_none());
    }

    #[test]
    fn every_model_names_and_records_its_explanation_target() {
        for spec in registry().iter().filter(|s| !["36", "48", "_s24", "101", "152"].iter().any(|n| s.name.contains(n))) {
            assert!(!spec.cam_target.is_empty(), "{} names no target layer", spec.name);
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = spec.build(&vs.root(), 3);
            let x = Tensor::zeros([1, 3, 64, 64], (tch::Kind::Float, tch::Device::Cpu));
            let mut tap = Tap::default();
            let _ = tch::no_grad(|| net.forward_tapped(&x, &mut tap));
            assert!(tap.take().is_none(), "{}: a tap not asked for records nothing", spec.name);
            let mut tap = Tap::wanted();
            let _ = tch::no_grad(|| net.forward_tapped(&x, &mut tap));
            let (output, _, _) = tap.take().unwrap_or_else(|| panic!("{} records no target layer", spec.name));
            assert!(output.dim() >= 3, "{}: the target is spatial", spec.name);
        }
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

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Whether a forward pass of `spec` at `size` x `size` works (tch panics when it does not).
    fn forward_works(spec: &ModelSpec, size: usize) -> bool {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = spec.build(&vs.root(), 2);
        let x = Tensor::zeros([1, 3, size as i64, size as i64], (tch::Kind::Float, tch::Device::Cpu));
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tch::no_grad(|| net.forward(&x, false, false)))).is_ok();
        std::panic::set_hook(hook);
        ok
    }

    /// Each family's smallest model (the sizes are family facts): a forward pass at its
    /// `min_size` works, and one pixel less fails when that is still a size the options allow.
    #[test]
    fn each_familys_min_size_is_the_smallest_that_works() {
        let mut seen = std::collections::HashSet::new();
        for spec in registry().iter().filter(|s| seen.insert(s.family)) {
            assert!(forward_works(spec, spec.min_size), "{} at {}", spec.name, spec.min_size);
            if spec.min_size > crate::config::MIN_IMAGE_SIZE {
                assert!(!forward_works(spec, spec.min_size - 1), "{} also works at {}", spec.name, spec.min_size - 1);
            }
        }
    }

    #[test]
    #[ignore = "probe: prints each model's smallest working input"]
    fn probe_min_sizes() {
        let only = std::env::var("PROBE_MODELS").unwrap_or_default();
        for spec in registry().iter().filter(|s| only.is_empty() || only.split(',').any(|o| o == s.name)) {
            let min = (1..=64).find(|&s| forward_works(spec, s));
            println!("{} {:?}", spec.name, min);
        }
    }
}
