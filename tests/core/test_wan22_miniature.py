"""flash drives a faithful miniature of the Wan 2.2 TI2V-5B diffusers folder (tests/wan22_miniature.py):
48-channel latents, the UMT5 prompt path with a real sentencepiece tokenizer, first-frame conditioning
as diffusers' `expand_timesteps` does it, and `flash learn` / `flash animate` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from core_helpers import moving_square_clip
from wan22_miniature import TEXT_DIM

from flashcli.core.pixels import video_to_tensor

FRAMES, SIZE = 5, 64  # 4k+1 frames; a multiple of 32 (x16 VAE, 2x2 patches)


@pytest.fixture()
def spec(wan22_miniature_dir: Path):
    from flashcli.core.specs import load_base

    return load_base(wan22_miniature_dir, device="cpu")


def test_diffusers_itself_reads_the_miniature_as_a_ti2v_pipeline(wan22_miniature_dir: Path) -> None:
    from diffusers import UniPCMultistepScheduler, WanPipeline

    pipeline = WanPipeline.from_pretrained(wan22_miniature_dir)
    assert pipeline.config.expand_timesteps is True and pipeline.transformer_2 is None
    assert isinstance(pipeline.scheduler, UniPCMultistepScheduler)
    assert pipeline.scheduler.config.flow_shift == 5.0 and pipeline.scheduler.config.use_flow_sigmas
    assert pipeline.transformer.config.in_channels == pipeline.vae.config.z_dim == 48
    assert pipeline.vae.config.is_residual and pipeline.vae.config.patch_size == 2
    assert len(list((wan22_miniature_dir / "transformer").glob("*.safetensors"))) > 1  # sharded, as real


def test_flash_loads_the_miniature_with_48_channel_latents(spec) -> None:
    assert spec.base_id == "Wan2.2-TI2V-5B-Diffusers" and spec.has_text and spec.flow_shift == 5.0
    assert spec.size_multiple == 32 and spec.frame_step == 4
    video = video_to_tensor(moving_square_clip(1, frames=FRAMES, size=SIZE))[None]
    latents = spec.encode_video(video)
    assert latents.shape == (1, 48, 2, 4, 4)
    assert torch.allclose(spec.encode_photo(video[:, :, 0]), latents[:, :, :1], atol=1e-5)
    decoded = spec.decode(latents, reference_photo=video[:, :, 0])
    assert decoded.shape == video.shape and torch.equal(decoded[:, :, 0], video[:, :, 0])


def test_prompts_go_through_the_sentencepiece_tokenizer_and_umt5(spec, wan22_miniature_dir: Path) -> None:
    import sentencepiece

    prompt = "A welder lifts the metal pipe slowly."
    pieces = sentencepiece.SentencePieceProcessor(
        model_file=str(wan22_miniature_dir / "tokenizer" / "spiece.model")
    )
    ids = spec.tokenizer(prompt).input_ids
    assert ids == [*pieces.encode(prompt), spec.tokenizer.eos_token_id]  # the same pieces, then </s>
    embedding = spec.encode_text(prompt)
    assert embedding.shape == (1, 512, TEXT_DIM)
    assert embedding[0, : len(ids)].abs().sum(-1).min() > 0 and torch.all(embedding[0, len(ids) :] == 0)
    assert not torch.equal(embedding, spec.encode_text("A boxer kicks the ball twice in a row."))


def test_first_frame_conditioning_is_diffusers_expand_timesteps(spec, wan22_miniature_dir: Path) -> None:
    """flash's denoiser call is the transformer call diffusers' TI2V image-to-video loop makes: a per-token
    timestep that is 0 on latent frame 0's tokens (`first_frame_mask[:, :, 0] = 0`, then [:, ::2, ::2])."""
    assert json.loads((wan22_miniature_dir / "model_index.json").read_text())["expand_timesteps"] is True
    latents = torch.randn(1, 48, 3, 4, 6)
    t = torch.tensor([640.0])
    mask = torch.ones(1, 1, 3, 4, 6)
    mask[:, :, 0] = 0
    diffusers_timestep = (mask[0][0][:, ::2, ::2] * t).flatten().unsqueeze(0)
    assert torch.equal(spec.token_timesteps(t, latents.shape), diffusers_timestep)

    text = spec.encode_text("a person waves")
    expected = spec.transformer(
        hidden_states=latents, timestep=diffusers_timestep, encoder_hidden_states=text, return_dict=False
    )[0]
    assert torch.equal(spec.denoise(latents, t, text), expected)


@pytest.mark.slow
def test_learn_and_animate_run_end_to_end_on_the_miniature(wan22_miniature_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flashcli.cli import app
    from flashcli.video import read_output, write_video

    clips = tmp_path / "clips"
    for index in range(3):
        write_video(clips / f"clip{index}.mp4", moving_square_clip(index, frames=9, size=SIZE), fps=8)
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray(moving_square_clip(9, frames=1, size=SIZE)[0]).save(photo)
    preset = tmp_path / "tiny.toml"
    preset.write_text(
        'description = "a few steps"\n[learn]\nsteps = 2\nrank = 2\npreview_steps = 1\n'
        "[learn.core]\nwarmup_steps = 0\naugment_copies = 1\n[animate]\nsteps = 2\n"
    )
    library, runner = tmp_path / "library", CliRunner()
    common = ["--library", str(library), "--device", "cpu", "--json"]
    learned = runner.invoke(
        app,
        [
            "learn",
            str(clips),
            "--action",
            "weld",
            "--base",
            str(wan22_miniature_dir),
            "--preset",
            str(preset),
            "--prompt",
            "a welder welds a steel plate",
            "--frames",
            str(FRAMES),
            "--size",
            str(SIZE),
            *common,
        ],
    )
    assert learned.exit_code == 0, learned.output
    manifest = json.loads(learned.stdout)["manifest"]
    assert (
        manifest["base"] == "Wan2.2-TI2V-5B-Diffusers"
        and manifest["prompt"] == "a welder welds a steel plate"
    )

    out = tmp_path / "photo_weld.png"
    animated = runner.invoke(app, ["animate", str(photo), "--action", "weld", "-o", str(out), *common])
    assert animated.exit_code == 0, animated.output
    video = read_output(out)
    assert video.shape == (FRAMES, SIZE, SIZE, 3)
    assert np.array_equal(video[0], np.asarray(Image.open(photo).convert("RGB")))
