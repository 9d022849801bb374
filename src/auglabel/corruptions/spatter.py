"""Spatter (extra corruption): water drops (severities 1-3) or mud (4-5) on the lens.

Constants and pipeline: Hendrycks & Dietterich (ICLR 2019), ``spatter`` in
``ImageNet-C/create_c/make_cifar_c.py`` (github.com/hendrycks/robustness), copied exactly; the
OpenCV steps are re-implemented in :mod:`._opencv`.

Image size: the Gaussian sigmas and the distance cap (20 px) are multiplied by
``s = min(H, W) / 32``; the 3 x 3 box blurs and emboss kernel stay 3 x 3.
As in the reference, liquid above 1.0 (rare) wraps around in its 8-bit conversion (NumPy's
float -> uint8 cast on x86).  Departure: an image with no liquid at all stays clean (the
reference divides 0 by 0).  Grey images use the luma of the water / mud colours.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._color import colour
from ._filters import box_blur, gaussian_filter, size_scale
from ._opencv import canny, chamfer_distance, equalize_hist, filter2d_uint8
from ._registry import RandomSource, register

# (mean, std, blur sigma, threshold, strength or mud sigma, mud?)
SPATTER = [(0.62, 0.1, 0.7, 0.7, 0.5, 0),
           (0.65, 0.1, 0.8, 0.7, 0.5, 0),
           (0.65, 0.3, 1, 0.69, 0.5, 0),
           (0.65, 0.1, 0.7, 0.69, 0.6, 1),
           (0.65, 0.1, 0.5, 0.68, 0.6, 1)]
WATER_RGB = (175, 238, 238)  # pale turquoise
MUD_RGB = (63, 42, 20)  # brown
_EMBOSS = torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
_DISTANCE_CAP = 20.0


@register("spatter")
def spatter(x: Tensor, severity: int, rng: RandomSource) -> Tensor:
    """Smoothed Gaussian noise thresholded into drops; water drops are shaded pale turquoise,
    mud blobs (severities 4-5) replace the image with brown."""
    mean, std, sigma, threshold, strength, is_mud = SPATTER[severity - 1]
    n, channels, h, w = x.shape
    scale = size_scale(x)
    liquid = gaussian_filter(rng.normal((n, 1, h, w), mean, std), sigma * scale)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if is_mud:
        mask = gaussian_filter((liquid > threshold).to(x.dtype), strength * scale)
        mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
        return ((x * (1 - mask) + colour(MUD_RGB, channels, x) * mask).clamp(0, 1)) * 255
    drops = _water_drops(liquid, scale) * strength
    return (x + drops * colour(WATER_RGB, channels, x)).clamp(0, 1) * 255


def _water_drops(liquid: Tensor, scale: float) -> Tensor:
    """The reference's shading of the drops: distance to the drops' Canny edges, capped,
    blurred, histogram-equalised, embossed, blurred, times the liquid, scaled to max 1."""
    liquid8 = torch.remainder(torch.floor(liquid * 255), 256)
    edges = canny(liquid8, 50, 150)
    distance = chamfer_distance(edges, limit=_DISTANCE_CAP * scale).to(liquid.dtype)
    distance = torch.floor(box_blur(distance).to(torch.float32)).to(liquid.dtype)
    distance = equalize_hist(distance)
    distance = filter2d_uint8(distance, _EMBOSS)
    distance = torch.round(box_blur(distance)).clamp(0, 255)
    shade = liquid8 * distance
    peak = shade.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(peak > 0, shade / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(shade))
