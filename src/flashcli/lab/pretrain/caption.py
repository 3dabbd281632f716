"""Motion captions: a clip's joint trajectory turned into the text tokens the Wan cross-attention reads.

The tiny base has no text encoder. A real Wan base is pretrained on captioned videos, so at high noise it
knows which motion to draw; the tiny analogue is a caption made of the motion itself. This is the
*oracle* caption of the teachable-base ladder (issue 22, rung 1): it reads the true joints, so it is the
strongest cue a denoiser can get. Two layouts are measured against each other, because cross-attention
tokens carry no position of their own:

- "per_frame": one token per frame, each the frame's joint displacements (plus frame 0's pose) through a
  small MLP, plus a learned embedding of its frame index;
- "global": the whole trajectory through an MLP into 8 tokens, as the pretraining texts are laid out.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from einops import rearrange

CaptionLayout = Literal["per_frame", "global"]
GLOBAL_TOKENS = 8


def joint_motion(joints: np.ndarray, figure_height: float, frame_size: tuple[int, int]) -> np.ndarray:
    """(F, J, 2) pixel joints -> float32 (F, J, 4): each joint's displacement from frame 0 in figure
    heights, then frame 0's position relative to the frame centre in frame heights (the same every frame,
    so a token alone says where the limb starts and where it went)."""
    height, width = frame_size
    moved = (joints - joints[:1]) / float(figure_height)
    start = (joints[:1] - np.array([width / 2.0, height / 2.0], dtype=np.float32)) / float(height)
    start = np.broadcast_to(start, joints.shape)
    return np.concatenate([moved, start], axis=-1).astype(np.float32)


class MotionCaption(torch.nn.Module):
    """Joint motion (B, F, J, 4) -> text tokens (B, L, text_dim)."""

    def __init__(
        self, joints: int, max_frames: int, text_dim: int, layout: CaptionLayout, hidden: int = 256
    ) -> None:
        super().__init__()
        if layout not in ("per_frame", "global"):
            raise ValueError(f"layout must be 'per_frame' or 'global', not {layout!r}")
        self.layout = layout
        self.max_frames = max_frames
        self.text_dim = text_dim
        width = joints * 4 if layout == "per_frame" else joints * 4 * max_frames
        out = text_dim if layout == "per_frame" else text_dim * GLOBAL_TOKENS
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, out)
        )
        self.frame_embedding = torch.nn.Parameter(torch.randn(max_frames, text_dim) * 0.02)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        batch, frames = motion.shape[:2]
        if frames > self.max_frames:
            raise ValueError(f"captions cover at most {self.max_frames} frames, got {frames}")
        if self.layout == "per_frame":
            tokens = self.mlp(rearrange(motion, "b f j c -> b f (j c)"))
            return tokens + self.frame_embedding[:frames]
        padded = torch.zeros(
            batch, self.max_frames, *motion.shape[2:], dtype=motion.dtype, device=motion.device
        )
        padded[:, :frames] = motion
        tokens = self.mlp(rearrange(padded, "b f j c -> b (f j c)"))
        return rearrange(tokens, "b (l d) -> b l d", l=GLOBAL_TOKENS)
