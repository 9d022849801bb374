"""mixup augmentation (Zhang et al. 2018; METHODS.md sec. 3, mixup-calibration.txt sec. 2).

Only the inputs are mixed here; the labels are the label strategy's business: pair with the
``"mixup"`` strategy for full mixup, ``"feature_mixup"`` for the paper's feature-only ablation,
or AutoLabel.  :meth:`Mixup.apply_at_distance` builds AutoLabel's augmented validation sets
(METHODS.md sec. 5).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..batch import Batch
from ..errors import ConfigError
from ..functional.mixup import mix_images, random_partners, sample_beta
from .base import AUGMENTATIONS, Augmentation, checked_distance
from .info_keys import declared


def mixing_info(batch: Batch, partner: torch.Tensor, gamma: torch.Tensor, distance: torch.Tensor) -> dict:
    """The ``info`` entries shared by mixup and CutMix (see :mod:`auglabel.augment.base`)."""
    return {
        "gamma": gamma,
        "partner": partner,
        "partner_label": batch.labels[partner],
        "distance": distance,
    }


@AUGMENTATIONS.register("mixup")
class Mixup(Augmentation):
    """``x = gamma * x_i + (1 - gamma) * x_partner``, ``gamma ~ Beta(beta, beta)``.

    The partner is a random *other* row of the batch (one random cycle through the batch, see
    :func:`~auglabel.functional.mixup.random_partners`); any batch size works, and a batch of one
    sample is paired with itself (its image is then unchanged).

    Reports per sample: ``gamma`` (weight of the own image), ``partner`` (row index),
    ``partner_label`` and ``distance = 2 * min(gamma, 1 - gamma)`` in [0, 1] (0: one clean image,
    1: an even blend), so AutoLabel's bucket ``ceil(2N * min(gamma, 1 - gamma))`` is
    ``ceil(N * distance)``.

    Args:
        beta: concentration of the symmetric Beta distribution, > 0 (1 = uniform gamma).
        per_sample: draw one gamma per sample (default) or one for the whole batch (Zhang et al.).
    """

    reports_distance = True
    reports = declared("gamma", "partner", "partner_label", "distance")

    def __init__(self, beta: float = 1.0, per_sample: bool = True):
        super().__init__()
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
            raise ConfigError(f"mixup: beta must be a finite number > 0, got {beta!r}")
        self.beta = float(beta)
        self.per_sample = bool(per_sample)

    def forward(self, batch: Batch, *, generator: torch.Generator, model: nn.Module | None = None) -> Batch:
        x = batch.inputs
        n = x.shape[0]
        # sampled in at least float32: half-precision Gamma variates would be too coarse
        draws = sample_beta(self.beta, self.beta, n if self.per_sample else 1, generator=generator,
                            device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))
        gamma = draws.to(x.dtype).expand(n).contiguous()
        return self._mix(batch, gamma, 2.0 * torch.minimum(gamma, 1.0 - gamma), generator)

    def apply_at_distance(self, batch: Batch, distance: Tensor, *, generator: torch.Generator,
                          model: nn.Module | None = None, group: Tensor | None = None) -> Batch:
        """mixup at a given distance for AutoLabel's validation set Q(S_n) (METHODS.md sec. 5).

        The partner is another image of the same (validation) batch and the own weight is
        ``gamma' = distance / 2`` in [0, 0.5], so the PARTNER dominates: the returned ``labels``
        are the partner's labels (the class that counts as correct) and ``info["own_label"]``
        keeps the clean image's label.  ``info["gamma"]`` is still the own image's weight, as
        in :meth:`forward`.  At distance 1 (``gamma' = 0.5``) the blend is symmetric; the
        partner's label is then counted correct by convention (a draw of probability ~0 under
        AutoLabel's uniform distances).
        """
        distance = checked_distance(distance, batch, "mixup")
        own_labels = batch.labels
        mixed = self._mix(batch, (distance / 2).to(batch.inputs.dtype), distance, generator)
        return mixed.replace(labels=mixed.info["partner_label"], info={"own_label": own_labels})

    def _mix(self, batch: Batch, gamma: Tensor, distance: Tensor, generator: torch.Generator) -> Batch:
        """Mix each row with a random partner row at own weight ``gamma`` (mixup-calibration eq. 1)."""
        partner = random_partners(len(batch), generator=generator, device=batch.device)
        return batch.replace(inputs=mix_images(batch.inputs, partner, gamma),
                             info=mixing_info(batch, partner, gamma, distance))

    def extra_repr(self) -> str:
        return f"beta={self.beta}, per_sample={self.per_sample}"
