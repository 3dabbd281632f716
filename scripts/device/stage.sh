#!/usr/bin/env bash
# Stage what a GPU lease needs into .device/ (git-ignored; `carry` it): the Python packages the device
# image lacks, as wheels for its Python, and the trained VAE whose latents the denoiser learns.
#
#   bash scripts/device/stage.sh [VAE_SOURCE] [FROM_BASE]
#
# VAE_SOURCE is a base folder (default: the shipped src/flashcli/weights/tiny, so a fresh checkout can
# stage) or a VAE stage checkpoint of a pretraining run (runs/NAME/vae/checkpoint.pt). `unpack.sh` gives
# the rebuilt base that folder's DED, which was trained for its VAE.
# FROM_BASE, an exported base folder (e.g. the last lease's runs/gpu_export), makes the lease continue
# its denoiser instead of starting a new one, so leases add up. PYTHON_VERSIONS (default "3.12 3.13":
# the device's Python, and the next one in case its image moves on) picks the wheels; the lease
# installs the ones that fit its Python. The CPU rehearsal here uses 3.11.
#
# The device image (see the tool library's device/KINDS.md) has torch, transformers, peft, accelerate,
# safetensors, einops, typer, rich, pillow, imageio and numpy, but not diffusers, pydantic or
# platformdirs. The versions pinned here are the ones this repo is tested with.
set -euo pipefail
cd "$(dirname "$0")/../.."
vae=${1:-src/flashcli/weights/tiny}
from_base=${2:-}
python_versions=${PYTHON_VERSIONS:-3.12 3.13}
if [[ ! -f $vae && ! -f $vae/vae/config.json ]]; then
  echo "no VAE at $vae: pass a base folder (with vae/) or the vae/checkpoint.pt of a pretraining run" >&2
  exit 2
fi
if [[ -n $from_base && ! -f $from_base/transformer/config.json ]]; then
  echo "$from_base is not an exported base folder (no transformer/config.json)" >&2
  exit 2
fi
rm -rf .device && mkdir -p .device/wheels
# Wheels for the device's Python (x86-64 Linux); --no-deps: each missing package is named.
for version in $python_versions; do
  python -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .device/wheels $(cat scripts/device/wheels.txt)
done
# The VAE's weights and record without its optimizer state: half the size, and the lease only encodes.
PYTHONPATH=src python - "$vae" .device/vae_checkpoint.pt <<'PY'
import sys
from pathlib import Path

import torch

source = Path(sys.argv[1])
if source.is_dir():
    from flashcli.lab.pretrain.base_vae import vae_checkpoint_from_base

    state = vae_checkpoint_from_base(source)
else:
    state = torch.load(source, map_location="cpu", weights_only=False)
keep = ("model", "step", "elapsed", "eval", "decoder_only", "settings")
torch.save({key: state[key] for key in keep if key in state}, sys.argv[2])
PY
# Where the VAE came from, so unpack.sh can give the rebuilt base the DED trained for it.
if [[ -d $vae ]]; then echo "$vae" > .device/vae_source; else rm -f .device/vae_source; fi
if [[ -n $from_base ]]; then
  mkdir -p .device/init_base/transformer
  cp "$from_base"/transformer/* .device/init_base/transformer/
  cp "$from_base"/null_text.safetensors .device/init_base/
  if [[ -f $from_base/action_text.safetensors ]]; then cp "$from_base"/action_text.safetensors .device/init_base/; fi
fi
du -sh .device >&2
