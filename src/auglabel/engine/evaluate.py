"""Evaluation passes: calibration statistics (and optionally logits) of a model on a loader."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data.loader import DeviceLoader
from ..metrics import CalibrationStats


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, *, reduce: bool = True,
             keep_logits: bool = False) -> tuple[CalibrationStats, Tensor | None, Tensor | None]:
    """Run ``model`` in eval mode over ``loader``; returns (stats, logits, labels).

    With ``reduce`` the statistics are summed exactly over all processes (each rank holds an
    exact shard, so nothing is counted twice).  Logits are kept on CPU only when asked.
    """
    was_training = model.training
    model.eval()
    stats = CalibrationStats()
    all_logits, all_labels = [], []
    for batch in loader:
        logits = model(batch.inputs)
        stats.update(logits, batch.labels)
        if keep_logits:
            all_logits.append(logits.float().cpu())
            all_labels.append(batch.labels.cpu())
    model.train(was_training)
    if reduce:
        stats.all_reduce()
    if keep_logits:
        return stats, torch.cat(all_logits), torch.cat(all_labels)
    return stats, None, None
