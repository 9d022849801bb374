"""The learning-rate schedule and the best-validation-epoch record (both carried by checkpoints)."""
from __future__ import annotations

import math
from typing import Any

from torch import nn


class BestEpoch:
    """The epoch with the highest clean validation accuracy so far and a copy of its weights.

    Every rank sees the same (all-reduced) validation accuracy, so every rank keeps the same copy;
    it travels in the checkpoint, so a resumed run selects the same epoch as an uninterrupted one.
    The first epoch reaching the maximum wins a tie.
    """

    def __init__(self, epoch: int = 0, val_accuracy: float = -1.0, model_state: dict | None = None):
        self.epoch, self.val_accuracy, self.model_state = epoch, val_accuracy, model_state

    def offer(self, epoch: int, val_accuracy: float, model: nn.Module) -> bool:
        if val_accuracy <= self.val_accuracy:
            return False
        self.epoch, self.val_accuracy = epoch, val_accuracy
        self.model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return True

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "val_accuracy": self.val_accuracy, "model": self.model_state}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "BestEpoch":
        return cls(int(state["epoch"]), float(state["val_accuracy"]), state.get("model"))


class WarmupCosine:
    """Learning-rate factor per optimiser step: linear warm-up, then cosine decay to 0."""

    def __init__(self, total_steps: int, warmup_steps: int):
        self.total_steps = max(total_steps, 1)
        self.warmup_steps = min(warmup_steps, self.total_steps - 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
