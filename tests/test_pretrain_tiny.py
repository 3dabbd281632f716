"""The tiny base's pretraining script runs every stage end to end (at a toy budget) and exports a base
that loads through the ordinary base path; a rerun resumes instead of starting over."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def pretrain_modules():
    sys.path.insert(0, str(SCRIPTS))
    try:
        from tiny_pretrain import configs, dit_stage, latent_cache, vae_stage
        from tiny_pretrain.export import export_base

        yield configs, vae_stage, latent_cache, dit_stage, export_base
    finally:
        sys.path.remove(str(SCRIPTS))


def toy_run(configs, root: Path):
    run = configs.RunSettings(run_dir=root / "run", export_dir=root / "base", device="cpu")
    run.data.frames = 9
    run.vae.steps, run.vae.pool_clips, run.vae.eval_clips = 3, 2, 1
    run.vae.window_frames, run.vae.crop, run.vae.image_batch = 9, 32, 2
    run.vae.checkpoint_every = 2
    run.encode.clips = 2
    run.dit.steps, run.dit.batch_size, run.dit.warmup_steps, run.dit.checkpoint_every = 2, 2, 1, 1
    run.dit.short_fraction = 0.0
    return run


def test_every_stage_runs_and_the_export_loads_as_a_base(pretrain_modules, tmp_path) -> None:
    configs, vae_stage, latent_cache, dit_stage, export_base = pretrain_modules
    torch.set_num_threads(1)
    run = toy_run(configs, tmp_path)

    vae_result = vae_stage.train_vae(run)
    assert vae_result["step"] == 3 and vae_result["eval"]["psnr"] > 0
    log = [json.loads(line) for line in (run.run_dir / "vae" / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [1, 2, 3]

    cache = latent_cache.build_latent_cache(run)
    z = configs.Z_DIM
    # 2 clips and their mirror images; 9 frames at the VAE's temporal factor.
    latent_frames = (run.data.frames - 1) // configs.VAE_CONFIG["scale_factor_temporal"] + 1
    size = run.data.size // configs.VAE_CONFIG["scale_factor_spatial"]
    assert tuple(cache["latents"].shape) == (4, z, latent_frames, size, size)

    def export(spec, null_text, summary):
        export_base(run.export_dir, spec, null_text, dit_stage.base_meta(run, summary))

    summary = dit_stage.train_dit(run, export)
    assert summary["dit_step"] == 2

    from flashcli.core.specs import load_base

    spec = load_base(str(run.export_dir), device="cpu")
    assert spec.temporal_factor == configs.VAE_CONFIG["scale_factor_temporal"]
    assert json.loads((run.export_dir / "flash_base.json").read_text())["pretraining"]["dit_step"] == 2

    # Asking for more steps continues from the checkpoint instead of starting again.
    run.vae.steps = 4
    assert vae_stage.train_vae(run)["step"] == 4
    log = [json.loads(line) for line in (run.run_dir / "vae" / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [1, 2, 3, 4]

    # A decoder-only phase continues the same checkpoint and leaves the encoder (so the latent cache
    # and any denoiser trained on it) exactly as it was, while the decoder moves.
    before = dict(vae_stage.load_trained_vae(run)[0].state_dict())
    run.vae.steps, run.vae.decoder_only = 6, True
    assert vae_stage.train_vae(run)["step"] == 6
    after = vae_stage.load_trained_vae(run)[0].state_dict()
    encoder_keys = [key for key in before if key.startswith(("encoder.", "quant_conv."))]
    decoder_keys = [key for key in before if key.startswith("decoder.")]
    assert encoder_keys and all(torch.equal(before[key], after[key]) for key in encoder_keys)
    assert any(not torch.equal(before[key], after[key]) for key in decoder_keys)
