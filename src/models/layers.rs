//! Building blocks shared by the torchvision ports, named as torchvision names them:
//! `Conv2dNormActivation` (a Sequential of conv `0` and batch norm `1`), `SqueezeExcitation`
//! (`fc1`, `fc2`), `StochasticDepth` and `LayerNorm2d`.
use tch::nn::{self, ModuleT};
use tch::Tensor;

use super::kernels;
use super::{Layout, Tap};

/// The activations torchvision's blocks use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Identity,
    Relu,
    Relu6,
    Silu,
    Hardswish,
}

impl Act {
    /// Applies the activation to `xs`, a fresh output of a norm or a convolution: ReLU and ReLU6
    /// work in place (their backward needs only their result), as torchvision's do.
    pub fn apply(self, mut xs: Tensor) -> Tensor {
        match self {
            Act::Identity => xs,
            Act::Relu => {
                let _ = xs.relu_();
                xs
            }
            Act::Relu6 => {
                let _ = xs.relu6_();
                xs
            }
            Act::Silu => xs.silu(),
            Act::Hardswish => xs.hardswish(),
        }
    }
}

/// A convolution with "same" padding for odd kernels, torchvision's way (`(k - 1) / 2`).
pub fn conv2d(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    groups: i64,
    bias: bool,
) -> Conv {
    let cfg = nn::ConvConfig {
        stride,
        padding: (k - 1) / 2,
        groups,
        bias,
        ..Default::default()
    };
    Conv::new(p, c_in, c_out, k, cfg)
}

/// A 2-d convolution (tch's `Conv2D`, whose variables and initialisation it keeps) that routes a
/// depthwise one (one filter per channel) through the depthwise kernel of `kernels`.
#[derive(Debug)]
pub struct Conv {
    inner: nn::Conv2D,
    /// Stride and padding when the convolution is depthwise with zero padding.
    depthwise: Option<(i64, i64)>,
}

impl Conv {
    pub fn new(p: nn::Path, c_in: i64, c_out: i64, k: i64, cfg: nn::ConvConfig) -> Conv {
        let depthwise = (cfg.groups == c_in && c_in == c_out && cfg.dilation == 1
            && matches!(cfg.padding_mode, nn::PaddingMode::Zeros))
        .then_some((cfg.stride, cfg.padding));
        Conv { inner: nn::conv2d(p, c_in, c_out, k, cfg), depthwise }
    }
}

impl nn::Module for Conv {
    fn forward(&self, xs: &Tensor) -> Tensor {
        if let Some((stride, padding)) = self.depthwise {
            if let Some(ys) = kernels::depthwise_conv2d(xs, &self.inner.ws, self.inner.bs.as_ref(), stride, padding) {
                return ys;
            }
        }
        xs.apply(&self.inner)
    }
}

/// Batch-norm settings: torchvision's default (eps 1e-5, momentum 0.1) or a model's own.
#[derive(Clone, Copy, Debug)]
pub struct Bn {
    pub eps: f64,
    pub momentum: f64,
}

pub const BN_DEFAULT: Bn = Bn {
    eps: 1e-5,
    momentum: 0.1,
};

/// A 2-d batch norm (tch's `BatchNorm`, whose variables `weight`, `bias`, `running_mean` and
/// `running_var` it keeps) that runs training-mode batches of channels-last float32 maps through
/// the fused kernel of `kernels`, with the ReLU or ReLU6 that follows it; libtorch's batch norm
/// and activation otherwise (evaluation, other dtypes and devices, autocast), with the same values.
#[derive(Debug)]
pub struct BatchNorm {
    inner: nn::BatchNorm,
    bn: Bn,
}

pub fn batch_norm(p: nn::Path, c: i64, bn: Bn) -> BatchNorm {
    let config = nn::BatchNormConfig {
        eps: bn.eps,
        momentum: bn.momentum,
        ..Default::default()
    };
    BatchNorm { inner: nn::batch_norm2d(p, c, config), bn }
}

impl BatchNorm {
    /// `act(batch_norm(xs))`.
    pub fn forward_act(&self, xs: &Tensor, train: bool, act: Act) -> Tensor {
        if train {
            let (lo, hi, rest) = match act {
                Act::Relu => (0.0, f64::INFINITY, Act::Identity),
                Act::Relu6 => (0.0, 6.0, Act::Identity),
                other => (f64::NEG_INFINITY, f64::INFINITY, other),
            };
            if let (Some(weight), Some(bias)) = (&self.inner.ws, &self.inner.bs) {
                let params = kernels::BatchNormParams {
                    weight,
                    bias,
                    running_mean: &self.inner.running_mean,
                    running_var: &self.inner.running_var,
                    momentum: self.bn.momentum,
                    eps: self.bn.eps,
                };
                if let Some(ys) = kernels::batch_norm_act(xs, &params, lo, hi) {
                    return rest.apply(ys);
                }
            }
        }
        act.apply(xs.apply_t(&self.inner, train))
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_act(xs, train, Act::Identity)
    }
}

/// torchvision's `Conv2dNormActivation`: conv (no bias) at `p.0`, batch norm at `p.1`, activation.
pub fn conv_bn_act(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    groups: i64,
    bn: Bn,
    act: Act,
) -> impl ModuleT {
    let conv = conv2d(&p / "0", c_in, c_out, k, stride, groups, false);
    let norm = batch_norm(&p / "1", c_out, bn);
    nn::func_t(move |xs, train| act.apply(xs.apply(&conv).apply_t(&norm, train)))
}

/// torchvision's `SqueezeExcitation`: global average, `fc1`, activation, `fc2`, gate.
pub fn squeeze_excitation(
    p: nn::Path,
    c: i64,
    squeeze: i64,
    act: Act,
    hard_gate: bool,
) -> impl ModuleT {
    let fc1 = conv2d(&p / "fc1", c, squeeze, 1, 1, 1, true);
    let fc2 = conv2d(&p / "fc2", squeeze, c, 1, 1, 1, true);
    nn::func_t(move |xs, _train| {
        let s = act
            .apply(xs.adaptive_avg_pool2d([1, 1]).apply(&fc1))
            .apply(&fc2);
        let gate = if hard_gate {
            s.hardsigmoid()
        } else {
            s.sigmoid()
        };
        xs * gate
    })
}

/// torchvision's `StochasticDepth` in "row" mode: while training, drops the whole residual
/// branch of each sample with probability `p` and rescales the kept ones.
pub fn stochastic_depth(xs: Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return xs;
    }
    let keep = 1.0 - p;
    let mut shape = vec![1; xs.dim()];
    shape[0] = xs.size()[0];
    let noise = Tensor::empty(shape, (xs.kind(), xs.device())).bernoulli_float_(keep);
    xs * (noise / keep)
}

/// A block's layers with a shortcut around them where `residual` (input and output shapes
/// agree), the branch dropped per sample with probability `sd_prob` while training.
pub fn residual_block(layers: nn::SequentialT, residual: bool, sd_prob: f64) -> impl ModuleT {
    nn::func_t(move |xs, train| {
        let ys = xs.apply_t(&layers, train);
        if residual {
            stochastic_depth(ys, sd_prob, train) + xs
        } else {
            ys
        }
    })
}

/// A backbone of `features` followed by global average pooling: one feature vector per image.
/// Grad-CAM's target is the last feature block (torchvision's `features[-1]`).
pub fn pooled(features: nn::SequentialT) -> impl Fn(&Tensor, bool, &mut Tap) -> Tensor + Send {
    move |xs: &Tensor, train: bool, tap: &mut Tap| {
        let ys = xs.apply_t(&features, train);
        tap.record(&ys, Layout::Nchw);
        ys.adaptive_avg_pool2d([1, 1]).flatten(1, -1)
    }
}

/// A LayerNorm over the last axis (`weight`, `bias`).
pub fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    nn::layer_norm(
        p,
        vec![dim],
        nn::LayerNormConfig {
            eps,
            ..Default::default()
        },
    )
}

/// ConvNeXt's `LayerNorm2d`: LayerNorm over the channels of an NCHW tensor.
pub fn layer_norm_2d(xs: &Tensor, ln: &nn::LayerNorm) -> Tensor {
    xs.permute([0, 2, 3, 1]).apply(ln).permute([0, 3, 1, 2])
}

/// torchvision's `_make_divisible`: `v` rounded to a multiple of `divisor`, never more than 10%
/// below `v`.
pub fn make_divisible(v: f64, divisor: i64) -> i64 {
    let mut new_v = divisor.max((v + divisor as f64 / 2.0) as i64 / divisor * divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn make_divisible_matches_torchvision() {
        // Values torchvision gives for EfficientNet-B2..B7 widths.
        assert_eq!(make_divisible(32.0 * 1.1, 8), 32);
        assert_eq!(make_divisible(16.0 * 1.4, 8), 24);
        assert_eq!(make_divisible(320.0 * 1.8, 8), 576);
        assert_eq!(make_divisible(40.0 * 1.2, 8), 48);
        assert_eq!(make_divisible(3.0, 8), 8);
    }

    #[test]
    fn batch_norm_with_each_activation_matches_libtorch_in_training_and_evaluation() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let bn = batch_norm(vs.root() / "bn", 24, BN_DEFAULT);
        tch::no_grad(|| {
            let mut w = bn.inner.ws.as_ref().unwrap().shallow_clone();
            w.copy_(&(Tensor::arange(24, (Kind::Float, tch::Device::Cpu)) * 0.37).sin().g_mul_scalar(8.0));
        });
        let n: i64 = 4 * 24 * 7 * 7;
        let base = (Tensor::arange(n, (Kind::Float, tch::Device::Cpu)) * 0.7311).sin().g_mul_scalar(3.0).reshape([4, 24, 7, 7]);
        let x = crate::precision::to_channels_last(&base);
        for act in [Act::Identity, Act::Relu, Act::Relu6, Act::Silu, Act::Hardswish] {
            for train in [true, false] {
                let (rm, rv) = (bn.inner.running_mean.copy(), bn.inner.running_var.copy());
                let reference = act.apply(x.batch_norm(bn.inner.ws.as_ref(), bn.inner.bs.as_ref(), Some(&rm), Some(&rv), train, 0.1, 1e-5, false));
                if act == Act::Relu6 {
                    assert!(reference.eq(6.0).any().int64_value(&[]) == 1, "the case reaches ReLU6's top");
                }
                let ours = bn.forward_act(&x, train, act);
                let d = (&ours - &reference).abs().max().double_value(&[]);
                assert!(d < 1e-5, "{act:?} train {train}: differs by {d}");
                assert!(bn.inner.running_mean.allclose(&rm, 1e-6, 1e-7, false), "{act:?} train {train}: running mean");
                assert!(bn.inner.running_var.allclose(&rv, 1e-6, 1e-7, false), "{act:?} train {train}: running variance");
            }
        }
    }

    #[test]
    fn stochastic_depth_is_identity_in_eval_and_drops_whole_rows_in_training() {
        let x = Tensor::ones([64, 3, 2, 2], (Kind::Float, tch::Device::Cpu));
        assert!(stochastic_depth(x.shallow_clone(), 0.5, false).equal(&x));
        tch::manual_seed(1);
        let y = stochastic_depth(x.shallow_clone(), 0.5, true);
        let per_row = y.sum_dim_intlist([1, 2, 3].as_slice(), false, Kind::Float);
        // Each sample is either dropped (0) or kept and scaled by 2 (12 * 2 = 24).
        let rows: Vec<f32> = Vec::try_from(per_row).unwrap();
        assert!(rows.iter().all(|&r| r == 0.0 || r == 24.0), "{rows:?}");
        assert!(rows.contains(&0.0) && rows.contains(&24.0));
    }
}
