"""Confidence-calibrated adversarial training targets (Stutz et al. 2020; METHODS.md sec. 4,
autolabel.txt sec. 5.2).

An adversarial example with perturbation delta is trained towards
``(1 - lam) * y + lam / K`` with the "power transition"
``lam = 1 - (1 - min(1, ||delta||_inf / eps))^rho``: one-hot at delta = 0, uniform once the
perturbation reaches the budget eps.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..batch import Batch
from ..errors import ConfigError
from .base import LABEL_STRATEGIES, LabelStrategy
from .basic import uniform_smoothing


def ccat_lambda(delta_linf: Tensor, eps: Tensor | float, rho: float) -> Tensor:
    """``lam = 1 - (1 - min(1, ||delta||_inf / eps))^rho`` per sample; eps = 0 gives lam = 0."""
    eps = torch.as_tensor(eps, dtype=delta_linf.dtype, device=delta_linf.device)
    ratio = torch.where(eps > 0, delta_linf / eps.clamp_min(torch.finfo(delta_linf.dtype).tiny),
                        torch.zeros_like(delta_linf))
    return 1.0 - (1.0 - ratio.clamp(0.0, 1.0)) ** rho


@LABEL_STRATEGIES.register("ccat")
class CCATLabels(LabelStrategy):
    """CCAT targets from the ``delta_linf`` (and ``eps``) the ``"pgd"``/``"fgsm"`` augmentations report.

    Args:
        rho: power of the transition, > 0 (Stutz et al. use 10).
        eps: the budget that ``||delta||_inf`` is divided by.  ``None`` (default) uses each sample's
            reported attack budget ``info["eps"]``, which is Stutz et al.'s setting when eps is
            fixed.  With per-sample eps ~ U(0, eps_max) that ratio is ~1 for every sample; pass
            ``eps = eps_max`` to make the label depend on the drawn budget instead.
    """

    requires_info = ("delta_linf", "eps")

    def __init__(self, rho: float = 10.0, eps: float | None = None):
        super().__init__()
        if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho > 0):
            raise ConfigError(f"ccat: rho must be a finite number > 0, got {rho!r}")
        if eps is not None and not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ConfigError(f"ccat: eps must be a finite number > 0 or null, got {eps!r}")
        self.rho = float(rho)
        self.eps = None if eps is None else float(eps)
        if self.eps is not None:
            self.requires_info = ("delta_linf",)

    def smoothing(self, batch: Batch) -> Tensor:
        """Per-sample ``lam`` (N,)."""
        self.check_info(batch)
        eps = batch.info["eps"] if self.eps is None else self.eps
        return ccat_lambda(batch.info["delta_linf"].to(batch.inputs.dtype), eps, self.rho)

    def targets(self, logits: Tensor, batch: Batch) -> Tensor:
        return uniform_smoothing(batch.one_hot(), self.smoothing(batch)[:, None])

    def extra_repr(self) -> str:
        return f"rho={self.rho}, eps={self.eps}"
