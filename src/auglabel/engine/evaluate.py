"""Evaluation passes: calibration statistics (and optionally logits) of a model on a loader."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import distributed
from ..data.loader import DeviceLoader
from ..metrics import CalibrationStats


class ClassAccuracy:
    """Per-class top-1 accuracy as sums (samples and correct predictions per true class), exact over
    batches and processes: the AutoDO paper's accuracy of the under-represented classes (sec. 5.3)."""

    def __init__(self, num_classes: int):
        self.counts = torch.zeros(num_classes, dtype=torch.float64)
        self.correct = torch.zeros(num_classes, dtype=torch.float64)

    @torch.no_grad()
    def update(self, logits: Tensor, labels: Tensor) -> None:
        labels = labels.detach().cpu()
        hits = (logits.detach().argmax(1).cpu() == labels).double()
        self.counts.index_add_(0, labels, torch.ones_like(hits))
        self.correct.index_add_(0, labels, hits)

    def all_reduce(self) -> "ClassAccuracy":
        if distributed.is_distributed():
            both = distributed.all_reduce_sum(torch.stack([self.counts, self.correct]))
            self.counts, self.correct = both[0].cpu(), both[1].cpu()
        return self

    def compute(self) -> list[float | None]:
        """Accuracy of each class (None for a class with no sample)."""
        return [None if n == 0 else float(c / n) for n, c in zip(self.counts.tolist(), self.correct.tolist())]


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, *, reduce: bool = True, keep_logits: bool = False,
             per_class: ClassAccuracy | None = None) -> tuple[CalibrationStats, Tensor | None, Tensor | None]:
    """Run ``model`` in eval mode over ``loader``; returns (stats, logits, labels).

    With ``reduce`` the statistics are summed exactly over all processes (each rank holds an
    exact shard, so nothing is counted twice).  Logits are kept on CPU only when asked.
    ``per_class`` (optional) also accumulates per-class accuracy (reduced with the rest).
    """
    was_training = model.training
    model.eval()
    stats = CalibrationStats()
    all_logits, all_labels = [], []
    for batch in loader:
        logits = model(batch.inputs)
        stats.update(logits, batch.labels)
        if per_class is not None:
            per_class.update(logits, batch.labels)
        if keep_logits:
            all_logits.append(logits.float().cpu())
            all_labels.append(batch.labels.cpu())
    model.train(was_training)
    if reduce:
        stats.all_reduce()
        if per_class is not None:
            per_class.all_reduce()
    if keep_logits:
        return stats, torch.cat(all_logits), torch.cat(all_labels)
    return stats, None, None
