"""Learn-time DED fine-tuning: the learn workflow runs it after the adapter (the trainer never does),
it learns the clips, leaves the base's DED alone, and its weights file refuses every other base."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from core_helpers import moving_square_clip

from flashcli.core.ded import DetailEnhancedDecoder, ded_loss
from flashcli.core.ded_finetune import (
    DedMismatchError,
    _window,
    load_finetuned_ded,
    save_finetuned_ded,
)
from flashcli.core.pixels import video_to_tensor
from flashcli.core.settings import AlignSettings, TrainSettings
from flashcli.core.specs import load_base
from flashcli.core.trainer import TrainProgress, train_adapter
from flashcli.workflows.learn import train_action


def _settings(**overrides: object) -> TrainSettings:
    values: dict[str, object] = {
        "frames": 9,
        "size": 32,
        "steps": 1,
        "rank": 2,
        "warmup_steps": 0,
        "align": AlignSettings.variant("none"),
        "ded_finetune_steps": 6,
        "ded_finetune_lr": 3e-2,
    }
    values.update(overrides)
    return TrainSettings(**values)


def _with_ded(spec):
    # An untrained DED: exactly the plain decoder, so anything it learns shows in the loss.
    spec.ded = DetailEnhancedDecoder(spec.vae).eval()
    return spec


def _clip_loss(spec, ded: DetailEnhancedDecoder, clips) -> float:
    """The DED loss of frames 1.. on whole clips, each decoded with its own frame 0 as the photo."""
    videos = torch.stack([video_to_tensor(clip) for clip in clips])
    with torch.no_grad():
        latents = spec.to_vae_space(spec.encode_video(videos))
        return float(ded_loss(ded.decode(latents, videos[:, :, 0])[:, :, 1:], videos[:, :, 1:])["loss"])


def test_finetuning_lowers_the_loss_on_the_clips_and_leaves_the_base_ded_alone(
    tiny_spec, tmp_path: Path
) -> None:
    spec = _with_ded(tiny_spec)
    clips = [moving_square_clip(0), moving_square_clip(1)]
    base_state = {name: t.clone() for name, t in spec.ded.blocks.state_dict().items()}
    seen: list[TrainProgress] = []
    result = train_action(spec, clips, _settings(), progress=seen.append)

    assert result.ded is not None and len(result.ded.losses) == 6
    assert [p.step for p in seen if p.phase == "ded"] == list(range(1, 7))
    assert [p.phase for p in seen][-1] == "ded" and "loss" in seen[-1].losses
    assert all(torch.equal(t, base_state[name]) for name, t in spec.ded.blocks.state_dict().items())
    assert any(not torch.equal(t, base_state[name]) for name, t in result.ded.tensors.items())
    assert set(result.ded.tensors) == set(base_state)  # only the DED's own layers, never the VAE

    path = save_finetuned_ded(tmp_path / "ded.safetensors", result.ded.tensors, result.ded.metadata)
    tuned = load_finetuned_ded(path, spec)
    assert _clip_loss(spec, tuned, clips) < 0.8 * _clip_loss(spec, spec.ded, clips)


def test_default_training_does_not_touch_the_ded(tiny_spec) -> None:
    result = train_action(_with_ded(tiny_spec), [moving_square_clip(0)], _settings(ded_finetune_steps=0))
    assert result.ded is None


def test_the_trainer_alone_never_tunes_the_ded(tiny_spec) -> None:
    # DED fine-tuning is the learn workflow's step after training, not the trainer's: the trainer
    # reports no "ded" phase even when the settings ask for it, and hands back the clips' latents.
    seen: list[TrainProgress] = []
    clip = moving_square_clip(0)
    result = train_adapter(_with_ded(tiny_spec), [clip], _settings(), progress=seen.append)
    assert {p.phase for p in seen} == {"encode", "train"}
    assert not hasattr(result, "ded")
    assert result.latents.shape[0] == 1 and result.latents.shape[2] == tiny_spec.latent_frames(len(clip))


def test_a_base_without_ded_cannot_be_finetuned(tiny_spec) -> None:
    assert tiny_spec.ded is None
    with pytest.raises(ValueError, match="no Detail Enhancement Decoder"):
        train_action(tiny_spec, [moving_square_clip(0)], _settings())


def test_weights_of_another_base_or_vae_are_refused(tiny_spec, other_base_dir: Path, tmp_path: Path) -> None:
    spec = _with_ded(tiny_spec)
    result = train_action(spec, [moving_square_clip(0)], _settings(ded_finetune_steps=1))
    path = save_finetuned_ded(tmp_path / "ded.safetensors", result.ded.tensors, result.ded.metadata)
    assert result.ded.metadata["base_weight_hash"] == spec.weight_hash

    other = load_base(other_base_dir, device="cpu")
    with pytest.raises(DedMismatchError, match="fine-tuned on base 'tiny-test'"):
        load_finetuned_ded(path, other)
    with torch.no_grad():  # same transformer, retrained VAE: the DED no longer belongs to it
        next(spec.vae.parameters()).add_(0.1)
    with pytest.raises(DedMismatchError, match="VAE"):
        load_finetuned_ded(path, spec)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(DedMismatchError, match="not a readable"):
        load_finetuned_ded(tmp_path / "junk.safetensors", spec)


def test_window_cuts_latents_and_pixels_at_the_same_place() -> None:
    latents = torch.arange(4 * 4, dtype=torch.float32).view(1, 1, 1, 4, 4)
    video = latents.repeat_interleave(8, -1).repeat_interleave(8, -2)  # 8 pixels per latent pixel
    generator = torch.Generator().manual_seed(0)
    cut_latents, cut_video = _window(latents, video, 20, generator)  # rounded down to 16 pixels
    assert cut_latents.shape[-2:] == (2, 2) and cut_video.shape[-2:] == (16, 16)
    assert torch.equal(cut_video[..., ::8, ::8], cut_latents)
    whole = _window(latents, video, 0, generator)
    assert whole[0] is latents and whole[1] is video
