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


def _learn_and_animate(base: Path, tmp_path: Path, size: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """`flash learn` three clips at `--size` on the miniature, then `flash animate` a photo with the action
    (its size as learned); returns the manifest, the video and the photo as animate fitted it."""
    from PIL import Image
    from typer.testing import CliRunner

    from flashcli.cli import app
    from flashcli.video import fit_image, read_output, write_video

    clips = tmp_path / "clips"
    for index in range(3):
        write_video(clips / f"clip{index}.mp4", moving_square_clip(index, frames=9, size=SIZE), fps=8)
    photo = tmp_path / "photo.png"
    Image.fromarray(moving_square_clip(9, frames=1, size=SIZE)[0]).save(photo)
    preset = tmp_path / "tiny.toml"
    preset.write_text(
        'description = "a few steps"\n[learn]\nsteps = 2\nrank = 2\npreview_steps = 1\n'
        "[learn.core]\nwarmup_steps = 0\naugment_copies = 1\n[animate]\nsteps = 2\n"
    )
    library, runner = tmp_path / "library", CliRunner()
    common = ["--library", str(library), "--device", "cpu", "--json"]
    learn = ["learn", str(clips), "--action", "weld", "--base", str(base), "--preset", str(preset)]
    prompt = ["--prompt", "a welder welds a steel plate", "--frames", str(FRAMES), "--size", size]
    learned = runner.invoke(app, [*learn, *prompt, *common])
    assert learned.exit_code == 0, learned.output
    out = tmp_path / "photo_weld.png"
    animated = runner.invoke(app, ["animate", str(photo), "--action", "weld", "-o", str(out), *common])
    assert animated.exit_code == 0, animated.output
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    width, height = sidecar["width"], sidecar["height"]
    fitted = fit_image(np.asarray(Image.open(photo).convert("RGB")), (width, height))
    return json.loads(learned.stdout)["manifest"], read_output(out), fitted


@pytest.mark.slow
def test_learn_and_animate_run_end_to_end_on_the_miniature(wan22_miniature_dir: Path, tmp_path: Path) -> None:
    manifest, video, photo = _learn_and_animate(wan22_miniature_dir, tmp_path, str(SIZE))
    assert (
        manifest["base"] == "Wan2.2-TI2V-5B-Diffusers"
        and manifest["prompt"] == "a welder welds a steel plate"
    )
    assert video.shape == (FRAMES, SIZE, SIZE, 3) and np.array_equal(video[0], photo)


@pytest.mark.slow
@pytest.mark.parametrize(("size", "width", "height"), [("64x32", 64, 32), ("32x64", 32, 64)])
def test_learn_and_animate_at_landscape_and_portrait_sizes(
    wan22_miniature_dir: Path, tmp_path: Path, size: str, width: int, height: int
) -> None:
    """832x480- and 480x832-shaped frames (scaled to the miniature's multiples of 32): the action is learned
    at W x H, recorded so, and animate makes W x H videos with the photo as frame 0."""
    manifest, video, photo = _learn_and_animate(wan22_miniature_dir, tmp_path, size)
    assert (manifest["width"], manifest["size"]) == (width, height)
    assert manifest["settings"]["width"] == width and manifest["settings"]["size"] == height
    assert manifest["settings"]["gradient_checkpointing"] is True  # on by default for a diffusers folder
    assert manifest["fps"] == 24.0 and manifest["clips"][0]["sampling"].startswith("at 24 fps")  # retimed
    assert manifest["base_defaults"] == {
        "kind": "Wan 2.2 TI2V-5B",
        "frames": 121,
        "fps": 24.0,
        "size": "1280x704",
    }
    assert video.shape == (FRAMES, height, width, 3) and np.array_equal(video[0], photo)


def test_a_ti2v_5b_folder_brings_its_own_frames_fps_and_size(wan22_miniature_dir: Path, spec) -> None:
    """Nothing chosen: the run takes Wan 2.2 TI2V-5B's 121 frames, 24 fps and 1280x704, read unloaded."""
    from flashcli.config import resolve_learn
    from flashcli.workflows.plan import base_shape, plan_learn

    shape = base_shape(str(wan22_miniature_dir))
    assert shape is not None and (shape.default_frames, shape.default_size, shape.default_fps) == (
        121,
        (1280, 704),
        24.0,
    )
    name, config, table = resolve_learn("quick", {"base": str(wan22_miniature_dir)})
    config = config.model_copy(update={"frames": None, "size": None})  # the base's, whatever the preset says
    plan = plan_learn(name, config, table, shape, {})
    assert (plan.frames, plan.size) == (121, (1280, 704))
    assert (spec.default_frames, spec.default_size, spec.fps) == (121, (1280, 704), 24)
    assert spec.meta["pipeline"] == {
        "kind": "Wan 2.2 TI2V-5B",
        "frames": 121,
        "fps": 24.0,
        "size": "1280x704",
    }


def _copy_with_index(folder: Path, target: Path, **index: object) -> Path:
    """The miniature's parts (linked, not copied) under a model_index.json with `index` changed."""
    target.mkdir()
    for part in folder.iterdir():
        if part.name != "model_index.json":
            (target / part.name).symlink_to(part)
    original = json.loads((folder / "model_index.json").read_text())
    (target / "model_index.json").write_text(json.dumps({**original, **index}))
    return target


@pytest.mark.parametrize(
    ("index", "words"),
    [
        ({"expand_timesteps": False}, "text-to-video pipeline without first-frame conditioning"),
        ({"_class_name": "WanImageToVideoPipeline"}, "names pipeline 'WanImageToVideoPipeline'"),
    ],
)
def test_a_folder_flash_cannot_drive_is_refused_in_one_sentence(
    wan22_miniature_dir: Path, tmp_path: Path, index: dict, words: str
) -> None:
    from typer.testing import CliRunner

    from flashcli.cli import app
    from flashcli.core.specs import load_base

    base = _copy_with_index(wan22_miniature_dir, tmp_path / "Wan-T2V", **index)
    clips = tmp_path / "clips"
    clips.mkdir()
    args = ["learn", str(clips), "--action", "weld", "--base", str(base), "--library", str(tmp_path / "lib")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    message = " ".join(result.stderr.split())
    assert words in message and "model_index.json" in message and "Wan2.2-TI2V-5B-Diffusers" in message
    assert not (tmp_path / "lib" / "weld").exists()
    with pytest.raises(ValueError, match="flash cannot drive|cannot start from a photo"):
        load_base(base, device="cpu")  # the loader refuses it too, for bench and scripts


def test_prompts_are_encoded_once_and_the_text_encoder_is_let_go(spec) -> None:
    """Before training, the run's prompts are encoded and UMT5 is dropped (on a GPU its 10.6 GiB go to
    training); the prompts are answered from the cache, and nothing can call the encoder again."""
    import gc
    import weakref

    encoder = weakref.ref(spec.text_encoder)
    before = spec.encode_text("a welder welds")
    spec._text_cache.clear()  # so release has to encode again, as at the start of a run
    spec.release_text_encoder(["a welder welds", ""])
    gc.collect()
    assert spec.text_encoder is None and encoder() is None and spec.has_text
    assert (
        torch.equal(spec.encode_text("a welder welds"), before)
        and spec.encode_text(None).shape == before.shape
    )
    with pytest.raises(RuntimeError, match="released before 'a boxer kicks' was encoded"):
        spec.encode_text("a boxer kicks")
