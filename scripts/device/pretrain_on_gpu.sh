#!/usr/bin/env bash
# One GPU lease's pretraining of the tiny denoiser, start to finish, inside a time budget:
# install the staged wheels, encode fresh pretraining clips with the staged VAE, train a denoiser (new,
# or the staged FROM_BASE's) for the time left, export the base and pack it into $OUT for the trip back.
#
# Here first:  bash scripts/device/stage.sh [VAE_SOURCE] [FROM_BASE]  (fills .device/, carried)
# Device call: run(command="bash scripts/device/pretrain_on_gpu.sh 480", carry=[".device"], timeout_s=560)
# Back here:   bash scripts/device/unpack.sh FILES_AT runs/gpu_export
#              (then judge it: see the model card)
#
# Arguments: BUDGET_SECONDS (default 540) [DEVICE (default cuda)] [CLIPS (default 8000)]; any further
# arguments go to the dit stage (e.g. --dit-layers 8 --dit-heads 6). DATA picks the clips for both
# stages, e.g. DATA="--data-frames 9 --data-phase 0": 9-frame clips that start from rest, the quick
# preset's clips and how issue 5's bar (c) is judged. The CPU rehearsal (with .device
# staged by PYTHON_VERSIONS=3.11 stage.sh):
#   OUT=/tmp/out WORKERS=2 bash scripts/device/pretrain_on_gpu.sh 150 cpu 6 --dit-layers 1 --dit-heads 1 --dit-batch 2
set -euo pipefail
started=$(date +%s)
budget=${1:-540}
device=${2:-cuda}
clips=${3:-8000}
shift $(( $# < 3 ? $# : 3 ))
: "${OUT:?set OUT to the folder the results go to}"
cd "$(dirname "$0")/../.."
if [[ ! -f .device/vae_checkpoint.pt ]]; then
  echo "nothing staged: run scripts/device/stage.sh here and carry .device" >&2
  exit 2
fi
export PYTHONUNBUFFERED=1
site=$(mktemp -d)
# pip picks, of the staged wheels, the ones built for this Python.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --find-links .device/wheels \
  --target "$site" $(cat scripts/device/wheels.txt)
export PYTHONPATH="$site:$PWD/src"
if [[ $device == cuda ]]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
fi
python3 -c "import torch, diffusers, pydantic; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'cuda', torch.cuda.is_available())"

run=runs/gpu
rm -rf "$run" runs/gpu_export
mkdir -p "$run/vae"
cp .device/vae_checkpoint.pt "$run/vae/checkpoint.pt"
workers=${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))}
# Worker processes need POSIX semaphores (/dev/shm); where a sandbox lacks them, render serially and
# fewer clips rather than lose the lease.
if ! python3 -c "import multiprocessing as m; m.get_context('spawn').Lock()" 2>/dev/null; then
  workers=1
  clips=$(( clips < 2000 ? clips : 2000 ))
  echo "no multiprocessing here: rendering serially, $clips clips" >&2
fi
read -r -a data <<< "${DATA:-}"
common=(--device "$device" --run-dir "$run" --export-dir runs/gpu_export --threads 8 --vae-temporal-factor 1
        --encode-clips "$clips" "${data[@]}")
python3 scripts/pretrain_tiny.py --stages encode "${common[@]}" --encode-workers "$workers" --encode-batch 32 \
  2>&1 | tee "$OUT/pretrain.log"
# The denoiser gets what is left, less a minute for the export and the packing.
left=$(( budget - ($(date +%s) - started) - 60 ))
if (( left < 30 )); then
  echo "only ${left}s left after encoding: give a larger budget or fewer clips" >&2
  exit 1
fi
# A staged base to continue (stage.sh FROM_BASE) sets the size; otherwise a new 8-layer, 6-head one.
size=(--dit-layers 8 --dit-heads 6)
if [[ -d .device/init_base ]]; then
  size=($(python3 -c "import json; c = json.load(open('.device/init_base/transformer/config.json'));
print('--dit-layers', c['num_layers'], '--dit-heads', c['num_attention_heads'], '--dit-init-from .device/init_base')"))
fi
python3 scripts/pretrain_tiny.py --stages dit "${common[@]}" \
  "${size[@]}" --dit-batch 64 --dit-lr 5e-4 --dit-short-latent-frames 9 \
  --dit-photo-channels --dit-action-text --dit-ema-decay 0.999 --dit-bf16 \
  --export-every 100000 --dit-checkpoint-every 100000 \
  --dit-minutes "$(python3 -c "print($left / 60)")" --dit-fit-steps "$@" 2>&1 | tee -a "$OUT/pretrain.log"
# Everything but the VAE weights (staged from here, so already here), in parts under the 16 MiB limit.
tar -C runs -cf - --exclude='gpu_export/vae/*.safetensors' gpu_export gpu/dit/log.jsonl gpu/settings.json \
  | split -b 15m - "$OUT/gpu_export.tar.part-"
ls -la "$OUT"
echo "done in $(( $(date +%s) - started ))s"
