"""Each step's learning rate (and one-cycle's momentum) from PyTorch's own schedulers, for the
cases in argv[1] (JSON); writes {"lr": [...], "momentum": [...] or null} per case to argv[2].

The warmup (warmup epochs x steps per epoch, rounded to whole steps) is LinearLR from
1/warmup_steps of the peak up to the peak, stepped per step; the rest is CosineAnnealingLR (per
step, down to min_lr, else peak / 100), StepLR (stepped after every steps_per_epoch steps since the
warmup; without a period, MultiStepLR with milestones at 1/2 and 3/4 of the epochs after the
warmup) or the peak. OneCycleLR covers the whole run, its rising share set by the warmup (0.3
without). With frozen epochs, the head alone trains at the peak for them (momentum left alone)
and the schedule above starts afterwards, as if the run began there."""
import json
import math
import sys

import torch


def rates(case):
    kind, peak = case["kind"], case["peak"]
    spe, warmup, frozen = case["steps_per_epoch"], case["warmup_epochs"], case["freeze_epochs"]
    epochs = case["epochs"] - frozen
    total, w = epochs * spe, round(warmup * spe)
    held = [peak] * (frozen * spe)
    out = schedule(kind, peak, spe, epochs, warmup, total, w, case)
    out["lr"] = held + out["lr"]
    if out["momentum"] is not None:
        out["momentum"] = [None] * len(held) + out["momentum"]
    return out


def schedule(kind, peak, spe, epochs, warmup, total, w, case):
    def optimiser():
        return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=peak)

    lr, momentum = [], []
    if kind == "onecycle":
        opt = optimiser()
        pct = w / total if w else 0.3
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak, total_steps=total, pct_start=pct)
        for _ in range(total):
            lr.append(opt.param_groups[0]["lr"])
            momentum.append(opt.param_groups[0]["betas"][0])
            opt.step()
            sched.step() if len(lr) < total else None
        return {"lr": lr, "momentum": momentum}
    if w:
        opt = optimiser()
        sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / w, end_factor=1.0, total_iters=w - 1)
        for _ in range(w):
            lr.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    opt = optimiser()
    rest = total - w
    if kind == "cosine":
        floor = case["min_lr"] if case["min_lr"] is not None else peak / 100
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=rest, eta_min=floor)
        for _ in range(rest):
            lr.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    elif kind == "step":
        if case["step_epochs"]:
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=case["step_epochs"], gamma=case["gamma"])
        else:
            after = epochs - warmup
            # Python's round() goes half to even; ours half away from zero, as f64::round does.
            milestones = [max(1, int(math.floor(after * f + 0.5))) for f in (0.5, 0.75)]
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=case["gamma"])
        for i in range(rest):
            lr.append(opt.param_groups[0]["lr"])
            opt.step()
            if (i + 1) % spe == 0:
                sched.step()
    else:
        lr.extend([peak] * rest)
    return {"lr": lr, "momentum": None}


if __name__ == "__main__":
    cases = json.load(open(sys.argv[1]))
    json.dump([rates(c) for c in cases], open(sys.argv[2], "w"))
