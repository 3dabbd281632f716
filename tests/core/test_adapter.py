"""Adapters: exact save/load round trip, clear refusal on the wrong base or a damaged file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from core_helpers import moving_square_clip

from flashcli.core.adapter import (
    AdapterMismatchError,
    adapters_attached,
    load_adapter,
    save_adapter,
)
from flashcli.core.settings import AlignSettings, TrainSettings
from flashcli.core.specs import load_base
from flashcli.core.trainer import train_adapter


@pytest.fixture(scope="module")
def learned(tiny_base_dir: Path):
    spec = load_base(tiny_base_dir, device="cpu")
    settings = TrainSettings(
        frames=9,
        size=32,
        steps=6,
        rank=4,
        learning_rate=2e-2,
        warmup_steps=0,
        align=AlignSettings.variant("none"),
    )
    return train_adapter(spec, [moving_square_clip(0)], settings)


def _velocity(spec, adapters) -> torch.Tensor:
    latents = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), adapters_attached(spec, adapters):
        return spec.denoise(latents, torch.tensor([600.0]), spec.encode_text(None))


def test_saved_adapter_gives_the_same_output_in_a_fresh_model(
    learned, tiny_base_dir: Path, tmp_path: Path
) -> None:
    trained_on = load_base(tiny_base_dir, device="cpu")
    expected = _velocity(trained_on, [(learned.adapter, learned.metadata, 1.0)])
    path = save_adapter(tmp_path / "wave" / "adapter.safetensors", learned.adapter, learned.metadata)
    tensors, metadata = load_adapter(path)

    fresh = load_base(tiny_base_dir, device="cpu")
    assert torch.equal(_velocity(fresh, [(tensors, metadata, 1.0)]), expected)
    assert not torch.equal(_velocity(fresh, []), expected)
    assert metadata["base_id"] == "tiny-test" and metadata["targets"].startswith("[")
    assert not list(path.parent.glob(".*"))  # no temp file left behind


def test_adapter_for_another_base_is_refused_in_one_sentence(learned, other_base_dir: Path) -> None:
    other = load_base(other_base_dir, device="cpu")
    with pytest.raises(AdapterMismatchError) as error:
        _velocity(other, [(learned.adapter, learned.metadata, 1.0)])
    message = str(error.value)
    assert "tiny-test" in message and "other-test" in message and message.count(". ") == 0
    assert _velocity(other, []).shape == (1, 4, 3, 4, 4)  # the base is left usable


def test_adapter_for_an_earlier_version_of_the_same_base_says_to_learn_it_again(
    learned, tiny_base_dir: Path
) -> None:
    spec = load_base(tiny_base_dir, device="cpu")
    older = {**learned.metadata, "base_weight_hash": "0123456789abcdef"}  # same base id, old weights
    with pytest.raises(AdapterMismatchError) as error:
        _velocity(spec, [(learned.adapter, older, 1.0)])
    message = str(error.value)
    assert "earlier version of base 'tiny-test'" in message and "0123456789abcdef" in message
    assert "--force" in message and "load base" not in message and message.count(". ") == 0


def test_adapter_keys_that_attach_nowhere_are_an_error(learned, tiny_base_dir: Path) -> None:
    spec = load_base(tiny_base_dir, device="cpu")
    renamed = {key.replace("attn1", "attn9"): value for key, value in learned.adapter.items()}
    with pytest.raises(AdapterMismatchError, match="found no layer"):
        _velocity(spec, [(renamed, learned.metadata, 1.0)])
    partial = dict(list(learned.adapter.items())[2:])
    with pytest.raises(AdapterMismatchError, match="got no weights"):
        _velocity(spec, [(partial, learned.metadata, 1.0)])


def test_files_that_are_not_adapters_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "adapter.safetensors"
    junk.write_bytes(b"not safetensors at all")
    with pytest.raises(AdapterMismatchError, match="adapter.safetensors is not a readable"):
        load_adapter(junk)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_adapter(tmp_path / "missing.safetensors")
    with pytest.raises(AdapterMismatchError, match="lacks"):
        save_adapter(tmp_path / "a.safetensors", {"w": torch.zeros(1)}, {"base_id": "x"})
