"""The input half of Pairwise Label Smoothing (PLS; pairwise-label-smoothing.txt, sec. "Pairwise
Label Smoothing", eq. 7-8 and the last paragraph of the method section; METHODS.md sec. 6).

Each sample ``x_i`` is paired with a random partner ``x_j`` of the same mini-batch (the paper's
footnote 1: "randomly selecting a sample from the same mini-batch"); the model sees
``x_ij = (x_i + x_j) / 2`` (eq. 7), whose ground truth is ``q = (y_i + y_j) / 2`` (eq. 8).
Because averaged images "may lack information on the original training samples", mini-batches of
original images ``x_ii`` (a sample paired with itself: ``x_ii = x_i``, ``q = y_i``) alternate with
mini-batches of averaged pairs.  The alternation is a function of the global training-step
counter only (step 0, 2, 4, ... original; 1, 3, 5, ... pairs), so it is deterministic and a
resumed run continues the same sequence.

This is not a registered augmentation: the ``"pls"`` label strategy owns a :class:`PairBatches`
and applies it in its ``prepare`` hook, after the run's augmentation (e.g. ``standard`` crop/flip,
which is then applied to each image before pairing) and before the model.  Under DDP, partners
are drawn within each process's share of the global batch.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..batch import Batch
from ..functional.mixup import random_partners


def pair_average(inputs: Tensor, partner: Tensor) -> Tensor:
    """``x_ij = (x_i + x_partner(i)) / 2`` per row (eq. 7).  ``(x + x) / 2 == x`` exactly in
    binary floating point, so a row paired with itself is unchanged."""
    return (inputs + inputs[partner]) * 0.5


def pair_labels(labels: Tensor, partner_labels: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``q = (y_i + y_j) / 2`` (eq. 8), shape (N, K): 0.5 on each class of the pair, 1 when both agree."""
    one_hot = torch.nn.functional.one_hot
    return (one_hot(labels, num_classes).to(dtype) + one_hot(partner_labels, num_classes).to(dtype)) * 0.5


class PairBatches:
    """Turns a step's batch into original (``x_ii``) or averaged-pair (``x_ij``) samples.

    Reports per sample (see :mod:`auglabel.augment.base`): ``partner`` (row of the partner; the row
    itself on original batches), ``partner_label``, ``gamma`` (0.5: the own image's weight in
    ``x_ij``, and in ``x_ii = (x_i + x_i) / 2``) and ``paired`` (bool: whether the row was averaged
    with another image).

    Args:
        original_batches: alternate original and pair batches (the paper); False makes every batch a
            pair batch (Table 4, "no original images").
    """

    def __init__(self, original_batches: bool = True):
        self.original_batches = bool(original_batches)

    def is_pair_step(self, step: int) -> bool:
        """Whether training step ``step`` (0-based) sees averaged pairs: odd steps, or all without originals."""
        return not self.original_batches or step % 2 == 1

    def __call__(self, batch: Batch, *, generator: torch.Generator, step: int) -> Batch:
        if batch.num_views != 1:
            raise ValueError(f"PLS pairs single-view batches, got num_views={batch.num_views}")
        n, device = len(batch), batch.device
        paired = self.is_pair_step(step)
        if paired:
            partner = random_partners(n, generator=generator, device=device)
            inputs = pair_average(batch.inputs, partner)
        else:
            partner = torch.arange(n, device=device)
            inputs = batch.inputs
        info = {
            "partner": partner,
            "partner_label": batch.labels[partner],
            "gamma": torch.full((n,), 0.5, device=device, dtype=batch.inputs.dtype),
            "paired": partner != torch.arange(n, device=device) if paired else torch.zeros(n, dtype=torch.bool, device=device),
        }
        return batch.replace(inputs=inputs, info=info)

    def __repr__(self) -> str:
        return f"PairBatches(original_batches={self.original_batches})"
