"""Loads image-learner Best Models in PyTorch (timm / torchvision) and runs them.

Usage: load_back.py INPUT.safetensors OUT.safetensors BUNDLE.zip [BUNDLE.zip ...]
Each bundle's model.safetensors is loaded with load_state_dict(strict=True) into the reference
architecture named in its config.json, with a head of as many classes; the logits of the input
`x` are written under the bundle's architecture name. A cross-validated bundle's members (its
config.json's `members`) are each loaded alone the same way, their logits written under
ARCHITECTURE/FILE.
"""
import io
import json
import sys
import zipfile

import torch
from safetensors.torch import load, load_file, save_file


def reference(arch, k):
    import torchvision

    if hasattr(torchvision.models, arch):
        return getattr(torchvision.models, arch)(weights=None, num_classes=k)
    import timm

    base = arch.replace("_384", "").replace("_in21ft1k", "")
    return timm.create_model(base, pretrained=False, num_classes=k)


def main():
    x = load_file(sys.argv[1])["x"]
    out = {}
    for path in sys.argv[3:]:
        with zipfile.ZipFile(path) as z:
            cfg = json.loads(z.read("config.json"))
            members = [m["weights"] for m in cfg.get("members", [])]
            states = {name: load(z.read(name)) for name in members or ["model.safetensors"]}
        for name, state in states.items():
            model = reference(cfg["architecture"], len(cfg["classes"]))
            model.load_state_dict(state, strict=True)
            model.eval()
            key = f"{cfg['architecture']}/{name}" if members else cfg["architecture"]
            with torch.no_grad():
                out[key] = model(x).contiguous()
    save_file(out, sys.argv[2])


if __name__ == "__main__":
    main()
