"""The batch that travels through one training step.

Augmentations receive a :class:`Batch` and return a new one whose ``info`` dict holds, per
sample, what they did (mixup partner and gamma, AugMix depth and mixing weight, PGD eps,
a transformation ``distance`` in [0, 1] ...).  Label strategies read those facts to build
targets.  Every tensor in ``info`` has the batch dimension first and is aligned with ``inputs``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass
class Batch:
    """A mini-batch of images with everything a label strategy may need.

    Attributes:
        inputs: float images in [0, 1], shape (N, C, H, W), on the model's device.  When an
            augmentation produces several views (AugMix + JSD) they are concatenated along
            dim 0, view-major: rows ``v*B .. (v+1)*B-1`` hold view ``v`` of the B samples.
        labels: int64 class labels, shape (N,).
        index: int64 dataset index of each row, shape (N,) (repeated across views).
        num_classes: K.
        info: per-sample facts reported by augmentations, each of shape (N, ...).
        weights: optional per-sample loss weights, shape (N,); ``None`` means all ones.
        num_views: number of views concatenated in ``inputs`` (1 without multi-view).
    """

    inputs: Tensor
    labels: Tensor
    index: Tensor
    num_classes: int
    info: dict[str, Tensor] = field(default_factory=dict)
    weights: Tensor | None = None
    num_views: int = 1

    def __post_init__(self) -> None:
        n = self.inputs.shape[0]
        for name, value in (("labels", self.labels), ("index", self.index)):
            if value.shape[0] != n:
                raise ValueError(f"batch {name} has {value.shape[0]} rows, inputs have {n}")
        for key, value in self.info.items():
            if value.shape[0] != n:
                raise ValueError(f"batch info[{key!r}] has {value.shape[0]} rows, inputs have {n}")

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    def replace(self, **changes) -> "Batch":
        """A copy with some fields changed; ``info`` given here is merged into the old one."""
        if "info" in changes:
            changes["info"] = {**self.info, **changes["info"]}
        return replace(self, **changes)

    def one_hot(self) -> Tensor:
        """One-hot float targets of shape (N, K) on the batch's device."""
        return torch.nn.functional.one_hot(self.labels, self.num_classes).to(self.inputs.dtype)
