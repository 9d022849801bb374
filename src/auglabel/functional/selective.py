"""Selective prediction (METHODS.md section 9): risk-coverage curve, AURC and AUGRC.

A selective classifier accepts its most confident predictions and abstains on the rest.
Sorting by confidence (descending), coverage ``i/n`` accepts the ``i`` most confident:

* selective risk ``risk_i = (errors among the i accepted) / i`` (Geifman & El-Yaniv 2017);
* generalized risk ``grisk_i = (errors among the i accepted) / n`` = P(wrong and accepted)
  (Traub et al. 2024, "Overcoming common flaws in the evaluation of selective classification
  systems").

``AURC = mean_i risk_i`` over the n coverage points ``1/n, ..., 1`` (the spec's definition).
``AUGRC`` is the area under ``grisk`` against coverage, from the point (0, 0) by the trapezoidal
rule as in Traub et al.'s reference code (fd-shifts); it then equals exactly
``(1 - AUROC) * acc * (1 - acc) + (1 - acc)^2 / 2``, their eq. relating it to the AUROC of
confidence as a detector of correct predictions (ties counted 1/2).

Ties: predictions of equal confidence are accepted or rejected together by any threshold, so
their order is undefined.  Every member of a tie group gets the group's mean error before the
curve is taken; the curves (linear in the errors) are then the expectation over uniformly random
tie orders, and every result is independent of the input order.  All of these need all
predictions (they depend on the global confidence order): gather them across processes first.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from .calibration import tie_averaged


def _sorted_errors(conf: Tensor, correct: Tensor) -> Tensor:
    """Errors (float64) in order of descending confidence, tie groups averaged."""
    if conf.dim() != 1 or correct.shape != conf.shape:
        raise DataError(
            f"conf and correct must be 1-D of equal length, got {tuple(conf.shape)} and {tuple(correct.shape)}"
        )
    if conf.numel() == 0:
        raise DataError("no predictions: the risk-coverage curve of 0 samples is undefined")
    if torch.isnan(conf).any():
        raise DataError("confidences contain NaN")
    sorted_conf, order = torch.sort(conf.to(torch.float64), descending=True, stable=True)
    return tie_averaged(sorted_conf, 1.0 - correct.to(torch.float64)[order])


def risk_coverage_curve(conf: Tensor, correct: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(coverage, risk, generalized_risk)``, float64 (n,) tensors at coverage ``i/n``, i = 1..n.

    ``conf`` is any confidence score (higher = more confident), ``correct`` 0/1 (bool) outcomes.
    """
    errors = _sorted_errors(conf, correct)
    n = errors.shape[0]
    accepted = torch.arange(1, n + 1, dtype=torch.float64, device=errors.device)
    cumulative = errors.cumsum(0)
    return accepted / n, cumulative / accepted, cumulative / n


def aurc(conf: Tensor, correct: Tensor) -> Tensor:
    """Area under the risk-coverage curve: the mean selective risk over the n coverage points.

    0 when every prediction is right; ``err + (1 - err) ln(1 - err)`` (approx.) is the best a
    confidence ranking can do at error rate ``err`` (Geifman et al. 2019).
    """
    return risk_coverage_curve(conf, correct)[1].mean()


def augrc(conf: Tensor, correct: Tensor) -> Tensor:
    """Area under the generalized risk-coverage curve (Traub et al. 2024), trapezoidal from (0, 0).

    In [0, 1]; a random ranking gives ``(1 - acc) / 2``, a perfect one ``(1 - acc)^2 / 2``.
    """
    generalized = risk_coverage_curve(conf, correct)[2]
    n = generalized.shape[0]
    return (generalized.sum() - generalized[-1] / 2) / n


def risk_coverage_points(conf: Tensor, correct: Tensor, max_points: int = 501) -> dict[str, list[float]]:
    """The risk-coverage curve thinned to at most ``max_points`` points (always including full
    coverage), JSON-ready: ``coverage``, ``risk``, ``generalized_risk`` lists, plus ``aurc``, ``augrc``
    and ``count`` computed on the full curve."""
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 2:
        raise ConfigError(f"max_points must be an integer >= 2, got {max_points!r}")
    coverage, risk, generalized = risk_coverage_curve(conf, correct)
    n = coverage.shape[0]
    keep = torch.unique(torch.linspace(0, n - 1, min(n, max_points), dtype=torch.float64).round().long())
    return {"coverage": coverage[keep].tolist(), "risk": risk[keep].tolist(),
            "generalized_risk": generalized[keep].tolist(), "aurc": float(risk.mean()),
            "augrc": float((generalized.sum() - generalized[-1] / 2) / n), "count": n}
