"""FigureWorld: determinism, ground truth that matches the pixels, the action library and the splits."""

from __future__ import annotations

import numpy as np
import pytest

from flashcli.figureworld import (
    ACTIONS,
    CATEGORICAL_SPLITS,
    CONTINUOUS_SPLITS,
    HELDOUT_ACTIONS,
    JOINT_NAMES,
    PRETRAIN_ACTIONS,
    in_split,
    render_clip,
)
from flashcli.figureworld.appearance import Appearance, sample_appearance
from flashcli.figureworld.raster import Canvas, Paint, draw_capsule_union


def test_same_arguments_give_the_same_bytes() -> None:
    a = render_clip("weld", 7, size=64, frames=5, camera_shake=True)
    b = render_clip("weld", 7, size=64, frames=5, camera_shake=True)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert a.joints.tobytes() == b.joints.tobytes()
    assert np.array_equal(a.visible, b.visible) and np.array_equal(a.mask, b.mask)
    assert a.meta == b.meta


def test_a_fixed_phase_starts_the_action_at_its_cycle_start_and_keeps_the_seeds_look() -> None:
    """Users record an action from rest; `phase=0` renders clips that way (the look stays the seed's)."""
    free = render_clip("lunge", 3, size=64, frames=17)
    rest = render_clip("lunge", 3, size=64, frames=17, phase=0.0)
    assert rest.meta["appearance"] == free.meta["appearance"]
    assert rest.meta["variation"]["phase"] == 0.0
    assert free.meta["variation"]["phase"] != 0.0
    names = list(rest.meta["joint_names"])
    feet = [names.index(n) for n in names if "ankle" in n]
    assert len(feet) == 2
    stride = np.abs(rest.joints[:, feet[0], 0] - rest.joints[:, feet[1], 0])
    # Standing at frame 0, stepping out later in the clip.
    assert stride[0] < 0.5 * stride.max()
    with pytest.raises(ValueError, match="phase"):
        render_clip("lunge", 3, size=64, frames=3, phase=1.0)


def test_different_seeds_give_different_clips() -> None:
    a = render_clip("squat", 1, size=64, frames=3)
    b = render_clip("squat", 2, size=64, frames=3)
    assert not np.array_equal(a.frames, b.frames)
    assert a.meta["appearance"] != b.meta["appearance"]


def test_output_shapes_and_types() -> None:
    clip = render_clip("clap", 0, size=(48, 80), frames=4, fps=12)
    assert clip.frames.shape == (4, 48, 80, 3) and clip.frames.dtype == np.uint8
    assert clip.joints.shape == (4, len(JOINT_NAMES), 2) and clip.joints.dtype == np.float32
    assert clip.visible.shape == (4, len(JOINT_NAMES)) and clip.visible.dtype == bool
    assert clip.mask.shape == (4, 48, 80) and clip.mask.dtype == bool
    assert clip.meta["action"] == "clap" and clip.meta["seed"] == 0 and clip.meta["fps"] == 12.0
    assert len(JOINT_NAMES) >= 15


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_action_renders_a_moving_figure(action: str) -> None:
    clip = render_clip(action, 3, size=64, frames=6, framing="full")
    mask_fraction = clip.mask.mean(axis=(1, 2))
    assert (mask_fraction > 0.01).all() and (mask_fraction < 0.6).all()
    # the figure moves: some joint travels visibly (idle, the quietest, moves ~1 px at this size)
    travel = np.abs(clip.joints - clip.joints[0]).max()
    assert travel > 0.5, f"{action} barely moves ({travel:.2f} px)"
    assert clip.visible.mean() > 0.6


def test_close_up_framing_makes_the_figure_bigger() -> None:
    full = render_clip("weld", 5, size=64, frames=1, framing="full")
    close = render_clip("weld", 5, size=64, frames=1, framing="close_up")
    assert close.mask.mean() > 1.5 * full.mask.mean()
    assert close.meta["framing"] == "close_up" and full.meta["framing"] == "full"


def _near_colour(pixel: np.ndarray, colour: tuple[float, float, float]) -> bool:
    """The pixel is the colour under shading: the same hue, 0.5-1.2 times as bright."""
    ratios = pixel.astype(np.float64) / np.maximum(np.asarray(colour), 1.0)
    return bool(ratios.max() - ratios.min() < 0.2 and 0.5 < ratios.mean() < 1.2)


@pytest.mark.parametrize("action", ["wave", "clap", "jumping_jack", "wave_wrist", "arm_circles"])
def test_visible_joints_lie_on_the_drawn_figure(action: str) -> None:
    checked_hands = 0
    for seed in range(8):
        clip = render_clip(action, seed, size=128, frames=3, framing="full")
        look = Appearance(**clip.meta["appearance"])  # type: ignore[arg-type]
        xy = np.floor(clip.joints).astype(int)
        for f in range(len(clip.frames)):
            for j, name in enumerate(JOINT_NAMES):
                if not clip.visible[f, j]:
                    continue
                x, y = xy[f, j]
                assert clip.mask[f, y, x], f"visible {name} off the figure mask (seed {seed}, frame {f})"
                if name.endswith(("_wrist", "_hand")) and look.top_pattern in ("solid", "patch"):
                    pixel = clip.frames[f, y, x]
                    sleeve = look.top_rgb() if look.long_sleeves else look.skin_rgb()
                    assert _near_colour(pixel, look.skin_rgb()) or _near_colour(pixel, sleeve), (
                        f"{name} pixel {pixel} is neither skin nor sleeve (seed {seed}, frame {f})"
                    )
                    checked_hands += 1
    assert checked_hands > 20  # the colour check really ran


def test_joints_hidden_behind_the_body_are_not_visible() -> None:
    hidden = 0
    for seed in range(4):
        clip = render_clip("bow", seed, size=96, frames=4, framing="full")  # side views
        h, w = clip.frames.shape[1:3]
        x, y = clip.joints[..., 0], clip.joints[..., 1]
        in_frame = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        hidden += int((in_frame & ~clip.visible).sum())
    assert hidden > 0, "a side view always hides some far-side joint behind the body"


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Grow a boolean (H, W) mask by one pixel in every direction (anti-aliased edges)."""
    grown = mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            grown |= np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    return grown


@pytest.mark.parametrize("action", ["jumping_jack", "throw", "lift_box"])
def test_the_mask_covers_everything_that_moves(action: str) -> None:
    # without camera shake the background is static, so pixels outside the figure never change
    clip = render_clip(action, 2, size=64, frames=6, framing="full")
    for f in range(1, len(clip.frames)):
        figure = _dilate(clip.mask[0] | clip.mask[f])
        changed = np.any(clip.frames[f] != clip.frames[0], axis=-1)
        assert changed.any()
        assert not (changed & ~figure).any(), f"frame {f} changes outside the mask"


def test_joints_outside_the_frame_are_not_visible() -> None:
    clip = render_clip("reach_up", 4, size=64, frames=8, framing="close_up")
    h, w = clip.frames.shape[1:3]
    outside = (clip.joints[..., 0] < 0) | (clip.joints[..., 0] >= w) | (clip.joints[..., 1] < 0)
    outside |= clip.joints[..., 1] >= h
    assert outside.any(), "close-up should crop the legs"
    assert not clip.visible[outside].any()


def test_camera_shake_moves_the_whole_picture_by_whole_pixels() -> None:
    still = render_clip("idle", 11, size=96, frames=8)
    shaky = render_clip("idle", 11, size=96, frames=8, camera_shake=True)
    offset = shaky.joints - still.joints
    assert np.abs(offset).max() >= 1.0
    assert np.allclose(offset, np.round(offset), atol=1e-3)
    # every joint of a frame moves by the same amount
    assert np.allclose(offset, offset[:, :1, :], atol=1e-3)


def test_splits_partition_the_actions() -> None:
    assert len(ACTIONS) >= 24
    assert len(HELDOUT_ACTIONS) >= 8
    assert not set(HELDOUT_ACTIONS) & set(PRETRAIN_ACTIONS)
    assert set(HELDOUT_ACTIONS) | set(PRETRAIN_ACTIONS) == set(ACTIONS)
    assert {"weld", "tighten_screw", "typing"} <= set(HELDOUT_ACTIONS)
    scales = {ACTIONS[name].scale for name in HELDOUT_ACTIONS}
    assert scales == {"large", "delicate"}


def test_seen_and_unseen_appearance_ranges_are_disjoint() -> None:
    for name, splits in CONTINUOUS_SPLITS.items():
        for lo_s, hi_s in splits["seen"]:
            for lo_u, hi_u in splits["unseen"]:
                assert hi_s <= lo_u or hi_u <= lo_s, f"{name} ranges overlap"
    for name, splits in CATEGORICAL_SPLITS.items():
        assert not set(splits["seen"]) & set(splits["unseen"]), f"{name} values overlap"


@pytest.mark.parametrize("split", ["seen", "unseen"])
def test_sampled_appearances_stay_in_their_split(split: str) -> None:
    rng = np.random.default_rng(0)
    other = "unseen" if split == "seen" else "seen"
    for _ in range(300):
        look = sample_appearance(rng, split)  # type: ignore[arg-type]
        for name in (*CONTINUOUS_SPLITS, *CATEGORICAL_SPLITS):
            value = getattr(look, name)
            assert in_split(name, value, split) and not in_split(name, value, other), (name, value)


def test_render_clip_uses_the_unseen_range_when_asked() -> None:
    clip = render_clip("weld", 3, size=32, frames=1, appearance="unseen")
    look = clip.meta["appearance"]
    assert look["split"] == "unseen"  # type: ignore[index]
    for name in (*CONTINUOUS_SPLITS, *CATEGORICAL_SPLITS):
        assert in_split(name, look[name], "unseen")  # type: ignore[index]


def test_clips_of_one_action_vary() -> None:
    clips = [render_clip("hammer", seed, size=32, frames=1) for seed in range(16)]
    assert len({str(c.meta["variation"]) for c in clips}) == 16
    assert {c.meta["variation"]["handedness"] for c in clips} == {"left", "right"}  # type: ignore[index]
    speeds = [c.meta["variation"]["speed"] for c in clips]  # type: ignore[index]
    assert max(speeds) - min(speeds) > 0.1
    assert len({c.frames.tobytes() for c in clips}) == 16


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "moonwalk"}, "unknown action"),
        ({"frames": 0}, "frames"),
        ({"appearance": "sometimes"}, "appearance"),
        ({"size": 8}, "size"),
        ({"framing": "wide"}, "framing"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"action": "squat", "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        render_clip(**arguments)  # type: ignore[arg-type]


def test_shading_never_turns_colours_negative_or_wraps() -> None:
    # a torso's shoulder capsules reach far past its spine; shading there must stay a dark shade of
    # the paint, never a negative value that wraps around in uint8
    canvas = Canvas(np.zeros((64, 64, 3), dtype=np.float32))
    spine = (np.array([32.0, 14.0]), np.array([32.0, 50.0]), 5.0, 4.0)
    shoulders = (np.array([12.0, 16.0]), np.array([52.0, 16.0]), 4.0, 4.0)
    draw_capsule_union(canvas, [spine, shoulders], Paint((200.0, 60.0, 120.0), shading=0.35), owner=1)
    drawn = canvas.owner == 1
    frame = canvas.to_uint8()
    assert drawn[16, 14] and drawn[16, 50]  # the shoulder tips are part of the shape
    assert frame[drawn].min() >= 0.3 * 60 - 1
    red = frame[drawn][:, 0].astype(int)
    assert red.max() <= 230 and red.min() >= 0.4 * 200 - 1
