"""Classifier-free guidance on a real base steers away from a negative prompt: the base's own default (a
diffusers folder declares flash's list of video defects) unless the settings name one. A base without a
text encoder (tiny) never guides and never encodes one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from core_helpers import TINY_SIZE, moving_square_clip

from flashcli.core.settings import SampleSettings

FRAMES, SIZE = 5, 64  # the miniature's shapes: 4k+1 frames, multiples of 32


def _encoded_while_sampling(spec, settings: SampleSettings, size: int, monkeypatch) -> list[str | None]:
    """The prompts the base encodes while one photo is sampled with `settings` (no adapter)."""
    from flashcli.core.sampler import sample_photo_latents

    seen: list[str | None] = []
    original = type(spec).encode_text

    def recording(self, prompt: str | None) -> torch.Tensor:
        seen.append(prompt)
        return original(self, prompt)

    monkeypatch.setattr(type(spec), "encode_text", recording)
    photo = torch.from_numpy(moving_square_clip(3, frames=1, size=size)[0]).permute(2, 0, 1)[None]
    sample_photo_latents(spec, photo.float() / 127.5 - 1, [], settings, frames=FRAMES)
    return seen


def test_a_diffusers_base_guides_away_from_its_default_unless_the_settings_name_one(
    wan22_miniature_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flashcli.core.specs import load_base

    spec = load_base(wan22_miniature_dir, device="cpu")
    default = spec.negative_prompt
    assert "blurry" in default and "watermark" in default  # flash's own list of defects
    settings = SampleSettings(steps=1, prompt="a person waves")
    assert _encoded_while_sampling(spec, settings, SIZE, monkeypatch) == ["a person waves", default]
    own = settings.model_copy(update={"negative_prompt": "cartoon"})
    assert _encoded_while_sampling(spec, own, SIZE, monkeypatch) == ["a person waves", "cartoon"]


def test_a_base_without_text_never_guides_whatever_the_negative_prompt(
    tiny_spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flashcli.core.sampler import animate_photo, negative_prompt

    settings = SampleSettings(steps=2)
    assert tiny_spec.negative_prompt == "" and negative_prompt(tiny_spec, settings) is None
    assert _encoded_while_sampling(tiny_spec, settings, TINY_SIZE, monkeypatch) == [None]  # its null text
    photo = moving_square_clip(3, frames=1, size=TINY_SIZE)[0]
    plain = animate_photo(tiny_spec, photo, [], settings, frames=FRAMES)
    told = animate_photo(
        tiny_spec, photo, [], settings.model_copy(update={"negative_prompt": "x"}), frames=FRAMES
    )
    assert np.array_equal(plain, told)
