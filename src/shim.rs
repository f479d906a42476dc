//! The Rust side of the C++ shim (`csrc/*.cpp`, compiled by build.rs against the same libtorch
//! headers): every function it exports, declared once. Each takes tensors as the raw
//! `at::Tensor` pointers tch holds, and the ones that can fail write their message into `err`
//! (read with `error::shim_message`) and return non-zero.
use std::ffi::c_void;

extern "C" {
    pub(crate) fn il_autocast_enter(device: i32, dtype: i32) -> i32;
    pub(crate) fn il_autocast_exit(device: i32, previous: i32) -> i32;
    pub(crate) fn il_autocast_is_enabled(device: i32) -> i32;
    pub(crate) fn il_grads_to_none(params: *const *const c_void, n: i32);
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn il_fused_adam_step(
        params: *const *const c_void,
        exp_avgs: *const *const c_void,
        exp_avg_sqs: *const *const c_void,
        steps: *const *const c_void,
        n: i32,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        adamw: i32,
        err: *mut u8,
        err_len: usize,
    ) -> i32;
    pub(crate) fn il_star_relu(
        x: *const c_void,
        scale: *const c_void,
        bias: *const c_void,
        out: *mut c_void,
        err: *mut u8,
        err_len: usize,
    ) -> i32;
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn il_depthwise_conv2d(
        x: *const c_void,
        weight: *const c_void,
        bias: *const c_void,
        stride: i64,
        padding: i64,
        out: *mut c_void,
        err: *mut u8,
        err_len: usize,
    ) -> i32;
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn il_batch_norm_act(
        x: *const c_void,
        weight: *const c_void,
        bias: *const c_void,
        running_mean: *const c_void,
        running_var: *const c_void,
        momentum: f64,
        eps: f64,
        lo: f64,
        hi: f64,
        out: *mut c_void,
        err: *mut u8,
        err_len: usize,
    ) -> i32;
    /// How many threads the shim's parallel loop ran on (a test asks).
    #[cfg(test)]
    pub(crate) fn il_parallel_threads(n: i64) -> i64;
}
