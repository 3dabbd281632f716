#!/usr/bin/env bash
# Stage what a GPU lease needs into .device/ (git-ignored; `carry` it): the Python packages the device
# image lacks, as wheels for its Python, and the trained VAE whose latents the denoiser learns.
#
#   bash scripts/device/stage.sh [VAE_CHECKPOINT] [PYTHON_VERSION]
#
# The device image (see the tool library's device/KINDS.md) has torch, transformers, peft, accelerate,
# safetensors, einops, typer, rich, pillow, imageio and numpy, but not diffusers, pydantic or
# platformdirs. The versions pinned here are the ones this repo is tested with.
set -euo pipefail
cd "$(dirname "$0")/../.."
vae=${1:-runs/tiny_v8/vae/checkpoint.pt}
python_version=${2:-3.12}
if [[ ! -f $vae ]]; then
  echo "no VAE checkpoint at $vae: pass the vae/checkpoint.pt of a pretraining run" >&2
  exit 2
fi
rm -rf .device && mkdir -p .device/wheels
# Wheels for the device's Python (x86-64 Linux); --no-deps: each missing package is named.
python -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .device/wheels \
  diffusers==0.42.1 importlib_metadata==10.2.0 zipp==4.1.2 pydantic==2.14.4 pydantic_core==2.50.5 \
  annotated-types==0.8.0 typing-inspection==0.4.5 platformdirs==4.14.8
cp "$vae" .device/vae_checkpoint.pt
du -sh .device >&2
