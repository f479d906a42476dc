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
    /// The libtorch version the shim was compiled against (`TORCH_VERSION`), NUL-terminated.
    pub(crate) fn il_torch_version() -> *const std::ffi::c_char;
    /// How many threads the shim's parallel loop ran on (a test asks).
    #[cfg(test)]
    pub(crate) fn il_parallel_threads(n: i64) -> i64;
}

/// The libtorch version this binary was built against and runs on, e.g. "2.13.0".
pub fn torch_version() -> String {
    // SAFETY: il_torch_version returns a pointer to a static NUL-terminated string literal.
    unsafe { std::ffi::CStr::from_ptr(il_torch_version()) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    /// The version comes from the headers of the libtorch we link, which is the torch of the
    /// Python environment the build used.
    #[test]
    fn the_libtorch_version_is_the_linked_torchs() {
        let ours = super::torch_version();
        let python = std::env::var("IMAGE_LEARNER_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = std::process::Command::new(python).args(["-c", "import torch; print(torch.__version__)"]).output().unwrap();
        let theirs = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!ours.is_empty() && theirs.split('+').next() == Some(ours.as_str()), "ours {ours}, torch {theirs}");
    }
}
