"""The progress report of learning, in its own module so that the trainer and the DED fine-tuning it
calls can both use it without importing each other."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainProgress:
    """One report to the progress callback.

    phase "encode": the clips and their augmented copies go through the VAE once (step = videos
    encoded so far, losses empty, learning_rate 0); phase "train": one report per optimiser step;
    phase "ded" (only with settings.ded_finetune_steps): one report per step of the DED fine-tuning.
    """

    step: int
    total: int
    losses: dict[str, float]
    seconds_per_step: float
    eta_seconds: float
    learning_rate: float
    phase: str = "train"
