"""Adversarial training as an augmentation (METHODS.md sec. 4; autolabel.txt sec. 4.4).

``"pgd"``: Madry et al. 2018 PGD-AT, every sample replaced by its L-inf PGD example.
``"fgsm"``: Wong et al. 2020 FGSM with random start ("fast" adversarial training).
With ``sample_eps`` each sample gets its own budget ``eps_i ~ U(0, eps)`` as in AutoLabel,
so ``eps`` is then AutoLabel's ``eps_max``.

Reported per sample: ``eps`` (the budget used), ``delta_linf = ||x_adv - x||_inf`` (at most eps;
less where [0, 1] clipping bites) and ``distance = eps_i / eps`` in [0, 1] (the *budget*, not
the realised perturbation, so AutoLabel's bucket ``ceil(eps_i / eps_max * N)`` is
``ceil(N * distance)``; ``"ccat"`` uses ``delta_linf``).  ``apply_at_distance`` attacks with
``eps_i = distance_i * eps`` for AutoLabel's validation sets.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..batch import Batch
from ..errors import ConfigError
from ..functional.pgd import BN_MODES, fgsm_attack, linf_distance, pgd_attack
from .base import AUGMENTATIONS, Augmentation, checked_distance
from .info_keys import declared


class AdversarialAugmentation(Augmentation):
    """Shared budget handling and reporting; subclasses implement :meth:`attack`."""

    reports_distance = True
    reports = declared("eps", "delta_linf", "distance", "view")
    #: registry name, used in error messages.
    name = "adversarial"

    def __init__(self, eps: float, sample_eps: bool, bn_mode: str, clean_fraction: float = 0.0):
        super().__init__()
        name = self.name
        if not (isinstance(clean_fraction, (int, float)) and 0 <= clean_fraction < 1):
            raise ConfigError(f"{name}: clean_fraction must be in [0, 1), got {clean_fraction!r}")
        self.clean_fraction = float(clean_fraction)
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
            raise ConfigError(f"{name}: eps must be a finite number >= 0, got {eps!r}")
        if bn_mode not in BN_MODES:
            raise ConfigError(f"{name}: bn_mode must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")
        self.eps = float(eps)
        self.sample_eps = bool(sample_eps)
        self.bn_mode = bn_mode

    def reported_keys(self) -> frozenset[str]:
        return self.reports if self.clean_fraction > 0 else self.reports - {"view"}

    def attack(self, model: nn.Module, images: Tensor, labels: Tensor, eps: Tensor,
               generator: torch.Generator, bn_mode: str) -> Tensor:
        raise NotImplementedError

    def forward(self, batch: Batch, *, generator: torch.Generator, model: nn.Module | None = None) -> Batch:
        model = self._required(model)
        x = batch.inputs
        n = x.shape[0]
        if self.sample_eps:
            eps = self.eps * torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)
        else:
            eps = torch.full((n,), self.eps, device=x.device, dtype=x.dtype)
        distance = eps / self.eps if self.eps > 0 else torch.zeros_like(eps)
        return self._perturb(batch, eps, distance, model, generator, self.bn_mode, self._clean_rows(n, generator, x.device))

    def _clean_rows(self, n: int, generator: torch.Generator, device: torch.device) -> Tensor | None:
        """A mask of ``round(n * clean_fraction)`` random rows left clean (None when there are none):
        Stutz et al. train CCAT on half clean, half adversarial batches."""
        num_clean = round(n * self.clean_fraction)
        if num_clean == 0:
            return None
        clean = torch.zeros(n, dtype=torch.bool, device=device)
        clean[torch.randperm(n, generator=generator, device=generator.device)[:num_clean].to(device)] = True
        return clean

    def apply_at_distance(self, batch: Batch, distance: Tensor, *, generator: torch.Generator,
                          model: nn.Module | None = None, group: Tensor | None = None) -> Batch:
        """Attack each sample with budget ``eps_i = distance_i * eps`` (AutoLabel's Q(S_n),
        METHODS.md sec. 5: ``n = ceil(eps_i / eps_max * N)``); ``labels`` are unchanged.

        The attack always runs with BatchNorm in eval mode, whatever ``bn_mode`` says: these are
        validation images, which must not leak into the running statistics.
        """
        model = self._required(model)
        distance = checked_distance(distance, batch, self.name)
        eps = distance.to(batch.inputs.dtype) * self.eps
        return self._perturb(batch, eps, distance, model, generator, "eval")

    def _required(self, model: nn.Module | None) -> nn.Module:
        if model is None:
            raise ValueError(f"{self.name} augmentation needs the model to attack (model=None)")
        return model

    def _perturb(self, batch: Batch, eps: Tensor, distance: Tensor, model: nn.Module,
                 generator: torch.Generator, bn_mode: str, clean: Tensor | None = None) -> Batch:
        """Replace the inputs by their attack at per-sample budget ``eps`` and report it; rows of the
        optional ``clean`` mask stay as they are and report ``view`` 0, eps 0 and distance 0."""
        x = batch.inputs
        info: dict[str, Tensor] = {}
        if clean is None:
            x_adv = self.attack(model, x, batch.labels, eps, generator, bn_mode)
        else:
            attacked = ~clean
            x_adv = x.clone()
            x_adv[attacked] = self.attack(model, x[attacked], batch.labels[attacked], eps[attacked], generator, bn_mode)
            eps, distance = eps.masked_fill(clean, 0), distance.masked_fill(clean, 0)
            info["view"] = attacked.long()
        info.update(eps=eps, delta_linf=linf_distance(x_adv, x), distance=distance)
        return batch.replace(inputs=x_adv, info=info)


@AUGMENTATIONS.register("pgd")
class PGDAugmentation(AdversarialAugmentation):
    """PGD adversarial training (Madry et al. 2018): L-inf PGD with random start.

    Args:
        eps: L-inf budget on [0, 1] images (8/255 is the CIFAR convention), or the maximum
            budget when ``sample_eps``.
        sample_eps: draw ``eps_i ~ U(0, eps)`` per sample (AutoLabel sec. 4.4).
        steps: PGD steps, >= 1.
        step_size: absolute step; default ``2.5 * eps_i / steps``.
        restarts: random restarts, >= 1.
        bn_mode: ``"eval"`` or ``"train"``: BatchNorm mode during the attack (restored afterwards).
        clean_fraction: share of each batch left clean (reported as ``view`` 0, eps 0), e.g. 0.5
            for CCAT's half-clean batches; 0 attacks every row.
    """

    name = "pgd"

    def __init__(self, eps: float = 8 / 255, sample_eps: bool = False, steps: int = 10,
                 step_size: float | None = None, restarts: int = 1, bn_mode: str = "eval",
                 clean_fraction: float = 0.0):
        super().__init__(eps, sample_eps, bn_mode, clean_fraction)
        if not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"pgd: steps must be an integer >= 1, got {steps!r}")
        if not isinstance(restarts, int) or restarts < 1:
            raise ConfigError(f"pgd: restarts must be an integer >= 1, got {restarts!r}")
        if step_size is not None and not (isinstance(step_size, (int, float)) and math.isfinite(step_size)
                                          and step_size > 0):
            raise ConfigError(f"pgd: step_size must be a finite number > 0 or null, got {step_size!r}")
        self.steps, self.step_size, self.restarts = steps, step_size, restarts

    def attack(self, model, images, labels, eps, generator, bn_mode):
        return pgd_attack(model, images, labels, eps, steps=self.steps, step_size=self.step_size,
                          restarts=self.restarts, generator=generator, bn_mode=bn_mode)

    def extra_repr(self) -> str:
        return (f"eps={self.eps:.5g}, sample_eps={self.sample_eps}, steps={self.steps}, "
                f"step_size={self.step_size}, restarts={self.restarts}, bn_mode={self.bn_mode!r}, "
                f"clean_fraction={self.clean_fraction}")


@AUGMENTATIONS.register("fgsm")
class FGSMAugmentation(AdversarialAugmentation):
    """FGSM with random start (Wong et al. 2020): one step of ``1.25 * eps_i`` from a uniform start.

    Args:
        eps: L-inf budget (or maximum when ``sample_eps``), as for ``"pgd"``.
        sample_eps: draw ``eps_i ~ U(0, eps)`` per sample.
        step_ratio: step size as a multiple of each sample's eps (Wong et al.: 1.25), > 0.
        bn_mode: ``"eval"`` or ``"train"``.
        clean_fraction: share of each batch left clean, as for ``"pgd"``.
    """

    name = "fgsm"

    def __init__(self, eps: float = 8 / 255, sample_eps: bool = False, step_ratio: float = 1.25,
                 bn_mode: str = "eval", clean_fraction: float = 0.0):
        super().__init__(eps, sample_eps, bn_mode, clean_fraction)
        if not (isinstance(step_ratio, (int, float)) and math.isfinite(step_ratio) and step_ratio > 0):
            raise ConfigError(f"fgsm: step_ratio must be a finite number > 0, got {step_ratio!r}")
        self.step_ratio = float(step_ratio)

    def attack(self, model, images, labels, eps, generator, bn_mode):
        return fgsm_attack(model, images, labels, eps, step_size=self.step_ratio * eps,
                           generator=generator, bn_mode=bn_mode)

    def extra_repr(self) -> str:
        return f"eps={self.eps:.5g}, sample_eps={self.sample_eps}, step_ratio={self.step_ratio}, bn_mode={self.bn_mode!r}"
