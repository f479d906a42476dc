//! ResNet (He et al., "Deep Residual Learning for Image Recognition", 2015), ResNeXt (Xie et al.,
//! 2017) and Wide ResNet (Zagoruyko & Komodakis, 2016), as torchvision builds them, with its
//! parameter names.
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::layers::{batch_norm, conv2d, Act, BN_DEFAULT};
use super::{fixed, timm_hub, Layout, ModelSpec, Network, Tap};
use crate::data::batches::IMAGENET;

fn head(p: &nn::Path, features: i64, num_classes: i64) -> nn::Linear {
    nn::linear(p / "fc", features, num_classes, Default::default())
}

pub fn resnet18(p: &nn::Path, num_classes: i64) -> Network {
    resnet(p, Block::Basic, [2, 2, 2, 2], 1, 64, num_classes)
}

pub fn resnet34(p: &nn::Path, num_classes: i64) -> Network {
    resnet(p, Block::Basic, [3, 4, 6, 3], 1, 64, num_classes)
}

/// torchvision's BasicBlock: two 3x3 convolutions (the first strided), with a projection
/// shortcut where the shape changes.
fn basic_block(p: nn::Path, c_in: i64, planes: i64, stride: i64) -> impl ModuleT {
    let conv1 = conv2d(&p / "conv1", c_in, planes, 3, stride, 1, false);
    let bn1 = batch_norm(&p / "bn1", planes, BN_DEFAULT);
    let conv2 = conv2d(&p / "conv2", planes, planes, 3, 1, 1, false);
    let bn2 = batch_norm(&p / "bn2", planes, BN_DEFAULT);
    let downsample = (stride != 1 || c_in != planes).then(|| {
        let d = &p / "downsample";
        (
            conv2d(&d / "0", c_in, planes, 1, stride, 1, false),
            batch_norm(&d / "1", planes, BN_DEFAULT),
        )
    });
    nn::func_t(move |xs, train| {
        let ys = bn1.forward_act(&xs.apply(&conv1), train, Act::Relu);
        let ys = ys.apply(&conv2).apply_t(&bn2, train);
        let shortcut = match &downsample {
            Some((c, b)) => xs.apply(c).apply_t(b, train),
            None => xs.shallow_clone(),
        };
        (ys + shortcut).relu_()
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Basic,
    Bottleneck,
}

/// torchvision's Bottleneck: 1x1, 3x3 (grouped, strided), 1x1 expanding by 4, with a projection
/// shortcut where the shape changes.
fn bottleneck(
    p: nn::Path,
    c_in: i64,
    planes: i64,
    stride: i64,
    groups: i64,
    base_width: i64,
) -> impl ModuleT {
    let width = planes * base_width / 64 * groups;
    let c_out = planes * 4;
    let conv1 = conv2d(&p / "conv1", c_in, width, 1, 1, 1, false);
    let bn1 = batch_norm(&p / "bn1", width, BN_DEFAULT);
    let conv2 = conv2d(&p / "conv2", width, width, 3, stride, groups, false);
    let bn2 = batch_norm(&p / "bn2", width, BN_DEFAULT);
    let conv3 = conv2d(&p / "conv3", width, c_out, 1, 1, 1, false);
    let bn3 = batch_norm(&p / "bn3", c_out, BN_DEFAULT);
    let downsample = (stride != 1 || c_in != c_out).then(|| {
        let d = &p / "downsample";
        (
            conv2d(&d / "0", c_in, c_out, 1, stride, 1, false),
            batch_norm(&d / "1", c_out, BN_DEFAULT),
        )
    });
    nn::func_t(move |xs, train| {
        // In-place ReLUs on fresh batch-norm outputs and sums, as torchvision's.
        let ys = bn1.forward_act(&xs.apply(&conv1), train, Act::Relu);
        let ys = bn2.forward_act(&ys.apply(&conv2), train, Act::Relu);
        let ys = ys.apply(&conv3).apply_t(&bn3, train);
        let shortcut = match &downsample {
            Some((c, b)) => xs.apply(c).apply_t(b, train),
            None => xs.shallow_clone(),
        };
        (ys + shortcut).relu_()
    })
}

fn resnet(
    p: &nn::Path,
    block: Block,
    layers: [i64; 4],
    groups: i64,
    base_width: i64,
    num_classes: i64,
) -> Network {
    let expansion = if block == Block::Basic { 1 } else { 4 };
    let conv1 = nn::conv2d(
        p / "conv1",
        3,
        64,
        7,
        nn::ConvConfig {
            stride: 2,
            padding: 3,
            bias: false,
            ..Default::default()
        },
    );
    let bn1 = batch_norm(p / "bn1", 64, BN_DEFAULT);
    let mut body = nn::seq_t();
    let mut c_in = 64;
    for (i, (&n, planes)) in layers.iter().zip([64, 128, 256, 512]).enumerate() {
        let lp = p / format!("layer{}", i + 1);
        for b in 0..n {
            let stride = if b == 0 && i > 0 { 2 } else { 1 };
            body = match block {
                Block::Basic => body.add(basic_block(&lp / b, c_in, planes, stride)),
                Block::Bottleneck => body.add(bottleneck(
                    &lp / b,
                    c_in,
                    planes,
                    stride,
                    groups,
                    base_width,
                )),
            };
            c_in = planes * expansion;
        }
    }
    let backbone = move |xs: &Tensor, train: bool, tap: &mut Tap| {
        let ys = bn1
            .forward_act(&xs.apply(&conv1), train, Act::Relu)
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
            .apply_t(&body, train);
        // Grad-CAM's target: the output of layer4's last block.
        tap.record(&ys, Layout::Nchw);
        ys.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    };
    Network::new(backbone, 0.0, head(p, 512 * expansion, num_classes))
}

pub fn resnet50(p: &nn::Path, num_classes: i64) -> Network {
    resnet(p, Block::Bottleneck, [3, 4, 6, 3], 1, 64, num_classes)
}

pub fn resnet101(p: &nn::Path, num_classes: i64) -> Network {
    resnet(p, Block::Bottleneck, [3, 4, 23, 3], 1, 64, num_classes)
}

pub fn resnet152(p: &nn::Path, num_classes: i64) -> Network {
    resnet(p, Block::Bottleneck, [3, 8, 36, 3], 1, 64, num_classes)
}

pub fn resnext50_32x4d(p: &nn::Path, num_classes: i64) -> Network {
    resnet(p, Block::Bottleneck, [3, 4, 6, 3], 32, 4, num_classes)
}

pub fn wide_resnet50_2(p: &nn::Path, num_classes: i64) -> Network {
    resnet(p, Block::Bottleneck, [3, 4, 6, 3], 1, 128, num_classes)
}

/// The family's specs: torchvision's ResNets, whose own weights timm's hub publishes as
/// `.tv_in1k` safetensors with the same names.
pub fn specs() -> Vec<ModelSpec> {
    let models: [(&'static str, &'static str, fn(&nn::Path, i64) -> Network); 7] = [
        ("resnet18", "ResNet", resnet18),
        ("resnet34", "ResNet", resnet34),
        ("resnet50", "ResNet", resnet50),
        ("resnet101", "ResNet", resnet101),
        ("resnet152", "ResNet", resnet152),
        ("resnext50_32x4d", "ResNeXt", resnext50_32x4d),
        ("wide_resnet50_2", "Wide ResNet", wide_resnet50_2),
    ];
    models
        .into_iter()
        .map(|(name, family, build)| ModelSpec {
            weights_url: Some(timm_hub(&format!("{name}.tv_in1k"))),
            cam_target: "layer4[-1]",
            // The stem (conv1, bn1), then layer1 to layer4.
            stage_key: |n| crate::models::numbered(n, "layer").unwrap_or(0),
            ..fixed(name, family, &format!("torchvision.models.{name}"), IMAGENET, "fc", build)
        })
        .collect()
}
