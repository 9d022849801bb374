"""Calibration metrics as pure tensor functions (METHODS.md section 1).

Binned metrics work on per-bin sufficient statistics (count, sum of confidence, sum of
correct) so that batches and processes can be summed exactly before the metric is taken.

Edge convention of the equal-width bins, used everywhere in auglabel: with ``B`` bins, bin
``b`` covers ``(b/B, (b+1)/B]``; a confidence of exactly 0 goes to the first bin (it is
otherwise uncovered) and exactly 1.0 to the last.  The edges ``b/B`` are computed in the
confidence's own dtype, so a confidence equal to an edge in that dtype is exactly on it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError, DataError

_REDUCTIONS = ("mean", "sum", "none")


def check_logits_and_labels(logits: Tensor, labels: Tensor) -> None:
    """Raise :class:`DataError` unless ``logits`` is (N, K), N >= 1, and ``labels`` is (N,) in [0, K)."""
    if logits.dim() != 2:
        raise DataError(f"logits must have shape (N, K), got {tuple(logits.shape)}")
    if labels.dim() != 1 or labels.shape[0] != logits.shape[0]:
        raise DataError(
            f"labels must have shape ({logits.shape[0]},) to match the logits, got {tuple(labels.shape)}"
        )
    if logits.shape[0] == 0:
        raise DataError("no predictions: logits have 0 rows")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DataError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise DataError(
            f"labels must lie in [0, {logits.shape[1] - 1}], got values in "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )
    if torch.isnan(logits).any():
        raise DataError("logits contain NaN")


def _log_probabilities(logits: Tensor) -> Tensor:
    """Log-softmax in at least float32, so half-precision logits do not lose small probabilities.

    Every probability here is ``exp`` of this, so all metrics see bit-identical confidences.
    """
    return F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=1)


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ConfigError(f"reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")


def confidences_and_correct(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Top-1 confidence ``c = max_k softmax(z)_k`` (float) and whether ``argmax`` equals the label (bool)."""
    check_logits_and_labels(logits, labels)
    confidence, prediction = _log_probabilities(logits).exp().max(dim=1)
    return confidence, prediction == labels


def per_sample_scores(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(confidence, correct, brier, nll)`` per sample from one validation and one log-softmax.

    The same values as :func:`confidences_and_correct`, :func:`brier_score` and
    :func:`negative_log_likelihood` with ``reduction="none"``, for accumulating metrics.
    """
    check_logits_and_labels(logits, labels)
    log_probs = _log_probabilities(logits)
    probs = log_probs.exp()
    confidence, prediction = probs.max(dim=1)
    labels = labels.long()
    brier = ((probs - F.one_hot(labels, logits.shape[1]).to(probs.dtype)) ** 2).sum(dim=1)
    nll = -log_probs.gather(1, labels[:, None]).squeeze(1)
    return confidence, prediction == labels, brier, nll


def bin_statistics(conf: Tensor, correct: Tensor, num_bins: int = 15) -> tuple[Tensor, Tensor, Tensor]:
    """Per-bin ``(counts, conf_sums, correct_sums)``, float64 tensors of shape (num_bins,).

    Equal-width bins on (0, 1] (Guo et al. 2017); see the module docstring for the edges.
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ConfigError(f"num_bins must be an integer >= 1, got {num_bins!r}")
    if conf.dim() != 1 or correct.shape != conf.shape:
        raise DataError(
            f"conf and correct must be 1-D of equal length, got {tuple(conf.shape)} and {tuple(correct.shape)}"
        )
    if conf.numel() and (conf.min() < 0 or conf.max() > 1):
        raise DataError(f"confidences must lie in [0, 1], got values in [{float(conf.min())}, {float(conf.max())}]")
    inner_edges = torch.arange(1, num_bins, dtype=conf.dtype, device=conf.device) / num_bins
    # right=False counts the inner edges strictly below c: an edge value falls in the lower bin.
    bin_index = torch.bucketize(conf, inner_edges, right=False)
    counts = _sum_by_bin(bin_index, torch.ones_like(conf, dtype=torch.float64), num_bins)
    return counts, _sum_by_bin(bin_index, conf, num_bins), _sum_by_bin(bin_index, correct, num_bins)


def _sum_by_bin(bin_index: Tensor, values: Tensor, num_bins: int) -> Tensor:
    """float64 sums of ``values`` per bin; ``index_add_`` is deterministic on CUDA when asked
    (``torch.use_deterministic_algorithms``), where a weighted ``bincount`` would raise."""
    sums = torch.zeros(num_bins, dtype=torch.float64, device=values.device)
    return sums.index_add_(0, bin_index, values.to(torch.float64))


def _total(counts: Tensor) -> Tensor:
    total = counts.sum()
    if total <= 0:
        raise DataError("no predictions: every calibration bin is empty")
    return total


def ece_from_bins(counts: Tensor, conf_sums: Tensor, correct_sums: Tensor) -> Tensor:
    """Expected calibration error ``sum_b |B_b|/n * |acc(B_b) - conf(B_b)|`` (Guo et al. 2017).

    ``|B_b|/n * |acc_b - conf_b|`` equals ``|correct_sum_b - conf_sum_b| / n``, so empty bins
    need no special case.
    """
    return (correct_sums - conf_sums).abs().sum() / _total(counts)


def overconfidence_from_bins(counts: Tensor, conf_sums: Tensor, correct_sums: Tensor) -> Tensor:
    """Overconfidence error ``sum_b |B_b|/n * conf_b * max(conf_b - acc_b, 0)`` (mixup-calibration paper, sec. 3)."""
    mean_conf = conf_sums / counts.clamp(min=1)
    return (mean_conf * (conf_sums - correct_sums).clamp(min=0)).sum() / _total(counts)


def rms_calibration_error(conf: Tensor, correct: Tensor, bin_size: int = 100) -> Tensor:
    """RMS calibration error with adaptive bins (AugMix paper, App. E, eq. 3).

    Predictions are sorted by confidence; bins hold ``bin_size`` consecutive predictions, there
    are ``max(1, n // bin_size)`` of them and the last absorbs the remainder (n = 250 gives bins of
    100 and 150).  Unlike the widely copied reference script, the last (highest-confidence) bin is
    counted.  ``RMS = sqrt(sum_b |B_b|/n * (acc_b - conf_b)^2)``.

    Ties (METHODS.md sec. 9): predictions of equal confidence have no order, so every member of a
    tie group gets the group's mean correctness before binning.  A bin boundary inside a tie group
    then splits it without sorting its wrong predictions apart from its right ones (which would
    inflate the metric: 1,000 predictions at confidence 1.0, 950 of them correct, are off by 0.05,
    not 0.158), and the result is order-invariant: the same however samples were sharded.
    """
    if isinstance(bin_size, bool) or not isinstance(bin_size, int) or bin_size < 1:
        raise ConfigError(f"bin_size must be an integer >= 1, got {bin_size!r}")
    if conf.dim() != 1 or correct.shape != conf.shape:
        raise DataError(
            f"conf and correct must be 1-D of equal length, got {tuple(conf.shape)} and {tuple(correct.shape)}"
        )
    n = conf.shape[0]
    if n == 0:
        raise DataError("no predictions: cannot compute the RMS calibration error of 0 samples")
    sorted_conf, order = torch.sort(conf.to(torch.float64), stable=True)
    sorted_correct = tie_averaged(sorted_conf, correct.to(torch.float64)[order])
    num_bins = max(1, n // bin_size)
    bin_index = (torch.arange(n, device=conf.device) // bin_size).clamp(max=num_bins - 1)
    counts = _sum_by_bin(bin_index, torch.ones_like(sorted_conf), num_bins)
    gaps = _sum_by_bin(bin_index, sorted_correct - sorted_conf, num_bins)
    return ((gaps**2 / counts).sum() / n).sqrt()


def tie_averaged(sorted_conf: Tensor, values: Tensor) -> Tensor:
    """``values`` with each run of equal ``sorted_conf`` (sorted ascending) replaced by the run's mean."""
    _, inverse, run_lengths = torch.unique_consecutive(sorted_conf, return_inverse=True, return_counts=True)
    run_sums = torch.zeros(len(run_lengths), dtype=values.dtype, device=values.device).index_add_(0, inverse, values)
    return (run_sums / run_lengths.to(values.dtype))[inverse]


def brier_score(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Multiclass Brier score on the 0..2 scale: ``mean_i sum_k (p_ik - y_ik)^2``.

    ``reduction`` is "mean" (the score), "sum" (for accumulating) or "none" (per sample).
    """
    _check_reduction(reduction)
    check_logits_and_labels(logits, labels)
    probs = _log_probabilities(logits).exp()
    one_hot = F.one_hot(labels.long(), logits.shape[1]).to(probs.dtype)
    return _reduce(((probs - one_hot) ** 2).sum(dim=1), reduction)


def negative_log_likelihood(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood ``-log softmax(z)_y`` (natural log), reduced as in :func:`brier_score`."""
    _check_reduction(reduction)
    check_logits_and_labels(logits, labels)
    nll = -_log_probabilities(logits).gather(1, labels.long()[:, None]).squeeze(1)
    return _reduce(nll, reduction)
