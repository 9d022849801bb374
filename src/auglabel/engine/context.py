"""What the trainer hands the components' ``on_epoch_end`` hooks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import distributed
from ..augment import Augmentation
from ..data.loader import DeviceLoader
from ..labels import LabelStrategy
from .build import Splits


@dataclass
class EpochContext:
    """What an ``on_epoch_end`` hook may use (AutoLabel's validation update, AutoDO's hyper step).

    ``model`` is the unwrapped model (not DDP's wrapper); ``train_loader`` the training split's loader (a
    hook that needs training batches builds its own iteration order from it: the trainer sets its epoch);
    ``splits`` the data (indices, labels, distortion record); ``optimizer_steps`` the number of training
    steps taken so far (continued across a resume).
    """

    epoch: int
    model: nn.Module
    augment: Augmentation
    label_strategy: LabelStrategy
    val_loader: DeviceLoader
    generator: torch.Generator
    dist: distributed.DistContext
    run_dir: Path
    num_epochs: int
    train_loader: DeviceLoader | None = None
    splits: Splits | None = None
    optimizer_steps: int = 0

    @property
    def labels(self) -> LabelStrategy:
        """The label strategy under its former name (use :attr:`label_strategy`)."""
        return self.label_strategy

    @property
    def is_last_epoch(self) -> bool:
        return self.epoch >= self.num_epochs
