//! The optimiser: Adam and AdamW step through libtorch's fused kernels (what
//! `torch.optim.Adam(fused=True)` runs: one pass over each parameter where the unfused update,
//! tch's and PyTorch's default on CPU, makes about ten), reached through the C++ shim in
//! `csrc/fused_adam.cpp`; SGD with momentum is tch's. Gradients are dropped rather than zeroed
//! between steps (PyTorch's `set_to_none`), which saves a pass too.
use std::ffi::c_void;

use anyhow::{bail, Result};
use tch::{nn, nn::OptimizerConfig, Kind, Tensor};

use crate::config::OptimizerKind;

use crate::shim::{il_grads_to_none, il_fused_adam_step};

/// PyTorch's defaults for Adam and AdamW.
const BETAS: (f64, f64) = (0.9, 0.999);
const EPS: f64 = 1e-8;

/// Adam's state for one parameter: the parameter itself (a handle on the variable), its two
/// moments laid out as it is, and its step count.
struct Slot {
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: Tensor,
}

pub struct Optimizer {
    inner: Inner,
}

enum Inner {
    FusedAdam { slots: Vec<Slot>, lr: f64, beta1: f64, weight_decay: f64, decoupled: bool },
    Tch(nn::Optimizer),
}

fn pointers<'a>(tensors: impl Iterator<Item = &'a Tensor>) -> Vec<*const c_void> {
    tensors.map(|t| t.as_ptr() as *const c_void).collect()
}

impl Optimizer {
    /// An optimiser over the trainable variables of `vs` (those frozen later, or never reached by
    /// the loss, have no gradient and are left alone).
    pub fn new(vs: &nn::VarStore, kind: OptimizerKind, learning_rate: f64, weight_decay: f64) -> Result<Optimizer> {
        let inner = match kind {
            OptimizerKind::Adam | OptimizerKind::AdamW => {
                let slots = tch::no_grad(|| {
                    vs.trainable_variables()
                        .into_iter()
                        .map(|param| Slot {
                            // zeros_like keeps the parameter's strides (channels-last included),
                            // which the fused kernel needs.
                            exp_avg: param.zeros_like(),
                            exp_avg_sq: param.zeros_like(),
                            step: Tensor::zeros([], (Kind::Float, param.device())),
                            param,
                        })
                        .collect()
                });
                Inner::FusedAdam { slots, lr: learning_rate, beta1: BETAS.0, weight_decay, decoupled: kind == OptimizerKind::AdamW }
            }
            OptimizerKind::Sgd => {
                Inner::Tch(nn::Sgd { momentum: 0.9, wd: weight_decay, ..Default::default() }.build(vs, learning_rate)?)
            }
        };
        Ok(Optimizer { inner })
    }

    /// The rate of the steps from now on, and the momentum (Adam's first beta, SGD's momentum)
    /// where the schedule moves it too.
    pub fn set_rate(&mut self, lr: f64, momentum: Option<f64>) {
        match &mut self.inner {
            Inner::FusedAdam { lr: l, beta1, .. } => {
                *l = lr;
                if let Some(m) = momentum {
                    *beta1 = m;
                }
            }
            Inner::Tch(opt) => {
                opt.set_lr(lr);
                if let Some(m) = momentum {
                    opt.set_momentum(m);
                }
            }
        }
    }

    /// Drops the old gradients, back-propagates `loss` and takes one step.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        match &mut self.inner {
            Inner::Tch(opt) => opt.backward_step(loss),
            Inner::FusedAdam { slots, lr, beta1, weight_decay, decoupled } => {
                let params = pointers(slots.iter().map(|s| &s.param));
                let n = params.len() as i32;
                // SAFETY: `params` points at live tensors owned by `slots` for the whole call.
                unsafe { il_grads_to_none(params.as_ptr(), n) };
                loss.backward();
                let exp_avgs = pointers(slots.iter().map(|s| &s.exp_avg));
                let exp_avg_sqs = pointers(slots.iter().map(|s| &s.exp_avg_sq));
                let steps = pointers(slots.iter().map(|s| &s.step));
                let mut err = [0u8; 512];
                // SAFETY: four arrays of `n` pointers to live tensors owned by `slots`, and an
                // error buffer of the length given; the call keeps no pointer after it returns.
                let rc = unsafe {
                    il_fused_adam_step(
                        params.as_ptr(),
                        exp_avgs.as_ptr(),
                        exp_avg_sqs.as_ptr(),
                        steps.as_ptr(),
                        n,
                        *lr,
                        *beta1,
                        BETAS.1,
                        *weight_decay,
                        EPS,
                        i32::from(*decoupled),
                        err.as_mut_ptr(),
                        err.len(),
                    )
                };
                if rc != 0 {
                    bail!("the Adam step failed in libtorch: {}", crate::error::shim_message(&err));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// A small model's variables (a 4-D weight, optionally channels-last, and a bias), a fixed
    /// loss, and the variables after `steps` steps of `opt`.
    fn run(kind: OptimizerKind, wd: f64, channels_last: bool, ours: bool, steps: usize) -> Vec<Tensor> {
        // Fixed values, not libtorch's global generator: the lib tests run in parallel threads.
        let fixed = |shape: &[i64], phase: f64| -> Tensor {
            let n: i64 = shape.iter().product();
            (Tensor::arange(n, (Kind::Float, Device::Cpu)) * 0.7 + phase).sin().view(shape) * 0.5
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let conv = nn::conv2d(&root / "conv", 3, 8, 3, Default::default());
        let fc = nn::linear(&root / "fc", 8, 4, Default::default());
        let frozen = root.var("frozen", &[5], nn::Init::Const(1.5));
        let _ = frozen.set_requires_grad(false);
        tch::no_grad(|| {
            let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            for (i, (_, mut v)) in vars.into_iter().enumerate() {
                if v.requires_grad() {
                    v.copy_(&fixed(&v.size(), i as f64));
                }
            }
        });
        if channels_last {
            tch::no_grad(|| {
                for (_, mut v) in vs.variables() {
                    if v.dim() == 4 {
                        let cl = v.contiguous().permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
                        v.set_data(&cl);
                    }
                }
            });
            assert!(!conv.ws.is_contiguous(), "the weight is channels-last");
        }
        let x = fixed(&[6, 3, 7, 7], 0.3) * 4.0;
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1]);
        let loss = |step: usize| -> Tensor {
            // A contiguous (not channels-last) input: gradients may come back in either layout.
            let h = x.apply(&conv).relu().mean_dim(&[2i64, 3][..], false, Kind::Float);
            (h.apply(&fc) * (1.0 + step as f64)).cross_entropy_for_logits(&y)
        };
        if ours {
            let mut opt = Optimizer::new(&vs, kind, 0.01, wd).unwrap();
            for i in 0..steps {
                opt.backward_step(&loss(i)).unwrap();
            }
        } else {
            let mut opt = match kind {
                OptimizerKind::Adam => nn::Adam { wd, ..Default::default() }.build(&vs, 0.01).unwrap(),
                _ => nn::AdamW { wd, ..Default::default() }.build(&vs, 0.01).unwrap(),
            };
            for i in 0..steps {
                opt.backward_step(&loss(i));
            }
        }
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars.into_iter().map(|(_, v)| v.contiguous()).collect()
    }

    fn max_abs_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
        a.iter().zip(b).map(|(a, b)| (a - b).abs().max().double_value(&[])).fold(0.0, f64::max)
    }

    #[test]
    fn fused_adam_and_adamw_follow_libtorchs_unfused_update() {
        for (kind, wd) in [(OptimizerKind::Adam, 0.0), (OptimizerKind::Adam, 0.05), (OptimizerKind::AdamW, 0.05)] {
            for channels_last in [false, true] {
                let start = run(kind, wd, channels_last, true, 0);
                let ours = run(kind, wd, channels_last, true, 5);
                let reference = run(kind, wd, channels_last, false, 5);
                let moved = max_abs_diff(&ours, &start);
                let diff = max_abs_diff(&ours, &reference);
                // Five steps of lr 0.01 move weights by about 0.05; the two agree to float rounding.
                assert!(moved > 0.01, "{kind:?} wd {wd} cl {channels_last}: moved only {moved}");
                assert!(diff < 1e-5, "{kind:?} wd {wd} cl {channels_last}: differs from libtorch's Adam by {diff}");
                // The frozen variable (last by name) has no gradient and stays put.
                assert_eq!(ours[4].double_value(&[0]), 1.5);
            }
        }
    }
}
