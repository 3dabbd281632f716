"""Tiny random Wan bases and clips for the core tests (no downloads, a few ms per forward)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from random_wan import random_wan_components

TINY_FRAMES = 9
TINY_SIZE = 32


def build_tiny_components(
    seed: int = 0, num_layers: int = 4
) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    return random_wan_components(seed, num_layers)


def make_base_folder(folder: Path, seed: int = 0, base_id: str = "tiny-test") -> Path:
    from flashcli.core.specs import save_base

    transformer, vae, null_text = build_tiny_components(seed)
    meta = {"base_id": base_id, "frames": TINY_FRAMES, "size": TINY_SIZE, "fps": 8, "flow_shift": 2.0}
    return save_base(folder, transformer, vae, null_text, meta)


def moving_square_clip(seed: int, frames: int = TINY_FRAMES, size: int = TINY_SIZE) -> np.ndarray:
    """A coloured square sliding across a plain background: simple, deterministic motion."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 255, size=3, dtype=np.uint8)
    colour = rng.integers(0, 255, size=3, dtype=np.uint8)
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    video[:] = background
    side = size // 4
    for index in range(frames):
        x = (index * 2) % (size - side)
        y = size // 3
        video[index, y : y + side, x : x + side] = colour
    return video


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "</s>", "<unk>", "a", "person", "is", "welding", "waving", "dancing"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )


def make_diffusers_wan_folder(folder: Path, seed: int = 5) -> Path:
    """A Wan 2.2-style diffusers folder (model_index.json, UMT5 text encoder) with tiny random weights."""
    from transformers import UMT5Config, UMT5EncoderModel

    transformer, vae, _ = build_tiny_components(seed=seed)
    encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=16,
            d_model=16,
            d_kv=8,
            d_ff=32,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
        )
    )
    transformer.save_pretrained(folder / "transformer")
    vae.save_pretrained(folder / "vae")
    encoder.save_pretrained(folder / "text_encoder")
    _tiny_tokenizer().save_pretrained(folder / "tokenizer")
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"flow_shift": 5.0}))
    index = {
        "_class_name": "WanPipeline",
        "expand_timesteps": True,  # first-frame conditioning: the TI2V pipelines flash drives
        "transformer": ["diffusers", "WanTransformer3DModel"],
    }
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder
