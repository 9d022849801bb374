"""Noise corruptions: gaussian, shot, impulse (benchmark) and speckle (extra).

Constants: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations" (ICLR 2019), CIFAR-10-C script ``ImageNet-C/create_c/make_cifar_c.py`` of
github.com/hendrycks/robustness.  Noise is drawn per pixel and channel, so it needs no scaling
with the image size.
"""
from __future__ import annotations

from torch import Tensor

from ._registry import RandomSource, register

GAUSSIAN_NOISE_STD = [0.04, 0.06, 0.08, 0.09, 0.10]
SHOT_NOISE_PHOTONS = [500, 250, 100, 75, 50]
IMPULSE_NOISE_AMOUNT = [0.01, 0.02, 0.03, 0.05, 0.07]
SPECKLE_NOISE_STD = [0.06, 0.1, 0.12, 0.16, 0.2]


@register("gaussian_noise")
def gaussian_noise(x: Tensor, severity: int, rng: RandomSource) -> Tensor:
    """``x + N(0, c^2)``."""
    std = GAUSSIAN_NOISE_STD[severity - 1]
    return (x + rng.normal(x.shape, 0.0, std)).clamp(0, 1) * 255


@register("shot_noise")
def shot_noise(x: Tensor, severity: int, rng: RandomSource) -> Tensor:
    """Poisson photon noise: ``Poisson(c x) / c``."""
    photons = SHOT_NOISE_PHOTONS[severity - 1]
    return (rng.poisson(x * photons) / photons).clamp(0, 1) * 255


@register("impulse_noise")
def impulse_noise(x: Tensor, severity: int, rng: RandomSource) -> Tensor:
    """Salt and pepper, ``skimage.util.random_noise(mode="s&p", amount=c)``: each value
    (pixel and channel independently) is replaced with probability c, by 1 or 0 with equal odds."""
    amount = IMPULSE_NOISE_AMOUNT[severity - 1]
    flipped = rng.bernoulli(x.shape, amount)
    salted = rng.bernoulli(x.shape, 0.5)
    out = x.masked_fill(flipped & salted, 1.0).masked_fill(flipped & ~salted, 0.0)
    return out.clamp(0, 1) * 255


@register("speckle_noise")
def speckle_noise(x: Tensor, severity: int, rng: RandomSource) -> Tensor:
    """Multiplicative noise ``x + x N(0, c^2)``."""
    std = SPECKLE_NOISE_STD[severity - 1]
    return (x + x * rng.normal(x.shape, 0.0, std)).clamp(0, 1) * 255
