"""The Python reference for the benchmark: the same jobs written the way a careful engineer
would with PyTorch 2.13, timm and scikit-learn.

  reference.py throughput MODEL --layout contiguous|channels_last --precision fp32|bf16
      Prints one JSON line: steady-state training images/s on random batches (batch 32, 96x96,
      Adam, cross-entropy), as `image-learner throughput` measures ours.
  reference.py train --images ZIP --metadata CSV --model NAME --out DIR [--epochs 3] ...
      The tutorial job end to end: decode the ZIP once (DataLoader workers), stratified
      70/10/20 split with the seed, horizontal-flip augmentation in DataLoader workers, Adam,
      best epoch by validation loss, then train/validation/test evaluation with scikit-learn
      metrics, and the outputs: predictions CSV, training history CSV, metrics JSON, model
      state dict. No HTML report (which makes it faster than ours, not slower).
      The recipe options mirror ours: --lr-schedule/--warmup-epochs/--min-lr (the rates come from
      PyTorch's own schedulers, through tests/reference/schedules.py), --freeze-epochs (head and
      batch norm alone first), --backbone-lr-mult and --layer-decay (one parameter group per
      multiplier, each family's stages as src/models names them), --ema-decay (timm's
      ModelEmaV3), --optimizer, --weight-decay, --label-smoothing and --weights (a pretrained
      state dict, the head left out).
"""
import argparse
import copy
import csv
import io
import json
import os
import sys
import time
import zipfile

import numpy as np
import timm
import torch
import torchvision
from PIL import Image


# The classifier head each family adds (the state-dict prefix src/models gives as head_prefix).
HEADS = (("resnet", "fc"), ("resnext", "fc"), ("wide_resnet", "fc"), ("efficientnet_lite", "classifier"),
         ("poolformerv2", "head.fc"), ("caformer", "head.fc.fc2"), ("convformer", "head.fc.fc2"))
LAST = 2**32 - 1


def head_prefix(model_name):
    for family, head in HEADS:
        if model_name.startswith(family):
            return head
    sys.exit(f"bench/reference.py has no head or stage rule for {model_name}: add its family to HEADS and stage_key")


def stage_key(model_name, name):
    """As each family's `stage_key` in src/models: a sort key, LAST joining the last stage."""
    import re

    def number(prefix):
        m = re.match(re.escape(prefix) + r"(\d+)", name)
        return int(m.group(1)) if m else None

    if model_name.startswith(("resnet", "resnext", "wide_resnet")):
        return number("layer") or 0
    if model_name.startswith("efficientnet_lite"):
        b = number("blocks.")
        return b + 1 if b is not None else (7 if name.startswith(("conv_head", "bn2")) else 0)
    s = number("stages.")
    return s + 1 if s is not None else (LAST if name.startswith("head.") else 0)


def rate_multipliers(model_name, names, backbone_lr_mult, layer_decay):
    """Each parameter's share of the scheduled rate: 1 for the head, backbone_lr_mult *
    layer_decay ** (stages - stage) for the backbone, stage 0 being the stem."""
    head = head_prefix(model_name) + "."
    body = [n for n in names if not n.startswith(head)]
    keys = {n: stage_key(model_name, n) for n in body}
    last = max([k for k in keys.values() if k != LAST], default=0)
    keys = {n: min(k, last) for n, k in keys.items()}
    ranks = {k: i for i, k in enumerate(sorted(set(keys.values())))}
    out = {n: 1.0 for n in names}
    out.update({n: backbone_lr_mult * layer_decay ** (len(ranks) - ranks[k]) for n, k in keys.items()})
    return out


def step_rates(a, steps_per_epoch):
    """The rate (as a share of the peak) and one-cycle's momentum of every step, from PyTorch's
    schedulers as tests/reference/schedules.py runs them."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
    from schedules import rates
    case = {"kind": a.lr_schedule, "peak": 1.0, "epochs": a.epochs, "steps_per_epoch": steps_per_epoch,
            "warmup_epochs": a.warmup_epochs, "step_epochs": None, "gamma": 0.1,
            "min_lr": None if a.min_lr is None else a.min_lr / a.learning_rate, "freeze_epochs": a.freeze_epochs}
    return rates(case)


def make_model(name, k):
    if hasattr(torchvision.models, name):
        return getattr(torchvision.models, name)(weights=None, num_classes=k)
    # Our `caformer_s18_384` is timm's `caformer_s18` with the 384x384 weight tag: one architecture.
    return timm.create_model(name.replace("_384", "").replace("_in21ft1k", ""), pretrained=False, num_classes=k)


def throughput(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = make_model(a.model, 7)
    x = torch.randn(a.batch_size, 3, a.image_size, a.image_size)
    y = torch.randint(0, 7, (a.batch_size,))
    if a.layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    # PyTorch's default Adam on CPU is the unfused one (`fused=True` is opt-in).
    opt = torch.optim.Adam(model.parameters(), 1e-3, fused=a.fused_adam)
    model.train()
    for step in range(a.warmup + a.steps):
        if step == a.warmup:
            t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t
    print(json.dumps({"model": a.model, "layout": a.layout, "precision": a.precision, "fused_adam": a.fused_adam,
                      "images_per_second": a.batch_size * a.steps / seconds}))


class ZipImages(torch.utils.data.Dataset):
    """Decodes and resizes entries of a ZIP (each worker opens its own handle)."""

    def __init__(self, path, names, size):
        self.path, self.names, self.size, self.zip = path, names, size, None

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        if self.zip is None:
            self.zip = zipfile.ZipFile(self.path)
        img = Image.open(io.BytesIO(self.zip.read(self.names[i]))).convert("RGB")
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


class Augmented(torch.utils.data.Dataset):
    def __init__(self, pixels, labels, mean, std, flip):
        self.pixels, self.labels, self.mean, self.std, self.flip = pixels, labels, mean, std, flip

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = (self.pixels[i].float() / 255.0 - self.mean) / self.std
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.labels[i]


def train(a):
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, confusion_matrix,
                                 f1_score, precision_score, recall_score, roc_auc_score)
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.model_selection import train_test_split

    started = time.perf_counter()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    with open(a.metadata, newline="") as f:
        rows = list(csv.DictReader(f))
    with zipfile.ZipFile(a.images) as z:
        entries = {os.path.basename(n): n for n in z.namelist() if not n.endswith("/")}
    rows = [r for r in rows if os.path.basename(r["image_path"]) in entries]
    names = [entries[os.path.basename(r["image_path"])] for r in rows]
    classes = sorted({r[a.label_column] for r in rows})
    labels = torch.tensor([classes.index(r[a.label_column]) for r in rows])
    loader = torch.utils.data.DataLoader(ZipImages(a.images, names, a.image_size), batch_size=64,
                                         num_workers=a.workers)
    pixels = torch.cat(list(loader))
    ingested = time.perf_counter() - started

    idx = np.arange(len(rows))
    if a.split_column:
        # The file's own split (train/validation/test or 0/1/2), as ours honours it.
        alias = {"0": "train", "1": "validation", "val": "validation", "valid": "validation", "dev": "validation", "2": "test"}
        side = [alias.get(r[a.split_column].strip().lower(), r[a.split_column].strip().lower()) for r in rows]
        train_idx, val_idx, test_idx = (np.array([i for i in idx if side[i] == s]) for s in ("train", "validation", "test"))
    else:
        train_idx, rest = train_test_split(idx, test_size=0.3, stratify=labels.numpy(), random_state=a.seed)
        val_idx, test_idx = train_test_split(rest, test_size=2 / 3, stratify=labels.numpy()[rest], random_state=a.seed)
    # Class weights as scikit-learn's "balanced"; auto only when the largest class has 3x the smallest.
    counts = np.bincount(labels[train_idx].numpy(), minlength=len(classes))
    present = counts[counts > 0]
    weighted = a.class_balance == "loss" or (a.class_balance == "auto" and present.max() >= 3 * present.min())
    class_weight = None
    if weighted:
        w = compute_class_weight("balanced", classes=np.flatnonzero(counts), y=labels[train_idx].numpy())
        class_weight = torch.zeros(len(classes))
        class_weight[np.flatnonzero(counts)] = torch.tensor(w, dtype=torch.float32)
    model = make_model(a.model, len(classes))
    cfg = model.pretrained_cfg if hasattr(model, "pretrained_cfg") else {}
    mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(3, 1, 1)
    std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(3, 1, 1)
    cl = a.layout == "channels_last"
    device = torch.device(a.device)
    dev = device.type
    model = model.to(device)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    bf16 = a.precision == "bf16"

    def to_device(x):
        x = x.to(device, non_blocking=True)
        return x.to(memory_format=torch.channels_last) if cl else x

    def batches(ix, shuffle, flip):
        ds = Augmented(pixels[ix], labels[ix], mean, std, flip)
        return torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=shuffle, num_workers=a.workers,
                                           pin_memory=dev == "cuda")

    def predict(ix):
        net = ema.module if ema is not None else model
        net.eval()
        out = []
        with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            for x, _ in batches(ix, False, False):
                x = to_device(x)
                views = [x] + ([x.flip(-1)] if a.tta != "none" else []) + ([x.flip(-2), x.flip(-2).flip(-1)] if a.tta == "flip4" else [])
                out.append(torch.stack([net(v).float().softmax(-1) for v in views]).mean(0).cpu())
        return torch.cat(out)

    if a.weights:
        head = head_prefix(a.model) + "."
        if a.weights.endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(a.weights)
        else:
            state = torch.load(a.weights, map_location="cpu")
        state = {k: v for k, v in state.items() if not k.startswith(head)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not m.startswith(head) for m in missing):
            sys.exit(f"{a.weights} does not fit {a.model}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        # The new head starts as ours does, from nn.Linear's own initialisation. timm's
        # create_model gives EfficientNet's TF-style one, uniform within 1/sqrt(classes): with 7
        # classes the first epoch then starts from large logits (train loss 2.9 instead of 1.4).
        new_head = model.get_submodule(head[:-1])
        if isinstance(new_head, torch.nn.Linear):
            new_head.reset_parameters()
    names = [n for n, _ in model.named_parameters()]
    mult = rate_multipliers(a.model, names, a.backbone_lr_mult, a.layer_decay)
    groups = {}
    for n, p_ in model.named_parameters():
        groups.setdefault(mult[n], []).append(p_)
    param_groups = [{"params": ps, "lr": a.learning_rate * m} for m, ps in sorted(groups.items())]
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(param_groups, a.learning_rate, momentum=0.9, weight_decay=a.weight_decay)
    else:
        kind = torch.optim.AdamW if a.optimizer == "adamw" else torch.optim.Adam
        opt = kind(param_groups, a.learning_rate, weight_decay=a.weight_decay, fused=a.fused_adam)
    steps_per_epoch = -(-len(train_idx) // a.batch_size)
    schedule = step_rates(a, steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: schedule["lr"][min(step, len(schedule["lr"]) - 1)])
    batch_norm = {f"{m_name}.{p_name}" for m_name, m in model.named_modules()
                  if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for p_name, _ in m.named_parameters()}
    head = head_prefix(a.model) + "."
    frozen = [p_ for n, p_ in model.named_parameters()
              if a.freeze_epochs and not n.startswith(head) and n not in batch_norm]
    for p_ in frozen:
        p_.requires_grad_(False)
    ema = None
    if a.ema_decay > 0:
        from timm.utils import ModelEmaV3
        # With its warmup, as ours (src/ema.rs): the mean of the steps so far until that reaches the decay.
        ema = ModelEmaV3(model, decay=a.ema_decay, use_warmup=True, warmup_power=1.0)
    step = 0
    history, best, best_state = [], None, None
    training_started = time.perf_counter()
    wait = 0.0
    for epoch in range(1, a.epochs + 1):
        if epoch == a.freeze_epochs + 1:
            for p_ in frozen:
                p_.requires_grad_(True)
        model.train()
        t0 = time.perf_counter()
        total, seen, w0 = 0.0, 0, time.perf_counter()
        pass_probs, pass_truth = [], []
        for x, y in batches(train_idx, True, a.flip):
            wait += time.perf_counter() - w0
            x, y = to_device(x), y.to(device, non_blocking=True)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
                out = model(x)
                loss = torch.nn.functional.cross_entropy(out, y, weight=None if class_weight is None else class_weight.to(device),
                                                         label_smoothing=a.label_smoothing)
            pass_probs.append(out.detach().float().softmax(-1).cpu())
            pass_truth.append(y.cpu())
            if schedule["momentum"] is not None and schedule["momentum"][step] is not None:
                for g in opt.param_groups:
                    if "betas" in g:
                        g["betas"] = (schedule["momentum"][step], g["betas"][1])
                    else:
                        g["momentum"] = schedule["momentum"][step]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if ema is not None:
                ema.update(model, step=step)
            total += loss.item() * len(y)
            seen += len(y)
            w0 = time.perf_counter()
        p = predict(val_idx)
        val_loss = torch.nn.functional.nll_loss(p.clamp_min(1e-12).log(), labels[val_idx]).item()
        val_acc = (p.argmax(1) == labels[val_idx]).float().mean().item()
        history.append({"epoch": epoch, "train_loss": total / seen, "validation_loss": val_loss,
                        "validation_accuracy": val_acc, "seconds": time.perf_counter() - t0})
        print(f"epoch {epoch}: train loss {total / seen:.4f} | validation loss {val_loss:.4f} acc {val_acc:.4f}",
              file=sys.stderr, flush=True)
        if best is None or val_loss < best:
            best, best_state = val_loss, copy.deepcopy((ema.module if ema is not None else model).state_dict())
            best_epoch = epoch
            # As ours: the final validation figures are this pass, the train figures (unless
            # --evaluate-train) this epoch's own training pass.
            best_val = p
            best_pass = (torch.cat(pass_probs), torch.cat(pass_truth))
    training = time.perf_counter() - training_started

    evaluation_started = time.perf_counter()
    model.load_state_dict(best_state)
    ema = None  # the kept weights are now the model's
    metrics = {}
    for split, ix in (("train", train_idx), ("validation", val_idx), ("test", test_idx)):
        if split == "train" and not a.evaluate_train:
            p, t = best_pass[0].numpy(), best_pass[1].numpy()
        else:
            p = best_val.numpy() if split == "validation" else predict(ix).numpy()
            t = labels[ix].numpy()
        pred = p.argmax(1)
        metrics[split] = {
            "accuracy": accuracy_score(t, pred),
            "balanced_accuracy": balanced_accuracy_score(t, pred),
            "precision_macro": precision_score(t, pred, average="macro", zero_division=0),
            "recall_macro": recall_score(t, pred, average="macro", zero_division=0),
            "f1_macro": f1_score(t, pred, average="macro", zero_division=0),
            "roc_auc_ovr_macro": roc_auc_score(t, p, multi_class="ovr", labels=list(range(len(classes)))),
            "cohen_kappa": cohen_kappa_score(t, pred),
            "confusion_matrix": confusion_matrix(t, pred, labels=list(range(len(classes)))).tolist(),
        }
        if split == "test":
            test_probs, test_truth = p, t
    evaluation = time.perf_counter() - evaluation_started
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "predictions.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "label", "prediction"] + [f"probability_{c}" for c in classes])
        for i, pr, tr in zip(test_idx, test_probs, test_truth):
            w.writerow([rows[i]["image_path"], classes[tr], classes[pr.argmax()]] + [f"{v:.6f}" for v in pr])
    with open(os.path.join(a.out, "training_history.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    metrics["best_epoch"] = best_epoch
    with open(os.path.join(a.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    torch.save(best_state, os.path.join(a.out, "model.pt"))
    print(f"time: data {ingested:.1f} s, training {training:.1f} s (waiting for batches {100 * wait / training:.1f}%), "
          f"final evaluation {evaluation:.1f} s; test accuracy {metrics['test']['accuracy']:.4f}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("model")
    t.add_argument("--layout", default="contiguous", choices=["contiguous", "channels_last"])
    t.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--image-size", type=int, default=96)
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--steps", type=int, default=8)
    t.add_argument("--fused-adam", action="store_true", help="torch.optim.Adam(fused=True)")
    t.add_argument("--threads", type=int, default=os.cpu_count())
    r = sub.add_parser("train")
    r.add_argument("--images", required=True)
    r.add_argument("--metadata", required=True)
    r.add_argument("--model", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--epochs", type=int, default=3)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--image-size", type=int, default=96)
    r.add_argument("--learning-rate", type=float, default=0.001)
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--no-flip", dest="flip", action="store_false")
    r.add_argument("--layout", default="channels_last", choices=["contiguous", "channels_last"])
    r.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    r.add_argument("--workers", type=int, default=1)
    r.add_argument("--fused-adam", action="store_true", help="torch.optim.Adam(fused=True)")
    r.add_argument("--evaluate-train", action="store_true",
                   help="evaluate the training images again (else the best epoch's training pass)")
    r.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"])
    r.add_argument("--weight-decay", type=float, default=0.0)
    r.add_argument("--label-smoothing", type=float, default=0.0)
    r.add_argument("--class-balance", default="none", choices=["none", "loss", "auto"])
    r.add_argument("--tta", default="none", choices=["none", "flip", "flip4"])
    r.add_argument("--label-column", default="label")
    r.add_argument("--split-column", help="a column of train/validation/test (or 0/1/2); else a stratified 70/10/20")
    r.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine", "onecycle", "step"])
    r.add_argument("--warmup-epochs", type=float, default=0.0)
    r.add_argument("--min-lr", type=float, default=None)
    r.add_argument("--freeze-epochs", type=int, default=0)
    r.add_argument("--backbone-lr-mult", type=float, default=1.0)
    r.add_argument("--layer-decay", type=float, default=1.0)
    r.add_argument("--ema-decay", type=float, default=0.0)
    r.add_argument("--weights", help="a pretrained state dict (.pth or .safetensors); its head is left out")
    r.add_argument("--device", default="cpu")
    r.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    throughput(a) if a.command == "throughput" else train(a)


if __name__ == "__main__":
    main()
