"""Sampling: Euler integration is exact on straight flows; animate_photo keeps the photo as frame 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from core_helpers import TINY_FRAMES, moving_square_clip

from flashcli.core.flow import add_noise, sampling_sigmas, shift_sigmas
from flashcli.core.sampler import animate_photo, sample, sample_ancestral
from flashcli.core.settings import AlignSettings, SampleSettings, TrainSettings
from flashcli.core.trainer import train_adapter


@pytest.mark.parametrize("steps, shift", [(1, 1.0), (7, 3.0)])
def test_euler_lands_on_the_data_for_a_straight_flow(steps: int, shift: float) -> None:
    x0, noise = torch.randn(2, 4, 3, 4, 4), torch.randn(2, 4, 3, 4, 4)
    visited: list[int] = []
    result = sample(
        lambda x, sigma: noise - x0,
        noise.clone(),
        sampling_sigmas(steps, shift),
        callback=lambda step, total, x: visited.append(step),
    )
    assert torch.allclose(result, x0, atol=1e-5)
    assert visited == list(range(1, steps + 1))


def _toy_velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return 0.5 * x + sigma  # any smooth velocity field will do


def test_ancestral_at_eta_zero_is_the_euler_ode_and_at_eta_one_draws_fresh_noise() -> None:
    start = torch.randn(1, 2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    sigmas = torch.linspace(1.0, 0.0, 6)
    euler = sample(_toy_velocity, start, sigmas)
    steps: list[int] = []
    deterministic = sample_ancestral(
        _toy_velocity,
        start,
        sigmas,
        0.0,
        torch.Generator().manual_seed(1),
        callback=lambda step, total, x: steps.append(step),
    )
    assert torch.allclose(euler, deterministic, atol=1e-5) and steps == [1, 2, 3, 4, 5]
    one = sample_ancestral(_toy_velocity, start, sigmas, 1.0, torch.Generator().manual_seed(1))
    again = sample_ancestral(_toy_velocity, start, sigmas, 1.0, torch.Generator().manual_seed(1))
    other = sample_ancestral(_toy_velocity, start, sigmas, 1.0, torch.Generator().manual_seed(2))
    assert torch.equal(one, again) and not torch.allclose(one, other)
    with pytest.raises(ValueError, match="eta must be between 0 and 1"):
        sample_ancestral(_toy_velocity, start, sigmas, 1.5, torch.Generator())


@pytest.mark.parametrize("eta", [0.6, 1.0])
def test_ancestral_renoises_with_unit_noise_that_keeps_the_share_eta_leaves(eta: float) -> None:
    # A straight flow with the exact velocity: every step predicts the clean latent x0 exactly, so the
    # state at sigma is (1 - sigma) * x0 + sigma * noise, and that noise is what the sampler re-drew. It
    # must stay unit-variance and keep a correlation of sqrt(1 - eta^2) with the step before. (At
    # sigma 0 the noise is gone: landing on x0 alone cannot tell a right mixing formula from a wrong one.)
    generator = torch.Generator().manual_seed(0)
    x0, start = (
        torch.randn(4, 16, 3, 32, 32, generator=generator),
        torch.randn(4, 16, 3, 32, 32, generator=generator),
    )
    sigmas = sampling_sigmas(5, 3.0)
    states: list[torch.Tensor] = []
    result = sample_ancestral(
        lambda x, sigma: (x - x0) / sigma,
        start.clone(),
        sigmas,
        eta,
        torch.Generator().manual_seed(1),
        callback=lambda step, total, x: states.append(x),
    )
    assert torch.allclose(result, x0, atol=1e-4)
    noises = [start] + [
        (x - (1 - s) * x0) / s for x, s in zip(states[:-1], sigmas[1:-1].tolist(), strict=True)
    ]
    for before, after in zip(noises, noises[1:], strict=False):
        assert after.std().item() == pytest.approx(1.0, abs=0.02)
        kept = torch.corrcoef(torch.stack([before.flatten(), after.flatten()]))[0, 1].item()
        assert kept == pytest.approx((1 - eta**2) ** 0.5, abs=0.02)


def test_shifted_sigmas_run_from_one_to_zero_and_favour_noise() -> None:
    sigmas = sampling_sigmas(10, 3.0)
    assert sigmas[0] == 1 and sigmas[-1] == 0 and torch.all(sigmas[1:] < sigmas[:-1])
    assert torch.all(sigmas[1:-1] > torch.linspace(1, 0, 11, dtype=torch.float64)[1:-1])
    assert torch.allclose(
        add_noise(torch.zeros(1, 2), torch.ones(1, 2), shift_sigmas(torch.tensor([0.5]), 1.0)),
        torch.full((1, 2), 0.5),
    )


def test_frame_zero_of_the_animation_is_the_photo(tiny_spec) -> None:
    photo = moving_square_clip(3)[0]
    reports: list[tuple[int, int]] = []
    video = animate_photo(
        tiny_spec,
        photo,
        [],
        SampleSettings(steps=3, seed=1),
        frames=TINY_FRAMES,
        progress=lambda *r: reports.append(r),
    )
    assert reports == [(1, 4), (2, 4), (3, 4), (4, 4)]  # three denoising steps, then decoding
    assert video.shape == (TINY_FRAMES, 32, 32, 3) and video.dtype == np.uint8
    assert np.array_equal(video[0], photo)
    assert not np.array_equal(video[1], photo)


def test_same_seed_same_video_other_seed_other_video(tiny_spec) -> None:
    photo = moving_square_clip(4)[0]
    first = animate_photo(tiny_spec, photo, [], SampleSettings(steps=2, seed=5), frames=TINY_FRAMES)
    again = animate_photo(tiny_spec, photo, [], SampleSettings(steps=2, seed=5), frames=TINY_FRAMES)
    other = animate_photo(tiny_spec, photo, [], SampleSettings(steps=2, seed=6), frames=TINY_FRAMES)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_eta_comes_from_the_settings_else_the_base_and_keeps_the_photo(tiny_spec, monkeypatch) -> None:
    photo = moving_square_clip(4)[0]

    def animate(**chosen: float) -> np.ndarray:
        settings = SampleSettings(steps=3, seed=5, **chosen)
        return animate_photo(tiny_spec, photo, [], settings, frames=TINY_FRAMES)

    euler, ancestral = animate(), animate(eta=1.0)
    assert np.array_equal(ancestral, animate(eta=1.0)) and np.array_equal(ancestral[0], photo)
    assert not np.array_equal(euler, ancestral)
    assert np.array_equal(euler, animate(eta=0.0))
    monkeypatch.setitem(tiny_spec.meta, "sampler_eta", 1.0)  # a base that ships ancestral sampling
    assert np.array_equal(animate(), ancestral) and np.array_equal(animate(eta=0.0), euler)


def test_adapter_strength_scales_its_effect(tiny_spec) -> None:
    clip = moving_square_clip(0)
    settings = TrainSettings(
        frames=9,
        size=32,
        steps=8,
        rank=4,
        learning_rate=2e-2,
        warmup_steps=0,
        align=AlignSettings.variant("none"),
    )
    learned = train_adapter(tiny_spec, [clip], settings)
    photo = moving_square_clip(7)[0]
    run = SampleSettings(steps=2, seed=0)

    def animate(strength: float) -> np.ndarray:
        adapters = [(learned.adapter, learned.metadata, strength)] if strength is not None else []
        return animate_photo(tiny_spec, photo, adapters, run, frames=TINY_FRAMES).astype(np.int16)

    plain, off, half, full = animate(None), animate(0.0), animate(0.5), animate(1.0)
    assert np.array_equal(plain, off)
    assert 0 < np.abs(half - plain).sum() < np.abs(full - plain).sum()
    with pytest.raises(ValueError, match="between 0 and 2"):
        animate(2.5)


def test_wrong_sizes_are_refused(tiny_spec) -> None:
    with pytest.raises(ValueError, match="4k\\+1"):
        animate_photo(tiny_spec, moving_square_clip(0)[0], [], SampleSettings(steps=1), frames=8)
    with pytest.raises(ValueError, match="multiples of 16"):
        animate_photo(tiny_spec, np.zeros((24, 24, 3), np.uint8), [], SampleSettings(steps=1), frames=9)


def test_text_bases_use_the_prompt_and_guidance(tmp_path) -> None:
    from core_helpers import make_diffusers_wan_folder

    from flashcli.core.specs import load_base

    spec = load_base(make_diffusers_wan_folder(tmp_path / "wan-text"), device="cpu")
    photo = moving_square_clip(2)[0]

    def animate(**settings: object) -> np.ndarray:
        return animate_photo(spec, photo, [], SampleSettings(steps=2, **settings), frames=TINY_FRAMES)

    welding = animate(prompt="a person is welding", guidance=4.0)
    assert np.array_equal(welding[0], photo)
    assert not np.array_equal(welding, animate(prompt="a person is waving", guidance=4.0))
    assert not np.array_equal(welding, animate(prompt="a person is welding", guidance=1.0))


@pytest.mark.slow
def test_a_denoiser_fitted_to_two_clips_replays_each_from_its_first_frame(tiny_spec) -> None:
    """What training teaches is what sampling plays: sigmas, timesteps and the clean frame 0 agree.

    The whole denoiser is fitted, with the training loss, to two latent clips that differ from
    frame 0 on. Sampling from a clip's own frame 0 must then land near that clip, far nearer than
    before fitting and than the other clip: only the held frame 0 tells the two apart.
    """
    from flashcli.core.flow import first_frame_flow_loss
    from flashcli.core.sampler import first_frame_velocity, initial_noise

    generator = torch.Generator().manual_seed(0)
    # Latent clips (clip, z, T, h, w): flat random frame 0, then each channel drifting its own way.
    first = torch.randn((2, 4, 1, 1, 1), generator=generator).expand(2, 4, 1, 4, 4)
    drift = torch.tensor([[1.0, -1.0, 0.5, 0.0], [-1.0, 1.0, 0.0, -0.5]]).view(2, 4, 1, 1, 1)
    clips = first + drift * torch.arange(3.0).view(1, 1, 3, 1, 1)
    text = tiny_spec.encode_text(None)

    def replay(index: int) -> torch.Tensor:
        condition = clips[index : index + 1, :, :1]
        start = initial_noise((1, *clips.shape[1:]), seed=index)
        start[:, :, :1] = condition
        with torch.no_grad():
            return sample(first_frame_velocity(tiny_spec, condition, text), start, sampling_sigmas(8, 2.0))

    def distance(latents: torch.Tensor, index: int) -> float:
        return float((latents[0] - clips[index])[:, 1:].pow(2).mean())

    before = [distance(replay(index), index) for index in range(2)]
    transformer = tiny_spec.transformer.train().requires_grad_(True)
    optimizer = torch.optim.Adam(transformer.parameters(), lr=3e-3)
    batch = clips.repeat(2, 1, 1, 1, 1)
    for _ in range(200):
        loss = first_frame_flow_loss(tiny_spec, batch, text, generator, 2.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    transformer.eval().requires_grad_(False)
    for index in range(2):
        latents = replay(index)
        assert distance(latents, index) < 0.2 * before[index]
        assert distance(latents, index) < 0.2 * distance(latents, 1 - index)


def test_an_adapters_learned_action_text_steers_sampling_by_its_strength(tiny_spec) -> None:
    from flashcli.core.adapter import ACTION_TEXT_KEY, mixed_action_text

    settings = TrainSettings(
        frames=9, size=32, steps=1, rank=4, warmup_steps=0, align=AlignSettings.variant("none")
    )
    lora = train_adapter(tiny_spec, [moving_square_clip(0)], settings)
    learned = torch.randn(tiny_spec.null_text.shape, generator=torch.Generator().manual_seed(3))
    with_text = {**lora.adapter, ACTION_TEXT_KEY: learned}
    assert torch.allclose(mixed_action_text(tiny_spec, [(with_text, {}, 1.0)])[0], learned)
    halfway = mixed_action_text(tiny_spec, [(with_text, {}, 0.5)])[0]
    assert torch.allclose(halfway, (tiny_spec.null_text + learned) / 2)
    assert mixed_action_text(tiny_spec, [(lora.adapter, {}, 1.0)]) is None

    photo, run = moving_square_clip(7)[0], SampleSettings(steps=2, seed=0)
    plain = animate_photo(tiny_spec, photo, [(lora.adapter, lora.metadata, 1.0)], run, frames=TINY_FRAMES)
    steered = animate_photo(tiny_spec, photo, [(with_text, lora.metadata, 1.0)], run, frames=TINY_FRAMES)
    assert np.array_equal(plain[0], steered[0]) and not np.array_equal(plain, steered)


def test_position_weights_in_the_flow_loss_count_where_they_are_large() -> None:
    from flashcli.core.flow import flow_loss

    generator = torch.Generator().manual_seed(0)
    predicted = torch.randn(2, 4, 3, 2, 2, generator=generator)
    target = torch.zeros_like(predicted)
    uniform = flow_loss(predicted, target, torch.ones(2, 1, 3, 2, 2))
    assert torch.allclose(uniform, flow_loss(predicted, target))
    # All the weight on one position: the loss is that position's squared error over its channels.
    weights = torch.zeros(2, 1, 3, 2, 2)
    weights[1, 0, 2, 1, 0] = 5.0
    expected = (predicted[1, :, 2, 1, 0] ** 2).mean()
    assert torch.allclose(flow_loss(predicted, target, weights), expected)
    # Frame 0 is the photo: weight there changes nothing.
    weights[:, :, 0] = 100.0
    assert torch.allclose(flow_loss(predicted, target, weights), expected)
