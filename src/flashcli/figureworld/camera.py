"""Orthographic camera: world (body heights, y up, z towards the camera) to pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    scale: float  # pixels per body height
    origin_x: float  # pixel x of the world origin (the pelvis column)
    ground_y: float  # pixel y of the floor under the world origin
    elevation: float = 0.12  # radians the camera looks down; shows table tops and foot placement

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) world points -> (N, 2) pixel positions and (N,) depth (larger is nearer).

        Depth is the world z alone: the slight downward look would otherwise make high parts (the
        head) sort in front of low ones, which is wrong for a figure's own limbs.
        """
        c, s = np.cos(self.elevation), np.sin(self.elevation)
        x = self.origin_x + self.scale * points[:, 0]
        y = self.ground_y - self.scale * (points[:, 1] * c - points[:, 2] * s)
        return np.stack([x, y], axis=1), points[:, 2].copy()

    def shifted(self, dx: float, dy: float) -> Camera:
        return Camera(self.scale, self.origin_x + dx, self.ground_y + dy, self.elevation)
