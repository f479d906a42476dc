//! Two hand-written CPU kernels, reached through the C++ shim that build.rs compiles against
//! libtorch: StarReLU in one pass each way (`csrc/star_relu.cpp`) and the weight gradient of a
//! depthwise convolution (`csrc/depthwise_conv.cpp`), the two places where libtorch's own CPU
//! code spent a large share of a training step on these models. Each applies only to dense
//! float32 CPU tensors without autocast and returns `None` otherwise; the caller then runs the
//! ordinary libtorch operations, which give the same values.
use std::ffi::c_void;

use tch::Tensor;

extern "C" {
    fn il_star_relu(
        x: *const c_void,
        scale: *const c_void,
        bias: *const c_void,
        out: *mut c_void,
        err: *mut u8,
        err_len: usize,
    ) -> i32;
    #[allow(clippy::too_many_arguments)]
    fn il_depthwise_conv2d(
        x: *const c_void,
        weight: *const c_void,
        bias: *const c_void,
        stride: i64,
        padding: i64,
        out: *mut c_void,
        err: *mut u8,
        err_len: usize,
    ) -> i32;
}

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

    extern "C" {
        fn il_parallel_threads(n: i64) -> i64;
    }

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
