"""Temperature scaling (Guo et al. 2017; METHODS.md section 1).

One scalar ``T > 0`` divides the logits, ``p = softmax(z / T)``; it is fitted on held-out
logits by minimising the NLL.  It changes confidences but never the predicted class, so
accuracy is unchanged and the calibration metrics are reported before and after.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError
from .functional.calibration import check_logits_and_labels

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
