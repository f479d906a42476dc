//! DenseNet-121 (Huang et al., "Densely Connected Convolutional Networks", 2017) as torchvision
//! builds it, with its parameter names (`features.denseblockN.denselayerM.*`,
//! `features.transitionN.*`, `features.norm5`, `classifier`).
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::layers::{batch_norm, conv2d, Act, BN_DEFAULT};
use std::collections::HashMap;

use super::{fixed, torchvision_url, Layout, ModelSpec, Network, Tap};
use crate::data::batches::IMAGENET;

const GROWTH: i64 = 32;
const BN_SIZE: i64 = 4;

/// norm1, relu, 1x1 conv1, norm2, relu, 3x3 conv2; its `GROWTH` new channels join the input.
fn dense_layer(p: nn::Path, c_in: i64) -> impl ModuleT {
    let norm1 = batch_norm(&p / "norm1", c_in, BN_DEFAULT);
    let conv1 = conv2d(&p / "conv1", c_in, BN_SIZE * GROWTH, 1, 1, 1, false);
    let norm2 = batch_norm(&p / "norm2", BN_SIZE * GROWTH, BN_DEFAULT);
    let conv2 = conv2d(&p / "conv2", BN_SIZE * GROWTH, GROWTH, 3, 1, 1, false);
    nn::func_t(move |xs, train| {
        let ys = norm1.forward_act(xs, train, Act::Relu).apply(&conv1);
        let ys = norm2.forward_act(&ys, train, Act::Relu).apply(&conv2);
        Tensor::cat(&[xs, &ys], 1)
    })
}

/// norm, relu, 1x1 conv halving the channels, 2x2 average pooling.
fn transition(p: nn::Path, c_in: i64, c_out: i64) -> impl ModuleT {
    let norm = batch_norm(&p / "norm", c_in, BN_DEFAULT);
    let conv = conv2d(&p / "conv", c_in, c_out, 1, 1, 1, false);
    nn::func_t(move |xs, train| {
        norm.forward_act(xs, train, Act::Relu).apply(&conv).avg_pool2d(
            [2, 2],
            [2, 2],
            [0, 0],
            false,
            true,
            None,
        )
    })
}

fn densenet(p: &nn::Path, blocks: [i64; 4], init: i64, num_classes: i64) -> Network {
    let f = p / "features";
    let conv0 = nn::conv2d(
        &f / "conv0",
        3,
        init,
        7,
        nn::ConvConfig {
            stride: 2,
            padding: 3,
            bias: false,
            ..Default::default()
        },
    );
    let norm0 = batch_norm(&f / "norm0", init, BN_DEFAULT);
    let mut body = nn::seq_t();
    let mut c = init;
    for (i, &n) in blocks.iter().enumerate() {
        let bp = &f / format!("denseblock{}", i + 1);
        for l in 0..n {
            body = body.add(dense_layer(&bp / format!("denselayer{}", l + 1), c));
            c += GROWTH;
        }
        if i + 1 < blocks.len() {
            body = body.add(transition(&f / format!("transition{}", i + 1), c, c / 2));
            c /= 2;
        }
    }
    let norm5 = batch_norm(&f / "norm5", c, BN_DEFAULT);
    let backbone = move |xs: &Tensor, train: bool, tap: &mut Tap| {
        let ys = norm0
            .forward_act(&xs.apply(&conv0), train, Act::Relu)
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
            .apply_t(&body, train);
        let ys = if tap.is_wanted() {
            // Grad-CAM's target is `features[-1]`, norm5. torchvision applies the final ReLU in
            // place on norm5's output, so the reference reads the activation after the ReLU and
            // the gradient at norm5's output, before it.
            let normed = ys.apply_t(&norm5, train);
            let out = normed.relu();
            tap.record_with(&normed, &out, Layout::Nchw);
            out
        } else {
            norm5.forward_act(&ys, train, Act::Relu)
        };
        ys.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    };
    Network::new(
        backbone,
        0.0,
        nn::linear(p / "classifier", c, num_classes, Default::default()),
    )
}

pub fn densenet121(p: &nn::Path, num_classes: i64) -> Network {
    densenet(p, [6, 12, 24, 16], 64, num_classes)
}

/// torchvision's DenseNet file keeps the 2017 names (`denselayer1.norm.1`), which torchvision
/// renames to today's (`denselayer1.norm1`) as it loads them.
fn checkpoint_names(_: &ModelSpec, tensors: HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    tensors.into_iter().map(|(k, v)| (current_name(&k), v)).collect()
}

fn current_name(k: &str) -> String {
    let mut name = k.to_string();
    if k.contains(".denselayer") {
        for layer in ["norm", "relu", "conv"] {
            for i in ["1", "2"] {
                name = name.replace(&format!(".{layer}.{i}."), &format!(".{layer}{i}."));
            }
        }
    }
    name
}

/// The family's spec, with torchvision's weights.
pub fn specs() -> Vec<ModelSpec> {
    vec![ModelSpec {
        // Four stride-2 stages and three 2x2 average pools: below 29 pixels one reaches nothing.
        min_size: 29,
        weights_url: Some(torchvision_url("densenet121-a639ec97.pth")),
        checkpoint_names: Some(checkpoint_names),
        cam_target: "features[-1]",
        // The stem (conv0, norm0), then dense block k with the transition after it; the final
        // norm5 joins block 4.
        stage_key: |n| {
            let n = n.strip_prefix("features.").unwrap_or(n);
            crate::models::numbered(n, "denseblock")
                .or_else(|| crate::models::numbered(n, "transition"))
                .unwrap_or(if n.starts_with("norm5") { 4 } else { 0 })
        },
        ..fixed("densenet121", "DenseNet", "torchvision.models.densenet121", IMAGENET, "classifier", densenet121)
    }]
}
