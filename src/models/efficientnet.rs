//! EfficientNet-B0..B7 (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional
//! Neural Networks", 2019) as torchvision builds them, with its parameter names:
//! `features.0` stem, `features.1..7` stages of MBConv blocks (`block.N`), `features.8` head
//! convolution, `classifier.1` the linear layer.
use tch::nn::{self, ModuleT};

use super::layers::{
    conv_bn_act, make_divisible, pooled, residual_block, squeeze_excitation, Act, Bn, BN_DEFAULT,
};
use super::{torchvision_url, Arch, ModelSpec, Network};
use crate::data::batches::IMAGENET;

/// Width and depth multipliers, dropout and batch-norm settings of one variant.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    width: f64,
    depth: f64,
    dropout: f64,
    bn: Bn,
}

const BN_B5: Bn = Bn {
    eps: 1e-3,
    momentum: 0.01,
};

/// The variants by torchvision name, with their default (evaluation) input size.
pub const VARIANTS: &[(&str, usize, Variant)] = &[
    (
        "efficientnet_b0",
        224,
        Variant {
            width: 1.0,
            depth: 1.0,
            dropout: 0.2,
            bn: BN_DEFAULT,
        },
    ),
    (
        "efficientnet_b1",
        240,
        Variant {
            width: 1.0,
            depth: 1.1,
            dropout: 0.2,
            bn: BN_DEFAULT,
        },
    ),
    (
        "efficientnet_b2",
        288,
        Variant {
            width: 1.1,
            depth: 1.2,
            dropout: 0.3,
            bn: BN_DEFAULT,
        },
    ),
    (
        "efficientnet_b3",
        300,
        Variant {
            width: 1.2,
            depth: 1.4,
            dropout: 0.3,
            bn: BN_DEFAULT,
        },
    ),
    (
        "efficientnet_b4",
        380,
        Variant {
            width: 1.4,
            depth: 1.8,
            dropout: 0.4,
            bn: BN_DEFAULT,
        },
    ),
    (
        "efficientnet_b5",
        456,
        Variant {
            width: 1.6,
            depth: 2.2,
            dropout: 0.4,
            bn: BN_B5,
        },
    ),
    (
        "efficientnet_b6",
        528,
        Variant {
            width: 1.8,
            depth: 2.6,
            dropout: 0.5,
            bn: BN_B5,
        },
    ),
    (
        "efficientnet_b7",
        600,
        Variant {
            width: 2.0,
            depth: 3.1,
            dropout: 0.5,
            bn: BN_B5,
        },
    ),
];

/// B0's stages: expansion, kernel, stride, input and output channels, blocks.
const STAGES: [(i64, i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

/// MBConv: expand (unless the ratio is 1), depthwise, squeeze-excitation, project; residual
/// with stochastic depth where shapes allow.
fn mbconv(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    expand: i64,
    k: i64,
    stride: i64,
    sd_prob: f64,
    bn: Bn,
) -> impl ModuleT {
    let p = &p / "block";
    let mid = make_divisible((c_in * expand) as f64, 8);
    let mut layers = nn::seq_t();
    let mut i = 0;
    if mid != c_in {
        layers = layers.add(conv_bn_act(&p / i, c_in, mid, 1, 1, 1, bn, Act::Silu));
        i += 1;
    }
    layers = layers
        .add(conv_bn_act(&p / i, mid, mid, k, stride, mid, bn, Act::Silu))
        .add(squeeze_excitation(
            &p / (i + 1),
            mid,
            (c_in / 4).max(1),
            Act::Silu,
            false,
        ))
        .add(conv_bn_act(
            &p / (i + 2),
            mid,
            c_out,
            1,
            1,
            1,
            bn,
            Act::Identity,
        ));
    residual_block(layers, stride == 1 && c_in == c_out, sd_prob)
}

pub fn build(p: &nn::Path, v: &Variant, num_classes: i64) -> Network {
    let f = p / "features";
    let ch = |c: i64| make_divisible(c as f64 * v.width, 8);
    let depth = |n: i64| (n as f64 * v.depth).ceil() as i64;
    let stem = ch(STAGES[0].3);
    let mut features = nn::seq_t().add(conv_bn_act(&f / 0, 3, stem, 3, 2, 1, v.bn, Act::Silu));
    let total: i64 = STAGES.iter().map(|s| depth(s.5)).sum();
    let mut block_id = 0;
    let mut c_in = stem;
    for (s, &(expand, k, stride, _, c_out, n)) in STAGES.iter().enumerate() {
        let c_out = ch(c_out);
        for b in 0..depth(n) {
            let sd_prob = 0.2 * block_id as f64 / total as f64;
            let stride = if b == 0 { stride } else { 1 };
            features = features.add(mbconv(
                &f / (s + 1) / b,
                c_in,
                c_out,
                expand,
                k,
                stride,
                sd_prob,
                v.bn,
            ));
            c_in = c_out;
            block_id += 1;
        }
    }
    let last = 4 * c_in;
    features = features.add(conv_bn_act(&f / 8, c_in, last, 1, 1, 1, v.bn, Act::Silu));
    let backbone = pooled(features);
    Network::new(
        backbone,
        v.dropout,
        nn::linear(p / "classifier" / 1, last, num_classes, Default::default()),
    )
}

/// The family's specs, with torchvision's weights for each size.
pub fn specs() -> Vec<ModelSpec> {
    let files = [
        "efficientnet_b0_rwightman-7f5810bc.pth",
        "efficientnet_b1-c27df63c.pth",
        "efficientnet_b2_rwightman-c35c1473.pth",
        "efficientnet_b3_rwightman-b3899882.pth",
        "efficientnet_b4_rwightman-23ab8bcd.pth",
        "efficientnet_b5_lukemelas-1a07897c.pth",
        "efficientnet_b6_lukemelas-24a108a5.pth",
        "efficientnet_b7_lukemelas-c5b4e57e.pth",
    ];
    VARIANTS
        .iter()
        .zip(files)
        .map(|((name, size, v), file)| ModelSpec {
            name,
            family: "EfficientNet",
            reference: format!("torchvision.models.{name}"),
            default_size: *size,
            min_size: crate::config::MIN_IMAGE_SIZE,
            normalization: IMAGENET,
            head_prefix: "classifier.1",
            arch: Arch::EfficientNet(v),
            weights_url: Some(torchvision_url(file)),
            checkpoint_names: None,
            extra_buffer: None,
            cam_target: "features[-1]",
            // torchvision's own stages: features.0 (the stem) to features.8 (the final convolution).
            stage_key: |n| crate::models::numbered(n, "features.").unwrap_or(0),
        })
        .collect()
}
