//! The optimiser: Adam and AdamW step through libtorch's fused kernels (what
//! `torch.optim.Adam(fused=True)` runs: one pass over each parameter where the unfused update,
//! tch's and PyTorch's default on CPU, makes about ten), reached through the C++ shim in
//! `csrc/fused_adam.cpp`; SGD with momentum is PyTorch's update, written here so that it can
//! give each parameter its own rate too. Gradients are dropped rather than zeroed between steps
//! (PyTorch's `set_to_none`), which saves a pass too.
//!
//! Each parameter's rate is the schedule's rate times its multiplier (`--backbone-lr-mult`,
//! `--layer-decay`); parameters that share a multiplier step together, as one of PyTorch's
//! parameter groups.
use std::ffi::c_void;

use anyhow::{bail, Result};
use tch::{nn, Kind, Tensor};

use crate::config::OptimizerKind;

use crate::shim::{il_grads_to_none, il_fused_adam_step};

/// PyTorch's defaults for Adam and AdamW.
const BETAS: (f64, f64) = (0.9, 0.999);
const EPS: f64 = 1e-8;
/// SGD's momentum, as the tool has always used it (the schedule may move it).
const SGD_MOMENTUM: f64 = 0.9;

/// The state for one parameter: the parameter itself (a handle on the variable), Adam's two
/// moments (SGD keeps its momentum buffer in the first) laid out as it is, and its step count.
struct Slot {
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: Tensor,
}

/// Parameters that share a rate multiplier: their slots, in name order.
struct Group {
    multiplier: f64,
    slots: Vec<Slot>,
}

pub struct Optimizer {
    kind: OptimizerKind,
    groups: Vec<Group>,
    lr: f64,
    /// Adam's first beta, or SGD's momentum.
    beta1: f64,
    weight_decay: f64,
}

fn pointers<'a>(tensors: impl Iterator<Item = &'a Tensor>) -> Vec<*const c_void> {
    tensors.map(|t| t.as_ptr() as *const c_void).collect()
}

impl Optimizer {
    /// An optimiser over the trainable variables of `vs` (those frozen later, or never reached by
    /// the loss, have no gradient and are left alone); `multiplier` gives each variable, by name,
    /// its share of the rate.
    pub fn new(
        vs: &nn::VarStore,
        kind: OptimizerKind,
        learning_rate: f64,
        weight_decay: f64,
        multiplier: impl Fn(&str) -> f64,
    ) -> Result<Optimizer> {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, v)| v.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut groups: Vec<Group> = Vec::new();
        tch::no_grad(|| {
            for (name, param) in vars {
                let m = multiplier(&name);
                if !(m.is_finite() && m > 0.0) {
                    bail!("the rate multiplier of '{name}' is {m}");
                }
                let slot = Slot {
                    // zeros_like keeps the parameter's strides (channels-last included), which
                    // the fused kernel needs.
                    exp_avg: param.zeros_like(),
                    exp_avg_sq: if kind == OptimizerKind::Sgd { Tensor::new() } else { param.zeros_like() },
                    step: Tensor::zeros([], (Kind::Float, param.device())),
                    param,
                };
                match groups.iter_mut().find(|g| g.multiplier == m) {
                    Some(g) => g.slots.push(slot),
                    None => groups.push(Group { multiplier: m, slots: vec![slot] }),
                }
            }
            Ok(())
        })?;
        let beta1 = if kind == OptimizerKind::Sgd { SGD_MOMENTUM } else { BETAS.0 };
        Ok(Optimizer { kind, groups, lr: learning_rate, beta1, weight_decay })
    }

    /// The rate of the steps from now on (before each group's multiplier), and the momentum
    /// (Adam's first beta, SGD's momentum) where the schedule moves it too.
    pub fn set_rate(&mut self, lr: f64, momentum: Option<f64>) {
        self.lr = lr;
        if let Some(m) = momentum {
            self.beta1 = m;
        }
    }

    /// The distinct rate multipliers, lowest first (for the log).
    pub fn multipliers(&self) -> Vec<f64> {
        let mut m: Vec<f64> = self.groups.iter().map(|g| g.multiplier).collect();
        m.sort_by(f64::total_cmp);
        m
    }

    /// Drops the old gradients, back-propagates `loss` and takes one step.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        for g in &self.groups {
            let params = pointers(g.slots.iter().map(|s| &s.param));
            // SAFETY: `params` points at live tensors owned by the slots for the whole call.
            unsafe { il_grads_to_none(params.as_ptr(), params.len() as i32) };
        }
        loss.backward();
        for g in &mut self.groups {
            let lr = self.lr * g.multiplier;
            match self.kind {
                OptimizerKind::Sgd => sgd_step(&mut g.slots, lr, self.beta1, self.weight_decay),
                OptimizerKind::Adam | OptimizerKind::AdamW => {
                    adam_step(&g.slots, lr, self.beta1, self.weight_decay, self.kind == OptimizerKind::AdamW)?
                }
            }
        }
        Ok(())
    }
}

/// One fused Adam or AdamW step over the slots' parameters that have a gradient.
fn adam_step(slots: &[Slot], lr: f64, beta1: f64, weight_decay: f64, decoupled: bool) -> Result<()> {
    let params = pointers(slots.iter().map(|s| &s.param));
    let exp_avgs = pointers(slots.iter().map(|s| &s.exp_avg));
    let exp_avg_sqs = pointers(slots.iter().map(|s| &s.exp_avg_sq));
    let steps = pointers(slots.iter().map(|s| &s.step));
    let mut err = [0u8; 512];
    // SAFETY: four arrays of `n` pointers to live tensors owned by `slots`, and an error buffer
    // of the length given; the call keeps no pointer after it returns.
    let rc = unsafe {
        il_fused_adam_step(
            params.as_ptr(),
            exp_avgs.as_ptr(),
            exp_avg_sqs.as_ptr(),
            steps.as_ptr(),
            params.len() as i32,
            lr,
            beta1,
            BETAS.1,
            weight_decay,
            EPS,
            i32::from(decoupled),
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        bail!("the Adam step failed in libtorch: {}", crate::error::shim_message(&err));
    }
    Ok(())
}

/// One step of `torch.optim.SGD` with momentum (no dampening, not Nesterov): the gradient plus
/// the weight decay joins the momentum buffer, which moves the parameter. The buffer starts at
/// zero, so the first step's buffer is the gradient itself, as PyTorch starts it.
fn sgd_step(slots: &mut [Slot], lr: f64, momentum: f64, weight_decay: f64) {
    tch::no_grad(|| {
        for s in slots {
            let grad = s.param.grad();
            if !grad.defined() {
                continue;
            }
            let d = if weight_decay > 0.0 { grad + &s.param * weight_decay } else { grad };
            let _ = s.exp_avg.g_mul_scalar_(momentum).g_add_(&d);
            let _ = s.param.g_add_(&(&s.exp_avg * -lr));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;
    use tch::Device;

    /// A small model's variables (a 4-D weight, optionally channels-last, and a bias), a fixed
    /// loss, and the variables after `steps` steps of `opt`.
    fn run(kind: OptimizerKind, wd: f64, channels_last: bool, ours: bool, steps: usize) -> Vec<Tensor> {
        run_with(kind, wd, channels_last, ours, steps, |_| 1.0)
    }

    fn run_with(kind: OptimizerKind, wd: f64, channels_last: bool, ours: bool, steps: usize, multiplier: fn(&str) -> f64) -> Vec<Tensor> {
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
            let mut opt = Optimizer::new(&vs, kind, 0.01, wd, multiplier).unwrap();
            for i in 0..steps {
                opt.backward_step(&loss(i)).unwrap();
            }
        } else {
            let mut opt = match kind {
                OptimizerKind::Adam => nn::Adam { wd, ..Default::default() }.build(&vs, 0.01).unwrap(),
                OptimizerKind::AdamW => nn::AdamW { wd, ..Default::default() }.build(&vs, 0.01).unwrap(),
                OptimizerKind::Sgd => nn::Sgd { momentum: 0.9, wd, ..Default::default() }.build(&vs, 0.01).unwrap(),
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

    /// A first step moves each parameter by the rate times a function of its gradient alone, for
    /// Adam and SGD alike: a multiplier of 0.25 on the convolution moves it a quarter as far,
    /// and the linear layer exactly as far as without one.
    #[test]
    fn each_parameter_steps_at_its_own_multiple_of_the_rate() {
        let quarter_conv: fn(&str) -> f64 = |n| if n.starts_with("conv.") { 0.25 } else { 1.0 };
        for kind in [OptimizerKind::Adam, OptimizerKind::Sgd] {
            let start = run(kind, 0.0, false, true, 0);
            let plain = run(kind, 0.0, false, true, 1);
            let scaled = run_with(kind, 0.0, false, true, 1, quarter_conv);
            // Sorted by name: conv.bias, conv.weight, fc.bias, fc.weight, frozen.
            for i in 0..4 {
                let m = if i < 2 { 0.25 } else { 1.0 };
                let (want, got) = (&(&plain[i] - &start[i]) * m, &scaled[i] - &start[i]);
                let moved = want.abs().max().double_value(&[]);
                let diff = (&got - &want).abs().max().double_value(&[]);
                assert!(moved > 1e-4, "{kind:?} variable {i} moved only {moved}");
                assert!(diff < 1e-7, "{kind:?} variable {i}: {diff} from {m} times the plain step");
            }
        }
        let vs = nn::VarStore::new(Device::Cpu);
        let _ = nn::linear(&vs.root() / "fc", 2, 2, Default::default());
        let opt = Optimizer::new(&vs, OptimizerKind::Adam, 0.1, 0.0, |n| if n.ends_with("bias") { 0.5 } else { 1.0 }).unwrap();
        assert_eq!(opt.multipliers(), vec![0.5, 1.0]);
    }

    #[test]
    fn fused_adam_and_adamw_and_our_sgd_follow_libtorchs_update() {
        let cases = [
            (OptimizerKind::Adam, 0.0),
            (OptimizerKind::Adam, 0.05),
            (OptimizerKind::AdamW, 0.05),
            (OptimizerKind::Sgd, 0.0),
            (OptimizerKind::Sgd, 0.05),
        ];
        for (kind, wd) in cases {
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

