"""Cost of one Motion Alignment step vs plain LoRA steps on tiny Wan configs.

Variants are timed round-robin (one call of each per round) so that load from other processes on a
shared machine hits them alike; the min and median over rounds are reported.
Usage: python bench_align.py THREADS ROUNDS
"""
import statistics, sys, time
import torch
from diffusers import WanTransformer3DModel
from peft import LoraConfig
from flashcli.core.motion_align import MotionAlignment

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 15
CONFIGS = {
    # name: (heads, head_dim, layers, channels, latent T, latent H=W)
    "test-tiny (dim 24, 3 blocks, 3x8x8 latent, N=48 tokens)": (2, 12, 3, 4, 3, 8),
    "tiny-base-like (dim 64, 4 blocks, 5x16x16 latent, N=320 tokens)": (4, 16, 4, 16, 5, 16),
}

def build(heads, head_dim, layers, channels):
    torch.manual_seed(0)
    m = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim,
        in_channels=channels, out_channels=channels, text_dim=32, freq_dim=32, ffn_dim=4 * heads * head_dim,
        num_layers=layers, rope_max_seq_len=64)
    m.requires_grad_(False)
    m.add_adapter(LoraConfig(r=8, lora_alpha=8,
                             target_modules=["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"]))
    return m.train()

for name, (heads, hd, layers, ch, T, S) in CONFIGS.items():
    m = build(heads, hd, layers, ch)
    x = torch.randn(1, ch, T, S, S); xa = torch.randn(1, ch, T, S, S)
    t = torch.tensor([500]); ctx = torch.randn(1, 8, 32)
    fwd = lambda v: m(v, t, ctx).sample
    def plain_forward():
        with torch.no_grad(): fwd(x)
    def plain_step():
        fwd(x).square().mean().backward()
    def two_pass_step():  # the "augment only" variant: plain losses on x and x'
        (fwd(xa).square().mean() + fwd(x).square().mean()).backward()
    mid, every = [layers // 2], list(range(layers))
    def aligned_forwards(mb, cb):  # record pass + inject pass, no backward: compare with plain forward
        ma = MotionAlignment(m, motion_blocks=mb, correspondence_blocks=cb, frames_latent=T)
        def run():
            ma.install()
            with torch.no_grad():
                with ma.record():
                    fwd(xa)
                with ma.inject(motion=True, correspondence=True):
                    fwd(x)
            ma.remove()
        return run
    def aligned(mb, cb, maxtok, motion, corr):
        ma = MotionAlignment(m, motion_blocks=mb, correspondence_blocks=cb, frames_latent=T,
                             max_correspondence_tokens=maxtok)
        def step():
            ma.install()
            with ma.record(motion=motion, correspondence=corr):
                la = fwd(xa).square().mean()
            with ma.inject(motion=motion, correspondence=corr):
                lx = fwd(x).square().mean()
            (la + lx).backward()
            ma.remove()
        return step
    variants = {
        "plain forward (no grad)": plain_forward,
        "align forwards only: record+inject, all blocks": aligned_forwards(every, every),
        "plain LoRA step (x only)": plain_step,
        "augment-only step (x and x', no hooks)": two_pass_step,
        "align: motion, middle block": aligned(mid, [], None, True, False),
        "align: motion+corr full maps, middle block": aligned(mid, mid, None, True, True),
        "align: motion+corr full maps, all blocks": aligned(every, every, None, True, True),
        "align: motion+corr 16 queries, all blocks": aligned(every, every, 16, True, True),
    }
    times = {k: [] for k in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(ROUNDS):
        for label, fn in variants.items():
            t0 = time.perf_counter(); fn(); times[label].append(time.perf_counter() - t0)
    print(f"\n{name}, threads={torch.get_num_threads()}, rounds={ROUNDS}")
    base = statistics.median(times["plain LoRA step (x only)"])
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"  {label:45s} min {min(ts)*1000:7.1f} ms  median {med*1000:7.1f} ms  {med/base:5.2f}x plain step")
