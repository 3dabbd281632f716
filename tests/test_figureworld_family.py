"""FigureWorld's motion family: clips from rest, a per-frame step cap, parameters in the sidecar, and
no family clip near a held-out action."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from flashcli.figureworld import ACTIONS, JOINT_NAMES, render_clip, write_clip
from flashcli.figureworld.actions.base import rest_pose
from flashcli.figureworld.family import (
    CANONICAL_VARIATION,
    DOFS,
    GROUPS,
    HELDOUT_MARGIN,
    RANGES,
    STEP_CAP,
    MotionParams,
    canonical_joints,
    family_action,
    family_signature,
    kind,
    motion_distance,
    motion_signature,
    nearest_heldout,
    render_family_clip,
    sample_family_motion,
    sample_motion,
)

FPS, FRAMES = 8, 9  # the timing of the gate's pretraining clips (scripts/tiny_gate.py)
DRAWS = 200


@pytest.fixture(scope="module")
def family_draws() -> list[tuple[MotionParams, np.ndarray]]:
    """200 family motions as pretraining draws them (clear of the held-out actions), each with its
    signature (canonical body, front camera)."""
    rng = np.random.default_rng(2026)
    draws = [sample_family_motion(rng, fps=FPS, frames=FRAMES) for _ in range(DRAWS)]
    return [(p, family_signature(p, fps=FPS, frames=FRAMES)) for p in draws]


def _raw_draws(count: int, seed: int = 7) -> list[MotionParams]:
    rng = np.random.default_rng(seed)
    return [sample_motion(rng, fps=FPS, frames=FRAMES) for _ in range(count)]


@pytest.mark.slow
def test_no_family_clip_comes_within_the_margin_of_a_heldout_action(
    family_draws: list[tuple[MotionParams, np.ndarray]],
) -> None:
    closest = min(nearest_heldout(sig, fps=FPS) for _, sig in family_draws)
    assert closest[0] >= HELDOUT_MARGIN, f"a family clip is {closest[0]:.3f} from {closest[1]}"


def test_motions_like_heldout_actions_are_inside_the_margin() -> None:
    """The exclusion has teeth: a bow or a jumping jack written as a family motion is caught."""
    bow = MotionParams(
        groups=("torso",),
        keys=(((1.1, 0.0, 0.0),),),
        moves=(0.7, 0.7),
        holds=(0.5,),
        start_hold=0.0,
        returns=True,
        repeats=1,
        speed=1.0,
        amplitude=1.0,
    )
    arms_up = (0.1, 2.7, 0.3, 0.0, 0.0)
    legs_apart = (0.0, 0.35, 0.08, 0.0)
    jack = MotionParams(
        groups=("left_arm", "right_arm", "left_leg", "right_leg"),
        keys=((arms_up, arms_up, legs_apart, legs_apart),),
        moves=(1.0, 1.0),
        holds=(0.0,),
        start_hold=0.0,
        returns=True,
        repeats=1,
        speed=1.0,
        amplitude=1.0,
    )
    for params, name in ((bow, "bow"), (jack, "jumping_jack")):
        distance, nearest = nearest_heldout(family_signature(params, fps=FPS, frames=FRAMES), fps=FPS)
        assert distance < HELDOUT_MARGIN and nearest == name


def test_family_clips_start_from_rest() -> None:
    for params in _raw_draws(10):
        for handed in (1.0, -1.0):
            v = replace(CANONICAL_VARIATION, handed=handed, arm_rest=0.2, lean=0.05, head_tilt=0.06)
            assert family_action(params).frame(0.0, v, sway=False).pose == rest_pose(v)
    # Two different motions with the same seed: the same person, standing the same way at frame 0.
    a, b = _raw_draws(2, seed=11)
    clip_a = render_clip(family_action(a), 5, size=48, frames=FRAMES, fps=FPS)
    clip_b = render_clip(family_action(b), 5, size=48, frames=FRAMES, fps=FPS)
    assert np.array_equal(clip_a.joints[0], clip_b.joints[0])
    assert np.array_equal(clip_a.frames[0], clip_b.frames[0])
    assert not np.array_equal(clip_a.joints, clip_b.joints)


@pytest.mark.slow
def test_no_joint_moves_more_than_the_step_cap_between_frames(
    family_draws: list[tuple[MotionParams, np.ndarray]],
) -> None:
    """In body heights per frame: on the canonical figure, and on rendered clips (other bodies, views
    and rest poses, and the sway every clip has)."""
    for _, sig in family_draws:
        assert np.linalg.norm(np.diff(sig, axis=0), axis=2).max() <= STEP_CAP
    for seed, (params, _) in enumerate(family_draws[:10]):
        clip = render_clip(family_action(params), seed, size=48, frames=FRAMES, fps=FPS)
        scale = float(clip.meta["camera"]["scale"])  # type: ignore[index]
        steps = np.linalg.norm(np.diff(clip.joints.astype(np.float64), axis=0), axis=2) / scale
        assert steps.max() <= STEP_CAP, f"draw {seed} moves a joint {steps.max():.3f} body heights in a frame"
    # The cap is per frame at the clip's own fps: a higher frame rate gets proportionally slower moves.
    fast = sample_motion(np.random.default_rng(3), fps=24, frames=FRAMES)
    joints = canonical_joints(family_action(fast), CANONICAL_VARIATION, fps=24, frames=FRAMES)
    assert np.linalg.norm(np.diff(joints, axis=0), axis=2).max() <= STEP_CAP


@pytest.mark.slow
def test_the_family_covers_every_limb_group(family_draws: list[tuple[MotionParams, np.ndarray]]) -> None:
    """Every group moves in some clips, and there it really moves: its end joint leaves its place
    relative to the joint it hangs from."""
    assert any(len(p.groups) >= 3 for p, _ in family_draws)
    for params, _ in family_draws:  # key poses stay within the skeleton's anatomical ranges
        for key in params.keys:
            for group, values in zip(params.groups, key, strict=True):
                ranges = RANGES[kind(group)]
                names = DOFS[kind(group)]
                assert all(ranges[n][0] <= x <= ranges[n][1] for n, x in zip(names, values, strict=True))
    moving = {"left_arm": ("l_hand", "l_shoulder"), "right_arm": ("r_hand", "r_shoulder")}
    moving |= {"left_leg": ("l_ankle", "l_hip"), "right_leg": ("r_ankle", "r_hip")}
    moving |= {"torso": ("neck", "pelvis"), "head": ("head", "neck")}
    assert set(moving) == set(GROUPS)
    for group, (end, root) in moving.items():
        relative = [
            sig[:, JOINT_NAMES.index(end)] - sig[:, JOINT_NAMES.index(root)]
            for p, sig in family_draws
            if group in p.groups
        ]
        assert len(relative) >= 20, group
        assert max(float(np.abs(r).max()) for r in relative) > 0.05, group


def test_motion_parameters_round_trip_through_the_json_sidecar(tmp_path: Path) -> None:
    params = _raw_draws(1, seed=5)[0]
    assert MotionParams.from_dict(json.loads(json.dumps(params.as_dict()))) == params
    clip = render_clip(family_action(params), 3, size=32, frames=5, fps=FPS)
    write_clip(clip, tmp_path, "family_3", mp4=False, png=False)
    sidecar = json.loads((tmp_path / "family_3.json").read_text())
    assert sidecar["action"] == "family"
    assert MotionParams.from_dict(sidecar["motion"]) == params
    assert np.asarray(sidecar["joints"]["xy"]).shape == (5, len(JOINT_NAMES), 2)
    # A named action's clip carries no motion entry.
    assert "motion" not in render_clip("wave", 3, size=32, frames=2).meta


def test_the_same_seed_gives_the_same_family_clip() -> None:
    a = render_family_clip(21, size=48, frames=FRAMES, fps=FPS)
    b = render_family_clip(21, size=48, frames=FRAMES, fps=FPS)
    c = render_family_clip(22, size=48, frames=FRAMES, fps=FPS)
    assert a.frames.tobytes() == b.frames.tobytes() and a.meta == b.meta
    assert a.meta["motion"] != c.meta["motion"]


def test_render_clip_takes_an_action_definition_as_well_as_a_name() -> None:
    by_name = render_clip("wave", 4, size=48, frames=3)
    by_definition = render_clip(ACTIONS["wave"], 4, size=48, frames=3)
    assert by_name.frames.tobytes() == by_definition.frames.tobytes() and by_name.meta == by_definition.meta
    with pytest.raises(ValueError, match="unknown action"):
        render_clip("no_such_action", 4, size=48, frames=3)


def _signature(action: str, **variation: float) -> np.ndarray:
    v = replace(CANONICAL_VARIATION, **variation)
    return motion_signature(canonical_joints(ACTIONS[action], v, fps=FPS, frames=FRAMES), 1.0)


def test_motion_distance_ignores_size_handedness_and_speed_but_not_the_motion() -> None:
    base = _signature("side_bend")
    in_pixels = (
        canonical_joints(ACTIONS["side_bend"], CANONICAL_VARIATION, fps=FPS, frames=FRAMES) * 57.0 + 9.0
    )
    assert np.allclose(motion_signature(in_pixels, 57.0), base)
    assert motion_distance(base, base) == pytest.approx(0.0, abs=1e-6)
    assert motion_distance(base, _signature("side_bend", handed=-1.0)) == pytest.approx(0.0, abs=1e-6)
    assert motion_distance(base, np.zeros_like(base)) == pytest.approx(1.0)
    squat = _signature("squat")
    assert motion_distance(base, squat) > 0.8
    assert motion_distance(base, _signature("side_bend", speed=0.85)) < 0.25 * motion_distance(base, squat)
