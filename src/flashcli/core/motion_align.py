"""FLASH's Motion Alignment hooks on a diffusers Wan transformer: record on x', inject into x.

Two hook kinds, both switchable (docs/motion_alignment.md has the full story):

- Motion Align: a forward hook on each chosen `WanTransformerBlock`. The block's output tokens,
  ordered (t, h, w) by Wan's patchify, are split into latent frames; the motion component is each
  frame's features minus frame 0's at the same spatial position. Recorded on the x' pass; on the x
  pass the block output becomes x's own frame-0 features plus the recorded x' motion
  (`motion_source="stream"`). With `motion_source="update"` only the block's own contribution
  (output minus input, the analogue of a UNet's temporal-layer output) has its motion swapped; the
  stream x brings into the block stays x's.
- Correspondence Align: an attention processor on each chosen block's self-attention (attn1). It
  computes softmax(QK^T / sqrt(d)) explicitly (RMSNorm q/k and RoPE as Wan does) for all query
  tokens or a subsample of them. Recorded on the x' pass; on the x pass the rows of those queries
  use x''s probabilities with x's own values (`correspondence_keys="cross_frame"`: only over the
  keys in other frames; x keeps its own within-frame attention).

The projections are called as `attn.to_q(...)` etc., so a peft LoRA wrapped around them applies.
Gradient checkpointing works through `checkpoint_function`, which replays the hooks' mode when a
block is recomputed during backward.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, Literal

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
import torch.utils.hooks
from einops import rearrange
from torch import nn

FIRED_KINDS: tuple[str, ...] = ("motion_record", "motion_inject", "corr_record", "corr_inject")


@dataclasses.dataclass(frozen=True)
class RecordedCorrespondence:
    """Attention probabilities of one block's attn1 on the x' pass."""

    probabilities: torch.Tensor  # (B, heads, M, N): rows = the recorded queries, columns = all keys
    query_index: torch.Tensor | None  # (M,) token positions of the rows; None = every token (M == N)


@dataclasses.dataclass(frozen=True)
class _Mode:
    """What the hooks do during the current forward pass."""

    action: Literal["off", "record", "inject"] = "off"
    motion: bool = False
    correspondence: bool = False
    # A block being recomputed by gradient checkpointing: redo the same maths, store and count nothing.
    replay: bool = False
    query_index: torch.Tensor | None = None
    motion_store: Mapping[int, torch.Tensor] = dataclasses.field(default_factory=dict)
    corr_store: Mapping[int, RecordedCorrespondence] = dataclasses.field(default_factory=dict)


class MotionAlignment:
    """Record motion and correspondences on one forward pass, inject them into the next.

    transformer: a diffusers `WanTransformer3DModel` (LoRA-wrapped or not).
    motion_blocks / correspondence_blocks: indices into `transformer.blocks`; either may be empty.
    frames_latent: latent frames of the videos the transformer will see (checked on every pass).
    max_correspondence_tokens: record attention rows for at most this many query tokens (evenly
        spaced, or drawn from the generator given to `record`); None records the full N x N map,
        which costs B * heads * N^2 floats per block (see docs/motion_alignment.md).
    detach_recorded: if True, the x' tensors are injected as constants (no gradient into the x' pass).
    correspondence_keys: "all" injects x''s whole attention rows; "cross_frame" only their keys in
        other latent frames (`cross_frame_probabilities`).
    motion_source: "stream" swaps the motion of the block's output; "update" that of the block's
        residual update (output minus input) only.
    """

    def __init__(
        self,
        transformer: nn.Module,
        *,
        motion_blocks: list[int],
        correspondence_blocks: list[int],
        frames_latent: int,
        max_correspondence_tokens: int | None = None,
        detach_recorded: bool = False,
        motion_source: Literal["stream", "update"] = "stream",
        correspondence_keys: Literal["all", "cross_frame"] = "all",
    ) -> None:
        if motion_source not in ("stream", "update"):
            raise ValueError(f"motion_source must be 'stream' or 'update', got {motion_source!r}")
        if correspondence_keys not in ("all", "cross_frame"):
            raise ValueError(
                f"correspondence_keys must be 'all' or 'cross_frame', got {correspondence_keys!r}"
            )
        blocks = getattr(transformer, "blocks", None)
        if not isinstance(blocks, nn.ModuleList):
            raise TypeError("transformer must be a diffusers WanTransformer3DModel (it has no `blocks` list)")
        for name, indices in (
            ("motion_blocks", motion_blocks),
            ("correspondence_blocks", correspondence_blocks),
        ):
            bad = [i for i in indices if not 0 <= i < len(blocks)]
            if bad:
                raise ValueError(
                    f"{name} {bad} out of range: the transformer has blocks 0..{len(blocks) - 1}"
                )
            if len(set(indices)) != len(indices):
                raise ValueError(f"{name} lists a block twice: {indices}")
        temporal_patch = int(transformer.config.patch_size[0])
        if frames_latent < 2 or frames_latent % temporal_patch:
            raise ValueError(
                f"frames_latent={frames_latent} must be at least 2 and a multiple of the temporal patch size "
                f"{temporal_patch}: motion is measured against frame 0"
            )
        if max_correspondence_tokens is not None and max_correspondence_tokens < 1:
            raise ValueError(
                f"max_correspondence_tokens must be >= 1 or None, got {max_correspondence_tokens}"
            )

        self.transformer = transformer
        self.motion_blocks = list(motion_blocks)
        self.correspondence_blocks = list(correspondence_blocks)
        self.frames_latent = frames_latent
        self.token_frames = frames_latent // temporal_patch
        self.max_correspondence_tokens = max_correspondence_tokens
        self.detach_recorded = detach_recorded
        self.motion_source = motion_source
        self.correspondence_keys = correspondence_keys
        self.fired: dict[str, int] = dict.fromkeys(FIRED_KINDS, 0)

        self._mode = _Mode()
        self._motion: dict[int, torch.Tensor] = {}
        self._correspondence: dict[int, RecordedCorrespondence] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._original_processors: dict[int, Any] = {}
        self._original_checkpoint_func: Callable[..., Any] | None = None
        self._query_generator: torch.Generator | None = None
        self._installed = False

    # -- lifecycle ---------------------------------------------------------------------------------

    def install(self) -> None:
        """Attach the hooks and processors; until `record`/`inject` they leave every output unchanged."""
        if self._installed:
            raise RuntimeError("MotionAlignment is already installed on this transformer")
        blocks = self.transformer.blocks
        self._handles.append(self.transformer.register_forward_pre_hook(self._check_input, with_kwargs=True))
        for index in self.motion_blocks:
            self._handles.append(blocks[index].register_forward_hook(self._motion_hook(index)))
        for index in self.correspondence_blocks:
            attn = blocks[index].attn1
            self._original_processors[index] = attn.processor
            attn.set_processor(CorrespondenceProcessor(self, index, attn.processor))
        if getattr(self.transformer, "gradient_checkpointing", False):
            self._original_checkpoint_func = self.transformer._gradient_checkpointing_func
            self.transformer._gradient_checkpointing_func = self.checkpoint_function
        self._installed = True

    def remove(self) -> None:
        """Restore the transformer exactly as it was before `install` and drop recorded tensors."""
        if not self._installed:
            return
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for index, processor in self._original_processors.items():
            self.transformer.blocks[index].attn1.set_processor(processor)
        self._original_processors.clear()
        if self._original_checkpoint_func is not None:
            self.transformer._gradient_checkpointing_func = self._original_checkpoint_func
            self._original_checkpoint_func = None
        self._mode = _Mode()
        self.clear()
        self._installed = False

    def __enter__(self) -> MotionAlignment:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def clear(self) -> None:
        """Drop the recorded x' tensors (and with them their autograd graph). `fired` is kept."""
        self._motion = {}
        self._correspondence = {}

    def reset_counts(self) -> None:
        self.fired = dict.fromkeys(FIRED_KINDS, 0)

    @property
    def recorded_motion(self) -> Mapping[int, torch.Tensor]:
        """Block index -> recorded motion (B, T, h*w, C); frame 0 is zero by construction."""
        return dict(self._motion)

    @property
    def recorded_correspondence(self) -> Mapping[int, RecordedCorrespondence]:
        return dict(self._correspondence)

    # -- the two passes ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def record(
        self, *, motion: bool = True, correspondence: bool = True, generator: torch.Generator | None = None
    ) -> Iterator[None]:
        """Forward passes inside record what the x' pass provides (replacing earlier recordings).

        generator: draws which query tokens are recorded when max_correspondence_tokens subsamples;
        without it the queries are evenly spaced over all tokens.
        """
        self._require_ready()
        self.clear()
        self._mode = _Mode(action="record", motion=motion, correspondence=correspondence)
        self._query_generator = generator
        try:
            yield
        finally:
            self._mode = _Mode()
            self._query_generator = None

    @contextlib.contextmanager
    def inject(self, *, motion: bool, correspondence: bool) -> Iterator[None]:
        """Forward passes inside use the recorded x' motion and/or correspondences."""
        self._require_ready()
        missing = []
        if motion and self.motion_blocks and set(self._motion) != set(self.motion_blocks):
            missing.append("motion")
        if (
            correspondence
            and self.correspondence_blocks
            and set(self._correspondence) != set(self.correspondence_blocks)
        ):
            missing.append("correspondence")
        if missing:
            raise RuntimeError(
                f"nothing recorded for {' and '.join(missing)} injection: "
                "run the x' forward inside record() first"
            )
        self._mode = _Mode(
            action="inject",
            motion=motion,
            correspondence=correspondence,
            motion_store=dict(self._motion),
            corr_store=dict(self._correspondence),
        )
        try:
            yield
        finally:
            self._mode = _Mode()

    def checkpoint_function(self, module: nn.Module, *args: Any) -> Any:
        """Gradient checkpointing that recomputes a block in the mode it first ran in.

        Installed automatically by `install` when the transformer has gradient checkpointing on; pass
        it to `transformer.enable_gradient_checkpointing(gradient_checkpointing_func=...)` otherwise.
        """
        mode_at_forward = self._mode

        def contexts() -> tuple[AbstractContextManager[None], AbstractContextManager[None]]:
            return contextlib.nullcontext(), self._replaying(mode_at_forward)

        return torch.utils.checkpoint.checkpoint(
            module.__call__, *args, use_reentrant=False, context_fn=contexts
        )

    # -- internals ---------------------------------------------------------------------------------

    def _require_ready(self) -> None:
        if not self._installed:
            raise RuntimeError("call MotionAlignment.install() before record() or inject()")
        if self._mode.action != "off":
            raise RuntimeError(f"already inside {self._mode.action}(); record and inject cannot be nested")
        checkpointing = getattr(self.transformer, "gradient_checkpointing", False)
        if checkpointing and self.transformer._gradient_checkpointing_func != self.checkpoint_function:
            raise RuntimeError(
                "gradient checkpointing was enabled after MotionAlignment.install(): recomputed blocks would "
                "miss the injected tensors; call transformer.enable_gradient_checkpointing("
                "gradient_checkpointing_func=alignment.checkpoint_function)"
            )

    @contextlib.contextmanager
    def _replaying(self, mode: _Mode) -> Iterator[None]:
        previous = self._mode
        self._mode = dataclasses.replace(mode, replay=True)
        try:
            yield
        finally:
            self._mode = previous

    def _check_input(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Transformer pre-hook: check the frame count and pick this pass's recorded query tokens."""
        if self._mode.action == "off":
            return
        hidden_states = args[0] if args else kwargs["hidden_states"]
        _, _, frames, height, width = hidden_states.shape
        if frames != self.frames_latent:
            raise ValueError(
                f"MotionAlignment was built for {self.frames_latent} latent frames; the input has {frames}"
            )
        if self._mode.action == "record" and self._mode.correspondence and self.correspondence_blocks:
            patch_t, patch_h, patch_w = self.transformer.config.patch_size
            tokens = (frames // patch_t) * (height // patch_h) * (width // patch_w)
            self._mode = dataclasses.replace(self._mode, query_index=self._pick_queries(tokens))

    def _pick_queries(self, tokens: int) -> torch.Tensor | None:
        limit = self.max_correspondence_tokens
        if limit is None or limit >= tokens:
            return None
        generator = self._query_generator
        if generator is None:
            return torch.linspace(0, tokens - 1, limit).round().long()
        chosen = torch.randperm(tokens, generator=generator, device=generator.device)[:limit]
        return chosen.sort().values.cpu()

    def _motion_hook(self, index: int) -> Callable[[nn.Module, Any, torch.Tensor], torch.Tensor | None]:
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
            mode = self._mode
            if mode.action == "off" or not mode.motion:
                return None
            frames = self._split_frames(output)  # (B, T, h*w, C)
            carried = None
            if self.motion_source == "update":
                carried = self._split_frames(args[0])  # the stream the block received
                frames = frames - carried  # the block's own contribution
            if mode.action == "record":
                motion = frames - frames[:, :1]
                if not mode.replay:
                    self._motion[index] = motion.detach() if self.detach_recorded else motion
                    self.fired["motion_record"] += 1
                return None
            recorded = mode.motion_store[index]
            if recorded.shape != frames.shape:
                raise ValueError(
                    f"block {index}: recorded motion has shape {tuple(recorded.shape)} but this pass has "
                    f"{tuple(frames.shape)}; record and inject need the same batch and video size"
                )
            if not mode.replay:
                self.fired["motion_inject"] += 1
            injected = frames[:, :1] + recorded.to(frames.dtype)
            if carried is not None:
                injected = carried + injected
            return rearrange(injected, "b t s c -> b (t s) c")

        return hook

    def _split_frames(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] % self.token_frames:
            raise ValueError(f"{tokens.shape[1]} tokens do not split into {self.token_frames} latent frames")
        return rearrange(tokens, "b (t s) c -> b t s c", t=self.token_frames)


class CorrespondenceProcessor:
    """attn1 processor: the default Wan processor when idle; explicit attention maps when recording
    or injecting. Not an nn.Module, so it adds nothing to the state dict."""

    def __init__(
        self, owner: MotionAlignment, block_index: int, original: Callable[..., torch.Tensor]
    ) -> None:
        self.owner = owner
        self.block_index = block_index
        self.original = original

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        mode = self.owner._mode
        if mode.action == "off" or not mode.correspondence:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("correspondence alignment hooks self-attention only (no context, no mask)")

        query, key, value = wan_self_attention_qkv(attn, hidden_states, rotary_emb)
        if mode.action == "record":
            output = F.scaled_dot_product_attention(query, key, value)
            probabilities = attention_probabilities(query, key, mode.query_index)
            if not mode.replay:
                if self.owner.detach_recorded:
                    probabilities = probabilities.detach()
                recorded_now = RecordedCorrespondence(probabilities, mode.query_index)
                self.owner._correspondence[self.block_index] = recorded_now
                self.owner.fired["corr_record"] += 1
        else:
            recorded = mode.corr_store[self.block_index]
            batch, heads, tokens, _ = value.shape
            rows = tokens if recorded.query_index is None else recorded.query_index.numel()
            if recorded.probabilities.shape != (batch, heads, rows, tokens):
                raise ValueError(
                    f"block {self.block_index}: recorded attention has shape "
                    f"{tuple(recorded.probabilities.shape)} but this pass needs "
                    f"{(batch, heads, rows, tokens)}; "
                    "record and inject need the same batch and video size"
                )
            if not mode.replay:
                self.owner.fired["corr_inject"] += 1
            probabilities = recorded.probabilities
            if self.owner.correspondence_keys == "cross_frame":
                probabilities = self._cross_frame(query, key, recorded)
            injected = torch.matmul(probabilities.to(value.dtype), value)
            if recorded.query_index is None:
                output = injected
            else:
                own = F.scaled_dot_product_attention(query, key, value)
                output = own.index_copy(2, recorded.query_index.to(own.device), injected.to(own.dtype))

        output = rearrange(output, "b h n d -> b n (h d)").type_as(query)
        return attn.to_out[1](attn.to_out[0](output))

    def _cross_frame(
        self, query: torch.Tensor, key: torch.Tensor, recorded: RecordedCorrespondence
    ) -> torch.Tensor:
        """The recorded rows' probabilities with x's own within-frame part (see cross_frame_probabilities)."""
        tokens = key.shape[2]
        frame_of_keys = torch.arange(tokens, device=key.device) // (tokens // self.owner.token_frames)
        rows = recorded.query_index
        frame_of_rows = frame_of_keys if rows is None else frame_of_keys[rows.to(key.device)]
        own = attention_probabilities(query, key, rows)
        return cross_frame_probabilities(own, recorded.probabilities, frame_of_rows, frame_of_keys)


def wan_self_attention_qkv(
    attn: nn.Module, hidden_states: torch.Tensor, rotary_emb: tuple[torch.Tensor, torch.Tensor] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query, key, value of a Wan self-attention, each (B, heads, N, head_dim), exactly as
    diffusers' WanAttnProcessor forms them (RMSNorm over all heads, then RoPE on q and k)."""
    if getattr(attn, "fused_projections", False):
        raise ValueError(
            "fused QKV projections are not supported: unfuse them so LoRA and hooks see to_q/k/v"
        )
    query = attn.norm_q(attn.to_q(hidden_states))
    key = attn.norm_k(attn.to_k(hidden_states))
    value = attn.to_v(hidden_states)
    query, key, value = (rearrange(t, "b n (h d) -> b n h d", h=attn.heads) for t in (query, key, value))
    if rotary_emb is not None:
        query = _apply_rotary(query, *rotary_emb)
        key = _apply_rotary(key, *rotary_emb)
    return tuple(rearrange(t, "b n h d -> b h n d") for t in (query, key, value))  # type: ignore[return-value]


def attention_probabilities(
    query: torch.Tensor, key: torch.Tensor, query_index: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) for the chosen query rows: (B, heads, M, N), rows sum to 1.

    The softmax runs in float32 (as SDPA does internally) and the result takes the query's dtype.
    """
    if query_index is not None:
        query = query.index_select(2, query_index.to(query.device))
    scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(query.shape[-1]))
    return torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)


def cross_frame_probabilities(
    own: torch.Tensor,
    recorded: torch.Tensor,
    frame_of_rows: torch.Tensor,
    frame_of_keys: torch.Tensor,
    eps: float = 1e-12,
) -> torch.Tensor:
    """x's attention rows with their cross-frame part taken from x': (..., M, N), rows sum to 1.

    own, recorded: probabilities P (x) and P' (x') of the same query rows over the same keys.
    frame_of_rows (M,), frame_of_keys (N,): the latent frame of each query row and key.
    Within a row's own frame the result is P; over the other frames it is P' rescaled so that its
    mass equals P's mass there: x keeps its own split between its frame and the others and takes
    from x' only where in the other frames it looks. With no cross-frame keys it is P.
    """
    same_frame = frame_of_rows[:, None] == frame_of_keys[None, :]  # (M, N)
    # float32 (as the softmax): a bf16 ratio of two masses would lose the rows' sum of 1.
    own32, recorded32 = own.float(), recorded.float()
    own_cross = own32.masked_fill(same_frame, 0)
    recorded_cross = recorded32.masked_fill(same_frame, 0)
    scale = own_cross.sum(-1, keepdim=True) / recorded_cross.sum(-1, keepdim=True).clamp_min(eps)
    return (own32.masked_fill(~same_frame, 0) + recorded_cross * scale).to(own.dtype)


def _apply_rotary(tokens: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's RoPE on (B, N, heads, d): rotate interleaved channel pairs (2i, 2i+1)."""
    pairs = rearrange(tokens, "b n h (d two) -> b n h d two", two=2)
    even, odd = pairs.unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rearrange(rotated, "b n h d two -> b n h (d two)").type_as(tokens)
