"""The tiny base's pretraining script runs every stage end to end (at a toy budget) and exports a base
that loads through the ordinary base path; a rerun resumes instead of starting over."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def pretrain_modules():
    from flashcli.lab.pretrain import configs, dit_stage, latent_cache, vae_stage
    from flashcli.lab.pretrain.export import export_base

    return configs, vae_stage, latent_cache, dit_stage, export_base


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


def exporter(run, dit_stage, export_base):
    """The dit stage's export callback: write the run's base folder."""

    def export(spec, text, summary):
        export_base(run.export_dir, spec, text, dit_stage.base_meta(run, summary))

    return export


def toy_run_with_vae(configs, vae_stage, root: Path):
    """A toy run whose VAE has trained two steps, ready for the denoiser stage."""
    torch.set_num_threads(1)
    run = toy_run(configs, root)
    run.vae.steps = 2
    vae_stage.train_vae(run)
    return run


@pytest.mark.slow
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

    summary = dit_stage.train_dit(run, exporter(run, dit_stage, export_base))
    assert summary["dit_step"] == 2

    from flashcli.core.specs import load_base

    spec = load_base(str(run.export_dir), device="cpu")
    assert spec.temporal_factor == configs.VAE_CONFIG["scale_factor_temporal"]
    pretraining = json.loads((run.export_dir / "flash_base.json").read_text())["pretraining"]
    assert pretraining["dit_step"] == 2
    assert pretraining["dit_weights"] == "average (decay 0.999, 2 updates)"

    # The base ships the weight average, not the last step's raw weights.
    state = torch.load(dit_stage.dit_checkpoint_path(run), weights_only=False)
    shipped = spec.transformer.state_dict()
    assert all(torch.equal(shipped[k], v) for k, v in state["ema"]["model"].items())
    assert any(not torch.equal(shipped[k], v) for k, v in state["model"].items())

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


@pytest.mark.slow
def test_a_vae_without_time_compression_gives_every_frame_a_latent(pretrain_modules, tmp_path) -> None:
    configs, vae_stage, latent_cache, dit_stage, export_base = pretrain_modules
    torch.set_num_threads(1)
    run = toy_run(configs, tmp_path)
    run.vae.steps, run.vae.temporal_factor, run.vae.moved_weight = 2, 1, 4.0

    result = vae_stage.train_vae(run)
    assert result["step"] == 2 and "psnr_moving" in result["eval"]
    cache = latent_cache.build_latent_cache(run)
    assert cache["latents"].shape[2] == run.data.frames  # one latent frame per frame

    dit_stage.train_dit(run, exporter(run, dit_stage, export_base))
    from flashcli.core.specs import load_base

    spec = load_base(str(run.export_dir), device="cpu")
    assert spec.temporal_factor == 1 and spec.latent_frames(9) == 9

    # Resuming the checkpoint with the other layout is a clear error, not a shape mismatch deep in torch.
    run.vae.temporal_factor, run.vae.steps = 2, 3
    with pytest.raises(ValueError, match="--vae-temporal-factor 1"):
        vae_stage.train_vae(run)


@pytest.mark.slow
def test_a_class_conditional_run_ships_an_embedding_per_pretraining_action(
    pretrain_modules, tmp_path
) -> None:
    configs, vae_stage, latent_cache, dit_stage, export_base = pretrain_modules
    from flashcli.core.specs import load_base
    from flashcli.figureworld import PRETRAIN_ACTIONS
    from flashcli.lab.pretrain.data import clip_action

    run = toy_run_with_vae(configs, vae_stage, tmp_path)
    export = exporter(run, dit_stage, export_base)
    dit_stage.train_dit(run, export)  # a plain (null text) denoiser first
    plain = dit_stage.dit_checkpoint_path(run)
    cache = latent_cache.build_latent_cache(run)
    # Each clip and its mirror image carry the clip's action.
    expected = [PRETRAIN_ACTIONS.index(clip_action(i, run.data.train_seed_start)) for i in (0, 0, 1, 1)]
    assert dit_stage.latent_actions(cache, run.data).tolist() == expected

    conditional = run.model_copy(deep=True)
    conditional.run_dir, conditional.export_dir = tmp_path / "cc_run", tmp_path / "cc_base"
    conditional.dit.action_text, conditional.dit.init_from = True, plain
    for part in ("vae", "cache"):  # the same VAE and latents
        (conditional.run_dir / part).mkdir(parents=True)
        for file in (run.run_dir / part).iterdir():
            (conditional.run_dir / part / file.name).write_bytes(file.read_bytes())
    run = conditional
    export = exporter(run, dit_stage, export_base)
    dit_stage.train_dit(run, export)
    spec = load_base(str(run.export_dir), device="cpu")
    assert sorted(spec.action_text) == sorted(PRETRAIN_ACTIONS)
    null = spec.encode_text(None)[0]
    # Warm-started action rows begin near the source's null text and move apart from it with training.
    assert all(spec.action_text[a].shape == null.shape for a in PRETRAIN_ACTIONS)
    assert not torch.equal(spec.pretrained_action_text("squat")[0], null)

    run.dit.action_text, run.dit.steps = False, 3
    with pytest.raises(ValueError, match="resume it with that flag"):
        dit_stage.train_dit(run, export)


@pytest.mark.slow
def test_a_denoiser_of_another_size_trains_exports_and_resumes_only_at_that_size(
    pretrain_modules, tmp_path
) -> None:
    configs, vae_stage, latent_cache, dit_stage, export_base = pretrain_modules
    from flashcli.core.specs import load_base

    run = toy_run_with_vae(configs, vae_stage, tmp_path)
    run.dit.layers, run.dit.heads = 2, 2
    export = exporter(run, dit_stage, export_base)
    dit_stage.train_dit(run, export)
    config = load_base(str(run.export_dir), device="cpu").transformer.config
    assert (config.num_layers, config.num_attention_heads, config.ffn_dim) == (2, 2, 256)

    run.dit.layers, run.dit.steps = 3, 3
    with pytest.raises(ValueError, match="resume it with --dit-layers 2 --dit-heads 2"):
        dit_stage.train_dit(run, export)


def test_moving_pixels_marks_what_moves_and_nothing_in_a_still_clip(pretrain_modules) -> None:
    _, vae_stage, *_ = pretrain_modules
    still = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    still = still[:, :, :1].expand(-1, -1, 5, -1, -1)
    assert vae_stage.moving_pixels(still).sum() == 0

    moving = -torch.ones(1, 3, 5, 16, 16)
    for t in range(5):  # a white 2x2 square walking right, one column pair a frame
        moving[:, :, t, 4:6, 2 * t : 2 * t + 2] = 1.0
    mask = vae_stage.moving_pixels(moving)
    assert mask[0, 0, 2, 4:6, 4:6].min() == 1  # the square where it is now
    assert mask[0, 0, 2, 10:, :].max() == 0  # background far from its path


def test_a_new_layout_starts_from_the_old_vae_with_only_the_time_convolutions_fresh(
    pretrain_modules, tmp_path
) -> None:
    _, vae_stage, *_ = pretrain_modules
    from flashcli.lab.pretrain.checkpoint import save_checkpoint, warm_start

    old = vae_stage.build_vae(2)
    save_checkpoint(tmp_path / "old.pt", {"model": old.state_dict()})
    new = vae_stage.build_vae(1)
    assert warm_start(new, tmp_path / "old.pt") == []  # x1 has no time convs: nothing stays fresh
    assert all(torch.equal(t, old.state_dict()[k]) for k, t in new.state_dict().items())

    back = vae_stage.build_vae(2)
    fresh = warm_start(back, tmp_path / "old.pt")
    assert fresh == []  # same layout: everything taken
    save_checkpoint(tmp_path / "new.pt", {"model": new.state_dict()})
    fresh = warm_start(vae_stage.build_vae(2), tmp_path / "new.pt")
    assert fresh and all("time_conv" in name for name in fresh)


def test_the_weight_average_follows_the_formula_and_warms_up(pretrain_modules) -> None:
    from flashcli.lab.pretrain.weight_average import WeightAverage

    layer = torch.nn.Linear(1, 1, bias=False)
    extra = torch.zeros(2)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    average = WeightAverage.start(layer, extra, decay=0.9, warmup=True)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    extra += 1.0
    average.update(layer, extra)  # warm-up decay: min(0.9, 1/10) = 0.1
    assert average.model["weight"].item() == pytest.approx(0.9)
    average.update(layer, extra)  # min(0.9, 2/11)
    assert average.model["weight"].item() == pytest.approx(0.9 + 0.1 * (1 - 2 / 11))
    assert average.extra.tolist() == pytest.approx([0.9 + 0.1 * (1 - 2 / 11)] * 2)
    for _ in range(200):
        average.update(layer, extra)
    assert average.current_decay() == 0.9
    resumed = WeightAverage.from_state(average.state_dict(), decay=0.99)
    assert resumed.updates == 202  # the warm-up goes on where it was: (1 + 202) / (10 + 202) < 0.99
    assert resumed.current_decay() == pytest.approx(203 / 212)
    # Started from trained weights: the full decay from the first update.
    trained = WeightAverage.start(layer, extra, decay=0.9, warmup=False)
    with torch.no_grad():
        layer.weight.fill_(2.0)
    trained.update(layer, extra)
    assert trained.model["weight"].item() == pytest.approx(0.9 * 1.0 + 0.1 * 2.0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightAverage.start(layer, extra, decay=1.0, warmup=False)


@pytest.mark.slow
def test_more_clips_extend_the_latent_cache_and_keep_its_statistics(pretrain_modules, tmp_path) -> None:
    configs, vae_stage, latent_cache, dit_stage, export_base = pretrain_modules
    torch.set_num_threads(1)
    run = toy_run(configs, tmp_path)
    run.vae.steps = 1
    vae_stage.train_vae(run)
    first = latent_cache.build_latent_cache(run)
    assert first["clips"] == 2 and first["latents"].shape[0] == 4  # each clip and its mirror image

    run.encode.clips = 3
    extended = latent_cache.build_latent_cache(run)
    assert extended["clips"] == 3 and extended["latents"].shape[0] == 6
    assert torch.equal(extended["latents"][:4], first["latents"])
    assert extended["latents_mean"] == first["latents_mean"]
    # The new latents are the same stream clip a fresh build would encode, in the same normalisation.
    run.encode.clips, run.run_dir = 3, tmp_path / "fresh"
    (tmp_path / "fresh" / "vae").mkdir(parents=True)
    (tmp_path / "fresh" / "vae" / "checkpoint.pt").write_bytes(
        (tmp_path / "run" / "vae" / "checkpoint.pt").read_bytes()
    )
    fresh = latent_cache.build_latent_cache(run)
    mean = torch.tensor(fresh["latents_mean"]).view(1, -1, 1, 1, 1)
    std = torch.tensor(fresh["latents_std"]).view(1, -1, 1, 1, 1)
    first_mean = torch.tensor(first["latents_mean"]).view(1, -1, 1, 1, 1)
    first_std = torch.tensor(first["latents_std"]).view(1, -1, 1, 1, 1)
    raw_fresh = fresh["latents"][4:] * std + mean
    raw_extended = extended["latents"][4:] * first_std + first_mean
    assert torch.allclose(raw_fresh, raw_extended, atol=1e-4)

    # Asking for fewer clips than the cache holds reuses it as it is.
    run.run_dir, run.encode.clips = tmp_path / "run", 2
    assert latent_cache.build_latent_cache(run)["clips"] == 3


@pytest.mark.slow
def test_rest_start_clips_begin_standing_and_replace_a_cache_of_other_clips(
    pretrain_modules, tmp_path
) -> None:
    from flashcli.figureworld import render_clip
    from flashcli.lab.pretrain.data import render_pool, render_stream_clip

    configs, vae_stage, latent_cache, dit_stage, export_base = pretrain_modules
    run = toy_run_with_vae(configs, vae_stage, tmp_path)
    seeded = latent_cache.build_latent_cache(run)

    run.data.phase = 0.0
    clip = render_stream_clip(run.data, 1)
    action = dit_stage.clip_action(1, run.data.train_seed_start)
    assert np.array_equal(clip, render_clip(action, 1, size=64, frames=9, fps=8, phase=0.0).frames)
    assert not np.array_equal(clip, render_clip(action, 1, size=64, frames=9, fps=8).frames)
    # Same count, same shapes, other clips: the caches are rebuilt, not reused.
    pool = render_pool(run.data, 2, run.run_dir / "cache" / "dit_pool.npy")
    assert np.array_equal(pool[1], clip)
    rest = latent_cache.build_latent_cache(run)
    assert rest["data"]["phase"] == 0.0 and seeded["data"]["phase"] is None
    assert not torch.equal(rest["latents"], seeded["latents"])
    assert dit_stage.base_meta(run, {"dit_step": 2})["pretraining"] == {"dit_step": 2, "clip_phase": 0.0}
    with pytest.raises(ValueError, match="less than 1"):
        configs.DataSettings(phase=1.0)


@pytest.mark.slow
def test_moved_positions_mark_where_a_limb_is_or_was_and_weigh_the_denoiser_loss(
    pretrain_modules, tmp_path
) -> None:
    from flashcli.lab.pretrain.data import render_stream_clip

    configs, vae_stage, latent_cache, dit_stage, export_base = pretrain_modules
    still = np.full((3, 16, 16, 3), 90, dtype=np.uint8)
    moving = still.copy()
    moving[2, 4:6, 9:11] = 250  # a limb at latent position (1, 2) in frame 2 only (x4 positions)
    assert not latent_cache.moved_positions(still, 4).any()
    marked = latent_cache.moved_positions(moving, 4)
    assert marked.shape == (3, 4, 4) and marked.sum() == 1 and bool(marked[2, 1, 2])

    torch.set_num_threads(1)
    run = toy_run(configs, tmp_path)
    run.vae.steps, run.vae.temporal_factor = 1, 1
    vae_stage.train_vae(run)
    run.data.phase, run.dit.moved_weight = 0.0, 8.0
    dit_stage.train_dit(run, exporter(run, dit_stage, export_base))
    cache = torch.load(latent_cache.latent_cache_path(run), weights_only=False)
    latents = cache["latents"]
    assert cache["moved"].shape == (latents.shape[0], *latents.shape[2:])
    # Each clip's mask, then its mirror image's, as the latents are ordered.
    first = latent_cache.moved_positions(render_stream_clip(run.data, 0), 4)
    assert torch.equal(cache["moved"][0], first) and torch.equal(cache["moved"][1], first.flip(-1))
    assert first[1:].any() and not first[0].any()


def test_a_photo_channel_denoiser_starts_from_a_plain_one_and_predicts_as_it_did(
    pretrain_modules, tmp_path
) -> None:
    configs, vae_stage, latent_cache, dit_stage, export_base = pretrain_modules
    from flashcli.core.specs import WanSpec
    from flashcli.lab.pretrain.checkpoint import save_checkpoint

    torch.manual_seed(0)
    plain, averaged = dit_stage.build_transformer(), dit_stage.build_transformer()
    wide = configs.DitStageSettings(photo_channels=True)
    text = torch.randn(configs.NULL_TEXT_TOKENS, configs.TEXT_DIM)
    save_checkpoint(
        tmp_path / "plain.pt",
        {
            "model": plain.state_dict(),
            "null_text": torch.zeros_like(text),
            "ema": {"model": averaged.state_dict(), "extra": text},
        },
    )
    widened = dit_stage.build_transformer(wide)
    start_text, fresh = dit_stage.start_from(widened, tmp_path / "plain.pt")
    assert fresh == [] and torch.equal(start_text[0], text)  # the weight average, not the raw weights

    vae = vae_stage.build_vae(1)
    source = WanSpec(base_id="t", transformer=averaged, vae=vae, null_text=text)
    started = WanSpec(base_id="t", transformer=widened, vae=vae, null_text=text)
    assert started.photo_channels and not source.photo_channels
    latents = torch.randn(1, configs.Z_DIM, 3, 8, 8)
    timesteps = torch.tensor([700.0])
    with torch.no_grad():
        expected = source.denoise(latents, timesteps, source.encode_text(None))
        got = started.denoise(latents, timesteps, started.encode_text(None))
    assert torch.allclose(expected, got, atol=1e-5)


def test_command_line_flags_land_in_the_run_settings(pretrain_modules) -> None:
    import pretrain_tiny

    args = pretrain_tiny.parse_args(
        ["--vae-temporal-factor", "1", "--vae-moved-weight", "5", "--dit-short-latent-frames", "9"]
        + ["--vae-init-from", "old.pt", "--vae-decoder-only", "--export-every", "60"]
        + ["--vae-lr", "2e-4", "--vae-min-lr", "2e-5", "--dit-ema-decay", "0.99"]
        + ["--dit-photo-channels", "--dit-batch", "64", "--dit-lr", "1e-3"]
        + ["--encode-workers", "8", "--encode-batch", "16", "--dit-fit-steps", "--dit-bf16"]
        + ["--dit-checkpoint-every", "500", "--data-frames", "9", "--data-phase", "0"]
        + ["--dit-moved-weight", "8"]
    )
    run = pretrain_tiny.run_settings(args)
    assert (run.vae.temporal_factor, run.vae.moved_weight, run.vae.decoder_only) == (1, 5.0, True)
    assert (run.vae.learning_rate, run.vae.min_learning_rate) == (2e-4, 2e-5)
    assert (run.dit.short_latent_frames, run.dit.export_every_seconds) == (9, 60.0)
    assert run.dit.ema_decay == 0.99 and run.dit.photo_channels
    assert (run.dit.batch_size, run.dit.learning_rate) == (64, 1e-3)
    assert str(run.vae.init_from) == "old.pt" and run.dit.init_from is None
    assert (run.encode.workers, run.encode.batch, run.dit.fit_steps_to_time) == (8, 16, True)
    assert run.dit.autocast_bf16 and run.dit.checkpoint_every == 500
    assert (run.data.frames, run.data.phase, run.dit.moved_weight) == (9, 0.0, 8.0)
    # Every mapped field exists, so a typo in the table cannot silently set a stray attribute.
    for section, field in pretrain_tiny.FLAG_FIELDS.values():
        assert field in type(getattr(run, section)).model_fields


def test_an_optimizer_saved_with_one_group_resumes_in_the_two_group_layout(pretrain_modules) -> None:
    _, _, _, dit_stage, _ = pretrain_modules
    weights, text = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    old = torch.optim.AdamW([weights, text], lr=1e-3)
    (weights.sum() + text.sum()).backward()
    old.step()
    new = torch.optim.AdamW([{"params": [weights]}, {"params": [text], "weight_decay": 0.0}], lr=1e-3)
    new.load_state_dict(dit_stage.as_two_groups(old.state_dict()))
    assert torch.equal(new.state[text]["exp_avg"], old.state[text]["exp_avg"])
    assert torch.equal(new.state[weights]["exp_avg"], old.state[weights]["exp_avg"])


@pytest.mark.slow
def test_clips_rendered_in_worker_processes_and_encoded_in_batches_match_one_at_a_time(
    pretrain_modules, tmp_path
) -> None:
    configs, vae_stage, latent_cache, dit_stage, export_base = pretrain_modules
    from flashcli.lab.pretrain.data import render_stream_clip, render_stream_clips

    run = toy_run_with_vae(configs, vae_stage, tmp_path)
    serial = [render_stream_clip(run.data, index) for index in (3, 0, 5)]
    parallel = list(render_stream_clips(run.data, [3, 0, 5], workers=2))
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel, strict=True))

    run.encode.clips = 3
    one_at_a_time = latent_cache.build_latent_cache(run)
    run.run_dir = tmp_path / "batched"
    (run.run_dir / "vae").mkdir(parents=True)
    (run.run_dir / "vae" / "checkpoint.pt").write_bytes(
        (tmp_path / "run" / "vae" / "checkpoint.pt").read_bytes()
    )
    run.encode.workers, run.encode.batch = 2, 2  # a batch of 2 and a batch of 1 (with their mirror images)
    batched = latent_cache.build_latent_cache(run)
    assert batched["latents"].shape == one_at_a_time["latents"].shape
    assert batched["latents"].shape[0] == 6
    assert torch.allclose(batched["latents"], one_at_a_time["latents"], atol=1e-4)


def test_a_time_limited_run_sizes_its_schedule_from_its_step_rate(pretrain_modules) -> None:
    _, _, _, dit_stage, _ = pretrain_modules
    # At step 60, 10 s of a 100 s limit spent, 0.2 s a step: 85 s of the 95 % budget left -> 425 more.
    assert dit_stage.steps_in_time(60, 0.2, 10.0, 100.0) == 485
    # Out of time already: one more step, never a schedule that ends before the current step.
    assert dit_stage.steps_in_time(60, 0.2, 120.0, 100.0) == 61


@pytest.mark.slow
def test_a_time_limited_run_with_a_fitted_schedule_ends_before_its_nominal_steps(
    pretrain_modules, tmp_path
) -> None:
    configs, vae_stage, latent_cache, dit_stage, export_base = pretrain_modules
    run = toy_run_with_vae(configs, vae_stage, tmp_path)
    run.dit.layers, run.dit.heads, run.dit.steps, run.dit.fit_steps_to_time = 1, 1, 100_000, True
    run.dit.checkpoint_every = 1000
    summary = dit_stage.train_dit(run, exporter(run, dit_stage, export_base), time_limit=6.0)
    # The schedule was resized from the measured rate, and the run stopped at or before its new end.
    assert dit_stage.SETTLING_STEPS + dit_stage.CALIBRATION_STEPS < run.dit.steps < 100_000
    assert summary["dit_step"] <= run.dit.steps
    assert (run.export_dir / "flash_base.json").exists()


@pytest.mark.slow
def test_a_new_run_starts_from_an_exported_base_folder_as_from_its_checkpoint(
    pretrain_modules, tmp_path
) -> None:
    configs, vae_stage, latent_cache, dit_stage, export_base = pretrain_modules
    run = toy_run_with_vae(configs, vae_stage, tmp_path)
    run.dit.action_text = True
    dit_stage.train_dit(run, exporter(run, dit_stage, export_base))

    from_folder, from_checkpoint = dit_stage.build_transformer(run.dit), dit_stage.build_transformer(run.dit)
    folder_text, fresh = dit_stage.start_from(from_folder, run.export_dir)
    checkpoint_text, _ = dit_stage.start_from(from_checkpoint, dit_stage.dit_checkpoint_path(run))
    assert fresh == []
    assert all(
        torch.equal(a, b)
        for a, b in zip(from_folder.state_dict().values(), from_checkpoint.state_dict().values(), strict=True)
    )
    # The null text and the 23 action rows come back in the table's order.
    assert torch.allclose(folder_text, checkpoint_text)

    with pytest.raises(FileNotFoundError, match="is not a base folder"):
        dit_stage.start_from(from_folder, tmp_path)


@pytest.mark.slow
def test_the_shipped_base_stages_as_a_vae_checkpoint_that_trains_a_denoiser(
    pretrain_modules, tmp_path
) -> None:
    """A fresh checkout has no runs/, so the GPU recipe stages the shipped base's VAE; the dit stage must
    then encode with exactly those weights and record the shipped VAE's step."""
    configs, vae_stage, latent_cache, dit_stage, export_base = pretrain_modules
    from flashcli.core.specs import tiny_base_folder
    from flashcli.lab.pretrain.base_vae import vae_checkpoint_from_base
    from flashcli.lab.pretrain.checkpoint import save_checkpoint

    shipped = tiny_base_folder()
    state = vae_checkpoint_from_base(shipped)
    meta = json.loads((shipped / "flash_base.json").read_text())
    assert state["step"] == meta["pretraining"]["vae_step"]
    assert vae_stage.checkpoint_temporal_factor(state) == 1

    torch.set_num_threads(1)
    run = toy_run(configs, tmp_path)
    run.vae.temporal_factor = 1
    save_checkpoint(vae_stage.vae_checkpoint_path(run), state)
    vae, loaded = vae_stage.load_trained_vae(run)
    shipped_weights = load_file(shipped / "vae" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(vae.state_dict()[key], shipped_weights[key]) for key in shipped_weights)

    dit_stage.train_dit(run, exporter(run, dit_stage, export_base))
    exported = json.loads((run.export_dir / "flash_base.json").read_text())
    assert exported["pretraining"]["vae_step"] == meta["pretraining"]["vae_step"]

    with pytest.raises(FileNotFoundError, match="not a base folder"):
        vae_checkpoint_from_base(tmp_path)
