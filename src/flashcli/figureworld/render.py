"""render_clip: one seeded, deterministic clip of a figure performing an action, with ground truth."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from flashcli.figureworld.actions import ACTIONS
from flashcli.figureworld.actions.base import ActionDef, Variation
from flashcli.figureworld.appearance import Appearance, AppearanceSplit, World, sample_appearance
from flashcli.figureworld.background import render_background
from flashcli.figureworld.camera import Camera
from flashcli.figureworld.figure import PART_INDEX, FigurePaints, figure_parts, joint_visibility
from flashcli.figureworld.props import bench_parts, tool_parts
from flashcli.figureworld.raster import Canvas, Layer
from flashcli.figureworld.skeleton import JOINT_NAMES, Body, forward_kinematics

GENERATOR_VERSION = 1  # bump when the same arguments would render different pixels


@dataclass(frozen=True)
class Clip:
    """A rendered clip and its ground truth."""

    frames: np.ndarray  # uint8 (F, H, W, 3)
    joints: np.ndarray  # float32 (F, J, 2) pixel x, y of JOINT_NAMES (pixel centres at +0.5)
    visible: np.ndarray  # bool (F, J) inside the frame and not hidden behind another part
    mask: np.ndarray  # bool (F, H, W) figure and held-tool pixels
    meta: dict[str, object]  # JSON-serialisable description of the clip


def _size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        height = width = size
    else:
        height, width = (int(v) for v in size)
    if height < 16 or width < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size!r}")
    return height, width


def _rng(action: str, seed: int, purpose: str) -> np.random.Generator:
    """Independent streams per purpose so adding a parameter to one does not reshuffle the others."""
    return np.random.default_rng(
        [seed & 0xFFFFFFFF, zlib.crc32(action.encode()), zlib.crc32(purpose.encode())]
    )


def _definition(action: str | ActionDef) -> ActionDef:
    """A named action from the library, or a ready ActionDef (a family motion) as it is."""
    if isinstance(action, ActionDef):
        return action
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known actions: {', '.join(sorted(ACTIONS))}")
    return ACTIONS[action]


def _shake_offsets(rng: np.random.Generator, frames: int, amplitude: float) -> np.ndarray:
    """Smooth integer camera jitter (F, 2), at most amplitude pixels from the start."""
    steps = rng.normal(0.0, amplitude * 0.5, size=(frames, 2))
    walk = np.cumsum(steps, axis=0)
    walk -= walk[0]
    return np.clip(np.round(walk), -amplitude, amplitude).astype(np.int64)


def _camera(look: Appearance, framing: str, height: int, width: int) -> Camera:
    """Full: the whole figure stands in frame. Close-up: waist up, for hand work at a bench."""
    if framing == "full":
        return Camera(look.height_fraction * height, look.centre_x * width, look.ground_y * height)
    scale = height * (1.05 + 2.2 * (look.height_fraction - 0.62))
    top = height * (0.04 + 0.5 * (look.ground_y - 0.88))
    return Camera(scale, look.centre_x * width, top + scale)


def render_clip(
    action: str | ActionDef,
    seed: int,
    *,
    size: int | tuple[int, int] = 128,
    frames: int = 17,
    fps: float = 8,
    appearance: AppearanceSplit = "seen",
    camera_shake: bool = False,
    framing: Literal["full", "close_up"] | None = None,
    phase: float | None = None,
    world: World = "standard",
) -> Clip:
    """Render `frames` frames of a figure doing `action`; the same arguments give the same bytes.

    action is a name in ACTIONS or an ActionDef (a generated motion: family.family_action(params)).
    size is an int (square) or (height, width). appearance picks the seen or unseen range of looks.
    framing: "full" shows the whole figure; "close_up" frames hand work from the waist up; None lets
    the seed choose (close-ups only for actions that allow them). phase: where in its cycle the
    action starts, in [0, 1) (0 is the cycle's start, e.g. standing before a lunge, as people usually
    record an action); None lets the seed choose. world: "standard" or "simple" (flat looks, figures
    filling the frame; see appearance.World). Everything else about the clip stays the seed's.
    """
    definition = _definition(action)
    action = definition.name  # seeds and meta go by name; every family motion is "family"
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if appearance not in ("seen", "unseen"):
        raise ValueError(f"appearance must be 'seen' or 'unseen', not {appearance!r}")
    if framing not in (None, "full", "close_up"):
        raise ValueError(f"framing must be 'full', 'close_up' or None, not {framing!r}")
    if phase is not None and not 0.0 <= phase < 1.0:
        raise ValueError(f"phase must be in [0, 1), got {phase}")
    height, width = _size_hw(size)

    look = sample_appearance(_rng(action, seed, f"appearance-{appearance}"), appearance, world)
    variation = Variation.sample(_rng(action, seed, "variation"))
    if phase is not None:
        variation = replace(variation, phase=float(phase))
    body = Body.build(look.build, look.leg_ratio, look.head_ratio, look.shoulder_ratio)
    if framing is None and world == "simple":
        framing = "full"  # the simple world frames the whole figure large; close-ups are for later rungs
    if framing is None:
        close = definition.close_up and _rng(action, seed, "framing").random() < 0.5
        framing = "close_up" if close else "full"
    camera = _camera(look, framing, height, width)
    yaw = definition.camera_yaw(look.view_yaw)
    paints = FigurePaints.from_appearance(look, camera.scale, _rng(action, seed, "texture"))
    shake_amplitude = max(1, round(0.015 * max(height, width))) if camera_shake else 0
    background = render_background(look, height, width, shake_amplitude, _rng(action, seed, "background"))
    shake = _shake_offsets(_rng(action, seed, "shake"), frames, shake_amplitude)

    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    joints = np.empty((frames, len(JOINT_NAMES), 2), dtype=np.float32)
    visible = np.empty((frames, len(JOINT_NAMES)), dtype=bool)
    mask = np.empty((frames, height, width), dtype=bool)
    bench_layers: dict[tuple[object, ...], Layer | None] = {}
    canvas: Canvas | None = None
    for i in range(frames):
        frame = definition.frame(i / fps, variation)
        dx, dy = (int(v) for v in shake[i])
        m = shake_amplitude
        view = background[m + dy : m + dy + height, m + dx : m + dx + width]
        if canvas is None:
            canvas = Canvas(view)
        else:
            canvas.reset(view)
        cam = camera.shifted(-dx, -dy)
        kin = forward_kinematics(frame.pose, body, yaw)
        parts, pts, depth = figure_parts(canvas, kin, body, look, paints, cam)
        hand_depth = next(p.depth for p in parts if p.name == f"{frame.props.tool_hand}_hand")
        parts += tool_parts(canvas, kin, frame.pose, frame.props, body, cam, hand_depth)
        parts += bench_parts(canvas, kin, frame.pose, frame.props, cam, bench_layers)
        for part in sorted(parts, key=lambda p: p.depth):
            part.draw()
        canvas.write_uint8(video[i])
        joints[i] = pts
        visible[i] = joint_visibility(canvas, pts)
        mask[i] = canvas.figure_mask()

    meta: dict[str, object] = {
        "generator": "flashcli.figureworld",
        "generator_version": GENERATOR_VERSION,
        "action": action,
        "action_scale": definition.scale,
        "seed": int(seed),
        "size": [height, width],
        "frames": frames,
        "fps": float(fps),
        "camera_shake": bool(camera_shake),
        "world": world,
        "framing": framing,
        "camera": {
            "yaw": yaw,
            "scale": camera.scale,
            "origin_x": camera.origin_x,
            "ground_y": camera.ground_y,
        },
        "appearance": look.as_dict(),
        "variation": variation.as_dict(),
        "joint_names": list(JOINT_NAMES),
        "part_names": list(PART_INDEX),
    }
    if definition.motion_params is not None:
        meta["motion"] = dict(definition.motion_params)
    return Clip(frames=video, joints=joints, visible=visible, mask=mask, meta=meta)
