"""The model spec for Wan-architecture bases (diffusers WanTransformer3DModel + AutoencoderKLWan).

One class serves the embedded `tiny` base (no text encoder: a learned null text embedding) and real
Wan 2.2 TI2V checkpoints (UMT5 text encoder). First-frame conditioning follows Wan 2.2 TI2V's
`expand_timesteps`: latent frame 0 is the clean photo latent and its tokens get timestep 0.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from einops import repeat


class MemoryRung(Protocol):
    """What a spec applies of the preflight's memory rung (`core.memory_plan.MemoryRung`; a protocol here,
    as memory_plan reaches the specs through the trainer)."""

    text_encoder_cpu: bool
    vae_tiling: bool
    fp8_denoiser: bool

    def as_dict(self) -> dict[str, Any]: ...


# What every flash base folder's flash_base.json holds when the saver does not say otherwise.
BASE_META_DEFAULTS: dict[str, Any] = {
    "format_version": 1,
    "architecture": "wan",
    "frames": 17,
    "size": 64,
    "fps": 8,
    "text_mode": "null",
    "flow_shift": 3.0,
}

# Files above this size are hashed by sampling, so hashing a 10 GB checkpoint takes a moment, not minutes.
_FULL_HASH_LIMIT = 32 * 1024 * 1024
_SAMPLE_CHUNK = 64 * 1024
_SAMPLES_PER_FILE = 64


def hash_weight_files(folder: Path) -> str:
    """Stable hash of the safetensors files in a diffusers model folder (names, sizes, headers, contents).

    Independent of the dtype the model is later loaded in, so an adapter trained in bf16 on CUDA
    matches the same base loaded in fp32 on CPU.
    """
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}\n".encode())
        with path.open("rb") as handle:
            if size <= _FULL_HASH_LIMIT:
                digest.update(handle.read())
                continue
            header_len = int.from_bytes(handle.read(8), "little")
            digest.update(handle.read(header_len))
            stride = max(1, (size - _SAMPLE_CHUNK) // _SAMPLES_PER_FILE)
            for offset in range(0, size - _SAMPLE_CHUNK, stride):
                handle.seek(offset)
                digest.update(handle.read(_SAMPLE_CHUNK))
    return digest.hexdigest()[:16]


def hash_state_dict(state: Mapping[str, torch.Tensor]) -> str:
    """Hash of in-memory weights, for a spec built without a folder (tests, freshly built bases)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu", torch.float32).flatten()
        stride = max(1, tensor.numel() // 65536)
        digest.update(f"{name}:{tuple(state[name].shape)}\n".encode())
        digest.update(tensor[::stride].contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# diffusers' AutoencoderKLWan encodes frame 0, then chunks of this many frames (see frame_step).
ENCODER_CHUNK_FRAMES = 4

# What a diffusers folder's classifier-free guidance steers away from unless a run names its own
# negative prompt. Wan's own pipelines sample against such a list of defects; this is flash's wording.
DIFFUSERS_NEGATIVE_PROMPT = (
    "static image, frozen or jerky motion, flickering, blurry, out of focus, low quality, low resolution, "
    "compression artifacts, grainy noise, overexposed, dull grey colors, distorted body, deformed face, "
    "malformed hands, extra or fused fingers, extra limbs, missing limbs, twisted joints, duplicated "
    "person, crowded background, text, subtitles, captions, watermark, logo"
)


class WanSpec:
    """Everything the trainer, sampler and CLI need to know about one Wan-architecture base."""

    architecture = "wan"

    def __init__(
        self,
        *,
        base_id: str,
        transformer: torch.nn.Module,
        vae: torch.nn.Module,
        meta: Mapping[str, Any] | None = None,
        null_text: torch.Tensor | None = None,
        action_text: Mapping[str, torch.Tensor] | None = None,
        text_encoder: torch.nn.Module | None = None,
        tokenizer: Any | None = None,
        ded: Any | None = None,
        weight_hash: str | None = None,
        folder: Path | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        memory: MemoryRung | None = None,
    ) -> None:
        self.base_id = base_id
        self.meta: dict[str, Any] = {**BASE_META_DEFAULTS, **dict(meta or {})}
        self.folder = folder
        self.device = device or next(transformer.parameters()).device
        # Load-time dtype is kept (from_pretrained(torch_dtype=...) keeps norms in fp32); only move devices.
        self.dtype = dtype or transformer.patch_embedding.weight.dtype
        # The preflight's memory rung (`core.memory_plan.LADDER`; None: every part on `device` as loaded).
        self.memory = memory
        if memory is not None and memory.fp8_denoiser:
            self._store_in_fp8(transformer)  # before the move: only the fp8 bytes reach the GPU
        self.transformer = transformer.to(self.device).eval().requires_grad_(False)
        # The VAE stays fp32: it runs once per clip and its precision shows directly in the pixels.
        if vae.dtype != torch.float32:
            raise ValueError(f"the VAE of base {base_id!r} must be float32, got {vae.dtype}")
        self.vae = vae.to(self.device).eval().requires_grad_(False)
        if memory is not None and memory.vae_tiling:
            self.vae.enable_tiling()  # encode and decode tile by tile: the working set of one tile
        self.text_encoder = text_encoder
        if text_encoder is not None:
            self.text_encoder = text_encoder.to(self.text_device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.ded = ded
        self._check_components(null_text)
        self.null_text = None if null_text is None else null_text.to(self.device, self.dtype)
        # A class-conditionally pretrained base's embedding of each of its pretraining actions.
        self.action_text = {
            name: value.to(self.device, self.dtype) for name, value in (action_text or {}).items()
        }
        self._weight_hash = weight_hash
        self._text_cache: dict[str, torch.Tensor] = {}
        self._text_released = False  # the encoder is gone; only the cached prompts can be encoded

    # ----- what the CLI and bench read -------------------------------------------------------------

    @property
    def weight_hash(self) -> str:
        if self._weight_hash is None:
            self._weight_hash = hash_state_dict(self.transformer.state_dict())
        return self._weight_hash

    @property
    def photo_channels(self) -> bool:
        """Whether the transformer also reads the photo latent as extra input channels on every frame.

        Besides Wan 2.2 TI2V's clean frame-0 tokens, such a base (in_channels = 2 * z_dim) gets the photo
        latent concatenated to every frame, as Wan 2.1 I2V concatenates its image latent, so each token
        sees the photo at its own place and copying what does not move costs the model nothing.
        """
        return int(self.transformer.config.in_channels) == 2 * int(self.vae.config.z_dim)

    @property
    def temporal_factor(self) -> int:
        return int(self.vae.config.scale_factor_temporal)

    @property
    def frame_step(self) -> int:
        """Clips have 1 + frame_step * k frames. diffusers' Wan VAE encodes frame 0 alone, then chunks
        of 4 frames, and silently drops a shorter remainder (`AutoencoderKLWan._encode`), so every
        Wan VAE needs 4k+1 frames, whatever its time compression."""
        return math.lcm(ENCODER_CHUNK_FRAMES, self.temporal_factor)

    @property
    def spatial_factor(self) -> int:
        return int(self.vae.config.scale_factor_spatial)

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(self.transformer.config.patch_size)  # type: ignore[return-value]

    @property
    def size_multiple(self) -> int:
        """Frame height and width must be multiples of this (VAE downsampling x transformer patch)."""
        return self.spatial_factor * max(self.patch_size[1], self.patch_size[2])

    @property
    def default_frames(self) -> int:
        return int(self.meta["frames"])

    @property
    def default_size(self) -> int | tuple[int, int]:
        """N (square) or (width, height): a diffusers folder's pipeline kind is not square."""
        size = self.meta["size"]
        return int(size) if isinstance(size, (int, float, str)) else (int(size[0]), int(size[1]))

    @property
    def fps(self) -> int:
        return int(self.meta["fps"])

    @property
    def flow_shift(self) -> float:
        return float(self.meta["flow_shift"])

    @property
    def sampler_eta(self) -> float:
        """The base's default share of fresh noise per sampling step (0: the Euler ODE). A small base
        whose Euler samples break bodies into specks can ship 1 (ancestral), which keeps them whole."""
        return float(self.meta.get("sampler_eta", 0.0))

    @property
    def negative_prompt(self) -> str:
        """The base's default negative prompt (`SampleSettings.negative_prompt` None): flash_base.json's
        `negative_prompt` if it has one, else flash's list of video defects for a diffusers folder, else
        none. A base without a text encoder never guides, so it never reads this."""
        if "negative_prompt" in self.meta:
            return str(self.meta["negative_prompt"])
        return DIFFUSERS_NEGATIVE_PROMPT if "pipeline" in self.meta else ""

    @property
    def text_device(self) -> torch.device:
        """Where the text encoder runs: the CPU when the memory rung keeps it off the GPU."""
        on_cpu = self.memory is not None and self.memory.text_encoder_cpu
        return torch.device("cpu") if on_cpu else self.device

    def _store_in_fp8(self, transformer: torch.nn.Module) -> None:
        """Store the denoiser's layers in fp8, each upcast to the spec's dtype for its forward (diffusers'
        layerwise casting, with its default skips: embeddings, norms, the fp32 modules, PEFT layers).

        peft sizes a new adapter's LoRA by the dtype of the layer it wraps, and would make it fp8 here; it
        reads a layer's `compute_dtype` first (as for bitsandbytes layers), so LoRA stays in compute dtype."""
        transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=self.dtype)
        for module in transformer.modules():
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.dtype == torch.float8_e4m3fn:
                module.compute_dtype = self.dtype

    @property
    def has_text(self) -> bool:
        return self.text_encoder is not None or self._text_released

    def release_text_encoder(self, prompts: list[str | None]) -> None:
        """Encode `prompts` once, then drop the text encoder (UMT5-XXL: 10.6 GiB in bf16) so training
        has its memory; `encode_text` answers these prompts from the cache from now on."""
        if self.text_encoder is None:
            return
        for prompt in prompts:
            self.encode_text(prompt)
        self.text_encoder, self._text_released = None, True
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @property
    def num_blocks(self) -> int:
        return len(self.transformer.blocks)

    @property
    def block_names(self) -> list[str]:
        """Module names of the denoiser blocks, where the FLASH hooks attach."""
        return [f"blocks.{index}" for index in range(self.num_blocks)]

    @property
    def default_motion_blocks(self) -> list[int]:
        """Middle half of the blocks: early blocks carry appearance, the last ones pixel detail."""
        if "motion_blocks" in self.meta:
            return [int(b) for b in self.meta["motion_blocks"]]
        return list(range(self.num_blocks // 4, max(self.num_blocks // 4 + 1, (3 * self.num_blocks) // 4)))

    @property
    def default_correspondence_blocks(self) -> list[int]:
        """Up to four middle blocks: full attention maps cost tokens^2 per block."""
        if "correspondence_blocks" in self.meta:
            return [int(b) for b in self.meta["correspondence_blocks"]]
        return self.default_motion_blocks[:4]

    def frames_ok(self, frames: int) -> bool:
        """(frame_step)k+1 frames for the causal VAE, and at least one generated latent frame."""
        return frames > 1 and (frames - 1) % self.frame_step == 0

    def nearest_frames(self, frames: int) -> int:
        """The frame count that fits, at or just below `frames` (never below the shortest)."""
        step = self.frame_step
        return step * max(1, (frames - 1) // step) + 1

    def latent_frames(self, frames: int) -> int:
        return (frames - 1) // self.temporal_factor + 1

    def lora_target_modules(self, targets: list[str] | tuple[str, ...]) -> list[str]:
        """Full module names for LoRA, e.g. 'attn1.to_q' -> ['blocks.0.attn1.to_q', ...]."""
        return [f"{block}.{target}" for block in self.block_names for target in targets]

    def describe(self) -> dict[str, Any]:
        """Plain facts for `flash inspect` and the adapter manifest."""
        return {
            "base_id": self.base_id,
            "architecture": self.architecture,
            "weight_hash": self.weight_hash,
            "frames": self.default_frames,
            "size": self.default_size,
            "fps": self.fps,
            "sampler_eta": self.sampler_eta,
            "text": "umt5" if self.has_text else "null",
            "transformer_parameters": sum(p.numel() for p in self.transformer.parameters()),
            "blocks": self.num_blocks,
            "ded": self.ded is not None,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
        }

    # ----- encoding --------------------------------------------------------------------------------

    def _latent_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        z_dim = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean, dtype=torch.float32, device=self.device)
        std = torch.tensor(self.vae.config.latents_std, dtype=torch.float32, device=self.device)
        return mean.view(1, z_dim, 1, 1, 1), std.view(1, z_dim, 1, 1, 1)

    def check_video_shape(self, frames: int, height: int, width: int) -> None:
        if not self.frames_ok(frames):
            raise ValueError(
                f"{frames} frames do not fit base {self.base_id!r}: "
                f"it needs {self.frame_step}k+1 frames (e.g. {self.nearest_frames(frames)})"
            )
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(
                f"a {width}x{height} frame does not fit base {self.base_id!r}: width and height must be "
                f"multiples of {self.size_multiple}"
            )

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) pixels in [-1, 1] -> normalised latents (B, z, T, h, w), fp32.

        Uses the posterior mode, as Wan's pipelines do, so encoding is deterministic.
        """
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(
                f"expected video of shape (batch, 3, frames, height, width), got {tuple(video.shape)}"
            )
        self.check_video_shape(video.shape[2], video.shape[3], video.shape[4])
        raw = self.vae.encode(video.to(self.device, torch.float32)).latent_dist.mode()
        mean, std = self._latent_stats()
        return (raw - mean) / std

    @torch.no_grad()
    def encode_photo(self, photo: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, z, 1, h, w); equals latent frame 0 of any video starting with it."""
        if photo.ndim != 4 or photo.shape[1] != 3:
            raise ValueError(f"expected photo of shape (batch, 3, height, width), got {tuple(photo.shape)}")
        if photo.shape[2] % self.size_multiple or photo.shape[3] % self.size_multiple:
            raise ValueError(
                f"a {photo.shape[3]}x{photo.shape[2]} photo does not fit base {self.base_id!r}: width and "
                f"height must be multiples of {self.size_multiple}"
            )
        raw = self.vae.encode(photo.unsqueeze(2).to(self.device, torch.float32)).latent_dist.mode()
        mean, std = self._latent_stats()
        return (raw - mean) / std

    @torch.no_grad()
    def encode_text(self, prompt: str | None) -> torch.Tensor:
        """(1, L, text_dim) conditioning. A base without a text encoder always returns its null embedding."""
        if not self.has_text:
            assert self.null_text is not None
            return self.null_text.unsqueeze(0)
        key = prompt or ""
        if key not in self._text_cache:
            if self._text_released:
                raise RuntimeError(f"the text encoder was released before {key!r} was encoded")
            self._text_cache[key] = self._encode_umt5(key)
        return self._text_cache[key]

    def pretrained_action_text(self, action: str) -> torch.Tensor:
        """(1, L, text_dim): the embedding this base learned for one of its pretraining actions."""
        if action not in self.action_text:
            known = ", ".join(sorted(self.action_text)) or "none"
            raise KeyError(
                f"base {self.base_id!r} has no learned text for action {action!r} (it has: {known})"
            )
        return self.action_text[action].unsqueeze(0)

    def _encode_umt5(self, prompt: str) -> torch.Tensor:
        # As Wan's pipeline: pad to a fixed length, then zero the embeddings past the real tokens.
        max_length = int(self.meta.get("text_max_length", 512))
        tokens = self.tokenizer(
            [prompt],
            padding="max_length",
            max_length=max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        mask = tokens.attention_mask.to(self.text_device)
        hidden = self.text_encoder(tokens.input_ids.to(mask.device), mask).last_hidden_state
        length = int(mask.sum())
        embeds = torch.zeros_like(hidden)
        embeds[:, :length] = hidden[:, :length]
        return embeds.to(self.device, self.dtype)

    # ----- one denoising forward -------------------------------------------------------------------

    def token_timesteps(
        self, timesteps: torch.Tensor, latent_shape: torch.Size | tuple[int, ...]
    ) -> torch.Tensor:
        """Per-token timesteps (B, seq_len): 0 on the clean frame-0 tokens, t elsewhere (Wan 2.2 TI2V)."""
        _, _, frames, height, width = latent_shape
        p_t, p_h, p_w = self.patch_size
        frame_is_noisy = torch.ones(frames // p_t, device=timesteps.device, dtype=timesteps.dtype)
        frame_is_noisy[0] = 0
        per_frame = timesteps.view(-1, 1) * frame_is_noisy.view(1, -1)
        return repeat(per_frame, "b t -> b (t h w)", h=height // p_h, w=width // p_w)

    def denoise(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text: torch.Tensor,
        *,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """One transformer forward: predicted velocity (B, z, T, h, w) in fp32.

        `latents` hold the clean photo latent at frame 0; `timesteps` (B,) are sigma*1000 for the
        noisy frames. Gradients flow (the trainer calls this); wrap in no_grad to sample.
        """
        if latents.ndim != 5:
            raise ValueError(
                f"expected latents of shape (batch, z, frames, h, w), got {tuple(latents.shape)}"
            )
        batch = latents.shape[0]
        if timesteps.ndim != 1 or timesteps.shape[0] != batch:
            raise ValueError(
                f"expected one timestep per sample, shape ({batch},), got {tuple(timesteps.shape)}"
            )
        if text.shape[0] == 1 and batch > 1:
            text = text.expand(batch, -1, -1)
        per_token = self.token_timesteps(timesteps.to(self.device, torch.float32), latents.shape)
        hidden = latents
        if self.photo_channels:
            photo = repeat(latents[:, :, :1], "b z 1 h w -> b z t h w", t=latents.shape[2])
            hidden = torch.cat([latents, photo], dim=1)
        out = self.transformer(
            hidden_states=hidden.to(self.device, self.dtype),
            timestep=per_token,
            encoder_hidden_states=text.to(self.device, self.dtype),
            attention_kwargs=attention_kwargs,
            return_dict=False,
        )[0]
        return out.float()

    # ----- decoding --------------------------------------------------------------------------------

    def to_vae_space(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (as encode_video returns) -> the VAE's own space (as vae.decode takes), fp32."""
        mean, std = self._latent_stats()
        return latents.to(self.device, torch.float32) * std + mean

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        reference_photo: torch.Tensor | None = None,
        use_ded: bool = True,
        ded: Any | None = None,
    ) -> torch.Tensor:
        """Normalised latents (B, z, T, h, w) -> pixels (B, 3, F, H, W) in [-1, 1], fp32.

        With a reference photo (B, 3, H, W) the Detail Enhancement Decoder (when use_ded: `ded` if
        given, e.g. one fine-tuned for an action, else the base's own) carries its detail into every
        frame, and frame 0 is the photo itself, exactly.
        """
        raw = self.to_vae_space(latents)
        reference = None if reference_photo is None else reference_photo.to(self.device, torch.float32)
        decoder = ded if ded is not None else self.ded
        if decoder is not None and use_ded and reference is not None:
            video = decoder.decode(raw, reference)
        else:
            video = self.vae.decode(raw).sample
        video = video.float().clamp(-1, 1)
        if reference is not None:
            if reference.shape[-2:] != video.shape[-2:]:
                raise ValueError(
                    f"reference photo is {tuple(reference.shape[-2:])} but the video decodes to "
                    f"{tuple(video.shape[-2:])}"
                )
            video[:, :, 0] = reference
        return video

    # ----- internals -------------------------------------------------------------------------------

    def _check_components(self, null_text: torch.Tensor | None) -> None:
        config = self.transformer.config
        z_dim = self.vae.config.z_dim
        if config.in_channels not in (z_dim, 2 * z_dim) or config.out_channels != z_dim:
            raise ValueError(
                f"base {self.base_id!r} is not a TI2V-style Wan model: its transformer takes "
                f"{config.in_channels} channels and gives {config.out_channels}, but its VAE makes "
                f"{z_dim}-channel latents (in must be {z_dim}, or {2 * z_dim} with the photo latent "
                "concatenated; Wan 2.1 I2V's mask channels are not supported)"
            )
        if config.image_dim is not None or config.added_kv_proj_dim is not None:
            raise ValueError(
                f"base {self.base_id!r} expects CLIP image embeddings (Wan 2.1 I2V), not supported"
            )
        for name in ("latents_mean", "latents_std"):
            values = self.vae.config[name]
            if len(values) != z_dim:
                raise ValueError(
                    f"the VAE of base {self.base_id!r} has {len(values)} {name} but z_dim {z_dim}"
                )
        if self.text_encoder is None:
            if null_text is None:
                raise ValueError(
                    f"base {self.base_id!r} has neither a text encoder nor a null text embedding"
                )
            if null_text.ndim != 2 or null_text.shape[1] != config.text_dim:
                raise ValueError(
                    f"null text embedding of base {self.base_id!r} must be (tokens, {config.text_dim}), "
                    f"got {tuple(null_text.shape)}"
                )
        elif self.tokenizer is None:
            raise ValueError(f"base {self.base_id!r} has a text encoder but no tokenizer")


def read_base_meta(folder: Path) -> dict[str, Any]:
    path = folder / "flash_base.json"
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(meta, dict) or "base_id" not in meta:
        raise ValueError(f"{path} must be a JSON object with at least a base_id")
    if meta.get("architecture", "wan") != "wan":
        raise ValueError(f"{path} describes a {meta['architecture']!r} base; only 'wan' is supported")
    eta = meta.get("sampler_eta", 0.0)
    if isinstance(eta, bool) or not isinstance(eta, int | float) or not 0.0 <= eta <= 1.0:
        raise ValueError(
            f"{path} has sampler_eta {eta!r}; set it to a number from 0 (Euler) to 1 (ancestral)"
        )
    return {**BASE_META_DEFAULTS, **meta}
