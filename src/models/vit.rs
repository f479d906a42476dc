//! ViT-B/16 (Dosovitskiy et al., "An Image is Worth 16x16 Words", 2021) as torchvision builds
//! it, with its parameter names: `conv_proj`, `class_token`, `encoder.pos_embedding`,
//! `encoder.layers.encoder_layer_N.{ln_1, self_attention, ln_2, mlp.0, mlp.3}`, `encoder.ln`,
//! `heads.head`.
//!
//! The position embedding is made for 224x224 (a 14x14 grid); another input size interpolates it
//! to that grid as torchvision's `interpolate_embeddings` does (bicubic, corners aligned), so any
//! size that is a multiple of 16 works with the same weights.
use tch::nn::{self, Init};
use tch::Tensor;

use super::layers::layer_norm;
use super::{fixed, torchvision_url, Layout, ModelSpec, Network, Tap};
use crate::data::batches::IMAGENET;

const PATCH: i64 = 16;
const GRID: i64 = 224 / PATCH;
const HIDDEN: i64 = 768;
const HEADS: i64 = 12;
const LAYERS: i64 = 12;
const MLP: i64 = 3072;
const EPS: f64 = 1e-6;

/// nn.MultiheadAttention with its packed `in_proj_weight`/`in_proj_bias` and `out_proj`.
fn self_attention(p: nn::Path) -> impl Fn(&Tensor) -> Tensor {
    let in_w = p.var(
        "in_proj_weight",
        &[3 * HIDDEN, HIDDEN],
        Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    );
    let in_b = p.var("in_proj_bias", &[3 * HIDDEN], Init::Const(0.0));
    let out = nn::linear(&p / "out_proj", HIDDEN, HIDDEN, Default::default());
    move |xs: &Tensor| {
        let (b, n) = (xs.size()[0], xs.size()[1]);
        let qkv = xs
            .linear(&in_w, Some(&in_b))
            .reshape([b, n, 3, HEADS, HIDDEN / HEADS])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let ys = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        ys.transpose(1, 2).reshape([b, n, HIDDEN]).apply(&out)
    }
}

/// One encoder layer. Each records its `ln_1` output, so that the last layer's is left in the tap:
/// Grad-CAM's target for ViT.
fn encoder_layer(p: nn::Path) -> impl Fn(&Tensor, &mut Tap) -> Tensor + Send {
    let ln_1 = layer_norm(&p / "ln_1", HIDDEN, EPS);
    let attention = self_attention(&p / "self_attention");
    let ln_2 = layer_norm(&p / "ln_2", HIDDEN, EPS);
    let fc1 = nn::linear(&p / "mlp" / 0, HIDDEN, MLP, Default::default());
    let fc2 = nn::linear(&p / "mlp" / 3, MLP, HIDDEN, Default::default());
    move |xs: &Tensor, tap: &mut Tap| {
        let normed = xs.apply(&ln_1);
        tap.record(&normed, Layout::ClassTokenThenGrid);
        let xs = xs + attention(&normed);
        let ys = xs.apply(&ln_2).apply(&fc1).gelu("none").apply(&fc2);
        xs + ys
    }
}

/// The position embedding for a `gh` x `gw` grid of patches.
fn position_embedding(pos: &Tensor, gh: i64, gw: i64) -> Tensor {
    if gh == GRID && gw == GRID {
        return pos.shallow_clone();
    }
    let token = pos.narrow(1, 0, 1);
    let grid = pos
        .narrow(1, 1, GRID * GRID)
        .permute([0, 2, 1])
        .reshape([1, HIDDEN, GRID, GRID]);
    let grid = grid.upsample_bicubic2d([gh, gw], true, None, None);
    Tensor::cat(
        &[token, grid.reshape([1, HIDDEN, gh * gw]).permute([0, 2, 1])],
        1,
    )
}

pub fn vit_b_16(p: &nn::Path, num_classes: i64) -> Network {
    let conv_proj = nn::conv2d(
        p / "conv_proj",
        3,
        HIDDEN,
        PATCH,
        nn::ConvConfig {
            stride: PATCH,
            ..Default::default()
        },
    );
    let class_token = p.var("class_token", &[1, 1, HIDDEN], Init::Const(0.0));
    let e = p / "encoder";
    let pos = e.var(
        "pos_embedding",
        &[1, GRID * GRID + 1, HIDDEN],
        Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
    );
    let layers: Vec<_> = (0..LAYERS).map(|i| encoder_layer(&e / "layers" / format!("encoder_layer_{i}"))).collect();
    let ln = layer_norm(&e / "ln", HIDDEN, EPS);
    let backbone = move |xs: &Tensor, _train: bool, tap: &mut Tap| {
        let ys = xs.apply(&conv_proj);
        let (b, gh, gw) = (ys.size()[0], ys.size()[2], ys.size()[3]);
        let tokens = ys.reshape([b, HIDDEN, gh * gw]).permute([0, 2, 1]);
        let tokens = Tensor::cat(&[class_token.expand([b, 1, HIDDEN], false), tokens], 1);
        let tokens = tokens + position_embedding(&pos, gh, gw);
        let tokens = layers.iter().fold(tokens, |t, layer| layer(&t, tap));
        tokens.apply(&ln).select(1, 0)
    };
    Network::new(
        backbone,
        0.0,
        nn::linear(
            p / "heads" / "head",
            HIDDEN,
            num_classes,
            Default::default(),
        ),
    )
}

/// The family's spec, with torchvision's weights.
pub fn specs() -> Vec<ModelSpec> {
    vec![ModelSpec {
        weights_url: Some(torchvision_url("vit_b_16-c867db91.pth")),
        cam_target: "encoder.layers[-1].ln_1",
        // The embedding (conv_proj, class token, positions), then each encoder layer, the final
        // norm joining the last, as timm's layer decay groups a ViT.
        stage_key: |n| match crate::models::numbered(n, "encoder.layers.encoder_layer_") {
            Some(k) => k + 1,
            None if n.starts_with("encoder.ln") => u32::MAX,
            None => 0,
        },
        ..fixed("vit_b_16", "Vision Transformer", "torchvision.models.vit_b_16", IMAGENET, "heads.head", vit_b_16)
    }]
}
