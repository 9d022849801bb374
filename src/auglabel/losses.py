"""Losses on soft targets."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-sample cross-entropy ``-sum_k q_k log p_k`` for soft targets q, shape (N,).

    Uses ``F.cross_entropy`` with probability targets (one fused log-softmax kernel).
    """
    return F.cross_entropy(logits, targets, reduction="none")


def entropy(logits: Tensor) -> Tensor:
    """Per-sample Shannon entropy ``H(p) = -sum_k p_k log p_k`` of ``softmax(logits)``."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def weighted_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """Mean of per-sample ``values``, weighted by ``weights`` (plain mean when None).

    Weighted as ``sum(w * v) / N`` (not ``/ sum(w)``) so a weight of 0 removes a sample's
    contribution without rescaling the others, as AugMix-JSD's clean-only cross-entropy needs.
    """
    if weights is None:
        return values.mean()
    return (values * weights).sum() / values.shape[0]
