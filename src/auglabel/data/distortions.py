"""Dataset distortions of the AutoDO paper (papers/autodo.txt sec. 5.1; METHODS.md sec. 7): class
imbalance and label noise, applied to the TRAINING split only.

* **Imbalance ratio IR**: every class ``c`` with ``c >= K / 2`` (0-based; for K = 10 the classes 5..9,
  the paper's ``{C/2 + 1 .. C}``) keeps ``max(1, round(n_c / IR))`` of its ``n_c`` training samples,
  a seeded random choice.  Decision: per class, so the counts are exact and testable; the reference
  code draws ``L / IR`` minority samples jointly (L = majority total), which gives the same expected
  counts on a balanced dataset but random per-class counts.
* **Noise ratio NR**: ``round(NR * n)`` of the n remaining training samples, drawn without replacement,
  get a label drawn uniformly from all K classes (the paper's and the reference code's rule), so a
  relabelled sample keeps its class with probability 1/K: the share of labels actually changed is
  ``NR * (K - 1) / K`` in expectation.  :class:`Distortion` records both (``relabelled`` and ``flipped``).

The clean stratified validation split is carved out BEFORE distortion (the caller's job:
:func:`auglabel.engine.build.load_splits`), and nothing here touches it or the test set.
Everything is seeded by the run's ``train.seed`` through :func:`distortion_generator`.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError

SALT = 0xA070D0  # keeps the distortion's random stream apart from the split's (same train.seed)


def check_ratios(imbalance_ratio: float, noise_ratio: float) -> None:
    """One-line ConfigErrors for values outside ``IR >= 1`` and ``0 <= NR < 1``."""
    for name, value in (("data.imbalance_ratio", imbalance_ratio), ("data.noise_ratio", noise_ratio)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if imbalance_ratio < 1:
        raise ConfigError(f"data.imbalance_ratio must be >= 1 (1: balanced), got {imbalance_ratio}")
    if not 0 <= noise_ratio < 1:
        raise ConfigError(f"data.noise_ratio must be in [0, 1), got {noise_ratio}")


def distortion_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + SALT)


def minority_classes(num_classes: int) -> list[int]:
    """The classes the imbalance subsamples: ``c >= K / 2``."""
    return [c for c in range(num_classes) if 2 * c >= num_classes]


def imbalance(indices: Tensor, labels: Tensor, num_classes: int, ratio: float,
              generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(kept, dropped)`` sorted dataset indices: each class ``c >= K/2`` keeps ``max(1, round(n_c / ratio))``
    random samples of its ``n_c`` among ``indices`` (``labels`` is indexed by dataset index)."""
    indices = indices.to(torch.int64).cpu()
    if ratio == 1:
        return indices.sort().values, indices[:0]
    own = labels.cpu()[indices]
    drop = torch.zeros(len(indices), dtype=torch.bool)
    for c in minority_classes(num_classes):
        members = torch.nonzero(own == c).flatten()
        if len(members) == 0:
            continue
        keep = max(1, int(math.floor(len(members) / ratio + 0.5)))
        order = members[torch.randperm(len(members), generator=generator)]
        drop[order[keep:]] = True
    return indices[~drop].sort().values, indices[drop].sort().values


def label_noise(indices: Tensor, labels: Tensor, num_classes: int, ratio: float,
                generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(relabelled, new_labels)``: ``round(ratio * len(indices))`` dataset indices drawn without
    replacement (sorted) and, for each, a label uniform over all ``num_classes`` classes."""
    indices = indices.to(torch.int64).cpu()
    count = int(math.floor(ratio * len(indices) + 0.5))
    chosen = indices[torch.randperm(len(indices), generator=generator)[:count]].sort().values
    new = torch.randint(0, num_classes, (count,), generator=generator)
    return chosen, new


@dataclass
class Distortion:
    """What :func:`distort` did, in dataset indices (the rows of the training file).

    Attributes:
        imbalance_ratio, noise_ratio, seed: the settings.
        dropped: training indices removed by the imbalance.
        relabelled: training indices whose label was redrawn (some keep their class by chance).
        original_labels, new_labels: the labels of ``relabelled`` before and after.
        counts_before, counts_after: training samples per class before the imbalance and after it.
    """

    imbalance_ratio: float
    noise_ratio: float
    seed: int
    dropped: Tensor
    relabelled: Tensor
    original_labels: Tensor
    new_labels: Tensor
    counts_before: list[int] = field(default_factory=list)
    counts_after: list[int] = field(default_factory=list)

    @property
    def flipped(self) -> Tensor:
        """Indices whose label actually changed."""
        return self.relabelled[self.new_labels != self.original_labels]

    @property
    def active(self) -> bool:
        return self.imbalance_ratio != 1 or self.noise_ratio != 0

    def to_dict(self) -> dict[str, Any]:
        return {"imbalance_ratio": self.imbalance_ratio, "noise_ratio": self.noise_ratio, "seed": self.seed,
                "minority_classes_rule": "c >= K/2", "label_noise_rule": "uniform over all K classes",
                "counts_before": self.counts_before, "counts_after": self.counts_after,
                "num_dropped": len(self.dropped), "num_relabelled": len(self.relabelled),
                "num_flipped": len(self.flipped), "dropped": self.dropped.tolist(),
                "relabelled": self.relabelled.tolist(), "original_labels": self.original_labels.tolist(),
                "new_labels": self.new_labels.tolist()}


def distort(train_idx: Tensor, labels: Tensor, num_classes: int, *, imbalance_ratio: float = 1.0,
            noise_ratio: float = 0.0, seed: int = 0) -> tuple[Tensor, Tensor, Distortion]:
    """Imbalance, then label noise on what is left (the paper's order).

    Returns ``(train_idx, labels, record)``: the kept training indices (sorted), a COPY of ``labels``
    (indexed by dataset index) with the relabelled entries replaced, and the :class:`Distortion`.
    Indices outside ``train_idx`` (the validation split) keep their labels.
    """
    check_ratios(imbalance_ratio, noise_ratio)
    generator = distortion_generator(seed)
    cpu_labels = labels.cpu()
    before = torch.bincount(cpu_labels[train_idx.cpu()], minlength=num_classes)
    kept, dropped = imbalance(train_idx, cpu_labels, num_classes, float(imbalance_ratio), generator)
    after = torch.bincount(cpu_labels[kept], minlength=num_classes)
    relabelled, new = label_noise(kept, cpu_labels, num_classes, float(noise_ratio), generator)
    noisy = cpu_labels.clone()
    original = noisy[relabelled].clone()
    noisy[relabelled] = new
    record = Distortion(float(imbalance_ratio), float(noise_ratio), int(seed), dropped, relabelled, original, new,
                        before.tolist(), after.tolist())
    return kept.to(train_idx.device), noisy.to(labels.device), record
