"""torchvision's own augmentation functions on the images and drawn parameters in argv[1] (JSON);
writes each case's output image (HWC, uint8, flattened) to argv[2].

Cases: "crop" (F.resized_crop back to the image's size, bilinear, antialiased, as
RandomResizedCrop calls it), "jitter" (ColorJitter.forward's four adjustments in the drawn order)
and "trivial" (the _apply_op that TrivialAugmentWide calls, nearest-pixel, no fill)."""
import json
import sys

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F
from torchvision.transforms.autoaugment import _apply_op


def run(case, images, size):
    img = torch.tensor(images[case["image"]], dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1)
    kind = case["kind"]
    if kind == "crop":
        c = case["crop"]
        out = F.resized_crop(img, c["top"], c["left"], c["height"], c["width"], [size, size],
                             interpolation=InterpolationMode.BILINEAR, antialias=True)
    elif kind == "jitter":
        j = case["jitter"]
        out = img
        for fn_id in j["order"]:
            if fn_id == 0:
                out = F.adjust_brightness(out, j["brightness"])
            elif fn_id == 1:
                out = F.adjust_contrast(out, j["contrast"])
            elif fn_id == 2:
                out = F.adjust_saturation(out, j["saturation"])
            else:
                out = F.adjust_hue(out, j["hue"])
    else:
        out = _apply_op(img, case["op"], case["magnitude"], interpolation=InterpolationMode.NEAREST, fill=None)
    return out.permute(1, 2, 0).reshape(-1).tolist()


if __name__ == "__main__":
    spec = json.load(open(sys.argv[1]))
    json.dump([run(c, spec["images"], spec["size"]) for c in spec["cases"]], open(sys.argv[2], "w"))
