"""Peak GPU memory of `flash learn` and `flash animate`, planned from a base's configs, no weights loaded.

Everything below counts tensor bytes, what `torch.cuda.max_memory_allocated` reports; `fits` adds a reserve
for what the allocator and CUDA hold besides tensors (RESERVE_BYTES + RESERVE_FRACTION of the peak).

**Weights** are exact: the real classes are built on the meta device (`accelerate.init_empty_weights`)
from the folder's config.json files and their parameters counted, in the dtype each one is loaded in
(the denoiser's `_keep_in_fp32_modules` stay fp32 as `from_pretrained(torch_dtype=...)` keeps them; the
VAE is fp32; the text encoder takes the denoiser's dtype).

**Training activations** are measured, not guessed: on small configs of the real classes, the bytes of
the unique tensor storages that autograd saves for backward (`torch.autograd.graph.saved_tensors_hooks`)
through flash's own training step (`flashcli.core.trainer`'s micro-batch losses) were fitted, exactly (to
the byte), by these formulas, with T video tokens, D = heads x head_dim width, F the feed-forward width,
H heads, h the head width, L text tokens, r the LoRA rank, C = in_channels x patch volume (192):

    bf16 autocast, LoRA on attn1 (flash's default targets):
      per block and pass     76·T·D + 2·T·F + 8·T·H + 8·T·r + 16·D·r + 4·L·D + 36·T
      once per pass          8·T·h + (8·C)·T - 6·D·r          (embeddings, head, loss; block 0 saves less)
      with checkpointing     2·T·D per block; 20·T·D + 2·L·D + (8·C + 8)·T once per pass
    fp32 weights, no autocast
      per block and pass     84·T·D + 4·T·F + 8·T·H + 16·T·r + 8·L·D + 36·T

(the full tables, also for LoRA on attn1 and attn2, are ACTIVATIONS below). The 76·T·D is mostly
Wan 2.2 TI2V's per-token timesteps: each block adds its (T, 6, D) fp32 modulation table to the
shared one and keeps it for the gates' backward (24·T·D), and the fp32 norms keep their inputs.
Attention runs through a fused SDPA kernel (flash or memory-efficient on CUDA, the CPU flash kernel
where this was measured): no T² term, only a float32 log-sum-exp per head and token. Correspondence
Align computes its probabilities explicitly for M = min(512, T) query rows: 6·H·M·T + 4·M·D more per
correspondence block (2·H·M·T, the recorded probabilities, with checkpointing; with T <= 512 every row is
kept and the formula is an upper bound). Motion Align keeps no tensor the blocks do not already keep.
With augmentation (every variant but `none`) a step holds two denoiser graphs until its backward, so the
per-pass terms count twice. With checkpointing, backward recomputes one block at a time: one block's full
activations come on top. The gradients in flight during backward (a few T x D tensors) are not counted.

`bench/memory_plan.py --calibrate` re-measures and re-fits every table here (16 configs of 2 and 3 blocks
each). On the held-out Wan 2.2 miniature step (576 tokens, 2 passes, Correspondence Align on 512 rows)
the formulas are within 1% of the measurement, with and without checkpointing; the tests allow 15%.

**Sampling** (no gradients) holds the largest set of tensors alive at once inside one denoiser call,
measured through flash's sampler velocity with a dispatch-mode tracker of live storages
(LiveTensorBytes) and fitted by least squares (SAMPLING below: within 10% in bf16, 15% in fp32; the
held-out miniature call, 7%), times the batch (2 with classifier-free guidance).

**The VAE** encodes frame 0, then 4 frames at a time, and decodes one latent frame at a time, with a
causal cache: its peak grows with the frame's pixels and only slowly with the frame count. VAE_PEAK
holds bytes per pixel measured at the real Wan 2.2 widths (base_dim 160, decoder 256) on small frames
on a CPU with the same tracker, extrapolated linearly in pixels; with tiling, the tile's pixels stand in
for the frame's. These are estimates from CPU measurements of tensor bytes; cuDNN workspaces are not in
them.

**Text encoding** (UMT5, no gradients) is an estimate, not a measurement: the layer's widest tensors,
L·d_ff in the encoder's dtype three times over plus the fp32 position-biased attention scores H·L².
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from flashcli.core.settings import DEFAULT_LORA_TARGETS

GIB = 2**30

# ----- the published Wan 2.2 TI2V-5B configs --------------------------------------------------------

# Wan 2.2 TI2V-5B as published in Wan-AI/Wan2.2-TI2V-5B-Diffusers (transformer/ and vae/ config.json;
# diffusers' scripts/convert_wan_to_diffusers.py): dim 3072 = 24 heads x 128, FFN 14336, 30 layers,
# 48 latent channels, UMT5 text width 4096.
WAN22_TI2V_5B_TRANSFORMER: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 24,
    "attention_head_dim": 128,
    "in_channels": 48,
    "out_channels": 48,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 14336,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
WAN22_VAE: dict[str, Any] = {
    "base_dim": 160,
    "decoder_base_dim": 256,
    "z_dim": 48,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "temperal_downsample": [False, True, True],
    "is_residual": True,
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
}
# google/umt5-xxl's encoder (text_encoder/config.json of the same folder): the prompt encoder.
UMT5_XXL: dict[str, Any] = {
    "vocab_size": 256384,
    "d_model": 4096,
    "d_kv": 64,
    "d_ff": 10240,
    "num_layers": 24,
    "num_heads": 64,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
}
TEXT_TOKENS = 512  # WanPipeline's max_sequence_length; flash pads prompts to it

# ----- what was measured ----------------------------------------------------------------------------

# (precision, LoRA targets, checkpointing) -> ({feature: bytes} per block and pass, {..} once per pass).
# Features: T, D, F, H, h (head width), L, r, C; products are written "T*D". Fitted exactly (to the byte)
# by `bench/memory_plan.py --calibrate` on 16 configs each.
Coefficients = Mapping[str, float]
ACTIVATIONS: dict[tuple[str, str, bool], tuple[Coefficients, Coefficients]] = {
    ("bf16", "attn1", False): (
        {"T*D": 76, "T*F": 2, "T*H": 8, "T*r": 8, "D*r": 16, "L*D": 4, "T": 36},
        {"T*h": 8, "T*C": 8, "D*r": -6},
    ),
    ("bf16", "attn1", True): ({"T*D": 2}, {"T*D": 20, "L*D": 2, "T*C": 8, "T": 8}),
    ("bf16", "all", False): (
        {"T*D": 80, "T*F": 2, "T*H": 8, "T*r": 12, "D*r": 28, "L*D": 12, "L*r": 4, "L": 4, "T": 36},
        {"T*h": 8, "T*C": 8, "D*r": -6},
    ),
    ("bf16", "all", True): ({"T*D": 2}, {"T*D": 20, "L*D": 2, "T*C": 8, "T": 8}),
    ("fp32", "attn1", False): (
        {"T*D": 84, "T*F": 4, "T*H": 8, "T*r": 16, "L*D": 8, "T": 36},
        {"T*h": 8, "T*C": 8},
    ),
    ("fp32", "attn1", True): ({"T*D": 4}, {"T*D": 32, "L*D": 4, "T*C": 8, "T": 8}),
    ("fp32", "all", False): (
        {"T*D": 88, "T*F": 4, "T*H": 8, "T*r": 24, "L*D": 12, "L*r": 8, "L": 4, "T": 36},
        {"T*h": 8, "T*C": 8, "L*D": 4},
    ),
    ("fp32", "all", True): ({"T*D": 4}, {"T*D": 32, "L*D": 4, "T*C": 8, "T": 8}),
}
# Correspondence Align, per correspondence block: (without checkpointing, with it), by precision.
CORRESPONDENCE: dict[tuple[str, bool], Coefficients] = {
    ("bf16", False): {"H*M*T": 6, "M*D": 4},
    ("bf16", True): {"H*M*T": 2},
    ("fp32", False): {"H*M*T": 4, "M*D": 8, "T*D": 4},
    ("fp32", True): {"H*M*T": 4},
}
# The most tensor bytes alive at once inside one no-gradient denoiser call with batch 1, by precision: a
# least-squares fit (a peak is a maximum over moments, not a sum), within 10% (bf16) and 15% (fp32) of
# every calibration point.
SAMPLING: dict[str, Coefficients] = {
    "bf16": {"T*D": 88.5, "T*F": 8.8, "T": 1181},
    "fp32": {"T*D": 122.8, "T*F": 20.0, "T": -106},
}
# Wan 2.2 VAE (real widths), fp32, bytes per pixel of the frame (or tile): a fixed working set plus the
# video itself, per frame. Measured on a CPU at 64x64 and 64x128 pixels, 9 and 13 frames (5 frames need
# less: their second chunk is the first of 4 frames); 128x128 pixels, 4x as many, came within 1%.
VAE_PEAK: dict[str, dict[str, float]] = {
    "encode": {"per_pixel": 7279.0, "per_pixel_frame": 24.4},
    "decode": {"per_pixel": 21870.0, "per_pixel_frame": 12.2},
}
# Pixels per tile with diffusers' AutoencoderKLWan tiling on (tile_sample_min 256): decode tiles are 256 x 256
# pixels; Wan 2.2 encodes after its 2x2 patching, so its encode tiles are 512 x 512 pixels. Checked on the
# CPU: decoding 128 x 128 pixels in 64-pixel tiles peaked at 91 MB, the 64 x 64 formula's 90 MB.
VAE_TILE_PIXELS: dict[str, int] = {"encode": 512 * 512, "decode": 256 * 256}

# What CUDA and the caching allocator take besides tensors, added before comparing with a card.
RESERVE_BYTES = 1 * GIB
RESERVE_FRACTION = 0.10

CORRESPONDENCE_TOKENS = 512  # AlignSettings.max_correspondence_tokens' default

# ----- inputs --------------------------------------------------------------------------------------

TextEncoderPlacement = Literal["gpu", "freed", "cpu"]
Precision = Literal["bf16", "fp32"]


@dataclasses.dataclass(frozen=True)
class BaseConfigs:
    """The config.json contents of a base's parts (no weights)."""

    transformer: Mapping[str, Any]
    vae: Mapping[str, Any]
    text_encoder: Mapping[str, Any] | None = None
    text_tokens: int = TEXT_TOKENS

    @classmethod
    def wan22_ti2v_5b(cls) -> BaseConfigs:
        return cls(WAN22_TI2V_5B_TRANSFORMER, WAN22_VAE, UMT5_XXL)

    @classmethod
    def from_folder(cls, folder: Path) -> BaseConfigs:
        """A diffusers folder (model_index.json) or a flash base folder (flash_base.json)."""
        folder = Path(folder)

        def read(part: str) -> dict[str, Any]:
            return json.loads((folder / part / "config.json").read_text())

        text = read("text_encoder") if (folder / "text_encoder" / "config.json").is_file() else None
        tokens = TEXT_TOKENS
        null_text = folder / "null_text.safetensors"
        if text is None and null_text.is_file():  # a base without a text encoder: its null text's length
            from safetensors import safe_open

            with safe_open(str(null_text), framework="pt") as handle:
                tokens = int(handle.get_slice("null_text").get_shape()[0])
        return cls(read("transformer"), read("vae"), text, tokens)


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """One `flash learn` / `flash animate` run as far as memory goes (batch 1)."""

    frames: int
    height: int
    width: int
    rank: int = 16
    targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    gradient_checkpointing: bool = False
    precision: Precision = "bf16"  # the denoiser's weights and autocast
    text_encoder: TextEncoderPlacement = "gpu"
    vae_tiling: bool = False
    # The denoiser stored in fp8 (diffusers' layerwise casting), computed in `precision`.
    fp8_storage: bool = False
    # Denoiser graphs a training step holds (`AlignSettings.denoiser_passes`): 1 for variant `none`, 2 with
    # augmentation, 3 for the default (the clip, its augmented copy, the plain pass on the clip).
    passes: int = 3
    correspondence_blocks: int = 4  # 0 without Correspondence Align
    guidance: bool = True  # classifier-free guidance when sampling (text bases): batch 2

    def label(self) -> str:
        checkpointing = "checkpointing" if self.gradient_checkpointing else "no checkpointing"
        label = f"{self.frames}x{self.width}x{self.height}, {checkpointing}, text encoder {self.text_encoder}"
        return (
            label
            + (", VAE tiled" if self.vae_tiling else "")
            + (", fp8 denoiser" if self.fp8_storage else "")
        )


# ----- outputs ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    parts: Mapping[str, int]  # bytes alive at the phase's peak, by what holds them

    @property
    def peak(self) -> int:
        return sum(self.parts.values())


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    command: str
    run: RunSettings
    phases: tuple[Phase, ...]

    @property
    def peak(self) -> int:
        return max(phase.peak for phase in self.phases)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda phase: phase.peak).name

    def needs(self) -> int:
        """Card memory the run needs: its tensor peak plus the reserve."""
        return int(self.peak * (1 + RESERVE_FRACTION) + RESERVE_BYTES)

    def fits(self, capacity_bytes: int) -> bool:
        return self.needs() <= capacity_bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "run": dataclasses.asdict(self.run),
            "peak_gib": self.peak / GIB,
            "peak_phase": self.peak_phase,
            "needs_gib": self.needs() / GIB,
            "phases": [
                {
                    "name": p.name,
                    "peak_gib": p.peak / GIB,
                    "parts_gib": {k: v / GIB for k, v in p.parts.items()},
                }
                for p in self.phases
            ],
        }


# ----- weights ------------------------------------------------------------------------------------


def _dtype_bytes(precision: Precision) -> int:
    return 2 if precision == "bf16" else 4


def transformer_bytes(config: Mapping[str, Any], precision: Precision) -> int:
    """The denoiser's weights and buffers as `from_pretrained(torch_dtype=...)` leaves them on the GPU."""
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights():
        model = WanTransformer3DModel.from_config(_public(config))
    keep = set(model._keep_in_fp32_modules or [])
    total = 0
    for name, parameter in model.named_parameters():
        size = 4 if keep.intersection(name.split(".")) else _dtype_bytes(precision)
        total += parameter.numel() * size
    return total + sum(buffer.numel() * buffer.element_size() for buffer in model.buffers())


def fp8_cast_layers(config: Mapping[str, Any]) -> dict[str, int]:
    """Parameters of each denoiser layer that diffusers' layerwise casting stores in fp8, by module name.

    The same call flash makes (`WanSpec.store_denoiser_in_fp8`: `enable_layerwise_casting` with its default
    skip patterns, which leave the patch embedding, the condition embedder, the norms, the fp32 modules and
    every PEFT layer alone), made on a meta-device model: exact, and no weights are read."""
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights():
        model = WanTransformer3DModel.from_config(_public(config))
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    return {
        name: sum(p.numel() for p in module.parameters(recurse=False))
        for name, module in model.named_modules()
        if any(p.dtype == torch.float8_e4m3fn for p in module.parameters(recurse=False))
    }


def vae_bytes(config: Mapping[str, Any]) -> int:
    """The VAE's weights in fp32 (flash keeps the VAE in fp32)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan

    with init_empty_weights():
        model = AutoencoderKLWan.from_config(_public(config))
    return 4 * sum(parameter.numel() for parameter in model.parameters())


def text_encoder_bytes(config: Mapping[str, Any], precision: Precision) -> int:
    """UMT5's encoder in the denoiser's dtype (transformers keeps its `wo` in fp32 only for fp16)."""
    from accelerate import init_empty_weights
    from transformers import UMT5Config, UMT5EncoderModel

    known = UMT5Config().to_dict()
    with init_empty_weights():
        model = UMT5EncoderModel(UMT5Config(**{k: v for k, v in config.items() if k in known}))
    model.tie_weights()  # the token embedding is one tensor, shared by `shared` and the encoder, once loaded
    return _dtype_bytes(precision) * sum(parameter.numel() for parameter in model.parameters())


def _public(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config without diffusers' bookkeeping keys (`_class_name`, ...)."""
    return {key: value for key, value in config.items() if not key.startswith("_")}


def lora_parameters(config: Mapping[str, Any], rank: int, targets: tuple[str, ...]) -> int:
    """Trainable LoRA parameters: A (rank x in) and B (out x rank) on each target of every block.

    Every attention projection of a Wan block maps width D to D, except attn2's to_k/to_v, which read the
    text already projected to D by the condition embedder.
    """
    width = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    return int(config["num_layers"]) * len(targets) * 2 * rank * width


# ----- activations --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Sizes:
    """The quantities the fitted formulas are written in."""

    T: int  # video tokens
    D: int  # width
    F: int  # feed-forward width
    H: int  # heads
    h: int  # head width
    L: int  # text tokens
    r: int  # LoRA rank
    C: int  # input channels x patch volume
    M: int  # correspondence query rows

    def value(self, feature: str) -> int:
        return math.prod(getattr(self, name) for name in feature.split("*"))

    def bytes(self, coefficients: Coefficients) -> int:
        return int(sum(coefficient * self.value(feature) for feature, coefficient in coefficients.items()))


def latent_grid(config: Mapping[str, Any], vae: Mapping[str, Any], frames: int, height: int, width: int):
    """Latent frames and token grid (frames, height, width) of a video, as the denoiser patches it."""
    spatial = int(vae.get("scale_factor_spatial") or 8)
    temporal = int(vae.get("scale_factor_temporal") or 4)
    p_t, p_h, p_w = (int(p) for p in config["patch_size"])
    latent_frames = (frames - 1) // temporal + 1
    return latent_frames, (latent_frames // p_t, height // spatial // p_h, width // spatial // p_w)


def _sizes(configs: BaseConfigs, run: RunSettings) -> _Sizes:
    config = configs.transformer
    _, (t, h, w) = latent_grid(config, configs.vae, run.frames, run.height, run.width)
    tokens = t * h * w
    heads, head = int(config["num_attention_heads"]), int(config["attention_head_dim"])
    return _Sizes(
        T=tokens,
        D=heads * head,
        F=int(config["ffn_dim"]),
        H=heads,
        h=head,
        L=configs.text_tokens,
        r=run.rank,
        C=int(config["in_channels"]) * math.prod(int(p) for p in config["patch_size"]),
        M=min(CORRESPONDENCE_TOKENS, tokens),
    )


def _target_set(targets: tuple[str, ...]) -> str:
    """The measured target set that covers `targets` (LoRA on attn2 too counts as 'all')."""
    return "attn1" if all(target.startswith("attn1.") for target in targets) else "all"


def step_activation_bytes(configs: BaseConfigs, run: RunSettings) -> dict[str, int]:
    """Activation bytes of one training step at the start of its backward, and the recomputation that
    checkpointing adds during it."""
    sizes = _sizes(configs, run)
    blocks = int(configs.transformer["num_layers"])
    targets = _target_set(tuple(run.targets))
    block, once = ACTIVATIONS[(run.precision, targets, run.gradient_checkpointing)]
    saved = run.passes * (blocks * sizes.bytes(block) + sizes.bytes(once))
    corr_blocks = run.correspondence_blocks if run.passes > 1 else 0
    saved += corr_blocks * sizes.bytes(CORRESPONDENCE[(run.precision, run.gradient_checkpointing)])
    parts = {"saved activations": saved}
    if run.gradient_checkpointing:
        full_block, _ = ACTIVATIONS[(run.precision, targets, False)]
        recompute = sizes.bytes(full_block)
        if corr_blocks:
            recompute += sizes.bytes(CORRESPONDENCE[(run.precision, False)])
        parts["recomputed block"] = recompute
    return parts


def sampling_bytes(configs: BaseConfigs, run: RunSettings) -> int:
    batch = 2 if run.guidance and configs.text_encoder is not None else 1
    return batch * _sizes(configs, run).bytes(SAMPLING[run.precision])


def vae_peak_bytes(configs: BaseConfigs, run: RunSettings, direction: Literal["encode", "decode"]) -> int:
    """The VAE's working set for one video (estimate; see VAE_PEAK), its weights not included."""
    pixels = run.height * run.width
    working = min(pixels, VAE_TILE_PIXELS[direction]) if run.vae_tiling else pixels
    scale = _vae_width_scale(configs.vae)
    coefficients = VAE_PEAK[direction]
    return int(
        coefficients["per_pixel"] * scale * working + coefficients["per_pixel_frame"] * pixels * run.frames
    )


def _vae_width_scale(vae: Mapping[str, Any]) -> float:
    """VAE_PEAK is for the real Wan 2.2 widths; a VAE of other widths scales with its widest layer."""
    reference = max(WAN22_VAE["base_dim"], WAN22_VAE["decoder_base_dim"])
    return max(int(vae.get("base_dim", 96)), int(vae.get("decoder_base_dim") or 0)) / reference


def text_encoding_bytes(configs: BaseConfigs, precision: Precision) -> int:
    """Estimate (not measured): UMT5's widest tensors for one prompt, see the module docstring."""
    text = configs.text_encoder
    if text is None:
        return 0
    tokens = configs.text_tokens
    scores = 4 * int(text["num_heads"]) * tokens * tokens
    return 3 * _dtype_bytes(precision) * tokens * int(text["d_ff"]) + scores


# ----- the plans -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Weights:
    transformer: int
    vae: int
    text_encoder: int
    # Parameters diffusers' layerwise casting stores in fp8: in all, per block, and the largest layer's.
    cast: int = 0
    cast_per_block: int = 0
    cast_largest: int = 0
    precision: Precision = "bf16"

    @classmethod
    def of(cls, configs: BaseConfigs, precision: Precision) -> _Weights:
        text = 0 if configs.text_encoder is None else text_encoder_bytes(configs.text_encoder, precision)
        layers = fp8_cast_layers(configs.transformer)
        cast = sum(layers.values())
        return cls(
            transformer_bytes(configs.transformer, precision),
            vae_bytes(configs.vae),
            text,
            cast=cast,
            cast_per_block=sum(size for name, size in layers.items() if name.startswith("blocks.0.")),
            cast_largest=max(layers.values(), default=0),
            precision=precision,
        )

    def denoiser(self, run: RunSettings) -> int:
        """The denoiser's resident bytes: the cast layers at one byte each when stored in fp8."""
        if not run.fp8_storage:
            return self.transformer
        return self.transformer - (_dtype_bytes(self.precision) - 1) * self.cast

    def upcast(self, parameters: int) -> int:
        """Bytes of `parameters` cast weights while upcast to the compute dtype for a forward."""
        return _dtype_bytes(self.precision) * parameters

    def resident(self, run: RunSettings, *, after_prompt: bool) -> dict[str, int]:
        """The weights on the GPU: the text encoder only while it is needed, as `run.text_encoder` says."""
        parts = {"denoiser weights": self.denoiser(run), "VAE weights": self.vae}
        keep_text = run.text_encoder == "gpu" or (run.text_encoder == "freed" and not after_prompt)
        if self.text_encoder and keep_text:
            parts["text encoder weights"] = self.text_encoder
        return parts


def _latent_bytes(configs: BaseConfigs, run: RunSettings, videos: int) -> int:
    latent_frames, _ = latent_grid(configs.transformer, configs.vae, run.frames, run.height, run.width)
    spatial = int(configs.vae.get("scale_factor_spatial") or 8)
    per_video = int(configs.vae["z_dim"]) * latent_frames * (run.height // spatial) * (run.width // spatial)
    return 4 * per_video * videos


def plan_learn(
    configs: BaseConfigs,
    run: RunSettings,
    *,
    clips: int = 3,
    copies: int = 4,
    weights: _Weights | None = None,
) -> MemoryPlan:
    """`flash learn`: prompt encoding, clip encoding, a training step, the preview's sampling and decode."""
    weights = weights or _Weights.of(configs, run.precision)
    lora = lora_parameters(configs.transformer, run.rank, tuple(run.targets))
    text_embedding = _dtype_bytes(run.precision) * configs.text_tokens * int(configs.transformer["text_dim"])
    latents = _latent_bytes(configs, run, clips * (1 + copies))
    on_gpu_text = configs.text_encoder is not None and run.text_encoder != "cpu"
    phases = [
        Phase(
            "prompt encoding",
            {
                **weights.resident(run, after_prompt=False),
                "text encoding": text_encoding_bytes(configs, run.precision) if on_gpu_text else 0,
            },
        ),
        Phase(
            "clip encoding",
            {
                **weights.resident(run, after_prompt=True),
                "VAE encode": vae_peak_bytes(configs, run, "encode"),
            },
        ),
        Phase(
            "training step",
            {
                **weights.resident(run, after_prompt=True),
                # fp32 LoRA master weights, their gradients and AdamW's two moments: 16 bytes each.
                "LoRA, gradients, AdamW": 16 * lora,
                "clip latents and prompt": latents + text_embedding,
                **step_activation_bytes(configs, run),
                **_fp8_step_bytes(run, weights),
            },
        ),
        *_animate_phases(configs, run, weights, after_prompt=True, label="preview "),
    ]
    return MemoryPlan("learn", run, tuple(phases))


def plan_animate(configs: BaseConfigs, run: RunSettings, *, weights: _Weights | None = None) -> MemoryPlan:
    """`flash animate`: prompt encoding, sampling, VAE decode."""
    weights = weights or _Weights.of(configs, run.precision)
    on_gpu_text = configs.text_encoder is not None and run.text_encoder != "cpu"
    prompt = Phase(
        "prompt encoding",
        {
            **weights.resident(run, after_prompt=False),
            "text encoding": text_encoding_bytes(configs, run.precision) if on_gpu_text else 0,
        },
    )
    return MemoryPlan("animate", run, (prompt, *_animate_phases(configs, run, weights, after_prompt=True)))


def _fp8_step_bytes(run: RunSettings, weights: _Weights) -> dict[str, int]:
    """What fp8 storage adds to a training step (an estimate from how diffusers' hook works, not measured):
    each cast layer is upcast for its forward, and autograd keeps that upcast copy for the backward (a
    linear layer's input gradient needs its weight). Without checkpointing every pass keeps all of them;
    with it, only the block being recomputed holds its copies."""
    if not run.fp8_storage:
        return {}
    if run.gradient_checkpointing:
        return {"fp8 upcast weights": weights.upcast(weights.cast_per_block)}
    return {"fp8 upcast weights": run.passes * weights.upcast(weights.cast)}


def _animate_phases(
    configs: BaseConfigs, run: RunSettings, weights: _Weights, *, after_prompt: bool, label: str = ""
) -> list[Phase]:
    resident = weights.resident(run, after_prompt=after_prompt)
    adapter = 4 * lora_parameters(configs.transformer, run.rank, tuple(run.targets))
    latents = _latent_bytes(configs, run, 2)
    return [
        Phase(
            f"{label}sampling",
            {
                **resident,
                "adapter": adapter,
                "latents": latents,
                "denoiser call": sampling_bytes(configs, run),
                # fp8 storage: one layer at a time is upcast for its forward, then dropped.
                **({"fp8 upcast layer": weights.upcast(weights.cast_largest)} if run.fp8_storage else {}),
            },
        ),
        Phase(f"{label}VAE decode", {**resident, "VAE decode": vae_peak_bytes(configs, run, "decode")}),
    ]


# ----- measuring (calibration and tests) ------------------------------------------------------------


def _storage_key(tensor: torch.Tensor) -> tuple[int, int]:
    storage = tensor.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def saved_activation_bytes(spec: Any, settings: Any, latents: torch.Tensor, seed: int = 0) -> int:
    """Bytes of the unique storages one training micro-batch keeps for its backward, measured through
    flash's own loss (`trainer._micro_batch_losses`), on `spec` with a fresh LoRA as `train_adapter` attaches
    it. Weights are not counted; tensors Motion/Correspondence Align hold between the passes are.

    latents: (1, z, T, h, w) clean clip latents; the augmented copy (when the variant uses one) is another
    draw of the same shape.
    """
    from flashcli.core import trainer
    from flashcli.core.adapter import attach_new_lora

    transformer = spec.transformer
    attach_new_lora(
        spec,
        name=trainer.TRAIN_ADAPTER_NAME,
        targets=settings.targets,
        rank=settings.rank,
        alpha=settings.rank,
    )
    weights = {_storage_key(t)[0] for t in [*transformer.parameters(), *transformer.buffers()]}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        pointer, size = _storage_key(tensor)
        if pointer not in weights:
            seen[pointer] = size
        return tensor

    generator = torch.Generator().manual_seed(seed)
    augmented = None
    if settings.align.strong_augment:
        augmented = torch.randn(latents.shape, generator=generator).unsqueeze(1)
    data = trainer._Data(latents=latents, augmented=augmented, text=spec.encode_text(None))
    alignment = None
    try:
        if settings.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        if settings.align.injects:
            alignment = trainer._make_alignment(spec, settings, latents.shape[2])
            alignment.install()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            terms = trainer._micro_batch_losses(spec, data, settings, generator, alignment)
        if alignment is not None:
            held = [*alignment.recorded_motion.values()]
            held += [record.probabilities for record in alignment.recorded_correspondence.values()]
            seen.update(_storage_key(tensor) for tensor in held)
        terms["total"].backward()
    finally:
        if alignment is not None:
            alignment.remove()
        if settings.gradient_checkpointing:
            transformer.disable_gradient_checkpointing()
        transformer.delete_adapters(trainer.TRAIN_ADAPTER_NAME)
    return sum(seen.values())


class LiveTensorBytes:
    """Tracks the tensor storages created inside it and the most bytes alive at once (`peak`).

    Device independent: it sees every tensor an operator returns (a dispatch mode) and forgets a
    storage when Python frees it. Memory an operator uses internally and returns no tensor for (cuDNN
    workspaces) is not seen.
    """

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self._live: dict[int, tuple[int, Any]] = {}
        self._mode: Any = None

    def __enter__(self) -> LiveTensorBytes:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                out = func(*args, **(kwargs or {}))
                for leaf in tree_leaves(out):
                    if isinstance(leaf, torch.Tensor):
                        tracker._track(leaf)
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._mode.__exit__(*exc_info)

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer == 0 or pointer in self._live:
            return
        size = storage.nbytes()
        self._live[pointer] = (size, weakref.ref(storage, lambda _ref, key=pointer: self._forget(key)))
        self.current += size
        self.peak = max(self.peak, self.current)

    def _forget(self, pointer: int) -> None:
        size, _ = self._live.pop(pointer, (0, None))
        self.current -= size


def peak_tensor_bytes(function: Callable[[], Any]) -> int:
    """The most bytes of tensors created by `function` that were alive at once."""
    with LiveTensorBytes() as tracker:
        function()
    return tracker.peak


def sampling_call_bytes(spec: Any, latents: torch.Tensor, *, guidance: bool, precision: str = "auto") -> int:
    """Peak tensor bytes of one sampling step's denoiser call, through flash's sampler velocity."""
    from flashcli.core.devices import autocast_dtype
    from flashcli.core.sampler import first_frame_velocity

    text = spec.encode_text(None)
    if guidance:
        text = torch.cat([text, text])
    velocity = first_frame_velocity(spec, latents[:, :, :1], text, guidance=5.0 if guidance else None)
    cast = autocast_dtype(spec.device, precision)
    autocast = torch.autocast(spec.device.type, dtype=cast) if cast is not None else contextlib.nullcontext()
    with torch.no_grad(), autocast:
        return peak_tensor_bytes(lambda: velocity(latents, 0.5))


# ----- what the preflight says --------------------------------------------------------------------


def learn_run(settings: Any, precision: Precision = "bf16") -> RunSettings:
    """The RunSettings of a `flash learn` run with these TrainSettings, as the CLI runs it: the text
    encoder freed once the prompts are encoded (`WanSpec.release_text_encoder`), the VAE whole."""
    width, height = settings.frame_size
    align = settings.align
    return RunSettings(
        frames=settings.frames,
        height=height,
        width=width,
        rank=settings.rank,
        targets=tuple(settings.targets),
        gradient_checkpointing=bool(settings.gradient_checkpointing),
        precision=precision,
        text_encoder="freed",
        passes=align.denoiser_passes,
        correspondence_blocks=4 if align.correspondence_align else 0,
    )


def animate_run(
    frames: int, width: int, height: int, guidance: bool, precision: Precision = "bf16"
) -> RunSettings:
    """The RunSettings of a `flash animate` run as the CLI runs it: the text encoder freed once the prompts
    are encoded, the adapters' LoRA counted at flash's default rank and targets."""
    return RunSettings(
        frames=frames,
        height=height,
        width=width,
        precision=precision,
        text_encoder="freed",
        guidance=guidance,
    )


# ----- the memory ladder: what the preflight changes so that a run fits -------------------------------


@dataclasses.dataclass(frozen=True)
class MemoryRung:
    """One step of the ladder: each saves memory at some cost in speed (or, fp8, a little precision)."""

    name: str
    text_encoder_cpu: bool = False  # UMT5 encodes the prompts on the CPU (slow: minutes), never on the GPU
    vae_tiling: bool = False  # `vae.enable_tiling()`: encode and decode tile by tile
    fp8_denoiser: bool = False  # the denoiser's layers stored in fp8, each upcast for its forward

    def applied(self, run: RunSettings) -> RunSettings:
        text = "cpu" if self.text_encoder_cpu else run.text_encoder
        return dataclasses.replace(
            run,
            text_encoder=text,
            vae_tiling=run.vae_tiling or self.vae_tiling,
            fp8_storage=run.fp8_storage or self.fp8_denoiser,
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# In order: the first whose plan fits is used.
LADDER: tuple[MemoryRung, ...] = (
    MemoryRung("as asked"),
    MemoryRung("text encoder on the CPU", text_encoder_cpu=True),
    MemoryRung("text encoder on the CPU, VAE tiled", text_encoder_cpu=True, vae_tiling=True),
    MemoryRung(
        "text encoder on the CPU, VAE tiled, denoiser stored in fp8",
        text_encoder_cpu=True,
        vae_tiling=True,
        fp8_denoiser=True,
    ),
)

Planner = Callable[[RunSettings], MemoryPlan]


@dataclasses.dataclass(frozen=True)
class MemoryChoice:
    """The rung the preflight chose for a run (None: none fits), with every rung's plan."""

    command: str
    run: RunSettings  # as asked
    capacity: int  # bytes of GPU memory the run may use
    plans: tuple[tuple[MemoryRung, MemoryPlan], ...]
    rung: MemoryRung | None
    fitting: str | None = None  # smaller settings the plan says fit, as flags ('--frames 49 or ...')

    @property
    def plan(self) -> MemoryPlan:
        """The chosen rung's plan; the lightest rung's when none fits."""
        chosen = self.rung or self.plans[-1][0]
        return next(plan for rung, plan in self.plans if rung == chosen)

    def as_dict(self) -> dict[str, Any]:
        return {
            "capacity_gib": round(self.capacity / GIB, 3),
            "rung": None if self.rung is None else self.rung.as_dict(),
            "needs_gib": round(self.plan.needs() / GIB, 3),
            "peak_phase": self.plan.peak_phase,
            "rungs": [
                {
                    "name": rung.name,
                    "needs_gib": round(plan.needs() / GIB, 3),
                    "fits": plan.fits(self.capacity),
                }
                for rung, plan in self.plans
            ],
            "smaller_settings_that_fit": self.fitting,
        }

    def note(self) -> str:
        """The one line the preflight prints on stderr."""
        assert self.rung is not None
        plan = self.plan
        return (
            f"GPU memory: {self.rung.name} (planned {plan.needs() / GIB:.1f} GiB with the allocator's "
            f"reserve, peak in {plan.peak_phase}; {self.capacity / GIB:.1f} GiB available)."
        )

    def refusal(self) -> str:
        """One sentence when no rung fits: the estimate, the capacity and what to change."""
        run, needs = self.run, self.plan.needs() / GIB
        change = f"use {self.fitting}, or " if self.fitting else "use "
        return (
            f"`flash {self.command}` at {run.frames} frames of {run.width}x{run.height} needs about "
            f"{needs:.1f} GiB of GPU memory even with the {self.plans[-1][0].name}, more than the "
            f"{self.capacity / GIB:.1f} GiB available; {change}a GPU with at least {math.ceil(needs)} GiB."
        )


def choose_rung(
    command: str, planner: Planner, run: RunSettings, capacity: int, steps: tuple[int, int]
) -> MemoryChoice:
    """The first rung of LADDER whose plan of `run` fits `capacity` bytes. `steps` are the base's frame
    step and size multiple, for the smaller settings named when nothing fits."""
    plans = tuple((rung, planner(rung.applied(run))) for rung in LADDER)
    chosen = next((rung for rung, plan in plans if plan.fits(capacity)), None)
    fitting = smaller_settings_that_fit(planner, run, capacity, steps)
    return MemoryChoice(command, run, capacity, plans, chosen, fitting)


def shape_steps(configs: BaseConfigs) -> tuple[int, int]:
    """(frame step, size multiple) of a base: frames are step*k+1 (the VAE encodes 4 frames at a time),
    sides multiples of the VAE's scale times the patch."""
    vae, transformer = configs.vae, configs.transformer
    frame_step = math.lcm(4, int(vae.get("scale_factor_temporal") or 4))
    multiple = int(vae.get("scale_factor_spatial") or 8) * max(int(p) for p in transformer["patch_size"][1:])
    return frame_step, multiple


def smaller_settings_that_fit(
    planner: Planner, run: RunSettings, capacity: int, steps: tuple[int, int]
) -> str | None:
    """The largest --frames (same size) and the largest --size (same frames and aspect) below `run`'s that
    the plan says fit on the lightest rung, as flags; None when neither does."""
    lightest = LADDER[-1].applied(run)
    frame_step, multiple = steps
    frames = next(
        (
            count
            for count in range(run.frames - frame_step, frame_step, -frame_step)
            if planner(dataclasses.replace(lightest, frames=count)).fits(capacity)
        ),
        None,
    )
    sizes = []
    for height in range(run.height - multiple, multiple - 1, -multiple):
        width = max(multiple, round(run.width * height / run.height / multiple) * multiple)
        sizes.append((width, height))
    size = next(
        (
            (width, height)
            for width, height in sizes
            if planner(dataclasses.replace(lightest, width=width, height=height)).fits(capacity)
        ),
        None,
    )
    options = []
    if frames is not None:
        options.append(f"--frames {frames} (at {run.width}x{run.height})")
    if size is not None:
        options.append(f"--size {size[0]}x{size[1]} (at {run.frames} frames)")
    return " or ".join(options) or None


def describe_plan(plan: MemoryPlan, capacity_bytes: int | None) -> str:
    """One sentence for the preflight: the planned peak, its phase, and whether it fits the card; when it
    does not, what to change (the same advice as an out-of-memory error)."""
    run = plan.run
    checkpointing = "with" if run.gradient_checkpointing else "without"
    head = (
        f"Planned peak GPU memory of `flash {plan.command}` at {run.frames} frames of "
        f"{run.width}x{run.height}, {checkpointing} gradient checkpointing: {plan.peak / GIB:.1f} GiB "
        f"({plan.peak_phase}), {plan.needs() / GIB:.1f} GiB with the allocator's reserve"
    )
    if capacity_bytes is None:
        return head + "."
    if plan.fits(capacity_bytes):
        return f"{head}; this GPU has {capacity_bytes / GIB:.1f} GiB."
    return (
        f"{head}, more than this GPU's {capacity_bytes / GIB:.1f} GiB: it will likely run out of memory; "
        "try a smaller --size, fewer --frames, --preset low-vram or --gradient-checkpointing."
    )
