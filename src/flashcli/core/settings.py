"""Settings the core takes from the workflows (pydantic, unknown keys are errors).

Each field's default and limits here are the product's only ones: `flashcli.config` leaves a setting
that no preset or flag chose as None, and it falls through to these, so a preset, a flag, a benchmark
and a test cannot disagree about a default. frames and size have none: the base supplies them, and
`flashcli.workflows.plan` fits a chosen value to the base (the one check of a clip's shape).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Precision = Literal["auto", "fp32", "bf16", "fp16"]

DEFAULT_LORA_TARGETS: tuple[str, ...] = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0")
ALL_LORA_TARGETS: tuple[str, ...] = DEFAULT_LORA_TARGETS + (
    "attn2.to_q",
    "attn2.to_k",
    "attn2.to_v",
    "attn2.to_out.0",
)

# TrainSettings fields of the learn-time DED fine-tuning (not part of the adapter's training).
DED_FINETUNE_FIELDS: tuple[str, ...] = ("ded_finetune_steps", "ded_finetune_lr", "ded_finetune_crop")

# The paper's six ablation variants, as switches (strong_augment, motion, correspondence, detail).
VARIANTS: dict[str, tuple[bool, bool, bool, bool]] = {
    "none": (False, False, False, False),
    "augment": (True, False, False, False),
    "augment_motion": (True, True, False, False),
    "augment_correspondence": (True, False, True, False),
    "augment_both": (True, True, True, False),
    "full": (True, True, True, True),
}


class AlignSettings(BaseModel):
    """The Motion Alignment Module's switches and loss weights."""

    model_config = ConfigDict(extra="forbid")

    strong_augment: bool = True
    motion_align: bool = True
    correspondence_align: bool = True
    # Trains nothing: `flash animate` decodes the action with the DED by default (False: the plain
    # decoder); the manifest records it as the action's `decoder`.
    detail_enhance: bool = True
    motion_blocks: list[int] | None = Field(
        default=None, description="denoiser blocks; None = the base's default"
    )
    correspondence_blocks: list[int] | None = None
    # Attention rows recorded per block for Correspondence Align (None = all tokens: tokens^2 memory).
    max_correspondence_tokens: int | None = Field(default=512, ge=1)
    # Which keys of a recorded row come from x': "all" = x''s rows replace x's whole rows; "cross_frame"
    # = only the keys in other frames (x keeps its within-frame attention and its own-vs-other split).
    correspondence_keys: Literal["all", "cross_frame"] = "all"
    # 0.5 with the plain loss at 1: the least harm to new people's denoising of the settings measured
    # (bench/RESULTS.md, "Alignment settings"); 1.0 alone did twice the harm.
    aligned_loss_weight: float = Field(default=0.5, ge=0)
    augmented_loss_weight: float = Field(default=1.0, ge=0)
    # What Motion Align swaps: the motion of the block's whole output ("stream") or of its residual
    # update only ("update"); see docs/motion_alignment.md.
    motion_source: Literal["stream", "update"] = "stream"
    # Inject the x' tensors as constants: the aligned loss then trains nothing through the x' pass.
    detach_recorded: bool = False
    # A third forward on x without injection, so the adapter also trains in the state `animate` runs it
    # in. Measured on 4 held-out actions (bench/RESULTS.md, "Alignment settings"): weight 1 halves the
    # harm Motion Align does to new people's denoising, for about 1.4x the learn time.
    plain_loss_weight: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _alignment_needs_augmentation(self) -> AlignSettings:
        if (self.motion_align or self.correspondence_align) and not self.strong_augment:
            raise ValueError(
                "motion_align and correspondence_align need strong_augment: "
                "they take their motion from the augmented copy"
            )
        return self

    @property
    def injects(self) -> bool:
        return self.motion_align or self.correspondence_align

    @property
    def denoiser_passes(self) -> int:
        """Denoiser passes per sample in a training step, as the trainer runs them: 1 without strong
        augmentation; 2 with it (the clip and its augmented copy); 3 when an alignment injects and the
        plain loss on the clip is also weighted."""
        if not self.strong_augment:
            return 1
        return 3 if self.injects and self.plain_loss_weight > 0 else 2

    @classmethod
    def variant(cls, name: str, **overrides: object) -> AlignSettings:
        """One of the paper's ablation variants by name: none, augment, augment_motion,
        augment_correspondence, augment_both, full."""
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
        augment, motion, correspondence, detail = VARIANTS[name]
        return cls(
            strong_augment=augment,
            motion_align=motion,
            correspondence_align=correspondence,
            detail_enhance=detail,
            **overrides,
        )

    @property
    def variant_name(self) -> str | None:
        switches = (self.strong_augment, self.motion_align, self.correspondence_align, self.detail_enhance)
        return next((name for name, value in VARIANTS.items() if value == switches), None)


class TrainSettings(BaseModel):
    """Everything `train_adapter` needs besides the clips."""

    model_config = ConfigDict(extra="forbid")

    frames: int = Field(description="frames per clip, as fitted to the base (4k+1 on Wan)")
    size: int = Field(description="frame height in pixels (and width, unless `width` is set), as fitted")
    width: int | None = Field(default=None, ge=1, description="frame width in pixels; None = size (square)")
    steps: int = Field(default=300, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0, le=1.0)
    weight_decay: float = Field(default=1e-2, ge=0)
    warmup_steps: int = Field(default=20, ge=0)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    batch_size: int = Field(default=1, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    rank: int = Field(default=8, ge=1, le=256)
    alpha: float | None = Field(default=None, gt=0, description="LoRA alpha; None = rank")
    targets: list[str] = Field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))
    gradient_checkpointing: bool = False
    precision: Precision = "auto"
    seed: int = Field(default=0, ge=0)
    train_shift: float = Field(default=3.0, gt=0, description="timestep shift for training sigmas")
    augment_copies: int = Field(default=4, ge=1, description="augmented copies per clip, encoded once")
    text_learning_rate: float = Field(
        default=5e-3,
        gt=0,
        description="learning rate of the action's own text embedding, on bases pretrained with action texts",
    )
    checkpoint_every: int = Field(
        default=50, ge=0, description="steps between checkpoints, when given a folder; 0 = none"
    )
    align: AlignSettings = Field(default_factory=AlignSettings)
    # After the adapter: fine-tune a copy of the base's Detail Enhancement Decoder on the action's
    # own clips (0 = off; the base's DED is then used as is). See docs/ded.md.
    ded_finetune_steps: int = Field(default=0, ge=0, le=100_000, description="DED fine-tuning steps; 0 = off")
    ded_finetune_lr: float = Field(default=1e-4, gt=0, description="learning rate of the DED fine-tuning")
    ded_finetune_crop: int = Field(
        default=0,
        ge=0,
        description="square window (pixels) decoded per DED step, to bound memory; 0 = whole frames",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainSettings:
        unknown = [t for t in self.targets if t not in ALL_LORA_TARGETS]
        if unknown:
            raise ValueError(f"unknown LoRA targets {unknown}; choose from {', '.join(ALL_LORA_TARGETS)}")
        if not self.targets:
            raise ValueError("targets must name at least one attention projection")
        return self

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of every training frame."""
        return (self.width or self.size, self.size)

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha if self.alpha is not None else self.rank)


class SampleSettings(BaseModel):
    """Settings for `animate_photo`."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=20, ge=1, le=1000)
    seed: int = Field(default=0, ge=0)
    shift: float | None = Field(default=None, gt=0, description="None = the base's flow shift")
    eta: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="fresh noise per sampling step: 0 = the deterministic Euler ODE, 1 = ancestral; "
        "None = the base's (`sampler_eta` in flash_base.json, else 0)",
    )
    guidance: float = Field(default=5.0, ge=1.0, description="classifier-free guidance; only for text bases")
    prompt: str | None = None
    negative_prompt: str | None = Field(
        default=None,
        description="what classifier-free guidance steers away from (text bases); None = the base's "
        "(`WanSpec.negative_prompt`)",
    )
    use_ded: bool = True
    precision: Precision = "auto"
