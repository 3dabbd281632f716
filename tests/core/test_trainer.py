"""Training an adapter: it learns, it resumes exactly, and each ablation switch changes the hooks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from core_helpers import moving_square_clip

from flashcli.core.settings import VARIANTS, AlignSettings, TrainSettings
from flashcli.core.trainer import TrainProgress, train_adapter
from flashcli.lab.evaluation import fixed_denoising_error


def _settings(variant: str = "none", **overrides: object) -> TrainSettings:
    values: dict[str, object] = {
        "frames": 9,
        "size": 32,
        "steps": 4,
        "rank": 4,
        "warmup_steps": 0,
        "augment_copies": 1,
        "align": AlignSettings.variant(variant),
    }
    values.update(overrides)
    return TrainSettings(**values)


def test_training_lowers_the_denoising_error_on_its_clip(tiny_spec) -> None:
    clip = moving_square_clip(0)
    before = fixed_denoising_error(tiny_spec, clip, [])
    settings = _settings(steps=40, learning_rate=1e-2, lr_schedule="constant", rank=8)
    seen: list[TrainProgress] = []
    result = train_adapter(tiny_spec, [clip], settings, progress=seen.append)
    after = fixed_denoising_error(tiny_spec, clip, [(result.adapter, result.metadata, 1.0)])

    assert after < 0.9 * before
    totals = [losses["total"] for losses in result.losses]
    assert sum(totals[-10:]) < sum(totals[:10])
    encoding = [p for p in seen if p.phase == "encode"]
    training = [p for p in seen if p.phase == "train"]
    assert [(p.step, p.total) for p in encoding] == [(1, 1)]  # one clip, no augmented copies (variant none)
    assert [p.step for p in training] == list(range(1, 41)) and training[-1].eta_seconds == 0
    assert training[0].seconds_per_step > 0 and training[0].total == 40 and "total" in training[0].losses
    # Training leaves the base as it found it.
    assert fixed_denoising_error(tiny_spec, clip, []) == before


def test_result_carries_what_the_library_needs(tiny_spec) -> None:
    result = train_adapter(tiny_spec, [moving_square_clip(0)], _settings(steps=2), prompt="a square slides")
    assert result.metadata["base_weight_hash"] == tiny_spec.weight_hash
    assert result.metadata["rank"] == "4" and result.metadata["variant"] == "none"
    assert result.metadata["prompt"] == "a square slides"
    assert result.metadata["action_text"] == "none"  # a base without action texts: LoRA only
    assert all(isinstance(value, str) for value in result.metadata.values())
    assert any(key.endswith("lora_B.weight") for key in result.adapter)
    assert len(result.losses) == 2 and result.train_seconds > 0


class _Stop(Exception):
    pass


def _stopped_at_three_then_resumed(spec, clips, settings: TrainSettings, folder: Path):
    """Train until step 3 (checkpointing), stop as a crash would, then resume to the end."""

    def stop_after_three(progress: TrainProgress) -> None:
        if progress.phase == "train" and progress.step == 3:
            raise _Stop

    with pytest.raises(_Stop):
        train_adapter(spec, clips, settings, checkpoint_dir=folder, progress=stop_after_three)
    return train_adapter(spec, clips, settings, checkpoint_dir=folder, resume=True)


def test_resume_gives_bit_identical_weights(tiny_spec, tmp_path: Path) -> None:
    clips = [moving_square_clip(0), moving_square_clip(1)]
    settings = _settings("full", steps=6, checkpoint_every=3, learning_rate=5e-3)
    uninterrupted = train_adapter(tiny_spec, clips, settings)
    resumed = _stopped_at_three_then_resumed(tiny_spec, clips, settings, tmp_path)

    assert resumed.adapter.keys() == uninterrupted.adapter.keys()
    for key, value in uninterrupted.adapter.items():
        assert torch.equal(resumed.adapter[key], value), key
    assert resumed.losses == uninterrupted.losses


@pytest.fixture(scope="module")
def class_conditional_spec(tmp_path_factory: pytest.TempPathFactory):
    """A random base that, like a class-conditionally pretrained tiny, ships learned action texts."""
    from core_helpers import build_tiny_components

    from flashcli.core.specs import load_base, save_base

    transformer, vae, null_text = build_tiny_components(seed=2)
    generator = torch.Generator().manual_seed(0)
    actions = {name: torch.randn(null_text.shape, generator=generator) for name in ("squat", "kick")}
    folder = tmp_path_factory.mktemp("bases") / "cc"
    save_base(
        folder, transformer, vae, null_text, {"base_id": "cc", "frames": 9, "size": 32}, action_text=actions
    )
    return load_base(folder, device="cpu")


def test_on_a_base_with_action_texts_the_adapter_learns_its_own_and_resumes_exactly(
    class_conditional_spec, tmp_path: Path
) -> None:
    from flashcli.core.adapter import ACTION_TEXT_KEY

    spec, clips = class_conditional_spec, [moving_square_clip(0), moving_square_clip(1)]
    settings = _settings(steps=6, checkpoint_every=3, learning_rate=5e-3)
    uninterrupted = train_adapter(spec, clips, settings)
    text = uninterrupted.adapter[ACTION_TEXT_KEY]
    start = torch.stack(list(spec.action_text.values())).mean(0)
    assert text.shape == spec.null_text.shape and not torch.allclose(text, start)
    assert uninterrupted.metadata["action_text"] == "learned"

    resumed = _stopped_at_three_then_resumed(spec, clips, settings, tmp_path)
    assert resumed.adapter.keys() == uninterrupted.adapter.keys()
    assert all(torch.equal(resumed.adapter[k], v) for k, v in uninterrupted.adapter.items())


def test_resume_refuses_a_mismatched_or_missing_checkpoint(tiny_spec, tmp_path: Path) -> None:
    clip = moving_square_clip(0)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_adapter(tiny_spec, [clip], _settings(), checkpoint_dir=tmp_path, resume=True)
    train_adapter(tiny_spec, [clip], _settings(steps=2, checkpoint_every=2), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different training settings"):
        train_adapter(tiny_spec, [clip], _settings(steps=2, seed=9), checkpoint_dir=tmp_path, resume=True)


def test_bad_clips_are_refused_clearly(tiny_spec) -> None:
    with pytest.raises(ValueError, match="clip 0 must be uint8 of shape \\(9, 32, 32, 3\\)"):
        train_adapter(tiny_spec, [moving_square_clip(0, frames=5)], _settings())
    with pytest.raises(ValueError, match="4k\\+1"):
        train_adapter(tiny_spec, [moving_square_clip(0, frames=10)], _settings(frames=10))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_ablation_switch_changes_which_hooks_fire(
    tiny_spec, variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flashcli.core.motion_align as motion_align

    built: list[motion_align.MotionAlignment] = []
    recorded: list[tuple[set[int], set[int]]] = []

    class Spy(motion_align.MotionAlignment):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

        def clear(self) -> None:
            recorded.append((set(self.recorded_motion), set(self.recorded_correspondence)))
            super().clear()

    monkeypatch.setattr(motion_align, "MotionAlignment", Spy)
    align = AlignSettings.variant(variant)
    result = train_adapter(tiny_spec, [moving_square_clip(0)], _settings(variant, steps=2))

    loss_terms = set(result.losses[-1])
    if not align.strong_augment:
        assert loss_terms == {"x", "total"} and not built
        return
    if not align.injects:
        assert loss_terms == {"x", "x_aug", "total"} and not built
        return
    # Aligned: the aligned and augmented losses, and by default the plain loss on x as `animate` runs.
    assert loss_terms == {"x", "x_aug", "x_aligned", "total"}
    fired = built[0].fired
    motion_blocks = set(tiny_spec.default_motion_blocks) if align.motion_align else set()
    correspondence_blocks = (
        set(tiny_spec.default_correspondence_blocks) if align.correspondence_align else set()
    )
    # One record and one inject per chosen block per step, and only for the switched-on kinds.
    assert fired["motion_record"] == fired["motion_inject"] == 2 * len(motion_blocks)
    assert fired["corr_record"] == fired["corr_inject"] == 2 * len(correspondence_blocks)
    assert (motion_blocks, correspondence_blocks) in recorded


def test_cross_frame_correspondence_keys_train_a_different_adapter(tiny_spec) -> None:
    adapters = {
        keys: train_adapter(
            tiny_spec,
            [moving_square_clip(0)],
            _settings(
                "augment_correspondence",
                steps=2,
                learning_rate=5e-3,
                align=AlignSettings.variant("augment_correspondence", correspondence_keys=keys),
            ),
        ).adapter
        for keys in ("all", "cross_frame")
    }
    assert adapters["all"].keys() == adapters["cross_frame"].keys()
    assert any(not torch.equal(adapters["all"][k], adapters["cross_frame"][k]) for k in adapters["all"])


def _train_counting_block_runs(spec, settings: TrainSettings):
    """Train, counting how often the first denoiser block starts (forward passes and recomputations; a
    pre-hook, because a recomputation stops early, before a forward hook would fire)."""
    runs = [0]

    def count(*_: object) -> None:
        runs[0] += 1

    handle = spec.transformer.blocks[0].register_forward_pre_hook(count)
    try:
        result = train_adapter(spec, [moving_square_clip(0)], settings)
    finally:
        handle.remove()
    return result, runs[0]


def test_gradient_checkpointing_recomputes_blocks_in_backward_and_keeps_results(tiny_spec) -> None:
    plain, plain_runs = _train_counting_block_runs(tiny_spec, _settings("full", steps=2, learning_rate=5e-3))
    checkpointed, checkpointed_runs = _train_counting_block_runs(
        tiny_spec, _settings("full", steps=2, learning_rate=5e-3, gradient_checkpointing=True)
    )
    # Checkpointing keeps no block activations: backward runs each block's forward a second time.
    assert plain_runs > 0 and checkpointed_runs == 2 * plain_runs
    for key, value in plain.adapter.items():
        assert torch.allclose(checkpointed.adapter[key], value, atol=1e-6), key
    assert not tiny_spec.transformer.gradient_checkpointing


@pytest.mark.filterwarnings("ignore:Mismatch dtype between input and weight")
def test_bf16_autocast_trains_on_cpu(tiny_spec) -> None:
    result = train_adapter(
        tiny_spec, [moving_square_clip(0)], _settings("augment", steps=2, precision="bf16")
    )
    assert all(torch.isfinite(torch.tensor(list(losses.values()))).all() for losses in result.losses)
    assert all(value.dtype == torch.float32 for value in result.adapter.values())


def test_encoding_of_clips_and_copies_is_reported_before_training(tiny_spec) -> None:
    seen: list[TrainProgress] = []
    clips = [moving_square_clip(0), moving_square_clip(1)]
    train_adapter(tiny_spec, clips, _settings("augment", steps=1, augment_copies=2), progress=seen.append)
    encoding = [(p.step, p.total) for p in seen if p.phase == "encode"]
    assert encoding[-1] == (6, 6)  # 2 clips + 2 copies each, encoded once
    assert [p.phase for p in seen][-1] == "train" and len(seen) == len(encoding) + 1
