//! MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018)
//! and MobileNetV3 (Howard et al., "Searching for MobileNetV3", 2019) as torchvision builds
//! them, with its parameter names (`features.N`, `classifier.N`).
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::layers::{
    batch_norm, conv2d, conv_bn_act, make_divisible, pooled, residual_block, squeeze_excitation,
    Act, Bn, BN_DEFAULT,
};
use super::{fixed, torchvision_url, Layout, ModelSpec, Network, Tap};
use crate::data::batches::IMAGENET;

/// V2's stages: expansion, output channels, blocks, first stride.
const V2: [(i64, i64, i64, i64); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// V2's inverted residual: `conv.0` expand (unless 1), depthwise, then a linear 1x1 projection
/// and its batch norm as plain `conv.K`, `conv.K+1`.
fn v2_block(p: nn::Path, c_in: i64, c_out: i64, stride: i64, expand: i64) -> impl ModuleT {
    let p = &p / "conv";
    let mid = c_in * expand;
    let mut layers = nn::seq_t();
    let mut i = 0;
    if expand != 1 {
        layers = layers.add(conv_bn_act(
            &p / i,
            c_in,
            mid,
            1,
            1,
            1,
            BN_DEFAULT,
            Act::Relu6,
        ));
        i += 1;
    }
    layers = layers
        .add(conv_bn_act(
            &p / i,
            mid,
            mid,
            3,
            stride,
            mid,
            BN_DEFAULT,
            Act::Relu6,
        ))
        .add(conv2d(&p / (i + 1), mid, c_out, 1, 1, 1, false))
        .add_fn_t({
            let bn = batch_norm(&p / (i + 2), c_out, BN_DEFAULT);
            move |xs, train| xs.apply_t(&bn, train)
        });
    residual_block(layers, stride == 1 && c_in == c_out, 0.0)
}

pub fn mobilenet_v2(p: &nn::Path, num_classes: i64) -> Network {
    let f = p / "features";
    let mut features = nn::seq_t().add(conv_bn_act(&f / 0, 3, 32, 3, 2, 1, BN_DEFAULT, Act::Relu6));
    let mut c_in = 32;
    let mut i = 1;
    for &(t, c, n, s) in &V2 {
        for b in 0..n {
            features = features.add(v2_block(&f / i, c_in, c, if b == 0 { s } else { 1 }, t));
            c_in = c;
            i += 1;
        }
    }
    features = features.add(conv_bn_act(
        &f / i,
        c_in,
        1280,
        1,
        1,
        1,
        BN_DEFAULT,
        Act::Relu6,
    ));
    let backbone = pooled(features);
    Network::new(
        backbone,
        0.2,
        nn::linear(p / "classifier" / 1, 1280, num_classes, Default::default()),
    )
}

/// One V3 block: input, kernel, expanded and output channels, squeeze-excitation, activation,
/// stride.
struct V3Block(i64, i64, i64, i64, bool, Act, i64);

const RE: Act = Act::Relu;
const HS: Act = Act::Hardswish;

const V3_LARGE: [V3Block; 15] = [
    V3Block(16, 3, 16, 16, false, RE, 1),
    V3Block(16, 3, 64, 24, false, RE, 2),
    V3Block(24, 3, 72, 24, false, RE, 1),
    V3Block(24, 5, 72, 40, true, RE, 2),
    V3Block(40, 5, 120, 40, true, RE, 1),
    V3Block(40, 5, 120, 40, true, RE, 1),
    V3Block(40, 3, 240, 80, false, HS, 2),
    V3Block(80, 3, 200, 80, false, HS, 1),
    V3Block(80, 3, 184, 80, false, HS, 1),
    V3Block(80, 3, 184, 80, false, HS, 1),
    V3Block(80, 3, 480, 112, true, HS, 1),
    V3Block(112, 3, 672, 112, true, HS, 1),
    V3Block(112, 5, 672, 160, true, HS, 2),
    V3Block(160, 5, 960, 160, true, HS, 1),
    V3Block(160, 5, 960, 160, true, HS, 1),
];

const V3_SMALL: [V3Block; 11] = [
    V3Block(16, 3, 16, 16, true, RE, 2),
    V3Block(16, 3, 72, 24, false, RE, 2),
    V3Block(24, 3, 88, 24, false, RE, 1),
    V3Block(24, 5, 96, 40, true, HS, 2),
    V3Block(40, 5, 240, 40, true, HS, 1),
    V3Block(40, 5, 240, 40, true, HS, 1),
    V3Block(40, 5, 120, 48, true, HS, 1),
    V3Block(48, 5, 144, 48, true, HS, 1),
    V3Block(48, 5, 288, 96, true, HS, 2),
    V3Block(96, 5, 576, 96, true, HS, 1),
    V3Block(96, 5, 576, 96, true, HS, 1),
];

const BN_V3: Bn = Bn {
    eps: 1e-3,
    momentum: 0.01,
};

fn v3_block(p: nn::Path, cfg: &V3Block) -> impl ModuleT {
    let &V3Block(c_in, k, mid, c_out, se, act, stride) = cfg;
    let p = &p / "block";
    let mut layers = nn::seq_t();
    let mut i = 0;
    if mid != c_in {
        layers = layers.add(conv_bn_act(&p / i, c_in, mid, 1, 1, 1, BN_V3, act));
        i += 1;
    }
    layers = layers.add(conv_bn_act(&p / i, mid, mid, k, stride, mid, BN_V3, act));
    i += 1;
    if se {
        layers = layers.add(squeeze_excitation(
            &p / i,
            mid,
            make_divisible((mid / 4) as f64, 8),
            Act::Relu,
            true,
        ));
        i += 1;
    }
    layers = layers.add(conv_bn_act(
        &p / i,
        mid,
        c_out,
        1,
        1,
        1,
        BN_V3,
        Act::Identity,
    ));
    residual_block(layers, stride == 1 && c_in == c_out, 0.0)
}

fn mobilenet_v3(p: &nn::Path, blocks: &[V3Block], last_channel: i64, num_classes: i64) -> Network {
    let f = p / "features";
    let mut features = nn::seq_t().add(conv_bn_act(&f / 0, 3, 16, 3, 2, 1, BN_V3, Act::Hardswish));
    for (i, b) in blocks.iter().enumerate() {
        features = features.add(v3_block(&f / (i + 1), b));
    }
    let c_in = blocks[blocks.len() - 1].3;
    let c_last = 6 * c_in;
    features = features.add(conv_bn_act(
        &f / (blocks.len() + 1),
        c_in,
        c_last,
        1,
        1,
        1,
        BN_V3,
        Act::Hardswish,
    ));
    let pre = nn::linear(
        p / "classifier" / 0,
        c_last,
        last_channel,
        Default::default(),
    );
    let backbone = move |xs: &Tensor, train: bool, tap: &mut Tap| {
        let ys = xs.apply_t(&features, train);
        tap.record(&ys, Layout::Nchw);
        ys.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&pre).hardswish()
    };
    Network::new(
        backbone,
        0.2,
        nn::linear(
            p / "classifier" / 3,
            last_channel,
            num_classes,
            Default::default(),
        ),
    )
}

pub fn mobilenet_v3_large(p: &nn::Path, num_classes: i64) -> Network {
    mobilenet_v3(p, &V3_LARGE, 1280, num_classes)
}

pub fn mobilenet_v3_small(p: &nn::Path, num_classes: i64) -> Network {
    mobilenet_v3(p, &V3_SMALL, 1024, num_classes)
}

/// The family's specs, with torchvision's weights.
pub fn specs() -> Vec<ModelSpec> {
    let tv = |name: &'static str, head: &'static str, build: fn(&nn::Path, i64) -> Network, file: &str| ModelSpec {
        weights_url: Some(torchvision_url(file)),
        cam_target: "features[-1]",
        // features.0 (the stem) to the last of features; v3's pretrained classifier.0 joins
        // the last stage.
        stage_key: |n| crate::models::numbered(n, "features.").unwrap_or(u32::MAX),
        ..fixed(name, "MobileNet", &format!("torchvision.models.{name}"), IMAGENET, head, build)
    };
    vec![
        tv("mobilenet_v2", "classifier.1", mobilenet_v2, "mobilenet_v2-7ebf99e0.pth"),
        tv("mobilenet_v3_small", "classifier.3", mobilenet_v3_small, "mobilenet_v3_small-047dcff4.pth"),
        tv("mobilenet_v3_large", "classifier.3", mobilenet_v3_large, "mobilenet_v3_large-5c1a4163.pth"),
    ]
}
