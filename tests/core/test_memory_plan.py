"""The memory plan (flashcli.core.memory_plan): exact weights from configs alone, and activation formulas
that predict a measurement on the Wan 2.2 miniature they were not fitted on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flashcli.core import memory_plan as mp

# A shape outside the calibration grid: 9 frames of 512 x 384 pixels -> 3 x 16 x 12 = 576 tokens, more
# than Correspondence Align's 512 query rows (bigger than any calibration point, and non-square).
FRAMES, HEIGHT, WIDTH = 9, 512, 384
TOLERANCE = 0.15  # the stated tolerance of the activation formulas on a held-out measurement


@pytest.fixture(scope="module")
def configs(wan22_miniature_dir: Path) -> mp.BaseConfigs:
    return mp.BaseConfigs.from_folder(wan22_miniature_dir)


@pytest.fixture(scope="module")
def bf16_spec(wan22_miniature_dir: Path):
    from flashcli.core.specs import load_base

    return load_base(wan22_miniature_dir, device="cpu", dtype=torch.bfloat16)


def _held_out_latents() -> torch.Tensor:
    return torch.randn(1, 48, 3, HEIGHT // 16, WIDTH // 16, generator=torch.Generator().manual_seed(3))


def test_weights_are_counted_exactly_without_loading_them(wan22_miniature_dir: Path, configs) -> None:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    def loaded_bytes(model: torch.nn.Module) -> int:
        tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}.values()
        return sum(t.numel() * t.element_size() for t in tensors)

    folder = wan22_miniature_dir
    transformer = WanTransformer3DModel.from_pretrained(folder / "transformer", torch_dtype=torch.bfloat16)
    encoder = UMT5EncoderModel.from_pretrained(folder / "text_encoder", torch_dtype=torch.bfloat16)
    vae = AutoencoderKLWan.from_pretrained(folder / "vae", torch_dtype=torch.float32)
    assert mp.transformer_bytes(configs.transformer, "bf16") == loaded_bytes(transformer)
    assert mp.text_encoder_bytes(configs.text_encoder, "bf16") == loaded_bytes(encoder)
    assert mp.vae_bytes(configs.vae) == loaded_bytes(vae)


def test_full_size_weights_match_the_published_model_sizes() -> None:
    configs = mp.BaseConfigs.wan22_ti2v_5b()
    assert 9.2 < mp.transformer_bytes(configs.transformer, "bf16") / mp.GIB < 9.4  # 5.0 B parameters
    assert 10.5 < mp.text_encoder_bytes(configs.text_encoder, "bf16") / mp.GIB < 10.7  # UMT5-XXL, 5.7 B
    assert 2.5 < mp.vae_bytes(configs.vae) / mp.GIB < 2.7


@pytest.mark.parametrize("checkpointing", [False, True])
def test_activation_formula_predicts_a_held_out_training_step(
    bf16_spec, configs, checkpointing: bool
) -> None:
    """flash's own training step (the default variant: augmentation, Motion and Correspondence Align) on
    the miniature in bf16, at a shape the formulas were not fitted on."""
    from flashcli.core.settings import TrainSettings

    settings = TrainSettings(
        frames=FRAMES, size=HEIGHT, rank=4, precision="bf16", gradient_checkpointing=checkpointing
    )
    measured = mp.saved_activation_bytes(bf16_spec, settings, _held_out_latents())
    run = mp.RunSettings(
        frames=FRAMES,
        height=HEIGHT,
        width=WIDTH,
        rank=4,
        gradient_checkpointing=checkpointing,
        correspondence_blocks=len(bf16_spec.default_correspondence_blocks),
    )
    predicted = mp.step_activation_bytes(configs, run)["saved activations"]
    assert predicted == pytest.approx(measured, rel=TOLERANCE)


def test_sampling_formula_predicts_a_held_out_denoiser_call(bf16_spec, configs) -> None:
    measured = mp.sampling_call_bytes(bf16_spec, _held_out_latents(), guidance=True, precision="bf16")
    run = mp.RunSettings(frames=FRAMES, height=HEIGHT, width=WIDTH, guidance=True)
    assert mp.sampling_bytes(configs, run) == pytest.approx(measured, rel=TOLERANCE)


def test_the_plan_shows_what_each_setting_saves_for_full_size_wan22() -> None:
    configs = mp.BaseConfigs.wan22_ti2v_5b()
    weights = mp._Weights.of(configs, "bf16")

    def learn(**settings: object) -> mp.MemoryPlan:
        run = mp.RunSettings(frames=81, height=480, width=832, **settings)
        return mp.plan_learn(configs, run, weights=weights)

    default = learn()
    checkpointed = learn(gradient_checkpointing=True)
    freed = learn(gradient_checkpointing=True, text_encoder="freed")
    assert default.peak_phase == "training step" and not default.fits(80 * mp.GIB)
    assert checkpointed.fits(80 * mp.GIB) and not checkpointed.fits(24 * mp.GIB)

    def step(plan: mp.MemoryPlan) -> int:
        return next(phase.peak for phase in plan.phases if phase.name == "training step")

    assert step(checkpointed) - step(freed) == weights.text_encoder  # freed after the prompt
    cpu = learn(gradient_checkpointing=True, text_encoder="cpu")
    assert "text encoder weights" not in {part for phase in cpu.phases for part in phase.parts}
    assert cpu.peak < freed.peak  # UMT5 never on the GPU, not even for the prompt


def test_vae_tiling_bounds_the_decoders_working_set() -> None:
    configs = mp.BaseConfigs.wan22_ti2v_5b()
    untiled = mp.RunSettings(frames=81, height=704, width=1280)
    tiled = mp.RunSettings(frames=81, height=704, width=1280, vae_tiling=True)
    assert mp.vae_peak_bytes(configs, tiled, "decode") < mp.vae_peak_bytes(configs, untiled, "decode") / 4


def test_the_preflight_sentence_gives_the_peak_and_what_to_change_when_it_does_not_fit() -> None:
    """What `flash learn` says on a CUDA device before loading weights (on CPU it says nothing): the plan
    for the run's own settings, from the base's configs."""
    from flashcli.config import resolve_learn
    from flashcli.workflows.plan import BaseShape, learn_memory, plan_learn

    shape = BaseShape("Wan2.2-TI2V-5B-Diffusers", 4, 32, 121, (1280, 704), 24.0, 24.0, True)
    name, config, table = resolve_learn("low-vram", {})
    settings = plan_learn(name, config, table, shape, {}).train
    run = mp.learn_run(settings)
    assert (run.frames, run.width, run.height, run.gradient_checkpointing, run.text_encoder) == (
        49,
        832,
        480,
        True,
        "freed",
    )
    plan = mp.plan_learn(mp.BaseConfigs.wan22_ti2v_5b(), run, copies=settings.augment_copies)
    fits = mp.describe_plan(plan, 80 * mp.GIB)
    assert fits.startswith("Planned peak GPU memory of `flash learn` at 49 frames of 832x480, with gradient")
    assert f"{plan.peak / mp.GIB:.1f} GiB ({plan.peak_phase})" in fits and fits.endswith(
        "this GPU has 80.0 GiB."
    )
    too_big = mp.describe_plan(plan, 16 * mp.GIB)
    assert "more than this GPU's 16.0 GiB" in too_big and "--preset low-vram" in too_big
    assert learn_memory("tiny", "cpu", settings) is None  # CPU: no card to fill, nothing planned
