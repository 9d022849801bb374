"""One training step as a module: augment -> model -> label strategy -> loss.

Wrapping the whole step (model, augmentation and label strategy) in one ``nn.Module`` means
DDP synchronises the gradients of every learned piece (a PLS head, AutoDO tables) with no
special case, and attacks inside the augmentation use the unwrapped model directly.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from ..augment import Augmentation
from ..batch import Batch
from ..labels import LabelStrategy


class TrainingStep(nn.Module):
    """``augment -> model -> labels -> loss``.

    Args:
        autocast_dtype: run the step (augmentation, forward and loss) under ``torch.autocast`` with
            this dtype on CUDA (bf16 mixed precision); ignored on other devices.
        channels_last: hand the model its inputs in channels-last memory format.
    """

    def __init__(self, model: nn.Module, augment: Augmentation, labels: LabelStrategy, *,
                 autocast_dtype: torch.dtype | None = None, channels_last: bool = False):
        super().__init__()
        self.model = model
        self.augment = augment
        self.labels = labels
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last

    def _precision(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None or device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, Tensor, Batch]:
        """Returns (loss, logits, augmented batch)."""
        with self._precision(batch.inputs.device):
            batch = self.augment(batch, generator=generator, model=self.model)
            inputs = batch.inputs
            if self.channels_last and inputs.dim() == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            features = None
            if self.labels.needs_features:
                logits, features = self.model(inputs, return_features=True)
            else:
                logits = self.model(inputs)
            loss = self.labels.loss(logits.float(), batch, features=features)
            extra = self.augment.extra_loss(logits.float(), batch)
            if extra is not None:
                loss = loss + extra
        return loss, logits, batch
