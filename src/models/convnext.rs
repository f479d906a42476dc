//! ConvNeXt (Liu et al., "A ConvNet for the 2020s", 2022) as torchvision builds it, with its
//! parameter names: `features.0` stem, `features.1/3/5/7` stages of CNBlocks (`block.0` 7x7
//! depthwise, `block.2` LayerNorm, `block.3`/`block.5` the MLP, `layer_scale`), `features.2/4/6`
//! downsampling, `classifier.0` LayerNorm and `classifier.2` the linear layer.
use tch::nn::{self, Init, ModuleT};
use tch::Tensor;

use super::layers::{layer_norm, layer_norm_2d, stochastic_depth, Conv};
use super::{torchvision_url, Arch, Layout, ModelSpec, Network, Tap};
use crate::data::batches::IMAGENET;

const EPS: f64 = 1e-6;

/// Stage widths and depths and the stochastic-depth rate of one variant.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    dims: [i64; 4],
    depths: [i64; 4],
    drop_path: f64,
}

pub const VARIANTS: &[(&str, Variant)] = &[
    (
        "convnext_tiny",
        Variant {
            dims: [96, 192, 384, 768],
            depths: [3, 3, 9, 3],
            drop_path: 0.1,
        },
    ),
    (
        "convnext_small",
        Variant {
            dims: [96, 192, 384, 768],
            depths: [3, 3, 27, 3],
            drop_path: 0.4,
        },
    ),
    (
        "convnext_base",
        Variant {
            dims: [128, 256, 512, 1024],
            depths: [3, 3, 27, 3],
            drop_path: 0.5,
        },
    ),
];

fn cn_block(p: nn::Path, dim: i64, sd_prob: f64) -> impl ModuleT {
    let b = &p / "block";
    let cfg = nn::ConvConfig {
        padding: 3,
        groups: dim,
        ..Default::default()
    };
    let dwconv = Conv::new(&b / 0, dim, dim, 7, cfg);
    let norm = layer_norm(&b / 2, dim, EPS);
    let fc1 = nn::linear(&b / 3, dim, 4 * dim, Default::default());
    let fc2 = nn::linear(&b / 5, 4 * dim, dim, Default::default());
    let layer_scale = p.var("layer_scale", &[dim, 1, 1], Init::Const(1e-6));
    nn::func_t(move |xs, train| {
        let ys = xs
            .apply(&dwconv)
            .permute([0, 2, 3, 1])
            .apply(&norm)
            .apply(&fc1)
            .gelu("none")
            .apply(&fc2);
        let ys = ys.permute([0, 3, 1, 2]) * &layer_scale;
        stochastic_depth(ys, sd_prob, train) + xs
    })
}

pub fn build(p: &nn::Path, v: &Variant, num_classes: i64) -> Network {
    let f = p / "features";
    let stem_cfg = nn::ConvConfig {
        stride: 4,
        ..Default::default()
    };
    let stem_conv = nn::conv2d(&f / 0 / 0, 3, v.dims[0], 4, stem_cfg);
    let stem_norm = layer_norm(&f / 0 / 1, v.dims[0], EPS);
    let mut body = nn::seq_t();
    let total: i64 = v.depths.iter().sum();
    let mut block_id = 0;
    for (s, (&dim, &depth)) in v.dims.iter().zip(&v.depths).enumerate() {
        if s > 0 {
            let dp = &f / (2 * s);
            let norm = layer_norm(&dp / 0, v.dims[s - 1], EPS);
            let down = nn::conv2d(
                &dp / 1,
                v.dims[s - 1],
                dim,
                2,
                nn::ConvConfig {
                    stride: 2,
                    ..Default::default()
                },
            );
            body = body.add_fn(move |xs| layer_norm_2d(xs, &norm).apply(&down));
        }
        for b in 0..depth {
            let sd_prob = v.drop_path * block_id as f64 / (total - 1) as f64;
            body = body.add(cn_block(&f / (2 * s + 1) / b, dim, sd_prob));
            block_id += 1;
        }
    }
    let last = v.dims[3];
    let head_norm = layer_norm(p / "classifier" / 0, last, EPS);
    let backbone = move |xs: &Tensor, train: bool, tap: &mut Tap| {
        let ys = layer_norm_2d(&xs.apply(&stem_conv), &stem_norm).apply_t(&body, train);
        // Grad-CAM's target: the last stage (`features[-1]`).
        tap.record(&ys, Layout::Nchw);
        layer_norm_2d(&ys.adaptive_avg_pool2d([1, 1]), &head_norm).flatten(1, -1)
    };
    Network::new(
        backbone,
        0.0,
        nn::linear(p / "classifier" / 2, last, num_classes, Default::default()),
    )
}

/// The stage of a parameter of torchvision's ConvNeXt (and Swin, laid out alike): features.0 is
/// the stem, features.1 the first stage, and each downsampling (features.2, .4, .6) opens the
/// stage after it, as timm groups them; the classifier's pretrained norm joins the last stage.
pub fn stage_key(name: &str) -> u32 {
    match super::numbered(name, "features.") {
        Some(0) => 0,
        Some(i) => (i + 2) / 2,
        None => u32::MAX,
    }
}

/// The family's specs, with torchvision's weights.
pub fn specs() -> Vec<ModelSpec> {
    let files = ["convnext_tiny-983f1562.pth", "convnext_small-0c510722.pth", "convnext_base-6075fbad.pth"];
    VARIANTS
        .iter()
        .zip(files)
        .map(|((name, v), file)| ModelSpec {
            name,
            family: "ConvNeXt",
            reference: format!("torchvision.models.{name}"),
            default_size: 224,
            // A 4x4 stem and three 2x2 downsamplings, none padded: 32 pixels leave one.
            min_size: 32,
            normalization: IMAGENET,
            head_prefix: "classifier.2",
            arch: Arch::ConvNeXt(v),
            weights_url: Some(torchvision_url(file)),
            checkpoint_names: None,
            extra_buffer: None,
            cam_target: "features[-1]",
            stage_key: crate::models::convnext::stage_key,
        })
        .collect()
}
