"""The network: a small convolutional encoder-decoder with a soft-argmax head.

Input: RGB frames (B, 3, H, W) in [0, 1], H and W multiples of 8 (trained at 64x64). Output: per joint
a heatmap at stride 4 whose softmax-weighted mean cell centre is the joint's pixel position
(integral regression), so positions are sub-pixel although the map is coarse.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

STRIDE = 4


def _conv(in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class KeypointNet(nn.Module):
    """About 0.24 M parameters (under 1 MB), ~45 M multiply-adds per 64x64 frame."""

    def __init__(self, num_joints: int, width: int = 32) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.width = width
        self.stem = nn.Sequential(_conv(3, 24), _conv(24, width, stride=2))
        self.mid = nn.Sequential(
            _conv(width, 2 * width, stride=2),
            _conv(2 * width, 2 * width),
            _conv(2 * width, 2 * width, dilation=2),
        )
        self.low = nn.Sequential(_conv(2 * width, 3 * width, stride=2), _conv(3 * width, 3 * width))
        # 1x1 fusion: the 3x3 here was the costliest layer and bought little accuracy per second.
        self.fuse = nn.Sequential(
            nn.Conv2d(5 * width, 2 * width, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True)
        )
        self.head = nn.Conv2d(2 * width, num_joints, 1)

    def heatmap_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, J, H/4, W/4) logits."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[2] % 8 or images.shape[3] % 8:
            raise ValueError(f"image height and width must be multiples of 8, got {tuple(images.shape[2:])}")
        features = self.mid(self.stem(images - 0.5))
        context = nn.functional.interpolate(self.low(features), scale_factor=2, mode="nearest")
        return self.head(self.fuse(torch.cat([features, context], dim=1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> joint positions (B, J, 2), pixel x, y (pixel centres at +0.5)."""
        return soft_argmax(self.heatmap_logits(images))


def soft_argmax(logits: torch.Tensor) -> torch.Tensor:
    """(B, J, h, w) logits at stride STRIDE -> expected cell centre (B, J, 2) in input pixels."""
    _, _, height, width = logits.shape
    probabilities = rearrange(logits, "b j h w -> b j (h w)").softmax(dim=-1)
    ys = (torch.arange(height, device=logits.device, dtype=logits.dtype) + 0.5) * STRIDE
    xs = (torch.arange(width, device=logits.device, dtype=logits.dtype) + 0.5) * STRIDE
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    centres = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1)  # (h*w, 2)
    return probabilities @ centres
