"""Loads image-learner Best Models in PyTorch (timm / torchvision) and runs them.

Usage: load_back.py INPUT.safetensors OUT.safetensors BUNDLE.zip [BUNDLE.zip ...]
Each bundle's model.safetensors is loaded with load_state_dict(strict=True) into the reference
architecture named in its config.json, with a head of as many classes; the logits of the input
`x` are written under the bundle's architecture name.
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
            state = load(z.read("model.safetensors"))
        model = reference(cfg["architecture"], len(cfg["classes"]))
        model.load_state_dict(state, strict=True)
        model.eval()
        with torch.no_grad():
            out[cfg["architecture"]] = model(x).contiguous()
    save_file(out, sys.argv[2])


if __name__ == "__main__":
    main()
