"""One training step as a module: augment -> model -> label strategy -> loss.

Wrapping the whole step (model, augmentation and label strategy) in one ``nn.Module`` means
DDP synchronises the gradients of every learned piece (a PLS head, AutoDO tables) with no
special case, and attacks inside the augmentation use the unwrapped model directly.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..augment import Augmentation
from ..batch import Batch
from ..labels import LabelStrategy


class TrainingStep(nn.Module):
    def __init__(self, model: nn.Module, augment: Augmentation, labels: LabelStrategy):
        super().__init__()
        self.model = model
        self.augment = augment
        self.labels = labels

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, Tensor, Batch]:
        """Returns (loss, logits, augmented batch)."""
        batch = self.augment(batch, generator=generator, model=self.model)
        features = None
        if self.labels.needs_features:
            logits, features = self.model(batch.inputs, return_features=True)
        else:
            logits = self.model(batch.inputs)
        loss = self.labels.loss(logits, batch, features=features)
        extra = self.augment.extra_loss(logits, batch)
        if extra is not None:
            loss = loss + extra
        return loss, logits, batch
