"""An exponential moving average of the denoiser's weights: what the base exports and samples with.

Raw weights of a diffusion model still in training carry the last steps' noise, and sampled videos
show it (specks around moving limbs on the tiny base). Averaging weights over the last ~1/(1-decay)
steps smooths that out at no cost per step.
"""

from __future__ import annotations

from typing import Any

import torch


class WeightAverage:
    """EMA of a module's floating-point state and one extra tensor (the learned null text).

    With `warmup` (an average that starts at random initial weights), the decay warms up as
    min(decay, (1 + n) / (10 + n)) after n updates, so the young average follows the weights instead
    of staying near the noise it started from. An average started from trained weights needs none.
    """

    def __init__(
        self, model: dict[str, torch.Tensor], extra: torch.Tensor, decay: float, updates: int, warmup: bool
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight-average decay must be between 0 and 1, got {decay}")
        self.model = model
        self.extra = extra
        self.decay = decay
        self.updates = updates
        self.warmup = warmup

    @classmethod
    def start(
        cls, module: torch.nn.Module, extra: torch.Tensor, decay: float, *, warmup: bool
    ) -> WeightAverage:
        """A new average that begins at the module's current weights."""
        model = {name: value.detach().clone() for name, value in module.state_dict().items()}
        return cls(model, extra.detach().clone(), decay, updates=0, warmup=warmup)

    @classmethod
    def from_state(cls, state: dict[str, Any], decay: float) -> WeightAverage:
        """Resume a saved average; `decay` is the current setting (it may have been changed)."""
        return cls(
            dict(state["model"]),
            state["extra"],
            decay,
            updates=int(state["updates"]),
            warmup=bool(state["warmup"]),
        )

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, module: torch.nn.Module, extra: torch.Tensor) -> None:
        decay = self.current_decay()
        averages, values = [], []
        for name, value in module.state_dict().items():
            average = self.model[name]
            if average.is_floating_point():
                averages.append(average)
                values.append(value.detach().to(average.dtype))
            else:
                average.copy_(value)
        # One fused update for all tensors: on a GPU a loop of small lerps is launch-bound.
        torch._foreach_lerp_(averages, values, 1.0 - decay)
        self.extra.lerp_(extra.detach().to(self.extra.dtype), 1.0 - decay)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "extra": self.extra,
            "updates": self.updates,
            "decay": self.decay,
            "warmup": self.warmup,
        }


def describe_weights(average_state: dict[str, Any] | None) -> str:
    """What a base's denoiser weights are, for its `pretraining` record: raw, or which average."""
    if average_state is None:
        return "raw"
    return f"average (decay {average_state['decay']}, {average_state['updates']} updates)"
