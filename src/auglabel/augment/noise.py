"""Additive Gaussian noise with a per-sample standard deviation: the simplest distance-reporting
augmentation, and a template for pairing any augmentation with AutoLabel."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..batch import Batch
from ..errors import ConfigError
from .base import AUGMENTATIONS, Augmentation, checked_distance
from .info_keys import declared


@AUGMENTATIONS.register("gaussian_noise")
class GaussianNoise(Augmentation):
    """``x + sigma * N(0, I)`` clipped to [0, 1], with ``sigma ~ U(0, sigma_max)`` per sample.

    Reports ``sigma`` and ``distance = sigma / sigma_max`` in [0, 1].

    Args:
        sigma_max: largest noise standard deviation (images in [0, 1]).
    """

    reports_distance = True
    reports = declared("sigma", "distance")

    def __init__(self, sigma_max: float = 0.3):
        super().__init__()
        if not sigma_max > 0:
            raise ConfigError(f"gaussian_noise: sigma_max must be > 0, got {sigma_max}")
        self.sigma_max = sigma_max

    def forward(self, batch: Batch, *, generator: torch.Generator, model: nn.Module | None = None) -> Batch:
        distance = torch.rand(len(batch), generator=generator, device=batch.device)
        return self.apply_at_distance(batch, distance, generator=generator)

    def apply_at_distance(self, batch: Batch, distance: Tensor, *, generator: torch.Generator,
                          model: nn.Module | None = None, group: Tensor | None = None) -> Batch:
        distance = checked_distance(distance, batch, "gaussian_noise")
        sigma = distance.to(batch.inputs.dtype) * self.sigma_max
        noise = torch.randn(batch.inputs.shape, generator=generator, device=batch.device, dtype=batch.inputs.dtype)
        noisy = (batch.inputs + sigma[:, None, None, None] * noise).clamp_(0.0, 1.0)
        return batch.replace(inputs=noisy, info={"sigma": sigma, "distance": distance})
