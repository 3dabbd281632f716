"""The Wan spec: base folders round-trip, first-frame conditioning, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from core_helpers import (
    TINY_FRAMES,
    TINY_SIZE,
    build_tiny_components,
    make_diffusers_wan_folder,
    moving_square_clip,
)
from random_wan import random_wan_vae

from flashcli.core.pixels import video_to_tensor
from flashcli.core.specs import load_base, save_base


def test_saved_base_loads_with_identical_outputs(tmp_path: Path) -> None:
    transformer, vae, null_text = build_tiny_components(seed=3)
    save_base(tmp_path / "base", transformer, vae, null_text, {"base_id": "b3", "frames": 9, "size": 32})
    spec = load_base(tmp_path / "base", device="cpu")

    latents = torch.randn(1, 4, 3, 4, 4)
    timesteps = torch.tensor([700.0])
    expected = transformer(
        hidden_states=latents,
        timestep=spec.token_timesteps(timesteps, latents.shape),
        encoder_hidden_states=null_text[None],
        return_dict=False,
    )[0]
    assert torch.equal(spec.denoise(latents, timesteps, spec.encode_text(None)), expected)
    assert spec.base_id == "b3" and spec.default_frames == 9 and spec.default_size == 32
    assert spec.describe()["text"] == "null"


def test_a_base_can_ship_its_sampler_eta_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    transformer, vae, null_text = build_tiny_components(seed=3)
    save_base(tmp_path / "plain", transformer, vae, null_text, {"base_id": "p"})
    assert load_base(tmp_path / "plain", device="cpu").sampler_eta == 0.0  # the Euler ODE unless told
    save_base(tmp_path / "ancestral", transformer, vae, null_text, {"base_id": "a", "sampler_eta": 1.0})
    spec = load_base(tmp_path / "ancestral", device="cpu")
    assert spec.sampler_eta == 1.0 and spec.describe()["sampler_eta"] == 1.0
    save_base(tmp_path / "bad", transformer, vae, null_text, {"base_id": "x", "sampler_eta": 2})
    with pytest.raises(ValueError, match="flash_base.json has sampler_eta 2; set it to a number from 0"):
        load_base(tmp_path / "bad", device="cpu")


def test_a_class_conditional_base_keeps_its_learned_action_texts(tmp_path: Path) -> None:
    transformer, vae, null_text = build_tiny_components(seed=4)
    squat = torch.randn_like(null_text)
    meta = {"base_id": "cc", "frames": 9, "size": 32}
    save_base(tmp_path / "cc", transformer, vae, null_text, meta, action_text={"squat": squat})
    spec = load_base(tmp_path / "cc", device="cpu")
    assert torch.equal(spec.pretrained_action_text("squat"), squat[None])
    assert torch.equal(spec.encode_text("squat"), null_text[None])  # prompts stay for text encoders
    with pytest.raises(KeyError, match="no learned text for action 'weld' \\(it has: squat\\)"):
        spec.pretrained_action_text("weld")
    with pytest.raises(ValueError, match="shaped like the null text"):
        save_base(tmp_path / "bad", transformer, vae, null_text, meta, action_text={"squat": squat[:2]})
    assert not (tmp_path / "bad").exists()


def test_a_base_with_photo_channels_reads_the_photo_latent_on_every_frame(tmp_path: Path) -> None:
    from diffusers import WanTransformer3DModel

    transformer, vae, null_text = build_tiny_components(seed=4)
    config = {**transformer.config, "in_channels": 8}
    wide = WanTransformer3DModel.from_config(config)
    save_base(tmp_path / "base", wide, vae, null_text, {"base_id": "p", "frames": 9, "size": 32})
    spec = load_base(tmp_path / "base", device="cpu")
    assert spec.photo_channels

    latents = torch.randn(1, 4, 3, 4, 4)
    timesteps = torch.tensor([700.0])
    photo = latents[:, :, :1].expand(-1, -1, 3, -1, -1)
    expected = wide(
        hidden_states=torch.cat([latents, photo], dim=1),
        timestep=spec.token_timesteps(timesteps, latents.shape),
        encoder_hidden_states=null_text[None],
        return_dict=False,
    )[0]
    assert expected.shape == latents.shape
    assert torch.equal(spec.denoise(latents, timesteps, spec.encode_text(None)), expected)

    odd = WanTransformer3DModel.from_config({**transformer.config, "in_channels": 12})
    save_base(tmp_path / "odd", odd, vae, null_text, {"base_id": "odd", "frames": 9, "size": 32})
    with pytest.raises(ValueError, match="in must be 4, or 8 with the photo latent"):
        load_base(tmp_path / "odd", device="cpu")


def test_weight_hash_is_stable_and_tells_bases_apart(tiny_base_dir: Path, other_base_dir: Path) -> None:
    first = load_base(tiny_base_dir, device="cpu")
    again = load_base(tiny_base_dir, device="cpu")
    other = load_base(other_base_dir, device="cpu")
    assert first.weight_hash == again.weight_hash
    assert first.weight_hash != other.weight_hash


def test_photo_latent_is_latent_frame_zero_of_the_video(tiny_spec) -> None:
    video = video_to_tensor(moving_square_clip(0))[None]
    latents = tiny_spec.encode_video(video)
    assert latents.shape == (1, 4, tiny_spec.latent_frames(TINY_FRAMES), TINY_SIZE // 8, TINY_SIZE // 8)
    assert torch.equal(tiny_spec.encode_photo(video[:, :, 0]), latents[:, :, :1])


def test_frame_zero_tokens_get_timestep_zero(tiny_spec) -> None:
    per_token = tiny_spec.token_timesteps(torch.tensor([500.0, 250.0]), (2, 4, 3, 4, 4))
    tokens_per_frame = (4 // 2) * (4 // 2)
    assert per_token.shape == (2, 3 * tokens_per_frame)
    assert torch.all(per_token[:, :tokens_per_frame] == 0)
    assert torch.all(per_token[0, tokens_per_frame:] == 500) and torch.all(
        per_token[1, tokens_per_frame:] == 250
    )


def test_decode_puts_the_reference_photo_at_frame_zero(tiny_spec) -> None:
    video = video_to_tensor(moving_square_clip(1))[None]
    decoded = tiny_spec.decode(torch.randn(1, 4, 3, 4, 4), reference_photo=video[:, :, 0])
    assert decoded.shape == (1, 3, TINY_FRAMES, TINY_SIZE, TINY_SIZE)
    assert torch.equal(decoded[:, :, 0], video[:, :, 0])


def test_frame_count_and_size_are_checked(tiny_spec) -> None:
    assert tiny_spec.frames_ok(9) and tiny_spec.frames_ok(17)
    assert not tiny_spec.frames_ok(8) and not tiny_spec.frames_ok(1)
    assert tiny_spec.size_multiple == 16
    with pytest.raises(ValueError, match="4k\\+1"):
        tiny_spec.encode_video(torch.zeros(1, 3, 8, TINY_SIZE, TINY_SIZE))
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny_spec.encode_video(torch.zeros(1, 3, 9, 24, 24))


def test_missing_bases_fail_with_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flashcli.core.specs as specs

    monkeypatch.setattr(specs, "tiny_base_folder", lambda: tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="embedded tiny base is missing"):
        load_base("tiny", device="cpu")
    with pytest.raises(FileNotFoundError, match="neither 'tiny', a folder, nor a hub id"):
        load_base(tmp_path / "nowhere", device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="huggingface-cli download flash-tests/no-such-base"):
        load_base("flash-tests/no-such-base", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a base"):
        load_base(tmp_path / "empty", device="cpu")


def test_a_diffusers_wan_folder_loads_with_its_text_encoder(tmp_path: Path) -> None:
    folder = make_diffusers_wan_folder(tmp_path / "Wan2.2-tiny-Diffusers")
    spec = load_base(folder, device="cpu")
    assert spec.has_text and spec.flow_shift == 5.0 and spec.base_id == "Wan2.2-tiny-Diffusers"
    welding = spec.encode_text("a person is welding")
    waving = spec.encode_text("a person is waving")
    assert welding.shape == (1, 512, 16)
    assert not torch.equal(welding, waving)
    assert torch.all(welding[:, 10:] == 0)  # padding positions are zeroed as in Wan's pipeline
    velocity = spec.denoise(torch.randn(1, 4, 3, 4, 4), torch.tensor([900.0]), welding)
    assert velocity.shape == (1, 4, 3, 4, 4) and torch.isfinite(velocity).all()


def test_wan22_style_vae_with_patchified_pixels_works_through_the_spec() -> None:
    from flashcli.core.specs import WanSpec

    transformer, _, null_text = build_tiny_components(seed=7)
    torch.manual_seed(7)
    # Wan 2.2 TI2V's VAE shape in miniature: residual blocks, 2x2 pixel patchify, x16 spatial compression.
    vae = random_wan_vae(wan22=True, scale_factor_spatial=16)
    spec = WanSpec(base_id="wan22-mini", transformer=transformer, vae=vae, null_text=null_text)
    assert spec.size_multiple == 32
    video = video_to_tensor(moving_square_clip(2, size=64))[None]
    latents = spec.encode_video(video)
    assert latents.shape == (1, 4, 3, 4, 4)
    assert torch.allclose(spec.encode_photo(video[:, :, 0]), latents[:, :, :1], atol=1e-5)
    decoded = spec.decode(latents, reference_photo=video[:, :, 0])
    assert decoded.shape == video.shape and torch.equal(decoded[:, :, 0], video[:, :, 0])


def test_frames_are_4k_plus_1_whatever_the_time_compression() -> None:
    # diffusers' Wan VAE encodes frame 0 and then chunks of 4 frames, dropping a remainder silently:
    # 6 frames would become 5 latent frames. So even a VAE with no time compression needs 4k+1.
    from flashcli.core.specs import WanSpec

    transformer, _, null_text = build_tiny_components(seed=8)
    torch.manual_seed(8)
    vae = random_wan_vae(temperal_downsample=[False, False, False], scale_factor_temporal=1)
    spec = WanSpec(base_id="no-time", transformer=transformer, vae=vae, null_text=null_text)
    assert spec.frames_ok(5) and spec.frames_ok(9) and not spec.frames_ok(6) and not spec.frames_ok(1)
    video = video_to_tensor(moving_square_clip(3, frames=9, size=TINY_SIZE))[None]
    assert spec.encode_video(video).shape[2] == 9 == spec.latent_frames(9)
    with pytest.raises(ValueError, match="needs 4k\\+1 frames \\(e.g. 5\\)"):
        spec.encode_video(video[:, :, :6])
