//! The learning-rate schedule: the rate (and, for one-cycle, the momentum) of every optimiser
//! step of a run, planned from its length before the first step. The formulas are PyTorch's
//! (`LinearLR` for the warmup, then `CosineAnnealingLR`, `OneCycleLR` or `StepLR`), so that
//! `tests/it/reference/fidelity.rs` can check each step's rate against torch's own schedulers.
use std::f64::consts::PI;

use crate::config::{LrScheduleKind, TrainConfig};

/// `OneCycleLR`'s defaults: it starts at peak / 25, ends at that / 1e4, and moves the momentum
/// between 0.95 and 0.85, the opposite way to the rate.
const ONE_CYCLE_DIV: f64 = 25.0;
const ONE_CYCLE_FINAL_DIV: f64 = 1e4;
const ONE_CYCLE_MOMENTUM: (f64, f64) = (0.85, 0.95);
/// `OneCycleLR`'s share of the run spent rising, when `--warmup-epochs` does not set it.
const ONE_CYCLE_PCT_START: f64 = 0.3;

/// What a run asks of its schedule: `--lr-schedule` and the options that shape it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plan {
    pub kind: LrScheduleKind,
    /// `--learning-rate`.
    pub peak: f64,
    pub epochs: usize,
    /// May be a fraction of an epoch; it is rounded to whole steps.
    pub warmup_epochs: f64,
    /// Step: epochs between decays (None: decays at 1/2 and 3/4 of the epochs after the warmup).
    pub step_epochs: Option<usize>,
    /// Step: the factor at each decay.
    pub gamma: f64,
    /// Cosine: the rate of the last step (None: the peak / 100).
    pub min_lr: Option<f64>,
    /// Epochs of the head alone at the peak rate before the schedule (and its warmup) starts.
    pub freeze_epochs: usize,
}

impl Plan {
    pub fn from_config(cfg: &TrainConfig) -> Plan {
        Plan {
            kind: cfg.lr_schedule,
            peak: cfg.learning_rate,
            epochs: cfg.epochs,
            warmup_epochs: cfg.warmup_epochs,
            step_epochs: cfg.lr_step_epochs,
            gamma: cfg.lr_step_gamma,
            min_lr: cfg.min_lr,
            freeze_epochs: cfg.freeze_epochs,
        }
    }

    /// A plan with no options but the schedule, its peak and length.
    pub fn plain(kind: LrScheduleKind, peak: f64, epochs: usize) -> Plan {
        Plan { kind, peak, epochs, warmup_epochs: 0.0, step_epochs: None, gamma: 0.1, min_lr: None, freeze_epochs: 0 }
    }
}

/// The cosine's floor when `--min-lr` is not given, as a share of the peak.
const DEFAULT_MIN_LR_SHARE: f64 = 0.01;

#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    kind: LrScheduleKind,
    peak: f64,
    min_lr: f64,
    steps_per_epoch: usize,
    /// Steps of the head alone, at the peak, before the schedule proper.
    hold_steps: usize,
    freeze_epochs: usize,
    /// The schedule proper's steps, after the hold.
    total_steps: usize,
    warmup_steps: usize,
    warmup_epochs: f64,
    /// Step: a decay every this many epochs after the warmup, or (None) at the milestones.
    step_epochs: Option<usize>,
    /// Step: the epochs after the warmup at which the rate is multiplied by gamma.
    milestones: [usize; 2],
    gamma: f64,
}

/// The rate and momentum of one step. `momentum` is None where the schedule leaves the
/// optimiser's own (Adam's first beta of 0.9, SGD's momentum of 0.9) alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepRate {
    pub lr: f64,
    pub momentum: Option<f64>,
}

/// Cosine interpolation from `start` (at `pct` 0) to `end` (at 1), as `OneCycleLR` anneals.
fn cosine(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0)
}

impl Schedule {
    /// The rate of every step of `plan`, with `steps_per_epoch` steps in each epoch.
    pub fn new(plan: Plan, steps_per_epoch: usize) -> Schedule {
        let steps_per_epoch = steps_per_epoch.max(1);
        let epochs = plan.epochs.saturating_sub(plan.freeze_epochs).max(1);
        let total_steps = epochs * steps_per_epoch;
        let warmup_steps = ((plan.warmup_epochs * steps_per_epoch as f64).round() as usize).min(total_steps - 1);
        // MultiStepLR's usual milestones, as a share of the epochs after the warmup.
        let after_warmup = epochs as f64 - plan.warmup_epochs;
        let milestones = [(after_warmup * 0.5).round().max(1.0) as usize, (after_warmup * 0.75).round().max(1.0) as usize];
        Schedule {
            kind: plan.kind,
            peak: plan.peak,
            min_lr: plan.min_lr.unwrap_or(plan.peak * DEFAULT_MIN_LR_SHARE),
            steps_per_epoch,
            hold_steps: plan.freeze_epochs * steps_per_epoch,
            freeze_epochs: plan.freeze_epochs,
            total_steps,
            warmup_steps,
            warmup_epochs: plan.warmup_epochs,
            step_epochs: plan.step_epochs.map(|e| e.max(1)),
            milestones,
            gamma: plan.gamma,
        }
    }

    /// The schedule in words, for the report: "cosine down to 1e-5, after 1 warmup epoch".
    pub fn describe(&self) -> String {
        let mut out = match self.kind {
            LrScheduleKind::Step => match self.step_epochs {
                Some(e) => format!("step (x{} every {e} epochs)", self.gamma),
                None => {
                    // The epochs, counted from 1 over the whole run, that start at the lower rate.
                    let at = |m: usize| self.freeze_epochs as f64 + self.warmup_epochs.ceil() + m as f64 + 1.0;
                    format!("step (x{} from epochs {} and {})", self.gamma, at(self.milestones[0]), at(self.milestones[1]))
                }
            },
            LrScheduleKind::OneCycle if self.warmup_steps == 0 => "onecycle (rising for 30% of the steps)".into(),
            LrScheduleKind::OneCycle => format!("onecycle (rising for {} epochs)", self.warmup_epochs),
            LrScheduleKind::Cosine => format!("cosine down to {:e}", self.min_lr),
            k => k.name().into(),
        };
        if self.kind != LrScheduleKind::OneCycle && self.warmup_steps > 0 {
            let s = if self.warmup_epochs == 1.0 { "" } else { "s" };
            out += &format!(", after {} warmup epoch{s}", self.warmup_epochs);
        }
        if self.freeze_epochs > 0 {
            let s = if self.freeze_epochs == 1 { "" } else { "s" };
            out += &format!("; before it, {} epoch{s} of the head alone at the full rate", self.freeze_epochs);
        }
        out
    }

    /// The rate of step `step` (0-based, counted over the whole run).
    pub fn at(&self, step: usize) -> StepRate {
        let plain = |lr: f64| StepRate { lr, momentum: None };
        if step < self.hold_steps {
            return plain(self.peak);
        }
        let step = step - self.hold_steps;
        if self.kind == LrScheduleKind::OneCycle {
            return self.one_cycle(step);
        }
        if step < self.warmup_steps {
            // LinearLR(start_factor = 1 / warmup_steps): the first step already moves the weights.
            return plain(self.peak * (step + 1) as f64 / self.warmup_steps as f64);
        }
        let since = step - self.warmup_steps;
        match self.kind {
            LrScheduleKind::Constant => plain(self.peak),
            LrScheduleKind::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                plain(cosine(self.peak, self.min_lr, since.min(span) as f64 / span as f64))
            }
            LrScheduleKind::Step => {
                let epochs = since / self.steps_per_epoch;
                let decays = match self.step_epochs {
                    Some(e) => epochs / e,
                    None => self.milestones.iter().filter(|&&m| epochs >= m).count(),
                };
                plain(self.peak * self.gamma.powi(decays as i32))
            }
            LrScheduleKind::OneCycle => unreachable!("handled above"),
        }
    }

    /// `OneCycleLR` with its two cosine phases, the first one `--warmup-epochs` long (or 30% of
    /// the run); the phase boundaries are PyTorch's, fractional steps included.
    fn one_cycle(&self, step: usize) -> StepRate {
        let total = self.total_steps as f64;
        let pct_start = if self.warmup_steps > 0 { self.warmup_steps as f64 / total } else { ONE_CYCLE_PCT_START };
        let initial = self.peak / ONE_CYCLE_DIV;
        let last = initial / ONE_CYCLE_FINAL_DIV;
        let (low, high) = ONE_CYCLE_MOMENTUM;
        let rise_end = pct_start * total - 1.0;
        let s = step as f64;
        let (lr, momentum) = if s <= rise_end {
            let pct = if rise_end > 0.0 { s / rise_end } else { 1.0 };
            (cosine(initial, self.peak, pct), cosine(high, low, pct))
        } else {
            let pct = ((s - rise_end) / (total - 1.0 - rise_end)).min(1.0);
            (cosine(self.peak, last, pct), cosine(low, high, pct))
        };
        StepRate { lr, momentum: Some(momentum) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(s: &Schedule, n: usize) -> Vec<f64> {
        (0..n).map(|i| s.at(i).lr).collect()
    }

    #[test]
    fn constant_without_warmup_is_the_peak_at_every_step() {
        let s = Schedule::new(Plan::plain(LrScheduleKind::Constant, 0.001, 3), 4);
        assert!(rates(&s, 12).iter().all(|&r| r == 0.001));
        assert_eq!(s.at(5).momentum, None);
    }

    #[test]
    fn warmup_rises_linearly_to_the_peak_then_the_schedule_starts_from_it() {
        let s = Schedule::new(Plan { warmup_epochs: 1.0, min_lr: Some(0.0), ..Plan::plain(LrScheduleKind::Cosine, 1.0, 5) }, 4);
        let r = rates(&s, 20);
        assert_eq!(&r[..4], &[0.25, 0.5, 0.75, 1.0]);
        assert_eq!(r[4], 1.0, "the cosine starts at the peak");
        assert!(r[4..].windows(2).all(|w| w[1] < w[0]), "then falls at every step: {r:?}");
        assert!(r[19] > 0.0 && r[19] < 0.01, "and ends just above 0: {}", r[19]);
    }

    #[test]
    fn cosine_falls_to_the_peak_over_100_unless_told_and_warmup_may_be_a_fraction() {
        // 4 epochs of 10 steps, half an epoch of warmup: 5 warmup steps, then 35 of cosine.
        let s = Schedule::new(Plan { warmup_epochs: 0.5, ..Plan::plain(LrScheduleKind::Cosine, 1.0, 4) }, 10);
        let r = rates(&s, 40);
        assert_eq!(&r[..5], &[0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(r[5], 1.0);
        let floor = 0.01 + 0.99 / 2.0 * ((std::f64::consts::PI * 34.0 / 35.0).cos() + 1.0);
        assert!((r[39] - floor).abs() < 1e-15 && r[39] > 0.01, "the last step is one step above the floor: {}", r[39]);
        assert_eq!(s.describe(), "cosine down to 1e-2, after 0.5 warmup epochs");
        let s = Schedule::new(Plan { min_lr: Some(0.25), ..Plan::plain(LrScheduleKind::Cosine, 1.0, 4) }, 10);
        assert!(rates(&s, 40).iter().all(|&v| v > 0.25 && v <= 1.0));
    }

    #[test]
    fn step_decays_by_gamma_at_each_period_after_the_warmup() {
        let s = Schedule::new(Plan { warmup_epochs: 1.0, gamma: 0.5, step_epochs: Some(3), ..Plan::plain(LrScheduleKind::Step, 1.0, 10) }, 2);
        let per_epoch: Vec<f64> = (0..10).map(|e| s.at(e * 2 + 1).lr).collect();
        assert_eq!(per_epoch, [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]);
        assert_eq!(s.at(0).lr, 0.5, "half-way through the warmup epoch");
        assert_eq!(s.describe(), "step (x0.5 every 3 epochs), after 1 warmup epoch");
    }

    #[test]
    fn step_decays_at_half_and_three_quarters_of_the_run_unless_told() {
        let s = Schedule::new(Plan::plain(LrScheduleKind::Step, 1.0, 20), 3);
        let per_epoch: Vec<f64> = (0..20).map(|e| s.at(e * 3).lr).collect();
        let want: Vec<f64> = (0..20).map(|e| if e < 10 { 1.0 } else if e < 15 { 0.1 } else { 0.1f64.powi(2) }).collect();
        assert_eq!(per_epoch, want);
        assert_eq!(s.describe(), "step (x0.1 from epochs 11 and 16)");
        // After 2 frozen epochs and 2 of warmup, 16 epochs remain: decays 8 and 12 epochs later.
        let plan = Plan { freeze_epochs: 2, warmup_epochs: 2.0, ..Plan::plain(LrScheduleKind::Step, 1.0, 20) };
        let s = Schedule::new(plan, 1);
        assert_eq!(s.describe(), "step (x0.1 from epochs 13 and 17), after 2 warmup epochs; before it, 2 epochs of the head alone at the full rate");
        assert_eq!((s.at(11).lr, s.at(12).lr, s.at(16).lr), (1.0, 0.1, 0.1f64.powi(2)));
    }

    #[test]
    fn frozen_epochs_hold_the_peak_then_the_schedule_starts_with_its_warmup() {
        let plan = Plan { freeze_epochs: 2, warmup_epochs: 1.0, min_lr: Some(0.0), ..Plan::plain(LrScheduleKind::Cosine, 1.0, 6) };
        let held = Schedule::new(plan, 4);
        let fresh = Schedule::new(Plan { freeze_epochs: 0, epochs: 4, ..plan }, 4);
        let r = rates(&held, 24);
        assert!(r[..8].iter().all(|&v| v == 1.0), "the head alone at the peak: {r:?}");
        assert_eq!(&r[8..], &rates(&fresh, 16)[..], "then the schedule of the 4 remaining epochs");
        assert_eq!(r[8], 0.25, "whose warmup starts again from low");
        let one_cycle = Schedule::new(Plan { freeze_epochs: 1, ..Plan::plain(LrScheduleKind::OneCycle, 1.0, 3) }, 5);
        assert_eq!(one_cycle.at(4), StepRate { lr: 1.0, momentum: None });
        assert_eq!(one_cycle.at(5), Schedule::new(Plan::plain(LrScheduleKind::OneCycle, 1.0, 2), 5).at(0));
    }

    #[test]
    fn one_cycle_rises_to_the_peak_and_falls_far_below_its_start() {
        let s = Schedule::new(Plan::plain(LrScheduleKind::OneCycle, 1.0, 10), 10);
        let r = rates(&s, 100);
        let top = r.iter().cloned().fold(f64::MIN, f64::max);
        let at = r.iter().position(|&v| v == top).unwrap();
        assert!((top - 1.0).abs() < 1e-3 && (28..=30).contains(&at), "peak {top} at step {at}");
        assert!((r[0] - 0.04).abs() < 1e-12, "starts at peak / 25: {}", r[0]);
        assert!(r[99] < 1e-5, "ends at about peak / 250000: {}", r[99]);
        let m: Vec<f64> = (0..100).map(|i| s.at(i).momentum.unwrap()).collect();
        assert!((m[0] - 0.95).abs() < 1e-12 && (m[at] - 0.85).abs() < 1e-3 && (m[99] - 0.95).abs() < 1e-9);
    }
}
