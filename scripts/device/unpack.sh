#!/usr/bin/env bash
# Rebuild a GPU lease's base here: its packed export, the staged VAE's weights, and a DED.
#
#   bash scripts/device/unpack.sh FILES_AT DEST [DED_FOLDER]
#
# DED_FOLDER defaults to the ded/ of the base folder the VAE was staged from (stage.sh records it), which
# was trained for that VAE; with a VAE staged from a run's checkpoint, name the DED trained for it.
set -euo pipefail
files_at=${1:?give the folder the device files came back to}
dest=${2:?where the base folder goes}
ded=${3:-}
cd "$(dirname "$0")/../.."
if [[ -z $ded && -f .device/vae_source ]]; then
  staged_from=$(cat .device/vae_source)
  if [[ -d $staged_from/ded ]]; then ded=$staged_from/ded; fi
fi
scratch=$(mktemp -d)
cat "$files_at"/gpu_export.tar.part-* | tar -C "$scratch" -xf -
export PYTHONPATH="$PWD/src"
# The export's VAE weights are the staged checkpoint's: write them beside its config.json.
python - "$scratch/gpu_export" <<'PY'
import json
import sys
from pathlib import Path

from flashcli.lab.pretrain.checkpoint import load_checkpoint
from flashcli.lab.pretrain.vae_stage import build_vae, checkpoint_temporal_factor

folder = Path(sys.argv[1]) / "vae"
config = json.loads((folder / "config.json").read_text())
state = load_checkpoint(Path(".device/vae_checkpoint.pt"))
trained_on = json.loads((folder.parent / "flash_base.json").read_text())["pretraining"]["vae_step"]
if state["step"] != trained_on:
    print(f"the lease trained on VAE step {trained_on}, but .device/ now holds step {state['step']}: "
          "stage that VAE again before unpacking", file=sys.stderr)
    sys.exit(2)
vae = build_vae(checkpoint_temporal_factor(state))
vae.load_state_dict(state["model"])
# The latent statistics are the ones the device measured on its own clips.
vae.register_to_config(latents_mean=config["latents_mean"], latents_std=config["latents_std"])
vae.save_pretrained(folder)
PY
rm -rf "$dest" && mkdir -p "$(dirname "$dest")"
mv "$scratch/gpu_export" "$dest"
mkdir -p "$dest/pretraining" && mv "$scratch/gpu/dit/log.jsonl" "$scratch/gpu/settings.json" "$dest/pretraining/"
if [[ -n $ded ]]; then
  cp -r "$ded" "$dest/ded"
else
  echo "no DED: the base decodes with its plain VAE decoder (name a DED folder as the third argument)" >&2
fi
echo "base at $dest"
