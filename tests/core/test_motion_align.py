"""Motion Alignment hooks on a tiny random Wan transformer: exactness, switches, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from peft import LoraConfig
from random_wan import random_wan_transformer

import flashcli.core.motion_align as motion_align
from flashcli.core.motion_align import (
    MotionAlignment,
    attention_probabilities,
    cross_frame_probabilities,
    wan_self_attention_qkv,
)
from flashcli.core.settings import AlignSettings

FRAMES = 3  # latent frames
TOKENS = FRAMES * 4 * 4  # 8x8 latent, patch 2x2
TIMESTEP = torch.tensor([600])


def tiny_transformer(seed: int = 0) -> WanTransformer3DModel:
    return random_wan_transformer(num_layers=3, attention_head_dim=12, seed=seed).eval()


def latents(seed: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 4, FRAMES, 8, 8, generator=torch.Generator().manual_seed(seed))


def context(batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 5, 16, generator=torch.Generator().manual_seed(99))


def run(model: WanTransformer3DModel, x: torch.Tensor) -> torch.Tensor:
    return model(x, TIMESTEP.expand(x.shape[0]), context(x.shape[0])).sample


def aligned(model: WanTransformer3DModel, **kwargs: object) -> MotionAlignment:
    options: dict[str, object] = {
        "motion_blocks": [1],
        "correspondence_blocks": [0, 2],
        "frames_latent": FRAMES,
    }
    options.update(kwargs)
    alignment = MotionAlignment(model, **options)  # type: ignore[arg-type]
    alignment.install()
    return alignment


def record_then_inject(
    alignment: MotionAlignment,
    model: WanTransformer3DModel,
    x_aug: torch.Tensor,
    x: torch.Tensor,
    **switches: bool,
) -> torch.Tensor:
    with alignment.record():
        run(model, x_aug)
    with alignment.inject(**switches):  # type: ignore[arg-type]
        return run(model, x)


def test_explicit_attention_matches_default_processor() -> None:
    model = tiny_transformer()
    x = latents(0)
    captured: dict[str, object] = {}

    def keep_inputs(module: torch.nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
        captured.update(hidden=args[0], rotary=args[3], output=output)

    handle = model.blocks[1].attn1.register_forward_hook(keep_inputs, with_kwargs=True)
    run(model, x)
    handle.remove()
    attn = model.blocks[1].attn1
    with torch.no_grad():
        query, key, value = wan_self_attention_qkv(attn, captured["hidden"], captured["rotary"])
        probabilities = attention_probabilities(query, key)
        mixed = torch.einsum("bhqk,bhkd->bqhd", probabilities, value).flatten(2)
        explicit = attn.to_out[0](mixed)
    assert probabilities.shape == (1, 2, TOKENS, TOKENS)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(1, 2, TOKENS))
    torch.testing.assert_close(explicit, captured["output"], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        torch.matmul(probabilities, value), F.scaled_dot_product_attention(query, key, value)
    )


def test_installed_but_idle_changes_nothing_and_remove_restores() -> None:
    model = tiny_transformer()
    x = latents(0)
    with torch.no_grad():
        plain = run(model, x)
        original_processors = [block.attn1.processor for block in model.blocks]
        alignment = aligned(model)
        assert torch.equal(run(model, x), plain)
        with alignment.record():  # recording observes but does not alter the x' pass
            assert torch.equal(run(model, x), plain)
        alignment.remove()
        assert [block.attn1.processor for block in model.blocks] == original_processors
        assert torch.equal(run(model, x), plain)
    assert alignment.recorded_motion == {} and alignment.recorded_correspondence == {}


@pytest.mark.parametrize(("max_tokens", "source"), [(None, "stream"), (10, "stream"), (None, "update")])
def test_injecting_the_same_clip_reproduces_the_plain_pass(max_tokens: int | None, source: str) -> None:
    model = tiny_transformer()
    x = latents(0, batch=2)
    with torch.no_grad():
        plain = run(model, x)
        alignment = aligned(model, max_correspondence_tokens=max_tokens, motion_source=source)
        injected = record_then_inject(alignment, model, x, x, motion=True, correspondence=True)
    torch.testing.assert_close(injected, plain, atol=1e-5, rtol=0)


def test_motion_injection_is_own_frame0_plus_recorded_motion() -> None:
    model = tiny_transformer()
    x, x_aug, x_other = latents(0), latents(1), latents(2)
    alignment = aligned(model, correspondence_blocks=[])
    outputs: list[torch.Tensor] = []
    model.blocks[1].register_forward_hook(lambda module, args, output: outputs.append(output))  # after ours
    with torch.no_grad():
        plain_out = run(model, x)
        own = outputs[-1].reshape(1, FRAMES, 16, -1)
        run(model, x_aug)
        aug = outputs[-1].reshape(1, FRAMES, 16, -1)
        injected_out = record_then_inject(alignment, model, x_aug, x, motion=True, correspondence=False)
        injected = outputs[-1].reshape(1, FRAMES, 16, -1)
        # A different x' motion gives a different result; the same motion (x' == x) gives the plain one.
        other_out = record_then_inject(alignment, model, x_other, x, motion=True, correspondence=False)
        same_out = record_then_inject(alignment, model, x, x, motion=True, correspondence=False)
    torch.testing.assert_close(injected[:, 0], own[:, 0], atol=0, rtol=0)
    torch.testing.assert_close(injected[:, 1:], own[:, :1] + aug[:, 1:] - aug[:, :1], atol=1e-5, rtol=0)
    assert (injected_out - plain_out).abs().max() > 1e-2
    assert (other_out - injected_out).abs().max() > 1e-2
    torch.testing.assert_close(same_out, plain_out, atol=1e-5, rtol=0)


def test_update_injection_keeps_the_incoming_stream_and_swaps_the_blocks_motion() -> None:
    model = tiny_transformer()
    x, x_aug = latents(0), latents(1)
    alignment = aligned(model, correspondence_blocks=[], motion_source="update")
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    model.blocks[1].register_forward_hook(lambda module, args, output: seen.append((args[0], output)))
    with torch.no_grad():
        run(model, x)
        own_in, own_out = (t.reshape(1, FRAMES, 16, -1) for t in seen[-1])
        run(model, x_aug)
        aug_in, aug_out = (t.reshape(1, FRAMES, 16, -1) for t in seen[-1])
        record_then_inject(alignment, model, x_aug, x, motion=True, correspondence=False)
        injected = seen[-1][1].reshape(1, FRAMES, 16, -1)
    own_update, aug_update = own_out - own_in, aug_out - aug_in
    expected = own_in + own_update[:, :1] + aug_update - aug_update[:, :1]
    torch.testing.assert_close(injected, expected, atol=1e-5, rtol=0)
    assert (injected[:, 1:] - own_out[:, 1:]).abs().max() > 1e-3  # the block's motion really changed


@pytest.mark.parametrize(
    ("motion", "correspondence"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_fired_counts_follow_the_switches(motion: bool, correspondence: bool) -> None:
    model = tiny_transformer()
    alignment = aligned(model)
    with torch.no_grad():
        plain = run(model, latents(0))
        with alignment.record(motion=motion, correspondence=correspondence):
            run(model, latents(1))
        with alignment.inject(motion=motion, correspondence=correspondence):
            out = run(model, latents(0))
    assert alignment.fired == {
        "motion_record": int(motion),
        "motion_inject": int(motion),
        "corr_record": 2 * int(correspondence),
        "corr_inject": 2 * int(correspondence),
    }
    assert set(alignment.recorded_motion) == ({1} if motion else set())
    assert set(alignment.recorded_correspondence) == ({0, 2} if correspondence else set())
    assert torch.equal(out, plain) == (not motion and not correspondence)


def test_subsampled_correspondence_replaces_only_the_recorded_rows() -> None:
    model = tiny_transformer()
    x, x_aug = latents(0), latents(1)
    alignment = aligned(model, motion_blocks=[], correspondence_blocks=[2], max_correspondence_tokens=10)
    attention_outputs: list[torch.Tensor] = []
    model.blocks[2].attn1.register_forward_hook(lambda module, args, output: attention_outputs.append(output))
    with torch.no_grad():
        run(model, x)
        plain = attention_outputs[-1]
        record_then_inject(alignment, model, x_aug, x, motion=False, correspondence=True)
        injected = attention_outputs[-1]
    recorded = alignment.recorded_correspondence[2]
    assert recorded.probabilities.shape == (1, 2, 10, TOKENS)
    torch.testing.assert_close(recorded.probabilities.sum(-1), torch.ones(1, 2, 10))
    rows = recorded.query_index
    assert rows is not None and rows.unique().numel() == 10
    others = torch.ones(TOKENS, dtype=torch.bool)
    others[rows] = False
    assert torch.equal(injected[:, others], plain[:, others])
    assert (injected[:, rows] - plain[:, rows]).abs().amax(-1).min() > 1e-4


def test_query_subsample_is_drawn_from_the_generator() -> None:
    model = tiny_transformer()
    alignment = aligned(model, motion_blocks=[], max_correspondence_tokens=10)

    def recorded_rows(generator: torch.Generator | None) -> torch.Tensor:
        with torch.no_grad(), alignment.record(generator=generator):
            run(model, latents(1))
        rows = alignment.recorded_correspondence[0].query_index
        assert rows is not None
        return rows

    evenly = recorded_rows(None)
    assert torch.equal(evenly, torch.linspace(0, TOKENS - 1, 10).round().long())
    first = recorded_rows(torch.Generator().manual_seed(3))
    assert torch.equal(first, recorded_rows(torch.Generator().manual_seed(3)))
    assert not torch.equal(first, evenly)


def test_cross_frame_probabilities_keep_the_own_frame_and_the_own_cross_mass() -> None:
    generator = torch.Generator().manual_seed(0)
    own = torch.randn(2, 3, 5, 12, generator=generator).softmax(-1)
    recorded = torch.randn(2, 3, 5, 12, generator=generator).softmax(-1)
    frame_of_keys = torch.arange(12) // 4  # 3 frames of 4 tokens
    frame_of_rows = frame_of_keys[torch.tensor([0, 3, 5, 9, 11])]
    mixed = cross_frame_probabilities(own, recorded, frame_of_rows, frame_of_keys)
    same = frame_of_rows[:, None] == frame_of_keys[None, :]
    torch.testing.assert_close(mixed.sum(-1), torch.ones(2, 3, 5))
    assert torch.equal(mixed[..., same], own[..., same])
    # Over the other frames: x's mass there, spread as x' spreads it.
    cross_mass = (own * ~same).sum(-1, keepdim=True)
    expected_cross = recorded * ~same / (recorded * ~same).sum(-1, keepdim=True) * cross_mass
    torch.testing.assert_close(mixed * ~same, expected_cross)
    assert (mixed - own).abs().max() > 1e-3
    # One frame: no cross-frame keys, so x's own attention.
    one_frame = torch.zeros(12, dtype=torch.long)
    torch.testing.assert_close(cross_frame_probabilities(own, recorded, one_frame[:5], one_frame), own)


def test_cross_frame_injection_mixes_x_within_frame_with_x_aug_across_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_transformer()
    x, x_aug = latents(0), latents(1)
    mixed: list[torch.Tensor] = []

    def keep(*args: torch.Tensor) -> torch.Tensor:
        mixed.append(cross_frame_probabilities(*args))
        return mixed[-1]

    monkeypatch.setattr(motion_align, "cross_frame_probabilities", keep)
    seen: list[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor]] = []

    def keep_inputs(module: torch.nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
        seen.append((args[0], args[3], output))

    model.blocks[2].attn1.register_forward_hook(keep_inputs, with_kwargs=True)
    outputs = {}
    with torch.no_grad():
        for keys in ("all", "cross_frame"):
            alignment = aligned(
                model,
                motion_blocks=[],
                correspondence_blocks=[2],
                max_correspondence_tokens=10,
                correspondence_keys=keys,
            )
            outputs[keys] = record_then_inject(alignment, model, x_aug, x, motion=False, correspondence=True)
            alignment.remove()
        hidden, rotary, attention_output = seen[-1]
        query, key, value = wan_self_attention_qkv(model.blocks[2].attn1, hidden, rotary)
    assert len(mixed) == 1
    rows = torch.linspace(0, TOKENS - 1, 10).round().long()
    own = attention_probabilities(query, key, rows)
    frame_of_keys = torch.arange(TOKENS) // (TOKENS // FRAMES)
    same = frame_of_keys[rows][:, None] == frame_of_keys[None, :]
    probabilities = mixed[0]
    assert probabilities.shape == (1, 2, 10, TOKENS)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(1, 2, 10))
    torch.testing.assert_close(probabilities[..., same], own[..., same], atol=0, rtol=0)
    torch.testing.assert_close((probabilities * ~same).sum(-1), (own * ~same).sum(-1), atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        attn = model.blocks[2].attn1
        expected_rows = attn.to_out[0](torch.einsum("bhqk,bhkd->bqhd", probabilities, value).flatten(2))
    torch.testing.assert_close(attention_output[:, rows], expected_rows, atol=1e-5, rtol=0)
    assert (outputs["cross_frame"] - outputs["all"]).abs().max() > 1e-4


@pytest.mark.parametrize("max_tokens", [None, 10])
def test_cross_frame_injection_of_the_same_clip_reproduces_the_plain_pass(max_tokens: int | None) -> None:
    model = tiny_transformer()
    x = latents(0, batch=2)
    with torch.no_grad():
        plain = run(model, x)
        alignment = aligned(model, max_correspondence_tokens=max_tokens, correspondence_keys="cross_frame")
        injected = record_then_inject(alignment, model, x, x, motion=False, correspondence=True)
    assert alignment.fired["corr_inject"] == 2
    torch.testing.assert_close(injected, plain, atol=1e-5, rtol=0)


def test_correspondence_keys_accepts_only_all_or_cross_frame() -> None:
    assert AlignSettings().correspondence_keys == "all"
    assert AlignSettings(correspondence_keys="cross_frame").correspondence_keys == "cross_frame"
    with pytest.raises(ValueError, match="correspondence_keys"):
        AlignSettings(correspondence_keys="diagonal")
    with pytest.raises(ValueError, match="'all' or 'cross_frame'"):
        MotionAlignment(
            tiny_transformer(),
            motion_blocks=[],
            correspondence_blocks=[0],
            frames_latent=FRAMES,
            correspondence_keys="diagonal",  # type: ignore[arg-type]
        )


def lora_model() -> WanTransformer3DModel:
    model = tiny_transformer()
    model.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=["attn1.to_q", "attn1.to_k", "attn1.to_v"])
    )
    # peft starts lora_B at zero; give it values so gradients reach lora_A too.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    return model.train()


def aligned_step_gradients(
    *, detach: bool, checkpointing: bool = False
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    model = lora_model()
    if checkpointing:
        model.enable_gradient_checkpointing()
    alignment = aligned(model, detach_recorded=detach, max_correspondence_tokens=20)
    x_aug = latents(1).requires_grad_(True)
    loss = (
        record_then_inject(alignment, model, x_aug, latents(0), motion=True, correspondence=True)
        .square()
        .mean()
    )
    loss.backward()
    grads = {
        name: p.grad.clone() for name, p in model.named_parameters() if "lora" in name and p.grad is not None
    }
    return grads, (x_aug.grad if x_aug.grad is not None else torch.zeros_like(x_aug))


def test_gradients_flow_through_injected_tensors_into_lora() -> None:
    through, x_aug_grad = aligned_step_gradients(detach=False)
    detached, x_aug_grad_detached = aligned_step_gradients(detach=True)
    assert through and all(grad.abs().sum() > 0 for grad in through.values())
    # The x' pass receives gradient only through the injected motion and attention maps.
    assert x_aug_grad.abs().sum() > 0
    assert x_aug_grad_detached.abs().sum() == 0
    # Block 0's LoRA also acts in the x' pass; cutting the injected path changes its gradient.
    name = next(n for n in through if "blocks.0.attn1.to_q.lora_B" in n)
    assert not torch.allclose(through[name], detached[name])


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    plain, plain_x_aug = aligned_step_gradients(detach=False)
    checkpointed, checkpointed_x_aug = aligned_step_gradients(detach=False, checkpointing=True)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(checkpointed_x_aug, plain_x_aug, atol=1e-6, rtol=1e-5)


def test_misuse_raises_clear_errors() -> None:
    model = tiny_transformer()
    with pytest.raises(ValueError, match="out of range"):
        MotionAlignment(model, motion_blocks=[3], correspondence_blocks=[], frames_latent=FRAMES)
    alignment = MotionAlignment(model, motion_blocks=[1], correspondence_blocks=[0], frames_latent=FRAMES)
    with pytest.raises(RuntimeError, match="install"):
        with alignment.record():
            pass
    alignment.install()
    with pytest.raises(RuntimeError, match="record"):
        with alignment.inject(motion=True, correspondence=False):
            pass
    with torch.no_grad(), pytest.raises(ValueError, match="latent frames"):
        with alignment.record():
            run(model, torch.randn(1, 4, FRAMES + 1, 8, 8))
    with torch.no_grad(), alignment.record(correspondence=False):
        run(model, latents(1))
    with pytest.raises(RuntimeError, match="correspondence"):
        with alignment.inject(motion=True, correspondence=True):
            pass
    with torch.no_grad(), pytest.raises(ValueError, match="same batch"):
        with alignment.inject(motion=True, correspondence=False):
            run(model, latents(0, batch=2))
    model.enable_gradient_checkpointing()
    with pytest.raises(RuntimeError, match="gradient checkpointing"):
        with alignment.record():
            pass
