"""Data parallel training over clips, when `accelerate launch` (or torchrun) started several processes.

Without a launcher there is one process and nothing here does anything: world size 1, rank 0, no
torch.distributed. With one, every rank draws each step's random numbers from the same seeded generator
(the whole batch's), computes the loss on its own rows of the batch, and the gradients are averaged over
the ranks before clipping and the optimiser step: N processes train the adapter one process would.
Every rank encodes all the clips itself: the VAE pass is a small part of a run, and so every rank holds
the same data without latents being sent around.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

# The waits are long by design: ranks other than 0 wait at the last barrier while rank 0 fine-tunes the
# DED, renders the preview and saves the action.
_TIMEOUT = datetime.timedelta(hours=3)


class PeerLost(RuntimeError):
    """A collective failed: another process of the launch stopped (its own error says why)."""


@contextlib.contextmanager
def _collective() -> Iterator[None]:
    """Tell a lost peer from this process's own failures (running out of memory stays what it is)."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as error:
        raise PeerLost(str(error)) from error


def world_size() -> int:
    """How many processes the launcher started (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process is the one that writes: the library, checkpoints, stdout."""
    return rank() == 0


def start(device: torch.device) -> None:
    """Join the launcher's process group, once: gloo on CPU, NCCL on CUDA, where each process takes its
    own GPU (LOCAL_RANK) before any weights load. Does nothing without a launcher."""
    if world_size() == 1 or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=_TIMEOUT)


def share(batch: int) -> slice:
    """The rows of a batch of `batch` that this process computes: all of them outside a process group
    (the gradients are only averaged inside one)."""
    if not dist.is_initialized():
        return slice(0, batch)
    world, me = dist.get_world_size(), dist.get_rank()
    if batch % world:
        raise ValueError(f"batch size {batch} does not split evenly over {world} processes")
    rows = batch // world
    return slice(me * rows, (me + 1) * rows)


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks (one all_reduce for all of them).

    Every rank runs the same graph, so the same parameters have a gradient on every rank."""
    if not dist.is_initialized():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    with _collective():
        dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def average_losses(losses: dict[str, float]) -> dict[str, float]:
    """The step's loss terms averaged over the ranks: the whole batch's, as one process reports them."""
    if not dist.is_initialized() or not losses:
        return losses
    names = list(losses)
    device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    values = torch.tensor([losses[name] for name in names], dtype=torch.float64, device=device)
    with _collective():
        dist.all_reduce(values)
    means = (values / dist.get_world_size()).tolist()
    return dict(zip(names, means, strict=True))


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for without a launcher)."""
    if dist.is_initialized():
        with _collective():
            dist.barrier()
