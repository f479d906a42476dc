//! Three hand-written CPU kernels, reached through the C++ shim that build.rs compiles against
//! libtorch: StarReLU in one pass each way (`csrc/star_relu.cpp`), the weight gradient of a
//! depthwise convolution (`csrc/depthwise_conv.cpp`) and training-mode batch norm fused with the
//! ReLU or ReLU6 after it (`csrc/batch_norm.cpp`), the places where libtorch's own CPU code
//! spent a large share of a training step on these models. Each applies only to dense
//! float32 CPU tensors without autocast and returns `None` otherwise; the caller then runs the
//! ordinary libtorch operations, which give the same values.
use std::ffi::c_void;

use tch::Tensor;

use crate::shim::{il_star_relu, il_depthwise_conv2d, il_batch_norm_act};

fn ptr(t: &Tensor) -> *const c_void {
    t.as_ptr() as *const c_void
}

/// Runs one shim call that fills `out`: `Some(out)` when it was done, `None` when the case is not
/// handled there. A libtorch error inside is raised as tch raises its own: a panic with the message.
fn call(name: &str, f: impl FnOnce(*mut c_void, *mut u8, usize) -> i32) -> Option<Tensor> {
    let mut out = Tensor::new();
    let mut err = [0u8; 512];
    match f(out.as_mut_ptr() as *mut c_void, err.as_mut_ptr(), err.len()) {
        1 => Some(out),
        0 => None,
        _ => panic!("{name}: {}", crate::error::shim_message(&err)),
    }
}

/// StarReLU, `scale * relu(xs)^2 + bias` with one-element `scale` and `bias`.
pub fn star_relu(xs: &Tensor, scale: &Tensor, bias: &Tensor) -> Option<Tensor> {
    // SAFETY: the inputs and `out` are live tensor handles for the whole call; the shim only
    // assigns to `out` and writes a NUL-terminated message of at most `len` bytes into `err`.
    call("StarReLU", |out, err, len| unsafe { il_star_relu(ptr(xs), ptr(scale), ptr(bias), out, err, len) })
}

/// A depthwise convolution: `weight` is C x 1 x k x k for C input channels; square stride and
/// zero padding.
pub fn depthwise_conv2d(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>, stride: i64, padding: i64) -> Option<Tensor> {
    let bias = bias.map_or(std::ptr::null(), ptr);
    // SAFETY: as in `star_relu`; a null `bias` means none.
    call("depthwise convolution", |out, err, len| unsafe {
        il_depthwise_conv2d(ptr(xs), ptr(weight), bias, stride, padding, out, err, len)
    })
}

/// The running statistics and affine parameters of a batch norm, and its settings.
pub struct BatchNormParams<'a> {
    pub weight: &'a Tensor,
    pub bias: &'a Tensor,
    pub running_mean: &'a Tensor,
    pub running_var: &'a Tensor,
    pub momentum: f64,
    pub eps: f64,
}

/// Training-mode batch norm of a channels-last `xs` followed by `clamp(., lo, hi)` (ReLU: 0 and
/// infinity; ReLU6: 0 and 6; none: both infinite), updating the running statistics as libtorch
/// does.
pub fn batch_norm_act(xs: &Tensor, bn: &BatchNormParams, lo: f64, hi: f64) -> Option<Tensor> {
    // SAFETY: as in `star_relu`; the running statistics are updated in place, as libtorch's own
    // batch norm updates them.
    call("batch norm", |out, err, len| unsafe {
        il_batch_norm_act(
            ptr(xs),
            ptr(bn.weight),
            ptr(bn.bias),
            ptr(bn.running_mean),
            ptr(bn.running_var),
            bn.momentum,
            bn.eps,
            lo,
            hi,
            out,
            err,
            len,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision::to_channels_last;
    use tch::{Device, Kind};

    fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
        let scale = b.abs().max().double_value(&[]).max(1e-6);
        (a - b).abs().max().double_value(&[]) / scale
    }

    /// Fixed, seed-free inputs (the lib tests share libtorch's global generator across threads).
    fn ramp(shape: &[i64], period: f64) -> Tensor {
        let n: i64 = shape.iter().product();
        (Tensor::arange(n, (Kind::Double, Device::Cpu)) * 0.7311).sin().g_mul_scalar(period).to_kind(Kind::Float).reshape(shape)
    }

    /// The gradients of `sum(y * g)` with respect to `inputs`: `g` plays the upstream gradient.
    fn grads(y: &Tensor, g: &Tensor, inputs: &[&Tensor]) -> Vec<Tensor> {
        Tensor::run_backward(&[(y * g).sum(Kind::Double)], inputs, false, false)
    }

    use crate::shim::il_parallel_threads;

    #[test]
    fn the_kernels_parallel_loops_use_every_thread() {
        // On this test's own thread: libtorch's thread count is a per-thread OpenMP setting.
        tch::set_num_threads(2);
        // SAFETY: no arguments but a count; the function only runs a loop.
        let threads = unsafe { il_parallel_threads(64) };
        assert_eq!(threads, 2, "at::parallel_for in the shim ran on {threads} thread(s), not 2");
    }

    #[test]
    fn depthwise_matches_libtorch_in_value_and_every_gradient() {
        // (channels, height, width, kernel, stride, padding, bias): full and partial channel
        // blocks, odd sizes, strides 1 and 2, images smaller than the kernel, a bias.
        let cases = [
            (32, 24, 24, 7, 1, 3, false),
            (20, 9, 13, 5, 1, 2, true),
            (48, 12, 12, 5, 2, 2, false),
            (16, 3, 3, 5, 1, 2, false),
            (36, 6, 5, 7, 2, 3, true),
            (17, 8, 8, 5, 1, 1, false),
        ];
        for (c, h, w, k, s, p, with_bias) in cases {
            let x = to_channels_last(&ramp(&[3, c, h, w], 2.0)).set_requires_grad(true);
            let wt = (ramp(&[c, 1, k, k], 0.5) + 0.01).set_requires_grad(true);
            let b = with_bias.then(|| ramp(&[c], 1.0).set_requires_grad(true));
            let ours = depthwise_conv2d(&x, &wt, b.as_ref(), s, p).expect("a dense float32 channels-last input is handled");
            let reference = x.conv2d(&wt, b.as_ref(), [s, s], [p, p], [1, 1], c);
            let what = format!("c{c} {h}x{w} k{k} s{s} p{p} bias {with_bias}");
            assert_eq!(ours.size(), reference.size(), "{what}");
            assert!(max_rel_diff(&ours, &reference) < 1e-6, "{what}: forward");
            let g = ramp(&reference.size(), 1.5);
            let mut inputs = vec![&x, &wt];
            inputs.extend(b.iter());
            let (gs, rs) = (grads(&ours, &g, &inputs), grads(&reference, &g, &inputs));
            for (name, (a, r)) in ["input", "weight", "bias"].iter().zip(gs.iter().zip(&rs)) {
                assert_eq!(a.size(), r.size(), "{what}: {name} gradient shape");
                let d = max_rel_diff(a, r);
                assert!(d < 1e-5, "{what}: {name} gradient differs by {d}");
            }
            assert_eq!(gs[1].stride(), wt.stride(), "{what}: the weight gradient is laid out as the weight");
        }
    }

    #[test]
    fn depthwise_leaves_other_cases_to_libtorch() {
        let w = ramp(&[8, 1, 5, 5], 1.0);
        let contiguous = ramp(&[2, 8, 10, 10], 1.0);
        assert!(depthwise_conv2d(&contiguous, &w, None, 1, 2).is_none(), "NCHW input");
        let cl = to_channels_last(&contiguous);
        assert!(depthwise_conv2d(&cl.to_kind(Kind::Double), &w.to_kind(Kind::Double), None, 1, 2).is_none(), "float64");
        assert!(depthwise_conv2d(&cl, &ramp(&[8, 1, 3, 3], 1.0), None, 1, 1).is_none(), "3x3 stays with oneDNN");
        assert!(depthwise_conv2d(&cl, &ramp(&[8, 2, 5, 5], 1.0), None, 1, 2).is_none(), "not one filter per channel");
        assert!(depthwise_conv2d(&cl, &w, None, 1, 2).is_some());
    }

    #[test]
    fn batch_norm_act_matches_libtorch_in_value_every_gradient_and_running_statistics() {
        // (batch, channels, height, width): channels in one block and across several, a row block
        // of one row (more channels than a block holds), three values per channel (with two, the
        // input's gradient is zero and only rounding is left to compare).
        let shapes = [[4, 16, 9, 9], [3, 20, 7, 5], [2, 96, 12, 12], [2, 17000, 1, 2], [3, 5, 1, 1]];
        let acts: [(&str, f64, f64); 3] = [("none", f64::NEG_INFINITY, f64::INFINITY), ("relu", 0.0, f64::INFINITY), ("relu6", 0.0, 6.0)];
        for shape in shapes {
            for (name, lo, hi) in acts {
                let c = shape[1];
                let what = format!("{shape:?} {name}");
                let x = to_channels_last(&(ramp(&shape, 2.0) + 0.5)).set_requires_grad(true);
                // Weights large enough that ReLU6 clamps at both ends.
                let weight = (ramp(&[c], 4.0) + 0.5).set_requires_grad(true);
                let bias = (ramp(&[c], 1.0) + 1.0).set_requires_grad(true);
                let (rm, rv) = (ramp(&[c], 0.3), ramp(&[c], 0.3).abs() + 0.5);
                let (rm_ref, rv_ref) = (rm.copy(), rv.copy());
                let params = BatchNormParams { weight: &weight, bias: &bias, running_mean: &rm, running_var: &rv, momentum: 0.1, eps: 1e-5 };
                let ours = batch_norm_act(&x, &params, lo, hi).expect("a channels-last float32 batch is handled");
                let normed = x.batch_norm(Some(&weight), Some(&bias), Some(&rm_ref), Some(&rv_ref), true, 0.1, 1e-5, false);
                let reference = match name {
                    "relu" => normed.relu(),
                    "relu6" => normed.relu6(),
                    _ => normed,
                };
                assert_eq!(ours.stride(), x.stride(), "{what}: the output keeps the input's layout");
                let d = max_rel_diff(&ours, &reference);
                assert!(d < 1e-5, "{what}: forward differs by {d}");
                if name == "relu6" && shape[0] * shape[2] * shape[3] > 100 {
                    let clamped = |v: f64| reference.eq(v).sum(Kind::Int64).int64_value(&[]);
                    assert!(clamped(0.0) > 0 && clamped(6.0) > 0, "{what}: the case reaches both ends of ReLU6");
                }
                assert!(max_rel_diff(&rm, &rm_ref) < 1e-6, "{what}: running mean");
                assert!(max_rel_diff(&rv, &rv_ref) < 1e-6, "{what}: running variance");
                // Not a function of x alone (the input's gradient of batch norm would vanish), in
                // another layout than x.
                let g = (ramp(&shape, 1.5) * 3.0).sin().flip([0]).transpose(0, -1).contiguous().transpose(0, -1);
                let inputs = [&x, &weight, &bias];
                let (gs, rs) = (grads(&ours, &g, &inputs), grads(&reference, &g, &inputs));
                for (part, (a, r)) in ["input", "weight", "bias"].iter().zip(gs.iter().zip(&rs)) {
                    let d = max_rel_diff(a, r);
                    assert!(d < 1e-4, "{what}: {part} gradient differs by {d}");
                }
            }
        }
    }

    #[test]
    fn batch_norm_act_leaves_other_cases_to_libtorch() {
        let (w, b) = (ramp(&[8], 1.0) + 2.0, ramp(&[8], 1.0));
        let (rm, rv) = (Tensor::zeros([8], (Kind::Float, Device::Cpu)), Tensor::ones([8], (Kind::Float, Device::Cpu)));
        let params = BatchNormParams { weight: &w, bias: &b, running_mean: &rm, running_var: &rv, momentum: 0.1, eps: 1e-5 };
        let contiguous = ramp(&[2, 8, 5, 5], 1.0);
        assert!(batch_norm_act(&contiguous, &params, 0.0, 6.0).is_none(), "NCHW input");
        let cl = to_channels_last(&contiguous);
        assert!(batch_norm_act(&cl.to_kind(Kind::Double), &params, 0.0, 6.0).is_none(), "float64");
        assert!(batch_norm_act(&to_channels_last(&ramp(&[1, 8, 1, 1], 1.0)), &params, 0.0, 6.0).is_none(), "one value per channel: libtorch's error");
        let rm_before = rm.copy();
        assert!(batch_norm_act(&cl, &params, 0.0, 6.0).is_some());
        assert!(!rm.equal(&rm_before), "the running mean is updated");
    }

    #[test]
    fn star_relu_matches_libtorch_in_value_and_every_gradient() {
        // Channels-last maps (conv stages) and tokens (attention stages), one of them longer than
        // a block of the kernel and not a multiple of its lanes; zeros and negatives included.
        for shape in [vec![4, 24, 9, 9], vec![3, 7, 40], vec![5, 16411]] {
            let base = ramp(&shape, 3.0);
            let base = if shape.len() == 4 { to_channels_last(&base) } else { base };
            let scale = Tensor::from_slice(&[0.8f32]).set_requires_grad(true);
            let bias = Tensor::from_slice(&[-0.3f32]).set_requires_grad(true);
            let x = base.copy().set_requires_grad(true);
            let ours = star_relu(&(&x * 1.0), &scale, &bias).expect("a dense float32 input is handled");
            let reference = &bias + (&x * 1.0).relu().square() * &scale;
            assert_eq!(ours.stride(), base.stride(), "{shape:?}: the output keeps the input's layout");
            assert!(max_rel_diff(&ours, &reference) < 1e-6, "{shape:?}: forward");
            let g = ramp(&shape, 1.0).transpose(0, -1).contiguous().transpose(0, -1);
            let inputs = [&x, &scale, &bias];
            let (gs, rs) = (grads(&ours, &g, &inputs), grads(&reference, &g, &inputs));
            for (name, (a, r)) in ["input", "scale", "bias"].iter().zip(gs.iter().zip(&rs)) {
                let d = max_rel_diff(a, r);
                assert!(d < 1e-5, "{shape:?}: {name} gradient differs by {d}");
            }
        }
        let nan = Tensor::from_slice(&[f32::NAN, -1.0, 2.0]);
        let one = Tensor::from_slice(&[1.0f32]);
        let ys = star_relu(&nan, &one, &one.zeros_like()).unwrap();
        assert!(ys.double_value(&[0]).is_nan(), "a NaN stays NaN, as in libtorch's relu");
        assert_eq!((ys.double_value(&[1]), ys.double_value(&[2])), (0.0, 4.0));
        assert!(star_relu(&nan.to_kind(Kind::Double), &one, &one).is_none(), "float64 is left to libtorch");
    }
}
