//! An exponential moving average of the weights (`--ema-decay`), as timm's `ModelEmaV3` keeps it
//! with its warmup (`use_warmup=True, warmup_gamma=1, warmup_power=1`, updated with the step
//! count as timm's `train.py` does): every floating-point variable, parameters and batch-norm
//! statistics alike, moves toward the model's after every optimiser step,
//! `avg = d * avg + (1 - d) * weight`. The first step's weights start the average, and
//! `d = min(decay, k / (k + 1))` after k steps: the plain mean of every step's weights until it
//! reaches `decay`. So a short run averages what it trained, never the starting weights, and a
//! long one is the usual average of the last `1 / (1 - decay)` steps or so. Validation, the best
//! epoch and the Best Model then use the averaged weights; training goes on from the model's own.
use tch::{nn, Tensor};

pub struct Ema {
    decay: f64,
    /// The optimiser steps averaged so far.
    steps: u64,
    /// Each variable of the model (a handle on it) with its average, laid out alike.
    pairs: Vec<(Tensor, Tensor)>,
    swapped: bool,
}

/// The decay of the average's update after optimiser step `step` (from 1), at most `decay`:
/// timm's `ModelEmaV3.get_decay(step)` with the warmup above.
pub fn decay_at(decay: f64, step: u64) -> f64 {
    let k = step.saturating_sub(1) as f64;
    decay.min(k / (k + 1.0))
}

impl Ema {
    /// The average of `vs`'s variables, or None when `decay` is 0 (off).
    pub fn new(vs: &nn::VarStore, decay: f64) -> Option<Ema> {
        if decay <= 0.0 {
            return None;
        }
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.is_floating_point()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let pairs = vars.into_iter().map(|(_, t)| (t.shallow_clone(), t.detach().copy())).collect();
        Some(Ema { decay, steps: 0, pairs, swapped: false })
    }

    /// One step of the average, after an optimiser step.
    pub fn update(&mut self) {
        debug_assert!(!self.swapped, "the average moves only while the model holds its own weights");
        self.steps += 1;
        let d = decay_at(self.decay, self.steps);
        tch::no_grad(|| {
            for (live, avg) in &mut self.pairs {
                if d == 0.0 {
                    avg.copy_(live);
                } else {
                    let _ = avg.lerp_(live, 1.0 - d);
                }
            }
        });
    }

    /// Exchanges the model's weights and the averaged ones, in place: the first call puts the
    /// average into the model (to validate or save it), the second gives the model its own back.
    pub fn swap(&mut self) {
        tch::no_grad(|| {
            for (live, avg) in &mut self.pairs {
                let own = live.copy();
                live.copy_(avg);
                avg.copy_(&own);
            }
        });
        self.swapped = !self.swapped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap()
    }

    /// timm's `ModelEmaV3(decay=0.9, use_warmup=True, warmup_power=1.0)`, updated with
    /// `step=1..12` after each of these weights (timm 1.0.31): its decays and its average.
    #[test]
    fn the_average_is_timms_with_its_warmup() {
        let timm_decays = [0.0, 0.5, 0.666667, 0.75, 0.8, 0.833333, 0.857143, 0.875, 0.888889, 0.9, 0.9, 0.9, 0.9];
        for (k, want) in timm_decays.iter().enumerate() {
            assert!((decay_at(0.9, k as u64 + 1) - want).abs() < 1e-6, "step {}", k + 1);
        }
        let vs = nn::VarStore::new(Device::Cpu);
        let mut w = vs.root().var("w", &[3], nn::Init::Const(1.0));
        let mut running = vs.root().zeros_no_train("running_mean", &[3]);
        let mut ema = Ema::new(&vs, 0.9).unwrap();
        let mut steps = vec![[2.0, 0.0, -1.0], [4.0, 1.0, -1.0], [0.5, 2.0, 3.0]];
        steps.extend((1..10).map(|i| [0.1 * i as f64, -0.2 * i as f64, 1.0]));
        for (k, s) in steps.iter().enumerate() {
            tch::no_grad(|| {
                w.copy_(&Tensor::from_slice(s));
                running.copy_(&(Tensor::from_slice(s) * 2.0));
            });
            ema.update();
            if k == 2 {
                // Three steps in, the average is their plain mean: the starting weights never count.
                ema.swap();
                let mean = [6.5 / 3.0, 1.0, 1.0 / 3.0];
                for (i, m) in mean.iter().enumerate() {
                    assert!((values(&w)[i] - m).abs() < 1e-6 && (values(&running)[i] - 2.0 * m).abs() < 1e-6, "[{i}]");
                }
                ema.swap();
            }
        }
        ema.swap();
        let timm = [0.915_300_071_239_471_4, -0.534_600_019_454_956, 0.837_999_999_523_162_8];
        let (got_w, got_r) = (values(&w), values(&running));
        for i in 0..3 {
            assert!((got_w[i] - timm[i]).abs() < 1e-5, "w[{i}]: {} vs timm's {}", got_w[i], timm[i]);
            assert!((got_r[i] - 2.0 * timm[i]).abs() < 1e-5, "a buffer is averaged alike: running_mean[{i}] {}", got_r[i]);
        }
        ema.swap();
        let own: Vec<f64> = steps[steps.len() - 1].iter().map(|&v| f64::from(v as f32)).collect();
        assert_eq!(values(&w), own, "the model's own weights come back bit for bit");
        assert!(Ema::new(&vs, 0.0).is_none(), "0 is off");
    }
}
