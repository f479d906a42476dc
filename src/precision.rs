//! How the arithmetic runs on the chosen device: float32, or bf16 automatic mixed precision
//! (libtorch's autocast, reached through the C++ shim in `csrc/autocast.cpp`: matrix products
//! and convolutions in bf16, weights, norms, softmax and the loss in float32, as
//! `torch.autocast` does), and the channels-last memory layout that oneDNN's and cuDNN's
//! convolution kernels run fastest on.
use anyhow::Result;
use tch::{nn, Device, Tensor};

use crate::bail_input;
use crate::config::PrecisionChoice;

use crate::shim::{il_autocast_enter, il_autocast_exit, il_autocast_is_enabled};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Bf16,
}

/// The device, the precision and the memory layout of a run.
#[derive(Clone, Copy, Debug)]
pub struct Compute {
    pub device: Device,
    pub precision: Precision,
    /// Images and convolution weights in channels-last (NHWC) strides.
    pub channels_last: bool,
    /// Why this precision, for the report and the log.
    pub reason: &'static str,
}

/// Whether the CPU lists `flag` in /proc/cpuinfo.
fn cpu_has(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("flags"))
                .map(|l| l.split_whitespace().any(|f| f == flag))
        })
        .unwrap_or(false)
}

impl Compute {
    /// float32, channels-last, on the CPU.
    pub fn cpu() -> Self {
        Compute {
            device: Device::Cpu,
            precision: Precision::Fp32,
            channels_last: true,
            reason: "float32",
        }
    }

    pub fn resolve(device: Device, choice: PrecisionChoice) -> Result<Self> {
        let (precision, reason) = match (choice, device) {
            (PrecisionChoice::Fp32, _) => (Precision::Fp32, "float32 (--precision fp32)"),
            (PrecisionChoice::Bf16, _) => {
                (Precision::Bf16, "bf16 mixed precision (--precision bf16)")
            }
            (PrecisionChoice::Auto, Device::Cuda(_)) => {
                (Precision::Bf16, "bf16 mixed precision (auto: CUDA)")
            }
            (PrecisionChoice::Auto, _) if cpu_has("amx_bf16") => (
                Precision::Bf16,
                "bf16 mixed precision (auto: the CPU has AMX)",
            ),
            // With AVX512-BF16 alone, bf16 is slower than float32 for most of these models
            // (docs/performance.md, "How the arithmetic runs"), so auto keeps float32 there.
            (PrecisionChoice::Auto, _) => (Precision::Fp32, "float32 (auto: the CPU has no AMX)"),
        };
        if precision == Precision::Bf16
            && device == Device::Cpu
            && !cpu_has("avx512_bf16")
            && !cpu_has("amx_bf16")
        {
            bail_input!("--precision bf16: this CPU has neither AVX512-BF16 nor AMX, so bf16 would be emulated and slow; use --precision fp32 or auto");
        }
        Ok(Compute {
            device,
            precision,
            channels_last: true,
            reason,
        })
    }

    fn device_code(&self) -> i32 {
        i32::from(matches!(self.device, Device::Cuda(_)))
    }

    /// Runs `f` (a forward pass and its loss) in this precision: for bf16, inside an autocast
    /// region that is left, and its cast-weight cache dropped, before `f`'s result is used.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        if self.precision == Precision::Fp32 {
            return f();
        }
        let device = self.device_code();
        // SAFETY: plain C calls into libtorch's thread-local autocast state.
        let previous = unsafe { il_autocast_enter(device, 0) };
        let out = f();
        if previous >= 0 {
            // SAFETY: as above; restores the state read on entry.
            unsafe { il_autocast_exit(device, previous) };
        }
        out
    }

    /// A batch of images (NCHW) on the device, in this run's layout. To a GPU, the batch goes
    /// through pinned host memory and is copied without blocking the host.
    pub fn input(&self, x: Tensor) -> Tensor {
        let x = match self.device {
            Device::Cuda(_) => x.pin_memory(self.device).to_device_(self.device, x.kind(), true, false),
            _ => x,
        };
        if self.channels_last && x.dim() == 4 {
            to_channels_last(&x)
        } else {
            x
        }
    }

    /// Puts the convolution weights of `vs` in this run's layout (values unchanged).
    pub fn prepare(&self, vs: &nn::VarStore) {
        if !self.channels_last {
            return;
        }
        tch::no_grad(|| {
            for (_, mut v) in vs.variables() {
                if v.dim() == 4 {
                    let cl = to_channels_last(&v);
                    v.set_data(&cl);
                }
            }
        });
    }

    pub fn describe(&self) -> String {
        let layout = if self.channels_last {
            ", channels-last"
        } else {
            ""
        };
        format!("{}{layout}", self.reason)
    }
}

/// The same NCHW tensor with NHWC strides (PyTorch's `torch.channels_last`).
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Whether autocast is on for the CPU in this thread (for tests).
pub fn autocast_enabled_on_cpu() -> bool {
    // SAFETY: a read of libtorch's thread-local autocast state.
    unsafe { il_autocast_is_enabled(0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn bf16_autocast_casts_matrix_products_and_leaves_cleanly() {
        let mut c = Compute::cpu();
        c.precision = Precision::Bf16;
        let a = Tensor::randn([8, 8], (Kind::Float, Device::Cpu));
        let labels = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 6, 7, 0]);
        let (prod, loss) = c.run(|| {
            assert!(autocast_enabled_on_cpu());
            let p = a.matmul(&a);
            (p.shallow_clone(), p.cross_entropy_for_logits(&labels))
        });
        assert_eq!(prod.kind(), Kind::BFloat16, "a matrix product runs in bf16");
        assert_eq!(loss.kind(), Kind::Float, "the loss is float32");
        assert_eq!(a.kind(), Kind::Float, "the weights stay float32");
        assert!(!autocast_enabled_on_cpu(), "the region is left");
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        let exact = a.matmul(&a);
        let diff = (prod.to_kind(Kind::Float) - &exact)
            .abs()
            .max()
            .double_value(&[]);
        let scale = exact.abs().max().double_value(&[]);
        assert!(
            diff > 0.0 && diff < 0.02 * scale,
            "bf16 is close but not equal: {diff} of {scale}"
        );
    }

    #[test]
    fn channels_last_keeps_values_and_changes_strides() {
        let x = Tensor::randn([2, 3, 4, 5], (Kind::Float, Device::Cpu));
        let y = to_channels_last(&x);
        assert!(y.equal(&x));
        assert_eq!(y.size(), [2, 3, 4, 5]);
        assert_eq!(y.stride(), [60, 1, 15, 3]);
        let vs = nn::VarStore::new(Device::Cpu);
        let conv = nn::conv2d(vs.root() / "c", 3, 4, 3, Default::default());
        let before = conv.ws.copy();
        Compute::cpu().prepare(&vs);
        assert_eq!(
            conv.ws.stride(),
            [27, 1, 9, 3],
            "the layer's own weight tensor is converted"
        );
        assert!(conv.ws.equal(&before));
        assert_eq!(x.apply(&conv).size(), [2, 4, 2, 3]);
    }
}
