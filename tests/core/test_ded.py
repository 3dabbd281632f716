"""Detail Enhancement Decoder: identity when untrained, reads the photo once trained, round-trips."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from diffusers import AutoencoderKLWan
from random_wan import random_wan_vae

from flashcli.core.ded import DetailEnhancedDecoder, ReferenceAttention, ded_loss


def _tiny_vae(*, wan22: bool = False) -> AutoencoderKLWan:
    torch.manual_seed(0)
    return random_wan_vae(wan22=wan22, dim_mult=[1, 2, 2], temperal_downsample=[False, True]).eval()


def _inputs(
    batch: int = 1, latent_side: int = 8, latent_frames: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(batch, 4, latent_frames, latent_side, latent_side, generator=generator)
    reference = torch.rand(batch, 3, latent_side * 4, latent_side * 4, generator=generator) * 2 - 1
    return latents, reference


def _wake_up(ded: DetailEnhancedDecoder) -> None:
    # Stand-in for training: give the zero-initialised output projections some weight.
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for block in ded.blocks:
            block.to_out.weight.copy_(torch.randn(block.to_out.weight.shape, generator=generator) * 0.2)


@pytest.mark.parametrize("source", ["encoder", "decoder", "both"])
@pytest.mark.parametrize("wan22", [False, True], ids=["wan21-vae", "wan22-vae"])
def test_untrained_ded_equals_the_original_decoder_exactly(source: str, wan22: bool) -> None:
    vae = _tiny_vae(wan22=wan22)
    latents, reference = _inputs(batch=2, latent_side=8 if not wan22 else 4)
    if wan22:
        reference = reference[..., :16, :16].repeat(1, 1, 2, 2)
    ded = DetailEnhancedDecoder(vae, reference_source=source, window=4, halo=2)
    with torch.no_grad():
        plain = vae.decode(latents).sample
        enhanced = ded.decode(latents, reference)
    assert enhanced.shape == plain.shape == (2, 3, 5, reference.shape[-2], reference.shape[-1])
    assert torch.equal(enhanced, plain)


@pytest.mark.parametrize("source", ["encoder", "decoder", "both"])
def test_trained_ded_reads_the_reference_photo(source: str) -> None:
    vae = _tiny_vae()
    latents, reference = _inputs()
    ded = DetailEnhancedDecoder(vae, reference_source=source, window=4, halo=2)
    _wake_up(ded)
    with torch.no_grad():
        plain = vae.decode(latents).sample
        with_photo = ded.decode(latents, reference)
        with_other_photo = ded.decode(latents, reference.flip(-1))
    assert (with_photo - plain).abs().mean() > 1e-3
    assert (with_photo - with_other_photo).abs().mean() > 1e-4


def test_ded_leaves_the_vae_itself_unchanged() -> None:
    vae = _tiny_vae()
    latents, reference = _inputs()
    with torch.no_grad():
        before = vae.decode(latents).sample
    ded = DetailEnhancedDecoder(vae, window=4, halo=2)
    _wake_up(ded)
    with torch.no_grad():
        ded.decode(latents, reference)
        after = vae.decode(latents).sample
    assert torch.equal(before, after)
    assert not any(p.requires_grad for p in vae.parameters())
    assert all(p.requires_grad for p in ded.trainable_parameters())


def test_save_and_load_round_trip(tmp_path) -> None:
    vae = _tiny_vae()
    latents, reference = _inputs()
    ded = DetailEnhancedDecoder(vae, reference_source="both", window=4, halo=2)
    _wake_up(ded)
    ded.save(tmp_path / "ded", metadata={"trained_steps": "7"})
    assert sorted(p.name for p in (tmp_path / "ded").iterdir()) == ["config.json", "ded.safetensors"]
    loaded = DetailEnhancedDecoder.from_folder(tmp_path / "ded", vae)
    assert loaded.config == ded.config
    # A base re-exported with this DED keeps its training record.
    loaded.save(tmp_path / "copy")
    assert DetailEnhancedDecoder.from_folder(tmp_path / "copy", vae).metadata["trained_steps"] == "7"
    shutil.rmtree(tmp_path / "copy")
    with torch.no_grad():
        assert torch.equal(loaded.decode(latents, reference), ded.decode(latents, reference))
    # Saving again over an existing folder replaces it without leaving temp folders behind.
    ded.save(tmp_path / "ded")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ded"]


def test_loading_onto_a_different_vae_fails_clearly(tmp_path) -> None:
    ded = DetailEnhancedDecoder(_tiny_vae(), window=4, halo=2)
    ded.save(tmp_path / "ded")
    other = random_wan_vae(base_dim=16, dim_mult=[1, 2, 2], temperal_downsample=[False, True])
    with pytest.raises(ValueError, match="different VAE"):
        DetailEnhancedDecoder.from_folder(tmp_path / "ded", other)
    with pytest.raises(FileNotFoundError, match="not a DED folder"):
        DetailEnhancedDecoder.from_folder(tmp_path / "missing", other)


def test_bad_inputs_raise_clear_errors() -> None:
    ded = DetailEnhancedDecoder(_tiny_vae(), window=4, halo=2)
    latents, reference = _inputs()
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        ded.decode(latents, reference * 255)
    with pytest.raises(ValueError, match="reference must be"):
        ded.decode(latents, reference[..., :16, :16])
    with pytest.raises(ValueError, match="latents must be"):
        ded.decode(latents[:, :2], reference)


def test_halo_attention_matches_brute_force_neighbourhood_attention() -> None:
    torch.manual_seed(3)
    window, halo, side = 3, 1, 7  # 7 is not a multiple of 3: exercises the padding
    block = ReferenceAttention(5, 6, 4, attn_dim=8, heads=2, window=window, halo=halo)
    with torch.no_grad():
        block.position_bias.normal_()
        block.to_out.weight.normal_()
    frames = torch.randn(1, 5, 2, side, side)
    keys, values = torch.randn(1, 6, side, side), torch.randn(1, 4, side, side)
    with torch.no_grad():
        fast = block(frames, block.prepare_reference(keys, values))
        q = block.to_q(block.norm_query(frames.permute(0, 2, 3, 4, 1)))[0]  # (t, y, x, d)
        k = block.to_k(block.norm_key(keys.permute(0, 2, 3, 1)))[0]
        v = block.to_v(block.norm_value(values.permute(0, 2, 3, 1)))[0]
        reach = window + halo - 1
        slow = torch.zeros(2, side, side, 8)
        for y in range(side):
            for x in range(side):
                top, left = (y // window) * window - halo, (x // window) * window - halo
                ys = [j for j in range(top, top + window + 2 * halo) if 0 <= j < side]
                xs = [i for i in range(left, left + window + 2 * halo) if 0 <= i < side]
                for head in range(2):
                    part = slice(head * 4, head * 4 + 4)
                    ks = torch.stack([k[j, i, part] for j in ys for i in xs])
                    vs = torch.stack([v[j, i, part] for j in ys for i in xs])
                    bias = torch.stack(
                        [
                            block.position_bias[head, (j - y + reach) * (2 * reach + 1) + (i - x + reach)]
                            for j in ys
                            for i in xs
                        ]
                    )
                    weights = (q[:, y, x, part] @ ks.T / math.sqrt(4) + bias).softmax(-1)
                    slow[:, y, x, part] = weights @ vs
        expected = block.to_out(slow).permute(3, 0, 1, 2).unsqueeze(0)
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-4)


def test_training_the_ded_lowers_its_loss_on_a_fixed_batch() -> None:
    vae = _tiny_vae()
    latents, reference = _inputs(latent_side=4, latent_frames=2)
    with torch.no_grad():
        target = vae.decode(latents).sample.flip(-1)  # a target only the photo's content can explain
        reference = target[:, :, 0].clamp(-1, 1)
    ded = DetailEnhancedDecoder(vae, reference_source="encoder", window=4, halo=2)
    optimizer = torch.optim.Adam(ded.trainable_parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = ded_loss(ded.decode(latents, reference), target)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_detail_transfer_puts_the_photos_lost_detail_back_into_frame_0() -> None:
    vae = _tiny_vae()
    latents, reference = _inputs()
    with torch.no_grad():
        latents[:, :, :1] = vae.encode(reference[:, :, None]).latent_dist.mode()
        plain = vae.decode(latents).sample
    ded = DetailEnhancedDecoder(vae, reference_source="decoder", window=4, halo=2)
    transfer = ded.blocks[-1]
    with torch.no_grad():
        # What training converges to where nothing moved: copy the same place, at full strength.
        transfer.position_bias.mul_(100)
        transfer.to_q.weight.zero_()
        transfer.to_out.weight.copy_(torch.eye(3))
        enhanced = ded.decode(latents, reference)
    plain_error = (plain[:, :, 0] - reference).abs().mean()
    enhanced_error = (enhanced[:, :, 0] - reference).abs().mean()
    assert enhanced_error < 0.01 * plain_error


def test_moved_pixel_term_punishes_copying_the_photo_where_the_figure_moved() -> None:
    torch.manual_seed(0)
    photo = torch.rand(1, 3, 16, 16) * 2 - 1
    target = photo.unsqueeze(2).repeat(1, 1, 3, 1, 1)
    target[:, :, 1:, :8, :8] = -photo[:, :, None, :8, :8]  # the top-left quarter moves in frames 1..
    copy_of_photo = photo.unsqueeze(2).repeat(1, 1, 3, 1, 1)

    plain = ded_loss(copy_of_photo, target)
    weighted = ded_loss(copy_of_photo, target, reference=photo, moved_weight=2.0)
    assert "moved_l1" not in plain
    # Only the moved quarter counts, so its L1 is the whole error concentrated there.
    assert float(weighted["moved_l1"]) > 3 * float(plain["l1"])
    assert float(weighted["loss"]) > float(plain["loss"])
    # A perfect prediction pays nothing extra.
    assert float(ded_loss(target, target, reference=photo, moved_weight=2.0)["moved_l1"]) == 0.0
    with pytest.raises(ValueError, match="reference photo"):
        ded_loss(copy_of_photo, target, moved_weight=1.0)
