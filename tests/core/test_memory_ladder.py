"""The memory ladder (flashcli.core.memory_plan.LADDER): the preflight's choice of the first rung whose
planned peak fits the GPU, for full-size Wan 2.2 TI2V-5B from its published configs (no weights), and the
rung applied to a loaded base (the miniature)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from flashcli.core import memory_plan as mp

GIB = mp.GIB


@pytest.fixture(scope="module")
def full_size() -> tuple[mp.BaseConfigs, mp._Weights]:
    configs = mp.BaseConfigs.wan22_ti2v_5b()
    return configs, mp._Weights.of(configs, "bf16")


def _choose(full_size, command: str, frames: int, width: int, height: int, card_gib: int) -> mp.MemoryChoice:
    configs, weights = full_size
    if command == "learn":
        planner = functools.partial(mp.plan_learn, configs, weights=weights)
        run = mp.RunSettings(frames, height, width, gradient_checkpointing=True, text_encoder="freed")
    else:
        planner = functools.partial(mp.plan_animate, configs, weights=weights)
        run = mp.animate_run(frames, width, height, guidance=True)
    return mp.choose_rung(command, planner, run, card_gib * GIB, mp.shape_steps(configs))


@pytest.mark.parametrize(("command", "frames"), [("learn", 49), ("animate", 81)])
def test_a_24_gib_card_keeps_the_text_encoder_on_the_cpu_and_an_80_gib_card_runs_as_asked(
    full_size, command: str, frames: int
) -> None:
    """At 832x480 (learn: the low-vram preset's 49 frames): with UMT5 (10.6 GiB) on the GPU for the prompts,
    the 22.5 GiB of weights and the reserve pass 24 GiB; encoding the prompts on the CPU fits. An 80 GiB
    card needs no change."""
    small = _choose(full_size, command, frames, 832, 480, 24)
    assert small.rung is not None and small.rung.text_encoder_cpu and not small.rung.fp8_denoiser
    assert not small.plans[0][1].fits(24 * GIB) and small.plan.fits(24 * GIB)
    large = _choose(full_size, command, frames, 832, 480, 80)
    assert large.rung == mp.LADDER[0] and large.rung.name == "as asked"


def test_learning_81_frames_on_24_gib_stores_the_denoiser_in_fp8(full_size) -> None:
    """The default variant's three denoiser passes (the plain loss on the clip included) at 81x832x480."""
    choice = _choose(full_size, "learn", 81, 832, 480, 24)
    assert choice.rung is not None and choice.rung.fp8_denoiser and choice.plan.fits(24 * GIB)


def test_the_fp8_rung_halves_the_denoiser_and_leaves_norms_embeddings_and_fp32_modules_alone(
    full_size,
) -> None:
    configs, weights = full_size
    run = mp.RunSettings(81, 480, 832, gradient_checkpointing=True)
    assert weights.denoiser(run) / GIB == pytest.approx(9.33, abs=0.01)
    assert weights.denoiser(mp.LADDER[-1].applied(run)) / GIB == pytest.approx(4.76, abs=0.01)
    layers = mp.fp8_cast_layers(configs.transformer)
    assert "blocks.0.ffn.net.0.proj" in layers and "blocks.0.attn1.to_q" in layers
    assert not any("norm" in name or "embedding" in name or "embedder" in name for name in layers)


def test_nothing_fits_121x1280x704_on_24_gib_and_the_refusal_names_what_would(full_size) -> None:
    choice = _choose(full_size, "learn", 121, 1280, 704, 24)
    assert choice.rung is None
    sentence = choice.refusal()
    assert sentence.count(". ") == 0 and sentence.endswith(".")
    assert "`flash learn` at 121 frames of 1280x704 needs about 42.9 GiB" in sentence
    assert "24.0 GiB available" in sentence and "a GPU with at least 43 GiB" in sentence
    assert "--frames 49 (at 1280x704)" in sentence and "--size 800x448 (at 121 frames)" in sentence
    for frames, width, height in ((49, 1280, 704), (121, 800, 448)):
        lighter = mp.LADDER[-1].applied(mp.RunSettings(frames, height, width, gradient_checkpointing=True))
        assert mp.plan_learn(full_size[0], lighter, weights=full_size[1]).fits(24 * GIB)


def test_a_loaded_base_gets_the_rung_tiled_vae_text_encoder_on_cpu_fp8_denoiser_with_fp32_lora(
    wan22_miniature_dir: Path,
) -> None:
    from diffusers.hooks.layerwise_casting import _is_layerwise_casting_active

    from flashcli.core.adapter import attach_new_lora
    from flashcli.core.specs import load_base

    spec = load_base(wan22_miniature_dir, device="cpu", memory=mp.LADDER[-1])
    assert spec.vae.use_tiling and spec.text_device.type == "cpu"
    assert next(spec.text_encoder.parameters()).device.type == "cpu"
    assert _is_layerwise_casting_active(spec.transformer)
    assert spec.transformer.blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn
    assert spec.transformer.blocks[0].norm2.weight.dtype == torch.float32  # the fp32 modules stay
    parameters = attach_new_lora(spec, name="t", targets=["attn1.to_q"], rank=2, alpha=2)
    text = spec.encode_text("a welder welds")
    spec.denoise(torch.randn(1, 48, 2, 4, 4), torch.tensor([500.0]), text).square().mean().backward()
    assert all(p.dtype == torch.float32 and p.grad is not None for p in parameters)
    assert spec.transformer.blocks[0].attn1.to_q.base_layer.weight.dtype == torch.float8_e4m3fn
