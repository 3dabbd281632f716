"""The time plan's FLOP count: checked against torch's own counter on the faithful Wan 2.2 miniature, and
the step counts scaling as the trainer and sampler run their denoiser passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from flashcli.core import memory_plan as mp
from flashcli.core import time_plan as tp
from flashcli.core.settings import AlignSettings, TrainSettings

FULL = mp.WAN22_TI2V_5B_TRANSFORMER


def _counted(spec, latents: torch.Tensor, text: torch.Tensor, *, backward: bool) -> int:
    """torch's count of one denoiser pass (and its backward); attention on the math kernel, whose
    matmuls the counter sees on a CPU."""
    timesteps = torch.full((1,), 500.0)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        if backward:
            spec.denoise(latents, timesteps, text).square().mean().backward()
        else:
            with torch.no_grad():
                spec.denoise(latents, timesteps, text)
    return counter.get_total_flops()


@pytest.mark.parametrize("frames, width, height", [(9, 64, 64), (17, 128, 64)])
def test_the_count_matches_torchs_flop_counter_on_the_miniature(
    wan22_miniature_dir: Path, frames: int, width: int, height: int
) -> None:
    from flashcli.core.adapter import attach_new_lora
    from flashcli.core.settings import DEFAULT_LORA_TARGETS
    from flashcli.core.specs import load_base

    torch.manual_seed(0)
    spec = load_base(wan22_miniature_dir, device="cpu")
    configs = mp.BaseConfigs.from_folder(wan22_miniature_dir)
    text = spec.encode_text("a welder welds")
    latents = torch.randn(1, 48, (frames - 1) // 4 + 1, height // 16, width // 16)
    tokens = tp.video_tokens(configs.transformer, configs.vae, frames, width, height)
    assert tokens == latents.shape[2] * latents.shape[3] * latents.shape[4] // 4
    forward = tp.denoiser_pass_flops(configs.transformer, tokens, text.shape[-2])
    assert forward == pytest.approx(_counted(spec, latents, text, backward=False), rel=0.10)

    attach_new_lora(spec, name="count", targets=list(DEFAULT_LORA_TARGETS), rank=1, alpha=1)
    both = forward + tp.denoiser_backward_flops(configs.transformer, tokens, text.shape[-2])
    assert both == pytest.approx(_counted(spec, latents, text, backward=True), rel=0.10)


def test_a_training_step_scales_with_passes_samples_and_checkpointing() -> None:
    tokens = tp.video_tokens(FULL, mp.WAN22_VAE, 81, 832, 480)
    assert tokens == 21 * 15 * 26
    forward = tp.denoiser_pass_flops(FULL, tokens, mp.TEXT_TOKENS)
    one = tp.training_step_flops(FULL, tokens, mp.TEXT_TOKENS, 1, checkpointing=False)
    assert 2.0 * forward < one < 2.5 * forward  # a frozen base's backward: not the 2x of full training
    assert tp.training_step_flops(FULL, tokens, mp.TEXT_TOKENS, 3, checkpointing=False) == 3 * one
    assert tp.training_step_flops(FULL, tokens, mp.TEXT_TOKENS, 1, checkpointing=True) == one + forward
    assert tp.training_step_flops(FULL, tokens, mp.TEXT_TOKENS, 1, checkpointing=False, samples=4) == 4 * one
    assert tp.sampling_step_flops(forward, guidance=True) == 2 * tp.sampling_step_flops(
        forward, guidance=False
    )


def test_the_passes_per_step_follow_the_trainer() -> None:
    assert AlignSettings.variant("none").denoiser_passes == 1
    assert AlignSettings.variant("augment").denoiser_passes == 2
    assert AlignSettings.variant("augment_both").denoiser_passes == 3  # the plain loss is on by default
    assert AlignSettings.variant("augment_both", plain_loss_weight=0.0).denoiser_passes == 2


def test_the_learn_estimate_counts_the_alignment_passes() -> None:
    plain = TrainSettings(frames=81, size=480, width=832, steps=100, align=AlignSettings.variant("none"))
    aligned = plain.model_copy(update={"align": AlignSettings.variant("augment_both")})
    one = tp.learn_estimate(FULL, mp.WAN22_VAE, mp.TEXT_TOKENS, plain, 400.0).flops
    three = tp.learn_estimate(FULL, mp.WAN22_VAE, mp.TEXT_TOKENS, aligned, 400.0).flops
    assert 2.5 * one < three <= 3 * one  # three passes per step; a preview would add the same to both


def test_the_estimate_plans_at_the_assumed_share_of_the_throughput() -> None:
    train = TrainSettings(frames=81, size=480, width=832, steps=1000, gradient_checkpointing=True)
    estimate = tp.learn_estimate(FULL, mp.WAN22_VAE, mp.TEXT_TOKENS, train, 400.0)
    assert estimate.seconds == pytest.approx(estimate.flops / (400e12 * tp.UTILISATION))
    assert estimate.flops == 1000 * estimate.step_flops
    minutes = round(estimate.seconds / 60)
    assert (
        estimate.note()
        == f"Time: about {minutes} min for 1000 steps (planned at 35% of the measured 400 TFLOP/s)"
    )
    assert estimate.as_dict()["utilisation"] == 0.35 and not estimate.as_dict()["utilisation_measured"]


def test_a_throughput_that_is_not_a_number_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tp.THROUGHPUT_ENV, "fast")
    with pytest.raises(ValueError, match="FLASH_GPU_TFLOPS='fast' is not a number of TFLOP/s"):
        tp.throughput_override()
    monkeypatch.delenv(tp.THROUGHPUT_ENV)
    assert tp.gpu_tflops(torch.device("cpu")) is None  # off CUDA nothing is measured
