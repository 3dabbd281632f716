"""The benchmark's scores (flashcli.lab.metrics) on inputs whose right answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flashcli.lab import metrics

NAMES = (
    "head",
    "neck",
    "pelvis",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hand",
    "r_hand",
)
MIRROR = [0, 1, 2, 6, 7, 8, 3, 4, 5, 10, 9]


def standing_pose() -> np.ndarray:
    """A front-facing body 40 px from head centre to ankles: trunk 5 + 15, legs 10 + 10."""
    return np.array(
        [
            [32, 10],  # head
            [32, 15],  # neck
            [32, 30],  # pelvis
            [28, 30],  # l_hip
            [28, 40],  # l_knee
            [28, 50],  # l_ankle
            [36, 30],  # r_hip
            [36, 40],  # r_knee
            [36, 50],  # r_ankle
            [24, 30],  # l_hand
            [40, 30],  # r_hand
        ],
        dtype=np.float64,
    )


def waving(frames: int, *, axis: int, speed: float = 1.0, phase: float = 0.0, amplitude: float = 8.0):
    """A standing body whose right hand swings along x (axis 0) or y (axis 1)."""
    poses = np.repeat(standing_pose()[None], frames, axis=0)
    t = np.arange(frames)
    poses[:, 10, axis] += amplitude * np.sin(speed * 2 * np.pi * t / frames + phase)
    return poses


# ----- pixels --------------------------------------------------------------------------------------


def test_psnr_is_infinite_for_identical_images_and_48db_for_an_off_by_one():
    image = np.full((8, 8, 3), 100, dtype=np.uint8)
    assert metrics.psnr(image, image) == math.inf
    assert metrics.psnr(image + 1, image) == pytest.approx(20 * math.log10(255), abs=1e-9)


def test_first_and_second_frame_psnr_read_against_the_photo():
    photo = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    video = np.stack([photo, np.clip(photo.astype(int) + 4, 0, 255).astype(np.uint8), photo])
    assert metrics.first_frame_psnr(video, photo) == math.inf
    assert 30 < metrics.frame1_psnr(video, photo) < 40
    with pytest.raises(ValueError, match="psnr needs equal shapes"):
        metrics.first_frame_psnr(video, photo[:8])


def moving_bar(frames: int, *, start_offset: int = 0) -> np.ndarray:
    """A white bar moving right one pixel per frame; start_offset shifts every frame after frame 0."""
    video = np.zeros((frames, 8, 32, 3), dtype=np.uint8)
    for index in range(frames):
        x = index + (start_offset if index > 0 else 0)
        video[index, :, x : x + 3] = 255
    return video


def test_transition_jump_is_one_for_steady_motion_and_large_when_frame_one_leaps():
    assert metrics.transition_jump(moving_bar(9)) == pytest.approx(1.0)
    assert metrics.transition_jump(moving_bar(9, start_offset=10)) > 1.9
    still = np.zeros((5, 4, 4, 3), dtype=np.uint8)
    assert math.isnan(metrics.transition_jump(still))
    with pytest.raises(ValueError, match="at least 3 frames"):
        metrics.transition_jump(still[:2])


def test_temporal_roughness_separates_constant_speed_from_flicker():
    ramp = np.stack([np.full((4, 4, 3), 10 * index, dtype=np.uint8) for index in range(10)])
    assert metrics.temporal_roughness(ramp) == pytest.approx(0.0)
    flicker = np.random.default_rng(1).integers(0, 256, (10, 16, 16, 3), dtype=np.uint8)
    assert metrics.temporal_roughness(flicker) > 1.2


# ----- joints --------------------------------------------------------------------------------------


def test_body_height_measures_head_to_ankle_and_ignores_bending():
    pose = standing_pose()
    assert metrics.body_height(pose, NAMES) == pytest.approx(40.0)
    squat = pose.copy()
    squat[[4, 7], 0] += 8  # knees forward, then the shins come back: bones keep their length
    squat[[4, 7], 1] -= 10 - math.sqrt(100 - 64)
    squat[[5, 8], 1] = squat[[4, 7], 1] + math.sqrt(100 - 64)
    squat[[5, 8], 0] = pose[[5, 8], 0]
    clip = np.stack([squat, pose])
    assert metrics.body_height(clip, NAMES) == pytest.approx(40.0)
    with pytest.raises(ValueError, match="body_height needs joints"):
        metrics.body_height(pose[:3], NAMES[:3])


def test_joint_error_is_a_percentage_of_body_height():
    true = waving(12, axis=1)
    shifted = true + np.array([2.0, 0.0])
    assert metrics.mean_joint_error(shifted, true, scale=40.0, align=False) == pytest.approx(5.0)
    assert metrics.pck(true + np.array([3.0, 0.0]), true, scale=40.0, threshold=0.1) == 1.0
    assert metrics.pck(true + np.array([5.0, 0.0]), true, scale=40.0, threshold=0.1) == 0.0


def test_invalid_joints_do_not_count():
    true = waving(8, axis=0)
    predicted = true.copy()
    predicted[:, 0] += 100.0  # the head is wildly off ...
    valid = np.ones(true.shape[:2], dtype=bool)
    valid[:, 0] = False  # ... but out of the picture, so it is not scored
    assert metrics.mean_joint_error(predicted, true, 40.0, valid) == pytest.approx(0.0)
    assert metrics.mean_joint_error(predicted, true, 40.0) > 10.0
    with pytest.raises(ValueError, match="no valid joints"):
        metrics.pck(predicted, true, 40.0, valid=np.zeros_like(valid))


def test_time_alignment_forgives_a_different_tempo_but_not_a_different_motion():
    true = waving(16, axis=0)
    late = np.concatenate([true[:1].repeat(3, axis=0), true[:-3]])  # 3 frames late, end cut off
    assert metrics.mean_joint_error(late, true, 40.0, align=False) > 1.0
    held_then_played = true[[0, 0, 0, *range(16)]]  # waits 2 frames, then the whole motion
    assert metrics.mean_joint_error(held_then_played, true, 40.0) == pytest.approx(0.0)
    assert metrics.pck(held_then_played, true, 40.0, threshold=0.01) == 1.0
    other = waving(16, axis=1)
    assert metrics.mean_joint_error(other, true, 40.0) > 1.0


def test_dtw_path_runs_corner_to_corner_monotonically():
    cost = np.random.default_rng(2).random((5, 7))
    rows, columns = metrics.dtw_path(cost)
    assert (rows[0], columns[0]) == (0, 0) and (rows[-1], columns[-1]) == (4, 6)
    assert np.all(np.diff(rows) >= 0) and np.all(np.diff(columns) >= 0)
    assert np.all(np.diff(rows) + np.diff(columns) >= 1)


def test_moving_joints_picks_the_waving_hand_only():
    moving = metrics.moving_joints(waving(12, axis=0), scale=40.0, threshold=0.1)
    assert moving.tolist() == [name == "r_hand" for name in NAMES]
    assert not metrics.moving_joints(waving(12, axis=0, amplitude=3.0), scale=40.0).any()


def test_joint_jitter_is_zero_for_straight_motion_and_grows_with_shaking():
    straight = np.cumsum(np.ones((10, 3, 2)), axis=0)
    assert metrics.joint_jitter(straight, 40.0) == pytest.approx(0.0)
    shaky = straight + np.random.default_rng(3).normal(0, 2, straight.shape)
    assert metrics.joint_jitter(shaky, 40.0) > 3.0


# ----- appearance ----------------------------------------------------------------------------------


def test_skeleton_mask_covers_the_bones_and_nothing_far_away():
    pose = standing_pose()
    mask = metrics.skeleton_mask(pose, (64, 64), bones=[(0, 1), (1, 2)], radius=2.0)
    assert mask[20, 32] and mask[10, 31]
    assert not mask[20, 40] and not mask[60, 32]


def test_appearance_drift_ignores_motion_and_sees_a_change_of_clothes():
    frame = np.zeros((32, 32, 3), dtype=np.uint8)
    frame[8:20, 8:14] = (200, 40, 40)  # a red shirt
    frame[4:8, 9:13] = (230, 190, 160)  # skin
    mask = frame.any(axis=-1)
    moved = np.roll(frame, 9, axis=1)
    assert metrics.appearance_drift(frame, mask, moved, moved.any(axis=-1)) == pytest.approx(0.0)
    recoloured = moved.copy()
    recoloured[8:20, 17:23] = (40, 40, 200)  # the shirt turned blue
    drift = metrics.appearance_drift(frame, mask, recoloured, recoloured.any(axis=-1))
    assert drift > 0.5
    with pytest.raises(ValueError, match="mask"):
        metrics.appearance_drift(frame, mask[:4], moved, mask)


# ----- action distinctness ---------------------------------------------------------------------------


def test_nearest_action_tells_waves_apart_across_speed_phase_body_and_hand():
    references = {
        "wave_sideways": [metrics.motion_signature(waving(17, axis=0, speed=s), 40.0) for s in (0.9, 1.1)],
        "wave_up_down": [metrics.motion_signature(waving(17, axis=1, speed=s), 40.0) for s in (0.9, 1.1)],
    }
    queries = []
    for speed, phase in ((1.0, 0.0), (1.2, 0.3), (0.8, -0.2)):
        for axis, label in ((0, "wave_sideways"), (1, "wave_up_down")):
            bigger = 1.5 * waving(17, axis=axis, speed=speed, phase=phase) + 7.0  # a larger body elsewhere
            queries.append((label, metrics.motion_signature(bigger, 60.0)))
    assert metrics.nearest_action_accuracy(queries, references) == 1.0
    swapped = [
        ("wave_up_down" if label == "wave_sideways" else "wave_sideways", sig) for label, sig in queries
    ]
    assert metrics.nearest_action_accuracy(swapped, references) == 0.0


def test_mirror_matching_recognises_the_same_action_done_with_the_other_hand():
    right = metrics.motion_signature(waving(17, axis=0), 40.0)
    left = metrics.mirror_signature(right, MIRROR)
    assert metrics.trajectory_distance(left, right) > 0.01  # one hand of 11 joints swings 0.2
    assert metrics.trajectory_distance(left, right, mirror=MIRROR) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="without references"):
        metrics.nearest_action_accuracy([("kick", right)], {"wave": [right]})


# ----- the shipped keypoint detector -----------------------------------------------------------------


def test_shipped_keypoint_detector_finds_the_joints_of_an_unseen_person_doing_a_heldout_action():
    from flashcli.figureworld import JOINT_NAMES, render_clip
    from flashcli.lab.keypoints.detector import load_detector

    clip = render_clip("saw", 123, size=64, frames=5, appearance="unseen", framing="full")
    joints = load_detector().detect(clip.frames)
    scale = metrics.body_height(clip.joints, JOINT_NAMES)
    assert joints.shape == clip.joints.shape
    assert metrics.mean_joint_error(joints, clip.joints, scale, align=False) < 12.0
    assert metrics.pck(joints, clip.joints, scale, 0.2, align=False) > 0.8
