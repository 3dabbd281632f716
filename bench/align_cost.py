"""Cost of the Motion Alignment hooks against plain LoRA steps, on tiny Wan configs with random weights.

Variants are timed round-robin (one call of each per round) so that load from other processes on a
shared machine hits them alike; the min and median over rounds are reported, and each median as a
ratio of the plain LoRA step measured in the same run.

Usage: python bench/align_cost.py [--threads 1] [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from diffusers import WanTransformer3DModel
from peft import LoraConfig

from flashcli.core.motion_align import MotionAlignment

# name: (heads, head_dim, layers, latent channels, latent frames, latent side)
CONFIGS = {
    "test-tiny (dim 24, 3 blocks, 3x8x8 latent, 48 tokens)": (2, 12, 3, 4, 3, 8),
    "tiny-base-like (dim 64, 4 blocks, 5x16x16 latent, 320 tokens)": (4, 16, 4, 16, 5, 16),
}


def build_transformer(heads: int, head_dim: int, layers: int, channels: int) -> WanTransformer3DModel:
    torch.manual_seed(0)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=channels,
        out_channels=channels,
        text_dim=32,
        freq_dim=32,
        ffn_dim=4 * heads * head_dim,
        num_layers=layers,
        rope_max_seq_len=64,
    )
    model.requires_grad_(False)
    targets = ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"]
    model.add_adapter(LoraConfig(r=8, lora_alpha=8, target_modules=targets))
    return model.train()


class Variants:
    """The timed callables for one model and one pair of inputs (x and its stand-in x')."""

    def __init__(self, model: WanTransformer3DModel, x: torch.Tensor, x_aug: torch.Tensor) -> None:
        self.model, self.x, self.x_aug = model, x, x_aug
        self.t = torch.tensor([500])
        self.text = torch.randn(1, 8, 32)
        self.frames_latent = x.shape[2]

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model(video, self.t, self.text).sample

    def plain_forward(self) -> None:
        with torch.no_grad():
            self.forward(self.x)

    def plain_step(self) -> None:
        self.forward(self.x).square().mean().backward()

    def augment_only_step(self) -> None:
        (self.forward(self.x_aug).square().mean() + self.forward(self.x).square().mean()).backward()

    def aligned(
        self, blocks: list[int], corr_blocks: list[int], max_tokens: int | None, backward: bool
    ) -> Callable[[], None]:
        align = MotionAlignment(
            self.model,
            motion_blocks=blocks,
            correspondence_blocks=corr_blocks,
            frames_latent=self.frames_latent,
            max_correspondence_tokens=max_tokens,
        )
        use_corr = bool(corr_blocks)

        def run() -> None:
            align.install()
            with torch.set_grad_enabled(backward):
                with align.record(motion=True, correspondence=use_corr):
                    loss_aug = self.forward(self.x_aug).square().mean()
                with align.inject(motion=True, correspondence=use_corr):
                    loss_x = self.forward(self.x).square().mean()
                if backward:
                    (loss_aug + loss_x).backward()
            align.remove()

        return run


def time_config(name: str, spec: tuple[int, ...], rounds: int) -> None:
    heads, head_dim, layers, channels, frames, side = spec
    model = build_transformer(heads, head_dim, layers, channels)
    x, x_aug = torch.randn(2, 1, channels, frames, side, side)
    v = Variants(model, x, x_aug)
    mid, every = [layers // 2], list(range(layers))
    variants: dict[str, Callable[[], None]] = {
        "plain forward (no grad)": v.plain_forward,
        "record+inject forwards, all blocks": v.aligned(every, every, None, backward=False),
        "plain LoRA step (x only)": v.plain_step,
        "augment-only step (x and x', no hooks)": v.augment_only_step,
        "align: motion, middle block": v.aligned(mid, [], None, backward=True),
        "align: motion+corr full maps, middle block": v.aligned(mid, mid, None, backward=True),
        "align: motion+corr full maps, all blocks": v.aligned(every, every, None, backward=True),
        "align: motion+corr 16 queries, all blocks": v.aligned(every, every, 16, backward=True),
    }
    times: dict[str, list[float]] = {label: [] for label in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(rounds):
        for label, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    print(f"\n{name}, threads={torch.get_num_threads()}, rounds={rounds}")
    base = statistics.median(times["plain LoRA step (x only)"])
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"  {label:45s} min {min(ts) * 1e3:7.1f} ms  median {med * 1e3:7.1f} ms  {med / base:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, spec in CONFIGS.items():
        time_config(name, spec, args.rounds)


if __name__ == "__main__":
    main()
