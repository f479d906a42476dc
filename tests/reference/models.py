"""Reference outputs for the numerical fidelity tests.

For each architecture, builds the reference model (torchvision or timm) with fixed random weights
(batch-norm statistics randomised too, so eval mode is not an identity), runs a fixed input through
it in eval mode, and writes one safetensors file holding the state dict under the reference's own
parameter names plus `__input`, `__logits`, `__labels` and `__grad` (the cross-entropy gradient
of the first parameter). Usage: models.py OUT_DIR NAME [NAME ...]
"""
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

NUM_CLASSES = 5


def build(name):
    import torchvision

    if hasattr(torchvision.models, name):
        return getattr(torchvision.models, name)(weights=None, num_classes=NUM_CLASSES)
    import timm

    return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES)


def prepared(name, size=64):
    """The reference model in eval mode with its fixed random weights, the state dict saved for
    ours, and the fixed input of two `size` x `size` images."""
    torch.manual_seed(0)
    model = build(name)
    with torch.no_grad():
        # Norm weights, biases, residual scales and StarReLU's scalars away from their initial
        # 1 and 0, so that a port that swaps or drops one of them is caught.
        for pname, p in model.named_parameters():
            if p.ndim > 1 and not p.any():
                # A zero-initialised weight (torchvision's ViT head) would pass no gradient back
                # at all, so that the gradient and the heatmaps would compare only zeros.
                p.normal_(0, 0.02)
            elif p.ndim <= 1:
                if pname.endswith("bias"):
                    p.uniform_(-0.2, 0.2)
                else:
                    p.uniform_(0.5, 1.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    state = model.state_dict()
    x = torch.randn(2, 3, size, size)
    if name.startswith("vit_"):
        # torchvision's ViT runs at the size it was built for: build one for this size with the
        # 224x224 position embedding interpolated its own way; the weights saved are the
        # 224x224 ones, which ours interpolates itself.
        import torchvision
        from torchvision.models.vision_transformer import interpolate_embeddings

        model = getattr(torchvision.models, name)(weights=None, num_classes=NUM_CLASSES, image_size=size)
        model.load_state_dict(interpolate_embeddings(size, model.patch_size, state.copy()))
        model.eval()
    return model, state, x


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[2:]:
        model, state, x = prepared(name)
        labels = torch.tensor([1, 3])
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        first_name, first = next(iter(model.named_parameters()))
        (grad,) = torch.autograd.grad(loss, first)
        tensors = {k: v.detach().contiguous() for k, v in state.items() if v.dtype == torch.float32}
        tensors.update(
            {"__input": x, "__logits": logits.detach(), "__labels": labels, "__grad": grad.contiguous()}
        )
        save_file(tensors, str(out / f"{name}.safetensors"), metadata={"first_parameter": first_name})


if __name__ == "__main__":
    main()
