"""Further binned calibration metrics (METHODS.md section 9), as pure tensor functions.

Which statistics each metric needs, and so how it combines across batches and processes:

* **From the equal-width per-bin sums** ``(counts, conf_sums, correct_sums)`` of
  :func:`~auglabel.functional.calibration.bin_statistics` (exact sums over batches and ranks):
  the maximum calibration error (:func:`mce_from_bins`), the signed calibration gap
  (:func:`calibration_gap_from_bins`) and the debiased L2 calibration error
  (:func:`debiased_ece_from_bins`).
* **From per-class equal-width bin sums**, shape (K, bins), of the full probability vectors
  (:func:`classwise_bin_statistics`, also exact sums): the class-wise ECE
  (:func:`classwise_ece_from_bins`).
* **From all predictions** (the bins depend on the global confidence order, so the
  per-sample pairs must be gathered): the adaptive, equal-mass ECE (:func:`adaptive_ece`,
  :func:`equal_mass_bin_statistics`).

The equal-width bin edges are those of :mod:`auglabel.functional.calibration`:
bin ``b`` covers ``(b/B, (b+1)/B]``, 0 goes to the first bin and 1.0 to the last.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from .calibration import (
    _log_probabilities,
    _sum_by_bin,
    _total,
    check_logits_and_labels,
    ece_from_bins,
    tie_averaged,
)


def _check_num_bins(num_bins: int) -> None:
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ConfigError(f"num_bins must be an integer >= 1, got {num_bins!r}")


def _check_pairs(conf: Tensor, correct: Tensor) -> None:
    if conf.dim() != 1 or correct.shape != conf.shape:
        raise DataError(
            f"conf and correct must be 1-D of equal length, got {tuple(conf.shape)} and {tuple(correct.shape)}"
        )


def mce_from_bins(counts: Tensor, conf_sums: Tensor, correct_sums: Tensor) -> Tensor:
    """Maximum calibration error ``max_b |acc_b - conf_b|`` over the non-empty bins (Guo et al. 2017)."""
    _total(counts)
    filled = counts > 0
    return ((correct_sums[filled] - conf_sums[filled]).abs() / counts[filled]).max()


def calibration_gap_from_bins(counts: Tensor, conf_sums: Tensor, correct_sums: Tensor) -> Tensor:
    """Signed gap ``sum_b |B_b|/n * (conf_b - acc_b)`` = mean confidence - accuracy.

    > 0: over-confident, < 0: under-confident.  The bins cancel out, so it is unbiased at any n.
    """
    return (conf_sums - correct_sums).sum() / _total(counts)


def debiased_squared_ece_from_bins(counts: Tensor, conf_sums: Tensor, correct_sums: Tensor) -> Tensor:
    """Kumar, Liang & Ma (NeurIPS 2019, "Verified Uncertainty Calibration", sec. 5) debiased
    estimator of the squared L2 calibration error of the binned predictor.

    ``sum_b |B_b|/n * [(acc_b - conf_b)^2 - acc_b (1 - acc_b) / (|B_b| - 1)]``: the plug-in
    ``(acc_b - conf_b)^2`` is biased upward by the sampling variance of ``acc_b``, which the
    second term estimates without bias (Bernoulli variance with Bessel's correction).  Bins with
    fewer than 2 predictions contribute 0, as in the authors' ``uncertainty-calibration`` package.
    ``correct_sums`` must count 0/1 outcomes (true for equal-width bins, which never split a tie).
    The estimate can be negative when the model is well calibrated.
    """
    n = _total(counts)
    usable = counts >= 2
    count, acc = counts[usable], correct_sums[usable] / counts[usable]
    gap_sq = (acc - conf_sums[usable] / count) ** 2
    return (count * (gap_sq - acc * (1 - acc) / (count - 1))).sum() / n


def debiased_ece_from_bins(counts: Tensor, conf_sums: Tensor, correct_sums: Tensor) -> Tensor:
    """``sqrt(max(0, debiased squared L2-ECE))`` (Kumar et al. 2019; their ``unbiased_l2_ce``).

    An L2 (root-mean-square over bins) calibration error on the equal-width bins, so it is
    on the scale of :func:`l2_ece_from_bins`, not of the L1 ECE.  The square root and the clip
    at 0 leave a small upward bias, far smaller than the plug-in estimator's.
    """
    return debiased_squared_ece_from_bins(counts, conf_sums, correct_sums).clamp(min=0).sqrt()


def l2_ece_from_bins(counts: Tensor, conf_sums: Tensor, correct_sums: Tensor) -> Tensor:
    """Plug-in L2 calibration error ``sqrt(sum_b |B_b|/n * (acc_b - conf_b)^2)`` (biased upward at small n)."""
    n = _total(counts)
    filled = counts > 0
    return ((correct_sums[filled] - conf_sums[filled]) ** 2 / counts[filled]).sum().div(n).sqrt()


def classwise_bin_statistics(probs: Tensor, labels: Tensor, num_bins: int = 15) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class, per-bin ``(counts, prob_sums, hit_sums)``, float64 (K, num_bins) tensors.

    For class k, every sample's ``p_k`` falls into one of the equal-width bins (same edges as
    :func:`~auglabel.functional.calibration.bin_statistics`); a bin sums the samples, their
    ``p_k`` and how many have label k.  Computed on the CPU in float64 (exact integer counts).
    """
    _check_num_bins(num_bins)
    if probs.dim() != 2 or labels.shape != (probs.shape[0],):
        raise DataError(f"probs must be (N, K) and labels (N,), got {tuple(probs.shape)} and {tuple(labels.shape)}")
    probs = probs.detach().to("cpu", torch.float64)
    labels = labels.detach().cpu().long()
    n, k = probs.shape
    if probs.numel() and (probs.min() < 0 or probs.max() > 1):
        raise DataError("probabilities must lie in [0, 1]")
    inner_edges = torch.arange(1, num_bins, dtype=torch.float64) / num_bins
    flat = (torch.bucketize(probs, inner_edges, right=False) + torch.arange(k)[None, :] * num_bins).reshape(-1)
    size = k * num_bins
    counts = torch.bincount(flat, minlength=size).to(torch.float64)
    prob_sums = _sum_by_bin(flat, probs.reshape(-1), size)
    true_flat = flat.reshape(n, k).gather(1, labels[:, None]).squeeze(1)
    hit_sums = torch.bincount(true_flat, minlength=size).to(torch.float64)
    return counts.reshape(k, num_bins), prob_sums.reshape(k, num_bins), hit_sums.reshape(k, num_bins)


def classwise_bin_statistics_from_logits(logits: Tensor, labels: Tensor, num_bins: int = 15):
    """:func:`classwise_bin_statistics` of ``softmax(logits)`` (the probabilities every metric sees)."""
    check_logits_and_labels(logits, labels)
    return classwise_bin_statistics(_log_probabilities(logits).exp(), labels, num_bins)


def classwise_ece_from_bins(counts: Tensor, prob_sums: Tensor, hit_sums: Tensor) -> Tensor:
    """Class-wise ECE (Kull et al. 2019): ``1/K sum_k sum_b |B_kb|/n * |freq_kb(y = k) - mean_kb(p_k)|``.

    Inputs are the (K, bins) sums of :func:`classwise_bin_statistics`; every class's bins hold all n samples.
    """
    if counts.dim() != 2:
        raise DataError(f"class-wise bins must be (K, bins), got {tuple(counts.shape)}")
    n = _total(counts[0])
    return (hit_sums - prob_sums).abs().sum() / (counts.shape[0] * n)


def equal_mass_bin_statistics(conf: Tensor, correct: Tensor, num_bins: int = 15
                              ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Equal-mass bins: ``(counts, conf_sums, correct_sums, lowest, highest)``, float64 (bins,).

    Predictions sorted by confidence are cut into ``num_bins`` consecutive groups of (nearly)
    equal size, the first ``n % num_bins`` one larger (``numpy.array_split``'s convention); with
    fewer predictions than bins the last bins are empty.  ``lowest``/``highest`` are each bin's
    extreme confidences (NaN when empty).  Ties (METHODS.md sec. 9): each member of a group of equal
    confidence gets the group's mean correctness before binning, so ``correct_sums`` may be
    fractional and the result does not depend on the order of the samples.  Needs all predictions.
    """
    _check_num_bins(num_bins)
    _check_pairs(conf, correct)
    n = conf.shape[0]
    sorted_conf, order = torch.sort(conf.to(torch.float64), stable=True)
    sorted_correct = tie_averaged(sorted_conf, correct.to(torch.float64)[order]) if n else sorted_conf
    sizes = torch.full((num_bins,), n // num_bins, dtype=torch.int64)
    sizes[: n % num_bins] += 1
    bin_index = torch.repeat_interleave(torch.arange(num_bins), sizes).to(conf.device)
    counts = sizes.to(torch.float64).to(conf.device)
    lowest = torch.full((num_bins,), float("nan"), dtype=torch.float64, device=conf.device)
    highest = lowest.clone()
    if n:
        ends = torch.cumsum(sizes, 0).to(conf.device)
        filled = sizes.to(conf.device) > 0
        highest[filled] = sorted_conf[ends[filled] - 1]
        lowest[filled] = sorted_conf[(ends - sizes.to(conf.device))[filled]]
    return (counts, _sum_by_bin(bin_index, sorted_conf, num_bins), _sum_by_bin(bin_index, sorted_correct, num_bins),
            lowest, highest)


def adaptive_ece(conf: Tensor, correct: Tensor, num_bins: int = 15) -> Tensor:
    """Adaptive (equal-mass) ECE: the ECE formula on :func:`equal_mass_bin_statistics`'s bins
    (Nguyen & O'Connor 2015; Nixon et al. 2019).  Needs all predictions; raises on none."""
    if conf.numel() == 0:
        raise DataError("no predictions: cannot compute the adaptive ECE of 0 samples")
    return ece_from_bins(*equal_mass_bin_statistics(conf, correct, num_bins)[:3])
