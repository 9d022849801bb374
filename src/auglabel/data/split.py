"""Seeded, class-stratified index splits (validation split, training subsets).

Each class gets a share of the requested total proportional to its size, rounded by the
largest-remainder (Hamilton) method so the shares add up exactly; ties between equal
remainders are broken by the seeded generator rather than by class order.  Which samples
of a class are taken is a seeded random choice.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError


def _class_counts(
    labels: torch.Tensor | np.ndarray | Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """``(inverse, counts)``: each sample's class rank and each class's size.

    Index bookkeeping is done in numpy: on CPU it sorts 60k labels ~40x faster than torch here.
    """
    is_tensor = isinstance(labels, torch.Tensor)
    array = labels.detach().cpu().numpy() if is_tensor else np.asarray(labels)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ConfigError(f"labels must be a 1-D integer sequence, got {array.dtype} "
                          f"of shape {array.shape}")
    _, inverse, counts = np.unique(array, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts.astype(np.int64)


def _generator(seed: int) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    return torch.Generator().manual_seed(int(seed))


def _size_to_count(size: int | float, total: int, what: str) -> int:
    """An int is a count in 1..total-1; a float in (0, 1) is a fraction of ``total``."""
    if isinstance(size, bool) or not isinstance(size, numbers.Real):
        raise ConfigError(f"{what} must be a count or a fraction in (0, 1), got {size!r}")
    if isinstance(size, numbers.Integral):
        count = int(size)
        if not 1 <= count < total:
            raise ConfigError(f"{what}={count} must be between 1 and {total - 1} "
                              f"(the dataset has {total} samples)")
        return count
    if not 0.0 < float(size) < 1.0:
        raise ConfigError(f"{what}={size} must be a fraction strictly between 0 and 1")
    count = int(np.floor(float(size) * total + 0.5))
    if not 1 <= count < total:
        raise ConfigError(f"{what}={size} of {total} samples gives {count} samples; "
                          f"use a fraction that leaves both parts non-empty")
    return count


def _allocate(counts: np.ndarray, total: int, caps: np.ndarray,
              generator: torch.Generator) -> np.ndarray:
    """Per-class shares of ``total`` proportional to ``counts``, each at most ``caps``.

    Largest remainder in exact integer arithmetic: class c's quota is total*n_c/N; it gets
    the floor, then the leftover units go one by one to the class with the largest
    unmet quota (a random key breaks ties).  With no caps binding this is plain Hamilton.
    """
    n = int(counts.sum())
    scaled = total * counts  # quota * n, kept integral
    shares = np.minimum(scaled // n, caps)
    tie_keys = torch.rand(len(counts), generator=generator).numpy()
    lowest = np.iinfo(np.int64).min
    for _ in range(total - int(shares.sum())):  # at most a few units per class
        unmet = np.where(shares < caps, scaled - shares * n, lowest)
        winner = np.lexsort((tie_keys, unmet))[-1]
        shares[winner] += 1
    return shares


def _take_per_class(inverse: np.ndarray, counts: np.ndarray, shares: np.ndarray,
                    generator: torch.Generator) -> np.ndarray:
    """Boolean mask taking ``shares[c]`` random samples of each class ``c``."""
    size = len(inverse)
    permutation = torch.randperm(size, generator=generator).numpy()
    grouped = permutation[np.argsort(inverse[permutation], kind="stable")]
    grouped_class = inverse[grouped]
    starts = np.cumsum(counts) - counts
    rank_in_class = np.arange(size) - starts[grouped_class]
    mask = np.zeros(size, dtype=bool)
    mask[grouped[rank_in_class < shares[grouped_class]]] = True
    return mask


def _device_of(labels: object) -> torch.device:
    return labels.device if isinstance(labels, torch.Tensor) else torch.device("cpu")


def _index_tensor(indices: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(indices.astype(np.int64)).to(device)


def stratified_split(labels: torch.Tensor | np.ndarray | Sequence[int], val_size: int | float,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split sample indices into sorted ``(train_idx, val_idx)`` int64 tensors.

    ``val_size`` is a count (int) or a fraction in (0, 1) of ``len(labels)``.  Classes share
    the validation set in proportion to their size (so per-class counts are within 1 of
    exact proportionality), and every class keeps at least one training sample; a class
    with a single sample therefore stays in training.  Used for the held-out, undistorted
    validation split of METHODS.md (10-20 % of train).
    """
    inverse, counts = _class_counts(labels)
    total = len(inverse)
    val_count = _size_to_count(val_size, total, "val_size")
    generator = _generator(seed)
    caps = counts - 1
    if val_count > caps.sum():
        raise ConfigError(f"val_size={val_size} asks for {val_count} validation samples but at "
                          f"most {int(caps.sum())} leave every class a training sample")
    shares = _allocate(counts, val_count, caps, generator)
    is_val = _take_per_class(inverse, counts, shares, generator)
    device = _device_of(labels)
    indices = np.arange(total)
    return _index_tensor(indices[~is_val], device), _index_tensor(indices[is_val], device)


def subsample_indices(labels: torch.Tensor | np.ndarray | Sequence[int], n: int,
                      seed: int) -> torch.Tensor:
    """A sorted, class-stratified random subset of ``n`` indices (``--train-subset``).

    Class shares are proportional with largest-remainder rounding, as in
    :func:`stratified_split`; ``n == len(labels)`` returns every index.
    """
    inverse, counts = _class_counts(labels)
    total = len(inverse)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= total:
        raise ConfigError(f"subset size must be an integer between 1 and {total}, got {n!r}")
    generator = _generator(seed)
    shares = _allocate(counts, int(n), counts, generator)
    chosen = _take_per_class(inverse, counts, shares, generator)
    return _index_tensor(np.flatnonzero(chosen), _device_of(labels))
