//! VGG-16 (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
//! Recognition", 2015), with and without batch norm, as torchvision builds it: `features.N`
//! numbered as its Sequential numbers them, `classifier.0/3/6`.
use tch::{nn, Tensor};

use super::layers::{batch_norm, conv2d, Act, BN_DEFAULT};
use super::{fixed, torchvision_url, Layout, ModelSpec, Network, Tap};
use crate::data::batches::IMAGENET;

/// Configuration "D": channels of each 3x3 convolution, 0 for a 2x2 max pooling.
const D: [i64; 18] = [
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];

fn vgg16_with(p: &nn::Path, with_bn: bool, num_classes: i64) -> Network {
    let f = p / "features";
    let mut features = nn::seq_t();
    let mut index = 0;
    let mut c_in = 3;
    for &c in &D {
        if c == 0 {
            features = features.add_fn(|xs| xs.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false));
            index += 1;
            continue;
        }
        features = features.add(conv2d(&f / index, c_in, c, 3, 1, 1, true));
        if with_bn {
            let bn = batch_norm(&f / (index + 1), c, BN_DEFAULT);
            features = features.add_fn_t(move |xs, train| bn.forward_act(xs, train, Act::Relu));
        } else {
            features = features.add_fn(|xs| xs.relu());
        }
        index += if with_bn { 3 } else { 2 };
        c_in = c;
    }
    let cl = p / "classifier";
    let fc0 = nn::linear(&cl / 0, 512 * 7 * 7, 4096, Default::default());
    let fc3 = nn::linear(&cl / 3, 4096, 4096, Default::default());
    let backbone = move |xs: &Tensor, train: bool, tap: &mut Tap| {
        let ys = xs.apply_t(&features, train);
        // Grad-CAM's target: `features[-1]`, the last max pooling.
        tap.record(&ys, Layout::Nchw);
        ys.adaptive_avg_pool2d([7, 7])
            .flatten(1, -1)
            .apply(&fc0)
            .relu()
            .dropout(0.5, train)
            .apply(&fc3)
            .relu()
    };
    Network::new(
        backbone,
        0.5,
        nn::linear(&cl / 6, 4096, num_classes, Default::default()),
    )
}

/// The stage of a parameter: the convolutions between two max poolings form one (0 to 4), the
/// two pretrained linear layers of the classifier a sixth.
fn stage_key(name: &str, with_bn: bool) -> u32 {
    let Some(at) = super::numbered(name, "features.") else { return 5 };
    let (mut index, mut pools) = (0, 0);
    for &c in &D {
        if index > at {
            break;
        }
        if c == 0 {
            pools += 1;
        }
        index += if c == 0 { 1 } else if with_bn { 3 } else { 2 };
    }
    pools
}

pub fn vgg16(p: &nn::Path, num_classes: i64) -> Network {
    vgg16_with(p, false, num_classes)
}

pub fn vgg16_bn(p: &nn::Path, num_classes: i64) -> Network {
    vgg16_with(p, true, num_classes)
}

/// The family's specs, with torchvision's weights.
pub fn specs() -> Vec<ModelSpec> {
    let tv = |name: &'static str, build: fn(&nn::Path, i64) -> Network, file: &str, stage_key: fn(&str) -> u32| ModelSpec {
        // Five 2x2 max pools without padding: 32 pixels leave one.
        min_size: 32,
        weights_url: Some(torchvision_url(file)),
        cam_target: "features[-1]",
        stage_key,
        ..fixed(name, "VGG", &format!("torchvision.models.{name}"), IMAGENET, "classifier.6", build)
    };
    vec![
        tv("vgg16", vgg16, "vgg16-397923af.pth", |n| stage_key(n, false)),
        tv("vgg16_bn", vgg16_bn, "vgg16_bn-6c64b313.pth", |n| stage_key(n, true)),
    ]
}
