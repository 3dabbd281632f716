"""A resumed training run loads the clips' latents and the prompt embedding its interrupted run encoded,
and never uses ones encoded from anything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from core_helpers import moving_square_clip

from flashcli.core.latent_cache import encoding_fingerprint, load_encoded, save_encoded
from flashcli.core.pixels import video_to_tensor
from flashcli.core.settings import AlignSettings, TrainSettings
from flashcli.core.trainer import TrainProgress, TrainResult, train_adapter


def _settings(**overrides: object) -> TrainSettings:
    values: dict[str, object] = {
        "frames": 9,
        "size": 32,
        "steps": 6,
        "rank": 4,
        "warmup_steps": 0,
        "augment_copies": 2,
        "checkpoint_every": 3,
        "learning_rate": 5e-3,
        "align": AlignSettings.variant("full"),
    }
    values.update(overrides)
    return TrainSettings(**values)


class _Stop(Exception):
    pass


def _interrupted_at_step_three(spec, clips, settings: TrainSettings, folder: Path, prompt: str) -> None:
    """Train with checkpoints until step 3, then stop as a crash would."""

    def stop_after_three(report: TrainProgress) -> None:
        if report.phase == "train" and report.step == 3:
            raise _Stop

    with pytest.raises(_Stop):
        train_adapter(spec, clips, settings, prompt=prompt, checkpoint_dir=folder, progress=stop_after_three)


def _resume_counting_encodes(
    spec, clips, settings: TrainSettings, folder: Path, prompt: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[TrainResult, dict[str, int], list[str]]:
    """Resume from `folder`, counting the calls to the VAE and the text encoder and the progress phases."""
    calls = {"video": 0, "text": 0}
    encode_video, encode_text = spec.encode_video, spec.encode_text

    def counted_video(video: torch.Tensor) -> torch.Tensor:
        calls["video"] += 1
        return encode_video(video)

    def counted_text(text: str | None) -> torch.Tensor:
        calls["text"] += 1
        return encode_text(text)

    phases: list[str] = []
    with monkeypatch.context() as patch:
        patch.setattr(spec, "encode_video", counted_video)
        patch.setattr(spec, "encode_text", counted_text)
        result = train_adapter(
            spec,
            clips,
            settings,
            prompt=prompt,
            checkpoint_dir=folder,
            resume=True,
            progress=lambda report: phases.append(report.phase),
        )
    return result, calls, phases


@pytest.mark.slow  # a few seconds: the full suite runs it, the quick subset does not
def test_a_resumed_run_encodes_nothing_and_ends_with_the_uninterrupted_weights(
    tiny_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips, settings, prompt = [moving_square_clip(0), moving_square_clip(1)], _settings(), "a square slides"
    uninterrupted = train_adapter(tiny_spec, clips, settings, prompt=prompt)
    _interrupted_at_step_three(tiny_spec, clips, settings, tmp_path, prompt)
    resumed, calls, phases = _resume_counting_encodes(
        tiny_spec, clips, settings, tmp_path, prompt, monkeypatch
    )

    assert calls == {"video": 0, "text": 0}
    assert "encode" not in phases and phases.count("train") == 3
    assert resumed.adapter.keys() == uninterrupted.adapter.keys()
    for key, value in uninterrupted.adapter.items():
        assert torch.equal(resumed.adapter[key], value), key
    assert resumed.losses == uninterrupted.losses
    assert torch.equal(resumed.latents, uninterrupted.latents)


@pytest.mark.slow  # a few seconds: the full suite runs it, the quick subset does not
def test_a_resume_with_a_changed_clip_encodes_again_and_keeps_the_new_encoding(
    tiny_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, prompt = _settings(), "a square slides"
    _interrupted_at_step_three(
        tiny_spec, [moving_square_clip(0), moving_square_clip(1)], settings, tmp_path, prompt
    )
    changed = [moving_square_clip(0), moving_square_clip(2)]
    resumed, calls, phases = _resume_counting_encodes(
        tiny_spec, changed, settings, tmp_path, prompt, monkeypatch
    )

    assert calls["video"] > 0 and "encode" in phases  # the interrupted run's latents are not the new clip's
    with torch.no_grad():
        fresh = torch.cat([tiny_spec.encode_video(video_to_tensor(clip)[None]) for clip in changed])
    assert torch.allclose(resumed.latents, fresh, atol=1e-5)
    # The new encoding replaced the stale one: resuming once more with the same clips encodes nothing.
    _, again, _ = _resume_counting_encodes(tiny_spec, changed, settings, tmp_path, prompt, monkeypatch)
    assert again == {"video": 0, "text": 0}


def _key(**changes: object) -> str:
    """The fingerprint of a reference run, with one input changed."""
    clips = changes.pop("clips", [moving_square_clip(0)])
    masks = changes.pop("masks", None)
    prompt = changes.pop("prompt", "a square slides")
    base = changes.pop("base", "base-hash")
    return encoding_fingerprint(clips, masks, _settings(**changes), prompt, base)  # type: ignore[arg-type]


def _edited_clip() -> np.ndarray:
    clip = moving_square_clip(0)
    clip[4, 0, 0, 0] ^= 1  # one channel of one pixel
    return clip


CHANGES = {
    "a clip's pixel": {"clips": [_edited_clip()]},
    "another clip": {"clips": [moving_square_clip(0), moving_square_clip(1)]},
    "masks": {"masks": [np.ones((9, 32, 32), dtype=bool)]},
    "the prompt": {"prompt": "a square jumps"},
    "the base": {"base": "other-hash"},
    "size": {"size": 64},
    "width": {"width": 64},
    "frames": {"frames": 13},
    "augment copies": {"augment_copies": 3},
    "seed": {"seed": 1},
    "strong augmentation off": {"align": AlignSettings.variant("none")},
}


@pytest.mark.parametrize("changes", CHANGES.values(), ids=CHANGES.keys())
def test_encoded_data_from_other_inputs_is_not_loaded(tmp_path: Path, changes: dict[str, object]) -> None:
    latents = {"latents": torch.randn(1, 4, 3, 2, 2), "text": torch.randn(1, 5, 8).to(torch.bfloat16)}
    save_encoded(tmp_path, _key(), latents)

    assert load_encoded(tmp_path, _key(**changes), torch.device("cpu")) is None
    loaded = load_encoded(tmp_path, _key(), torch.device("cpu"))
    assert loaded is not None and loaded.keys() == latents.keys()
    assert all(
        torch.equal(loaded[name], value) and loaded[name].dtype == value.dtype
        for name, value in latents.items()
    )


def test_what_does_not_shape_the_encoding_keeps_the_cache_and_a_damaged_file_is_encoded_again(
    tmp_path: Path,
) -> None:
    save_encoded(tmp_path, _key(), {"latents": torch.ones(2)})
    assert _key(steps=100, learning_rate=1e-2, checkpoint_every=7, rank=16) == _key()
    assert load_encoded(tmp_path, _key(), torch.device("cpu")) is not None

    (tmp_path / "encoded.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert load_encoded(tmp_path, _key(), torch.device("cpu")) is None
