"""Strong augmentation: new look, same motion and geometry, consistent over time, seeded."""

from __future__ import annotations

import pytest
import torch

from flashcli.core.augment import StrongAugmentConfig, strong_augment

FRAMES, SIZE = 6, 24
NO_BLUR = StrongAugmentConfig(p_blur=0.0)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def moving_square_clip(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A textured background and a two-tone square that moves right one pixel per frame, with its mask."""
    rows = torch.linspace(-1, 1, SIZE).view(SIZE, 1)
    cols = torch.linspace(-1, 1, SIZE).view(1, SIZE)
    background = torch.stack(
        [0.5 * rows.expand(SIZE, SIZE), 0.5 * cols.expand(SIZE, SIZE), 0.3 * rows * cols]
    )
    video = background.view(1, 3, 1, SIZE, SIZE).repeat(batch, 1, FRAMES, 1, 1)
    mask = torch.zeros(batch, 1, FRAMES, SIZE, SIZE)
    for frame in range(FRAMES):
        left = 4 + frame
        video[:, :, frame, 6:16, left : left + 8] = torch.tensor([0.9, -0.6, 0.2]).view(3, 1, 1)
        video[:, :, frame, 11:16, left : left + 8] = torch.tensor([-0.8, 0.7, 0.6]).view(3, 1, 1)
        mask[:, :, frame, 6:16, left : left + 8] = 1
    return video, mask


def random_clip(seed: int, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, FRAMES, SIZE, SIZE, generator=seeded(seed)) * 2 - 1


def changes_over_time(video: torch.Tensor) -> torch.Tensor:
    """(B, F-1, H, W) bool: where a pixel differs from the previous frame."""
    return (video[:, :, 1:] - video[:, :, :-1]).abs().amax(dim=1) > 1e-5


def test_keeps_shape_dtype_range_and_input() -> None:
    video = random_clip(0)
    before = video.clone()
    out = strong_augment(video, seeded(1))
    assert out.shape == video.shape and out.dtype == video.dtype
    assert out.min() >= -1 and out.max() <= 1
    assert torch.equal(video, before)
    half = strong_augment(video.to(torch.bfloat16), seeded(1))
    assert half.dtype == torch.bfloat16


@pytest.mark.parametrize("seed", range(6))
def test_changes_appearance_strongly(seed: int) -> None:
    video, mask = moving_square_clip()
    for masked in (None, mask):
        out = strong_augment(video, seeded(seed), masked)
        per_clip = (out - video).abs().mean(dim=(1, 2, 3, 4))
        assert per_clip.min() > 0.25, per_clip  # a quarter of the [-1, 1] range, on average


@pytest.mark.parametrize("with_mask", [False, True])
def test_static_video_stays_static(with_mask: bool) -> None:
    frame = random_clip(3)[:, :, :1]
    video = frame.repeat(1, 1, FRAMES, 1, 1)
    mask = (torch.rand(2, 1, 1, SIZE, SIZE, generator=seeded(4)) > 0.5).float().repeat(1, 1, FRAMES, 1, 1)
    for seed in range(5):
        out = strong_augment(video, seeded(seed), mask if with_mask else None)
        assert torch.allclose(out, out[:, :, :1].expand_as(out), atol=1e-6)


@pytest.mark.parametrize("with_mask", [False, True])
def test_geometry_and_motion_stay_where_they_were(with_mask: bool) -> None:
    video, mask = moving_square_clip()
    moving_in_x = changes_over_time(video)
    for seed in range(8):
        out = strong_augment(video, seeded(seed), mask if with_mask else None, config=NO_BLUR)
        moving_in_aug = changes_over_time(out)
        # Nothing moves in x' where nothing moved in x, and the motion of x survives in x'.
        assert not (moving_in_aug & ~moving_in_x).any()
        assert (moving_in_aug & moving_in_x).sum() >= 0.8 * moving_in_x.sum()
        if with_mask:
            # The figure's silhouette is unchanged: the background replacement stops at the mask edge.
            inside = out.masked_select(mask.bool().expand_as(out)).view(2, 3, -1)
            outside = out.masked_select(~mask.bool().expand_as(out)).view(2, 3, -1)
            assert ((inside.mean(-1) - outside.mean(-1)).abs().amax(dim=1) > 0.05).all()


def test_blur_softens_but_does_not_move_motion() -> None:
    video, _ = moving_square_clip()
    blur_only = StrongAugmentConfig(p_blur=1.0, blur_sigma=(1.0, 1.0))
    out = strong_augment(video, seeded(0), config=blur_only)
    moving_in_x = changes_over_time(video).float()
    # Motion can spread by the kernel radius (2 px at sigma 1), never further.
    near_motion = torch.nn.functional.max_pool2d(moving_in_x, kernel_size=5, stride=1, padding=2) > 0
    assert not (changes_over_time(out) & ~near_motion).any()


def test_seeded_and_deterministic() -> None:
    video, mask = moving_square_clip()
    first = strong_augment(video, seeded(7), mask)
    assert torch.equal(first, strong_augment(video, seeded(7), mask))
    assert not torch.allclose(first, strong_augment(video, seeded(8), mask))
    # Clips of one batch get different augmentations.
    assert not torch.allclose(first[0], first[1])


def test_bad_inputs_raise() -> None:
    video, mask = moving_square_clip()
    with pytest.raises(ValueError, match="shape"):
        strong_augment(video[:, :2], seeded(0))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        strong_augment(video * 3, seeded(0))
    with pytest.raises(ValueError, match="mask"):
        strong_augment(video, seeded(0), mask[:, :, :2])
    with pytest.raises(ValueError, match="0 .background. or 1"):
        strong_augment(video, seeded(0), mask * 0.5)
