#!/usr/bin/env bash
# One GPU call: flash learn / animate on a full-size Wan 2.2 TI2V-5B folder with random weights, at
# 49x832x480, 81x832x480 and 81x1280x704 under 24 and 80 GiB caps, inside a time budget (the build of
# the ~24 GB folder included). Writes $OUT/real_base_check.json and prints a table. See
# scripts/device/real_base_check.py for what is measured and what is spared.
#
# Here first:  bash scripts/device/stage.sh   (fills .device/ with the wheels the device lacks; carried)
# Device call: run(command="bash scripts/device/real_base_check.sh 450", carry=[".device"], timeout_s=540)
# Elsewhere, on any GPU machine with flash installed (pip install -e .):
#              OUT=. bash scripts/device/real_base_check.sh
#
# Arguments: BUDGET_SECONDS (default 450); any further ones go to real_base_check.py (e.g. --work DIR,
# a folder with 30 GB free for the base; default: the system's temporary folder).
# The CPU rehearsal at miniature size (no caps, a few minutes):
#   OUT=/tmp bash scripts/device/real_base_check.sh 600 --miniature
set -euo pipefail
budget=${1:-450}
shift $(( $# < 1 ? $# : 1 ))
out=${OUT:-.}
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
if [[ -d .device/wheels ]]; then
  site=$(mktemp -d)
  # pip picks, of the staged wheels, the ones built for this Python.
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --find-links .device/wheels \
    --target "$site" $(cat scripts/device/wheels.txt)
  export PYTHONPATH="$site:$PWD/src"
else
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader
fi
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__,
'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
python3 scripts/device/real_base_check.py --budget "$budget" --out "$out/real_base_check.json" "$@"
