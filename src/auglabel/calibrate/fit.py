"""Fitting temperature scaling (Guo et al. 2017; METHODS.md section 1) and vector scaling by NLL."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..functional.calibration import check_logits_and_labels


#: Bounds on the fitted temperature.  When every held-out prediction is right and the
#: classes are separable the NLL keeps falling as T -> 0, so the optimum must be capped.
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-2, 1e2


def fit_temperature(logits: Tensor, labels: Tensor, max_iter: int = 200) -> float:
    """The temperature ``T`` in [1e-2, 1e2] minimising ``NLL(softmax(logits / T), labels)``.

    Optimises ``log T`` (clamped to the bounds) from T = 1 with L-BFGS and a strong Wolfe
    line search, on CPU in float64.  As a function of ``1/T`` the NLL is convex, so it has a
    single basin in ``log T``; capping T therefore moves it towards the start and the NLL
    never ends above its value at T = 1.

    Args:
        logits: held-out logits (N, K), any device (copied to the CPU).
        labels: their integer labels (N,).
        max_iter: L-BFGS iterations, >= 1.
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ConfigError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    check_logits_and_labels(logits, labels)
    logits = logits.detach().to("cpu", torch.float64)
    labels = labels.detach().to("cpu", torch.int64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_t], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    bounds = (math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE))

    def closure() -> Tensor:
        optimizer.zero_grad()
        # Beyond a bound the loss is flat, so L-BFGS stops there instead of overflowing.
        loss = F.cross_entropy(logits / log_t.clamp(*bounds).exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return math.exp(min(max(float(log_t.detach()), bounds[0]), bounds[1]))


# ---- post-hoc calibrators beside temperature scaling ---------------------------------------------

#: Bounds of vector scaling's per-class scales (the inverse temperature's bounds) and biases; as for
#: ``T``, they only stop the NLL from running off to infinity on separable held-out data.
MIN_SCALE, MAX_SCALE = 1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE
MAX_ABS_BIAS = 100.0
#: Isotonic calibration can give a class probability exactly 0; its calibrated logits are
#: ``log(max(q, PROBABILITY_FLOOR))`` so that the NLL stays finite (at most 27.6 nats per sample).
PROBABILITY_FLOOR = 1e-12
#: Version of the calibrator JSON files written into run directories.
STATE_FORMAT = 1


def fit_vector_scaling(logits: Tensor, labels: Tensor, max_iter: int = 500) -> tuple[Tensor, Tensor]:
    """Vector scaling (Guo et al. 2017, sec. 4.2): per-class ``w, b`` minimising ``NLL(softmax(w * z + b))``.

    ``W`` of matrix scaling restricted to a diagonal, kept positive (each class's logit keeps its
    order) by optimising ``log w`` clamped to ``[log 1e-2, log 1e2]``; ``b`` is clamped to
    ``[-100, 100]``.  L-BFGS with a strong Wolfe line search from ``w = 1, b = 0`` on CPU in
    float64, like :func:`fit_temperature`.  The NLL is convex in ``(w, b)``, so there is one basin.
    Softmax ignores a shift shared by all biases; the gradient in ``b`` sums to zero, so from
    ``b = 0`` the fitted biases sum to zero (unless one sits on a bound).

    Returns ``(scale, bias)``, each (K,) float64.
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ConfigError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    check_logits_and_labels(logits, labels)
    logits = logits.detach().to("cpu", torch.float64)
    labels = labels.detach().to("cpu", torch.int64)
    k = logits.shape[1]
    log_scale = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_scale, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-14,
        history_size=50, line_search_fn="strong_wolfe",
    )
    bounds = (math.log(MIN_SCALE), math.log(MAX_SCALE))

    def closure() -> Tensor:
        optimizer.zero_grad()
        scaled = logits * log_scale.clamp(*bounds).exp() + bias.clamp(-MAX_ABS_BIAS, MAX_ABS_BIAS)
        loss = F.cross_entropy(scaled, labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return log_scale.clamp(*bounds).exp().detach().clone(), bias.clamp(-MAX_ABS_BIAS, MAX_ABS_BIAS).detach().clone()


