//! An exponential moving average of the weights (`--ema-decay`), as timm's `ModelEmaV3` keeps it
//! by default: every floating-point variable, parameters and batch-norm statistics alike, moves
//! toward the model's after every optimiser step, `avg = decay * avg + (1 - decay) * weight`,
//! starting from the weights it was made from. Validation, the best epoch and the Best Model then
//! use the averaged weights; training goes on from the model's own.
use tch::{nn, Tensor};

pub struct Ema {
    decay: f64,
    /// Each variable of the model (a handle on it) with its average, laid out alike.
    pairs: Vec<(Tensor, Tensor)>,
    swapped: bool,
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
        Some(Ema { decay, pairs, swapped: false })
    }

    /// One step of the average, after an optimiser step.
    pub fn update(&mut self) {
        debug_assert!(!self.swapped, "the average moves only while the model holds its own weights");
        tch::no_grad(|| {
            for (live, avg) in &mut self.pairs {
                let _ = avg.lerp_(live, 1.0 - self.decay);
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

    /// After k updates the average is decay^k * w0 + sum_i (1 - decay) * decay^(k - i) * w_i,
    /// for a parameter and a buffer alike; swapping twice gives the model its own weights back.
    #[test]
    fn after_k_steps_the_average_is_the_closed_form() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut w = vs.root().var("w", &[3], nn::Init::Const(1.0));
        let mut running = vs.root().zeros_no_train("running_mean", &[3]);
        let d = 0.9;
        let mut ema = Ema::new(&vs, d).unwrap();
        let steps = [[2.0, 0.0, -1.0], [4.0, 1.0, -1.0], [0.5, 2.0, 3.0]];
        for s in &steps {
            tch::no_grad(|| {
                w.copy_(&Tensor::from_slice(s));
                running.copy_(&(Tensor::from_slice(s) * 2.0));
            });
            ema.update();
        }
        let closed = |start: f64, i: usize, scale: f64| {
            let k = steps.len() as i32;
            d.powi(k) * start + steps.iter().enumerate().map(|(j, s)| (1.0 - d) * d.powi(k - 1 - j as i32) * s[i] * scale).sum::<f64>()
        };
        ema.swap();
        let (got_w, got_r) = (values(&w), values(&running));
        for i in 0..3 {
            assert!((got_w[i] - closed(1.0, i, 1.0)).abs() < 1e-6, "w[{i}]: {} vs {}", got_w[i], closed(1.0, i, 1.0));
            assert!((got_r[i] - closed(0.0, i, 2.0)).abs() < 1e-6, "running_mean[{i}]: {} vs {}", got_r[i], closed(0.0, i, 2.0));
        }
        ema.swap();
        assert_eq!(values(&w), vec![0.5, 2.0, 3.0], "the model's own weights come back bit for bit");
        assert!(Ema::new(&vs, 0.0).is_none(), "0 is off");
    }
}
