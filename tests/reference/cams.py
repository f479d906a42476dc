"""Reference heatmaps for the explanation parity test.

For each architecture, the reference model of models.py (same fixed random weights) on two
128x128 images, explained by pytorch-grad-cam's GradCAM and HiResCAM at the target layer our
model spec names (`NAME=TARGET`, TARGET a path under the model such as `layer4[-1]`). Random
weights often give a map that is zero everywhere (every weighted sum negative), which would
compare nothing, so each image's target is the class whose Grad-CAM map varies most. Writes one
safetensors file per model: the state dict under the reference's names, `__input`, `__targets`,
`__gradcam` and `__hirescam`. Usage: cams.py OUT_DIR NAME=TARGET [NAME=TARGET ...]
"""
import sys
from pathlib import Path

import torch
from pytorch_grad_cam import GradCAM, HiResCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import save_file

from models import NUM_CLASSES, prepared

SIZE = 128


def reshape_for(name):
    """pytorch-grad-cam's reshape transforms: ViT's tokens (class token dropped) to the patch grid,
    Swin's channels-last map to NCHW."""
    if name.startswith("vit_"):
        def tokens(t):
            side = int(round((t.shape[1] - 1) ** 0.5))
            return t[:, 1:, :].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)
        return tokens
    if name.startswith("swin_"):
        return lambda t: t.permute(0, 3, 1, 2)
    return None


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for arg in sys.argv[2:]:
        name, target = arg.split("=", 1)
        model, state, x = prepared(name, SIZE)
        layer = eval(f"model.{target}", {"model": model})
        reshape = reshape_for(name)

        def maps(method, targets):
            with method(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
                return torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(c) for c in targets])).float()

        per_class = [maps(GradCAM, [c] * len(x)) for c in range(NUM_CLASSES)]
        targets = [max(range(NUM_CLASSES), key=lambda c: float(per_class[c][i].std())) for i in range(len(x))]
        tensors = {k: v.detach().contiguous() for k, v in state.items() if v.dtype == torch.float32}
        tensors.update({"__input": x, "__targets": torch.tensor(targets), "__gradcam": maps(GradCAM, targets), "__hirescam": maps(HiResCAM, targets)})
        save_file(tensors, str(out / f"{name}.safetensors"))


if __name__ == "__main__":
    main()
