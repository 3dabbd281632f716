"""Detail Enhancement Decoder (DED): a frozen Wan VAE decoder that also looks at the reference photo.

A latent decoder loses fine detail, so frame 0 (the photo itself) and frame 1 (decoded) differ
visibly. The DED adds one reference-attention block after each decoder up-block: the frame being
decoded asks the photo's features at the same scale for the detail it lost. The blocks use local
"halo" attention (each window of queries sees the reference around the same place, plus a
margin), so memory grows linearly with the image, and their output projection starts at zero,
so an untrained DED gives exactly the original decoder's output.

The original VAE is never modified: the blocks are attached with forward hooks only while
`DetailEnhancedDecoder.decode` runs, so `vae.decode` elsewhere stays the plain decoder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan
from diffusers.models.autoencoders.autoencoder_kl_wan import patchify
from einops import rearrange, repeat
from pydantic import BaseModel, ConfigDict, Field
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from flashcli.files import atomic_folder

DED_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "ded.safetensors"

ReferenceSource = Literal["encoder", "decoder", "both"]


class PreparedReference(NamedTuple):
    """The photo's keys/values cut into halo regions, computed once per decode and shared by all frames."""

    keys: torch.Tensor  # (B, tiles, span^2, attn_dim)
    values: torch.Tensor  # (B, tiles, span^2, attn_dim)
    mask: torch.Tensor  # (tiles, heads, window^2, span^2): position bias, -inf outside the photo
    batch: int
    height: int
    width: int


class DedConfig(BaseModel):
    """Shape of a DED. The channel lists are derived from the VAE and checked again at load time."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = DED_FORMAT_VERSION
    # Where the photo's features come from: "encoder" = the frozen VAE encoder run on the photo
    # (sees the real pixels); "decoder" = the frozen decoder run on the photo's latent (same
    # feature space as the queries, but only knows what the latent knows); "both" = keys from the
    # decoder path (easy matching), values from both (the encoder's detail).
    reference_source: ReferenceSource = "both"
    attn_dim: int = Field(32, ge=4)
    heads: int = Field(2, ge=1)
    window: int = Field(8, ge=1, description="query window side, in feature pixels")
    halo: int = Field(4, ge=0, description="extra reference pixels on each side of a window")
    up_blocks: list[int] = Field(description="indices of the decoder up-blocks that get a reference block")
    query_channels: list[int] = Field(description="channels of each chosen up-block's output")
    key_channels: list[int]
    value_channels: list[int]
    vae_latent_channels: int
    # Detail transfer at the decoder's output: each frame takes the photo's lost detail (photo minus
    # its own decoded latent, in output pixels) from where its last up-block features match the
    # decoded photo's. Empty transfer_channels = off; else [feature channels, output channels].
    transfer_channels: list[int] = Field(default_factory=list)


class ReferenceAttention(nn.Module):
    """Local attention from a decoded frame's features to the reference photo's features.

    Returns only the residual to add (zero until trained). Queries are split into `window` x
    `window` tiles; each tile attends to the (window + 2 * halo)^2 reference pixels around it,
    with a learned relative-position bias so that "same place in the photo" can be preferred.
    """

    def __init__(
        self,
        query_channels: int,
        key_channels: int,
        value_channels: int,
        *,
        attn_dim: int,
        heads: int,
        window: int,
        halo: int,
        locality: float = 2.0,
        out_channels: int | None = None,
        raw_values: bool = False,
    ) -> None:
        super().__init__()
        if attn_dim % heads != 0:
            raise ValueError(f"attn_dim ({attn_dim}) must be divisible by heads ({heads}).")
        if raw_values and heads != 1:
            raise ValueError("raw_values (values used as they are) needs heads=1.")
        self.heads = heads
        self.window = window
        self.halo = halo
        self.norm_query = nn.LayerNorm(query_channels)
        self.norm_key = nn.LayerNorm(key_channels)
        # raw_values: the values are pixels to copy (the photo's lost detail), so they are not mixed.
        self.norm_value = nn.Identity() if raw_values else nn.LayerNorm(value_channels)
        self.to_q = nn.Linear(query_channels, attn_dim)
        self.to_k = nn.Linear(key_channels, attn_dim)
        self.to_v = nn.Identity() if raw_values else nn.Linear(value_channels, attn_dim)
        self.to_out = nn.Linear(value_channels if raw_values else attn_dim, out_channels or query_channels)
        # Zero output projection: an untrained block adds exactly nothing.
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

        span = window + 2 * halo
        # Offsets between a query (in its tile) and a key (in the tile's halo region) lie in
        # [-(window + halo - 1), window + halo - 1] on each axis.
        reach = window + halo - 1
        # Start from a locality prior (log of a Gaussian of width `locality` feature pixels): an
        # untrained block already looks at "the same place in the photo", which is right wherever
        # the scene has not moved; content matching for moved parts is then learned on top. A flat
        # start would average the whole region and need many steps to sharpen.
        steps = torch.arange(-reach, reach + 1, dtype=torch.float32)
        squared = rearrange(steps**2, "y -> y 1") + rearrange(steps**2, "x -> 1 x")
        prior = rearrange(-squared / (2 * locality**2), "y x -> (y x)")
        self.position_bias = nn.Parameter(repeat(prior, "n -> h n", h=heads).clone())
        query_pos = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
        key_pos = torch.stack(torch.meshgrid(torch.arange(span), torch.arange(span), indexing="ij")) - halo
        offset = rearrange(key_pos, "a y x -> a 1 (y x)") - rearrange(query_pos, "a y x -> a (y x) 1")
        index = (offset[0] + reach) * (2 * reach + 1) + (offset[1] + reach)
        self.register_buffer("bias_index", index, persistent=False)

    def prepare_reference(self, keys: torch.Tensor, values: torch.Tensor) -> PreparedReference:
        """Project and cut the reference into halo regions once per decode.

        keys (B, Ck, h, w), values (B, Cv, h, w) -> tensors shared by every frame and chunk.
        """
        batch, _, height, width = keys.shape
        k = self.to_k(self.norm_key(rearrange(keys, "b c h w -> b h w c")))
        v = self.to_v(self.norm_value(rearrange(values, "b c h w -> b h w c")))
        pad_h, pad_w = _pad_to_multiple(height, self.window), _pad_to_multiple(width, self.window)
        span = self.window + 2 * self.halo

        def cut(features: torch.Tensor) -> torch.Tensor:
            # Pad by the halo all round (plus up to a whole window at the bottom/right), then take
            # one span x span region per query tile.
            padded = F.pad(
                rearrange(features, "b h w c -> b c h w"),
                (self.halo, self.halo + pad_w, self.halo, self.halo + pad_h),
            )
            regions = F.unfold(padded, kernel_size=span, stride=self.window)
            return rearrange(regions, "b (c n) l -> b l n c", n=span * span)

        ones = torch.ones(1, height, width, 1, device=keys.device, dtype=k.dtype)
        inside = cut(ones)[0, :, :, 0] > 0.5  # (tiles, span^2): which keys are real pixels
        bias = self.position_bias[:, self.bias_index]  # (heads, window^2, span^2)
        mask = rearrange(bias, "h q n -> 1 h q n") + torch.where(
            rearrange(inside, "l n -> l 1 1 n"), 0.0, float("-inf")
        ).to(bias.dtype)
        return PreparedReference(cut(k), cut(v), mask, batch, height, width)

    def forward(self, frames: torch.Tensor, reference: PreparedReference) -> torch.Tensor:
        """frames (B, C, T, h, w) decoder features -> residual (B, out_channels, T, h, w)."""
        batch, _, num_frames, height, width = frames.shape
        if (batch, height, width) != (reference.batch, reference.height, reference.width):
            raise ValueError(
                f"Decoder features {(batch, height, width)} and reference features "
                f"{(reference.batch, reference.height, reference.width)} disagree in batch or size."
            )
        queries = self.to_q(self.norm_query(rearrange(frames, "b c t h w -> (b t) h w c")))
        pad_h, pad_w = _pad_to_multiple(height, self.window), _pad_to_multiple(width, self.window)
        queries = F.pad(queries, (0, 0, 0, pad_w, 0, pad_h))
        q = rearrange(
            queries,
            "n (hb wy) (wb wx) (heads e) -> n (hb wb) heads (wy wx) e",
            wy=self.window,
            wx=self.window,
            heads=self.heads,
        )
        k = repeat(reference.keys, "b l n (heads e) -> (b t) l heads n e", t=num_frames, heads=self.heads)
        v = repeat(reference.values, "b l n (heads e) -> (b t) l heads n e", t=num_frames, heads=self.heads)
        scores = torch.einsum("blhqe,blhne->blhqn", q, k) / math.sqrt(q.shape[-1]) + reference.mask
        attended = torch.einsum("blhqn,blhne->blhqe", scores.softmax(dim=-1), v)
        tiles_w = (width + pad_w) // self.window
        out = rearrange(
            attended,
            "n (hb wb) heads (wy wx) e -> n (hb wy) (wb wx) (heads e)",
            wb=tiles_w,
            wy=self.window,
            wx=self.window,
        )[:, :height, :width]
        return rearrange(self.to_out(out), "(b t) h w c -> b c t h w", b=batch)


class DetailEnhancedDecoder(nn.Module):
    """A Wan VAE decoder plus reference-attention blocks; the VAE itself stays frozen and untouched.

    `decode(latents, reference)` takes latents in the VAE's own space (exactly what `vae.decode`
    takes, i.e. after undoing `latents_mean`/`latents_std`) of shape (B, C, T, h, w) and the
    reference photo (B, 3, H, W) in [-1, 1], and returns the video (B, 3, F, H, W) in [-1, 1].
    """

    def __init__(
        self,
        vae: AutoencoderKLWan,
        config: DedConfig | None = None,
        *,
        reference_source: ReferenceSource = "both",
        attn_dim: int = 32,
        heads: int = 2,
        window: int = 8,
        halo: int = 4,
        up_blocks: Sequence[int] | None = None,
        detail_transfer: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(vae, AutoencoderKLWan):
            raise TypeError(f"DetailEnhancedDecoder needs an AutoencoderKLWan, got {type(vae).__name__}.")
        # Kept out of the module tree so the DED's state_dict, parameters() and .to() only touch
        # the new layers; the VAE belongs to the base model.
        self._vae = [vae]
        if config is None:
            config = _derive_config(
                vae,
                reference_source=reference_source,
                attn_dim=attn_dim,
                heads=heads,
                window=window,
                halo=halo,
                up_blocks=up_blocks,
                detail_transfer=detail_transfer,
            )
        else:
            _check_config_matches_vae(config, vae)
        self.config = config
        self.metadata: dict[str, str] = {}  # safetensors header of the file it was loaded from
        self.blocks = nn.ModuleList(
            ReferenceAttention(
                q,
                k,
                v,
                attn_dim=config.attn_dim,
                heads=config.heads,
                window=config.window,
                halo=config.halo,
            )
            for q, k, v in zip(config.query_channels, config.key_channels, config.value_channels, strict=True)
        )
        if config.transfer_channels:
            # Kept as the last entry of `blocks` so saving, loading and training treat it like the rest.
            features, pixels = config.transfer_channels
            self.blocks.append(
                ReferenceAttention(
                    features,
                    features,
                    pixels,
                    attn_dim=config.attn_dim,
                    heads=1,
                    window=config.window,
                    halo=config.halo,
                    locality=1.0,
                    out_channels=pixels,
                    raw_values=True,
                )
            )
        vae_param = next(vae.parameters())
        self.to(device=device or vae_param.device, dtype=dtype or vae_param.dtype)
        vae.requires_grad_(False)

    @property
    def vae(self) -> AutoencoderKLWan:
        return self._vae[0]

    @property
    def device(self) -> torch.device:
        return self.blocks[0].to_out.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.blocks[0].to_out.weight.dtype

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.blocks.parameters())

    # ---- reference features -------------------------------------------------------------------

    @torch.no_grad()
    def reference_features(self, reference: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of the photo for every block: [(keys (B, Ck, h, w), values (B, Cv, h, w))].

        One entry per attended up-block, then (with detail transfer) one for the output.
        """
        vae = self.vae
        config = self.config
        photo = rearrange(reference.to(device=vae.device, dtype=vae.dtype), "b c h w -> b c 1 h w")
        encoder_sizes: dict[tuple[int, int], torch.Tensor] = {}
        with _capture(_encoder_stage_blocks(vae), lambda i, out: _keep_last_per_size(encoder_sizes, out)):
            latent = vae.encode(photo).latent_dist.mode()
        decoder_features: dict[int, torch.Tensor] = {}
        decoded: list[torch.Tensor] = []
        if config.reference_source in ("decoder", "both") or config.transfer_channels:
            last = len(vae.decoder.up_blocks) - 1
            watched = sorted({*config.up_blocks, last})
            with (
                _capture(
                    [vae.decoder.up_blocks[i] for i in watched],
                    lambda i, out: decoder_features.__setitem__(watched[i], out[:, :, 0]),
                ),
                _capture([vae.decoder], lambda i, out: decoded.append(out[:, :, 0])),
            ):
                vae.decode(latent)
        pairs = []
        for index in config.up_blocks:
            dec = decoder_features.get(index)
            if config.reference_source == "decoder":
                pairs.append((dec, dec))
                continue
            size = _up_block_output_size(vae, index, photo.shape[-2:])
            enc = encoder_sizes.get(tuple(size))
            if enc is None:
                raise ValueError(
                    f"The VAE encoder has no feature map of size {tuple(size)} to match decoder up-block "
                    f"{index}; use reference_source='decoder' for this VAE."
                )
            pairs.append(
                (enc, enc) if config.reference_source == "encoder" else (dec, torch.cat([enc, dec], 1))
            )
        if config.transfer_channels:
            # The detail the latent lost, in the decoder's own output space (patchified for Wan 2.2).
            target = patchify(photo, vae.config.patch_size) if vae.config.patch_size else photo
            lost = target[:, :, 0] - decoded[0]
            features = decoder_features[len(vae.decoder.up_blocks) - 1]
            pairs.append((features, lost))
        return [(k.to(self.dtype), v.to(self.dtype)) for k, v in pairs]

    # ---- decoding -----------------------------------------------------------------------------

    def decode(self, latents: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """latents (B, C, T, h, w) + reference (B, 3, H, W) in [-1, 1] -> video (B, 3, F, H, W)."""
        self._check_inputs(latents, reference)
        vae = self.vae
        if vae.use_slicing and latents.shape[0] > 1:
            return torch.cat(
                [self.decode(z, r) for z, r in zip(latents.split(1), reference.split(1), strict=True)]
            )
        prepared = [
            block.prepare_reference(keys, values)
            for block, (keys, values) in zip(self.blocks, self.reference_features(reference), strict=True)
        ]
        levels = len(self.config.up_blocks)
        last_features: list[torch.Tensor] = []

        def add_detail(level: int, output: torch.Tensor) -> torch.Tensor:
            residual = self.blocks[level](output.to(self.dtype), prepared[level])
            return output + residual.to(output.dtype)

        def remember(output: torch.Tensor) -> None:
            last_features[:] = [output]

        def transfer(output: torch.Tensor) -> torch.Tensor:
            lost = self.blocks[levels](last_features[0].to(self.dtype), prepared[levels])
            return output + lost.to(output.dtype)

        handles = [
            vae.decoder.up_blocks[index].register_forward_hook(
                lambda m, args, out, level=level: add_detail(level, out)
            )
            for level, index in enumerate(self.config.up_blocks)
        ]
        if self.config.transfer_channels:
            # Registered after add_detail, so it sees the last up-block's output with its own detail added.
            handles.append(vae.decoder.up_blocks[-1].register_forward_hook(lambda m, a, out: remember(out)))
            handles.append(vae.decoder.register_forward_hook(lambda m, a, out: transfer(out)))
        try:
            return vae.decode(latents.to(device=vae.device, dtype=vae.dtype)).sample
        finally:
            for handle in handles:
                handle.remove()

    def _check_inputs(self, latents: torch.Tensor, reference: torch.Tensor) -> None:
        if latents.ndim != 5 or latents.shape[1] != self.config.vae_latent_channels:
            raise ValueError(
                f"latents must be (B, {self.config.vae_latent_channels}, T, h, w), "
                f"got {tuple(latents.shape)}."
            )
        ratio = _spatial_ratio(self.vae)
        expected = (latents.shape[0], 3, latents.shape[-2] * ratio, latents.shape[-1] * ratio)
        if tuple(reference.shape) != expected:
            raise ValueError(f"reference must be {expected} for these latents, got {tuple(reference.shape)}.")
        if reference.min() < -1.001 or reference.max() > 1.001:
            raise ValueError("reference must be in [-1, 1] (pixels / 127.5 - 1).")
        tile_h = self.vae.tile_sample_min_height // ratio
        tile_w = self.vae.tile_sample_min_width // ratio
        if self.vae.use_tiling and (latents.shape[-2] > tile_h or latents.shape[-1] > tile_w):
            raise ValueError("DetailEnhancedDecoder does not support a tiled VAE decode; disable vae tiling.")

    # ---- persistence --------------------------------------------------------------------------

    def save(self, folder: str | Path, *, metadata: dict[str, str] | None = None) -> None:
        """Write `config.json` and `ded.safetensors` into folder, atomically (temp folder, then rename).

        metadata (str -> str, e.g. how it was trained) goes into the safetensors header, on top of
        the metadata this DED was loaded with (so re-saving a base keeps the training record).
        """
        tensors = {name: t.detach().to("cpu").contiguous() for name, t in self.blocks.state_dict().items()}
        header = {**self.metadata, **(metadata or {}), "format_version": str(DED_FORMAT_VERSION)}
        with atomic_folder(folder) as staging:
            (staging / CONFIG_NAME).write_text(json.dumps(self.config.model_dump(), indent=2) + "\n")
            save_file(tensors, staging / WEIGHTS_NAME, metadata=header)

    @classmethod
    def from_weights(
        cls,
        vae: AutoencoderKLWan,
        config: DedConfig,
        tensors: dict[str, torch.Tensor],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> DetailEnhancedDecoder:
        """A DED on `vae` holding `tensors` (a `blocks` state dict); raises RuntimeError when they do
        not fit `config`. The tensors are copied, so the DED they came from stays as it is."""
        ded = cls(vae, config, device=device, dtype=dtype)
        ded.blocks.load_state_dict(tensors)
        return ded

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        vae: AutoencoderKLWan,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> DetailEnhancedDecoder:
        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: not a DED folder.")
        config = DedConfig.model_validate_json(config_path.read_text())
        if config.format_version != DED_FORMAT_VERSION:
            raise ValueError(
                f"{config_path} has DED format {config.format_version}; "
                f"this flash reads {DED_FORMAT_VERSION}."
            )
        ded = cls(vae, config, device=device, dtype=dtype)
        state = load_file(weights_path, device=str(ded.device))
        with safe_open(weights_path, framework="pt") as handle:
            ded.metadata = dict(handle.metadata() or {})
        missing, unexpected = ded.blocks.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{weights_path} does not match its config (missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(unexpected)[:3]})."
            )
        return ded


# ---- training loss (no external weights) ----------------------------------------------------------


def ssim(x: torch.Tensor, y: torch.Tensor, *, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of images (N, C, H, W) in [-1, 1] (Gaussian window, Wang et al. 2004)."""
    x, y = (x + 1) / 2, (y + 1) / 2
    coords = torch.arange(window, device=x.device, dtype=x.dtype) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    channels = x.shape[1]
    kernel = repeat(torch.outer(g, g), "h w -> c 1 h w", c=channels)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return score.mean()


def psnr(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (peak-to-peak range 2). With `mask`
    (x's shape with 1 channel at dim 1, e.g. `moved_mask`), only the masked pixels count."""
    if mask is None:
        mse = ((x - y) ** 2).mean()
    else:
        mse = (((x - y) ** 2).mean(dim=1, keepdim=True) * mask).sum() / mask.sum().clamp_min(1)
    return 10 * torch.log10(4 / mse.clamp_min(1e-12))


# A pixel "moved" when it differs from the photo by more than this (pixels in [-1, 1], channel mean).
MOVED_THRESHOLD = 0.1


def moved_mask(target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(B, 1, F, H, W) float mask of the pixels of `target` (B, 3, F, H, W) that moved away from the
    photo `reference` (B, 3, H, W): where copying the photo is wrong."""
    difference = (target - reference.unsqueeze(2)).abs().mean(dim=1, keepdim=True)
    return (difference > MOVED_THRESHOLD).to(target.dtype)


def ded_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    reference: torch.Tensor | None = None,
    moved_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """L1 + two-scale SSIM + image-gradient L1 between videos (B, 3, F, H, W) in [-1, 1].

    The gradient term rewards sharp edges and texture, which plain L1 under-weights. With a reference
    photo (B, 3, H, W) and moved_weight > 0, an extra L1 over the pixels that moved away from the
    photo: a DED fed blurry latents otherwise learns that copying the photo pays on the (many) still
    pixels, and holds the figure in the photo's pose.
    """
    pred = rearrange(prediction, "b c f h w -> (b f) c h w")
    true = rearrange(target, "b c f h w -> (b f) c h w")
    l1 = (pred - true).abs().mean()
    ssim_full = ssim(pred, true)
    ssim_half = ssim(F.avg_pool2d(pred, 2), F.avg_pool2d(true, 2))
    structural = 1 - (ssim_full + ssim_half) / 2
    grad = sum((torch.diff(pred, dim=d) - torch.diff(true, dim=d)).abs().mean() for d in (-1, -2))
    total = l1 + 0.5 * structural + 0.5 * grad
    terms = {"l1": l1, "ssim": 1 - structural, "grad": grad}
    if moved_weight > 0:
        if reference is None:
            raise ValueError("moved_weight needs the reference photo")
        moved = moved_mask(target, reference)
        moved_l1 = ((prediction - target).abs() * moved).sum() / (3 * moved.sum()).clamp_min(1.0)
        total = total + moved_weight * moved_l1
        terms["moved_l1"] = moved_l1
    return {"loss": total, **terms}


# ---- helpers -------------------------------------------------------------------------------------


def _pad_to_multiple(size: int, multiple: int) -> int:
    return (-size) % multiple


def _spatial_ratio(vae: AutoencoderKLWan) -> int:
    # The config's scale_factor_spatial is a free field; the architecture is the truth.
    return 2 ** (len(vae.config.dim_mult) - 1) * (vae.config.patch_size or 1)


def _up_block_out_channels(block: nn.Module) -> int:
    upsampler = None
    if getattr(block, "upsamplers", None) is not None:
        upsampler = block.upsamplers[0]
    elif getattr(block, "upsampler", None) is not None:
        upsampler = block.upsampler
    if upsampler is not None:
        return upsampler.resample[1].out_channels
    return block.out_dim


def _up_block_output_size(vae: AutoencoderKLWan, index: int, pixel_size: Sequence[int]) -> tuple[int, int]:
    patch = vae.config.patch_size or 1
    levels = len(vae.config.dim_mult) - 1
    upsamplings_done = min(index + 1, levels)
    factor = 2 ** (levels - upsamplings_done)
    return (pixel_size[0] // patch // factor, pixel_size[1] // patch // factor)


def _encoder_stage_blocks(vae: AutoencoderKLWan) -> list[nn.Module]:
    # Residual blocks of the down path, before each downsampling: their outputs are the encoder's
    # features at each scale (the mid block is excluded: it sits at the latent's own scale).
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanResidualBlock

    return [m for m in vae.encoder.down_blocks.modules() if isinstance(m, WanResidualBlock)]


def _keep_last_per_size(store: dict[tuple[int, int], torch.Tensor], output: torch.Tensor) -> None:
    store[tuple(output.shape[-2:])] = output[:, :, 0]


@contextmanager
def _capture(modules: Sequence[nn.Module], sink: Callable[[int, torch.Tensor], None]) -> Iterator[None]:
    handles = [
        module.register_forward_hook(lambda m, args, out, i=i: sink(i, out))
        for i, module in enumerate(modules)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _derive_config(
    vae: AutoencoderKLWan,
    *,
    reference_source: ReferenceSource,
    attn_dim: int,
    heads: int,
    window: int,
    halo: int,
    up_blocks: Sequence[int] | None,
    detail_transfer: bool,
) -> DedConfig:
    count = len(vae.decoder.up_blocks)
    chosen = list(range(count)) if up_blocks is None else list(up_blocks)
    if not chosen or any(i < 0 or i >= count for i in chosen) or len(set(chosen)) != len(chosen):
        raise ValueError(f"up_blocks must be distinct indices in [0, {count}), got {chosen}.")
    query = [_up_block_out_channels(vae.decoder.up_blocks[i]) for i in chosen]
    if reference_source == "decoder":
        keys, values = query, query
    elif reference_source == "encoder":
        encoder_channels = _encoder_channels_by_level(vae, chosen)
        keys, values = encoder_channels, encoder_channels
    else:
        encoder_channels = _encoder_channels_by_level(vae, chosen)
        keys, values = query, [e + q for e, q in zip(encoder_channels, query, strict=True)]
    return DedConfig(
        reference_source=reference_source,
        attn_dim=attn_dim,
        heads=heads,
        window=window,
        halo=halo,
        up_blocks=chosen,
        query_channels=query,
        key_channels=keys,
        value_channels=values,
        vae_latent_channels=vae.config.z_dim,
        transfer_channels=[
            _up_block_out_channels(vae.decoder.up_blocks[-1]),
            vae.decoder.conv_out.out_channels,
        ]
        if detail_transfer
        else [],
    )


def _encoder_channels_by_level(vae: AutoencoderKLWan, chosen: Sequence[int]) -> list[int]:
    # Run the encoder once on a small blank photo to learn its channels at each scale: cheaper to
    # trust than re-deriving diffusers' channel bookkeeping for every Wan VAE variant.
    ratio = _spatial_ratio(vae)
    side = ratio * 2
    sizes: dict[tuple[int, int], torch.Tensor] = {}
    param = next(vae.parameters())
    probe = torch.zeros(1, 3, 1, side, side, device=param.device, dtype=param.dtype)
    with (
        torch.no_grad(),
        _capture(_encoder_stage_blocks(vae), lambda i, out: _keep_last_per_size(sizes, out)),
    ):
        vae.encode(probe)
    channels = []
    for index in chosen:
        size = _up_block_output_size(vae, index, (side, side))
        if size not in sizes:
            raise ValueError(
                f"The VAE encoder has no feature map at the scale of decoder up-block {index}; "
                "use reference_source='decoder' for this VAE."
            )
        channels.append(sizes[size].shape[1])
    return channels


def _check_config_matches_vae(config: DedConfig, vae: AutoencoderKLWan) -> None:
    derived = _derive_config(
        vae,
        reference_source=config.reference_source,
        attn_dim=config.attn_dim,
        heads=config.heads,
        window=config.window,
        halo=config.halo,
        up_blocks=config.up_blocks,
        detail_transfer=bool(config.transfer_channels),
    )
    if derived != config:
        raise ValueError(
            "This DED was made for a different VAE (its channel layout does not match): "
            f"expected {derived.model_dump()}, found {config.model_dump()}."
        )
