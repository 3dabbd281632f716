"""The teachable-base ladder's diagnostic ceiling (issue 22, rung 1): the target skeleton drawn per frame
and fed to the denoiser as extra input channels.

It is the most direct cue a denoiser can get: where every limb is in every frame, at latent resolution. If
even this cannot make the figure move on held-out actions, the limit is the VAE, the model's size or the
world, not the cue. It is a diagnostic, not a product feature: `learn` has no skeleton to draw.

The skeleton is drawn from the oracle caption's joint motion (`caption.joint_motion`), so the gate's
cached clips need no new rendering: frame 0's pose is stored absolutely, and each frame's displacement in
figure heights, where the figure height is recovered from frame 0's vertical joint span
(`REST_SPAN_PER_HEIGHT`; the ratio varies by about ±5% with body proportions, so limbs may be drawn up to
a pixel off at the gate's 64 px).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from flashcli.figureworld.skeleton import JOINT_NAMES

# Frame 0's vertical joint span over the figure's height (`camera.scale`), measured on simple-world
# gate clips from rest: 0.88-0.96, mean about 0.91.
REST_SPAN_PER_HEIGHT = 0.91

# One channel per limb group, so the denoiser knows which limb a line is.
LIMB_GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "torso": (
        ("head", "neck"),
        ("neck", "pelvis"),
        ("neck", "l_shoulder"),
        ("neck", "r_shoulder"),
        ("pelvis", "l_hip"),
        ("pelvis", "r_hip"),
    ),
    "left_arm": (("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"), ("l_wrist", "l_hand")),
    "right_arm": (("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"), ("r_wrist", "r_hand")),
    "left_leg": (("l_hip", "l_knee"), ("l_knee", "l_ankle"), ("l_ankle", "l_foot")),
    "right_leg": (("r_hip", "r_knee"), ("r_knee", "r_ankle"), ("r_ankle", "r_foot")),
}
CHANNELS = len(LIMB_GROUPS)


def joints_from_motion(motion: torch.Tensor, frame_size: int) -> torch.Tensor:
    """Joint motion (B, F, J, 4) of a square `frame_size` frame -> pixel joints (B, F, J, 2)."""
    moved, start = motion[..., :2], motion[..., 2:]
    first = start * frame_size + frame_size / 2.0
    span = first[:, 0, :, 1].amax(-1) - first[:, 0, :, 1].amin(-1)
    height = (span / REST_SPAN_PER_HEIGHT).clamp_min(1.0)
    return first + moved * height[:, None, None, None]


def draw_skeleton(motion: torch.Tensor, frame_size: int, grid: int, width: float = 0.6) -> torch.Tensor:
    """Joint motion (B, F, J, 4) -> limb maps (B, CHANNELS, F, grid, grid) in [0, 1]: each limb group's
    segments as soft lines (Gaussian of the distance to the segment, `width` grid pixels)."""
    joints = joints_from_motion(motion.float(), frame_size) * (grid / frame_size)
    index = {name: i for i, name in enumerate(JOINT_NAMES)}
    centres = torch.arange(grid, dtype=torch.float32) + 0.5
    points = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), dim=-1)  # (grid, grid, 2) as x, y
    maps = []
    for segments in LIMB_GROUPS.values():
        a = joints[:, :, [index[s] for s, _ in segments]]  # (B, F, S, 2)
        b = joints[:, :, [index[e] for _, e in segments]]
        ab = b - a
        ap = points[None, None, None] - a[..., None, None, :]  # (B, F, S, grid, grid, 2)
        along = (ap * ab[..., None, None, :]).sum(-1) / (ab**2).sum(-1).clamp_min(1e-6)[..., None, None]
        nearest = a[..., None, None, :] + along.clamp(0, 1)[..., None] * ab[..., None, None, :]
        distance = (points[None, None, None] - nearest).norm(dim=-1)
        maps.append(torch.exp(-(distance**2) / (2 * width**2)).amax(dim=2))  # (B, F, grid, grid)
    return torch.stack(maps, dim=1)


class SkeletonInput(torch.nn.Module):
    """Adds embedded limb maps to a Wan denoiser's patch embedding, through a forward hook.

    The new convolution starts at zero, so a warm-started denoiser is unchanged until it learns to read
    the maps. Maps are given per call with `showing(maps)`; outside it the denoiser runs as before."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        patch = transformer.patch_embedding
        self.embed = torch.nn.Conv3d(
            CHANNELS, patch.out_channels, kernel_size=patch.kernel_size, stride=patch.stride
        )
        torch.nn.init.zeros_(self.embed.weight)
        torch.nn.init.zeros_(self.embed.bias)
        self._maps: torch.Tensor | None = None
        patch.register_forward_hook(self._add)

    def _add(self, module: torch.nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
        if self._maps is None:
            return output
        maps = self._maps
        if output.shape[0] != maps.shape[0]:  # guided sampling runs the batch twice
            maps = maps.repeat(output.shape[0] // maps.shape[0], 1, 1, 1, 1)
        added = self.embed(maps.to(output.dtype))
        if added.shape != output.shape:
            raise ValueError(f"limb maps embed to {tuple(added.shape)}; the patches: {tuple(output.shape)}")
        return output + added

    @contextmanager
    def showing(self, maps: torch.Tensor | None) -> Iterator[None]:
        self._maps = maps
        try:
            yield
        finally:
            self._maps = None
