"""Checkpoints as PyTorch writes them, for the `weights import` tests.

Usage: checkpoints.py OUT_DIR
Writes, each next to NAME.expected.safetensors (the float32 tensors import must install):
- mobilenet_v3_small.pth: a torchvision state dict (an OrderedDict), zip format, as torchvision
  publishes its weights;
- densenet121.pth: the legacy (pre-1.6) format with the 2017 key names (`denselayer1.norm.1`) of
  torchvision's own DenseNet file;
- caformer_s18.pth: a training checkpoint wrapping the state dict, in half precision, under
  "model", next to an epoch number and an argparse Namespace;
- caformer_s18_sail.pth: the same architecture under the original MetaFormer release's names
  (sail-sg: `downsample_layers.N`, `stages.S.B`, `norm`, `head.fc1`), scales as flat vectors;
- evil.pth: a pickle whose object would run a shell command if unpickled by Python.
"""
import argparse
import os
import sys
from pathlib import Path

import timm
import torch
import torchvision
from safetensors.torch import save_file


def expected(out, name, state):
    save_file({k: v.float().contiguous() for k, v in state.items() if v.is_floating_point()}, str(out / f"{name}.expected.safetensors"))


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {sys.argv[1]}/pwned",))


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    state = torchvision.models.mobilenet_v3_small().state_dict()
    torch.save(state, out / "mobilenet_v3_small.pth")
    expected(out, "mobilenet_v3_small", state)

    state = torchvision.models.densenet121().state_dict()
    old = {}
    for k, v in state.items():
        for layer in ("norm", "relu", "conv"):
            for i in ("1", "2"):
                if ".denselayer" in k:
                    k = k.replace(f".{layer}{i}.", f".{layer}.{i}.")
        old[k] = v
    torch.save(old, out / "densenet121.pth", _use_new_zipfile_serialization=False)
    expected(out, "densenet121", state)

    state = {k: v.half() for k, v in timm.create_model("caformer_s18").state_dict().items()}
    torch.save({"epoch": 7, "model": state, "args": argparse.Namespace(lr=0.1)}, out / "caformer_s18.pth")
    expected(out, "caformer_s18", state)

    state = timm.create_model("caformer_s18").state_dict()
    sail = {}
    for k, v in state.items():
        parts = k.split(".")
        if parts[0] == "stem":
            k = "downsample_layers.0." + ".".join(parts[1:]).replace("norm", "post_norm")
        elif parts[0] == "stages" and parts[2] == "downsample":
            k = f"downsample_layers.{parts[1]}." + ".".join(parts[3:]).replace("norm", "pre_norm")
        elif parts[0] == "stages" and parts[2] == "blocks":
            k = ".".join(parts[:2] + parts[3:])
        elif k.startswith("head.norm."):
            k = k[len("head."):]
        elif k.startswith("head.fc."):
            k = "head." + k[len("head.fc."):]
        sail[k] = v.reshape(-1) if "scale" in k else v
    torch.save(sail, out / "caformer_s18_sail.pth")
    expected(out, "caformer_s18_sail", state)

    torch.save({"weight": torch.ones(2), "payload": Evil()}, out / "evil.pth")


if __name__ == "__main__":
    main()
