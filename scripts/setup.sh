#!/usr/bin/env bash
# Set-up for the main job: a Python venv holding the libtorch that tch links against (torch from
# PyPI), and the environment the build needs. The venv lives outside the work tree and is reused
# by later runs and by CI on the same machine. Sourced by scripts/demo.sh and, through
# scripts/setup-test.sh, by scripts/test.sh; it leaves the caller's shell options alone.

TORCH_VERSION=2.13.0

cache="${IMAGE_LEARNER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/image-learner}"
venv="$cache/venv-torch$TORCH_VERSION"

if [ ! -f "$venv/.image-learner-torch" ]; then
  echo "setup: creating $venv (torch $TORCH_VERSION, about 5 GB, once)" >&2
  mkdir -p "$cache" &&
    python3 -m venv "$venv" &&
    "$venv/bin/pip" install --quiet --upgrade pip &&
    "$venv/bin/pip" install --quiet "torch==$TORCH_VERSION" &&
    "$venv/bin/python" -W ignore -c "import torch; assert torch.__version__.startswith('$TORCH_VERSION'), torch.__version__" &&
    touch "$venv/.image-learner-torch" || { echo "setup: failed; see the messages above" >&2; return 1 2>/dev/null || exit 1; }
fi

# What the build needs: tch builds against this torch, and build.rs finds it through this Python.
export LIBTORCH_USE_PYTORCH=1
export IMAGE_LEARNER_PYTHON="$venv/bin/python"
export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
