"""Blur corruptions: defocus, glass, motion, zoom (benchmark) and gaussian (extra).

Constants: Hendrycks & Dietterich (ICLR 2019), CIFAR-10-C script
``ImageNet-C/create_c/make_cifar_c.py`` of github.com/hendrycks/robustness, copied exactly.

Image size: the constants are in pixels of a 32 px image.  Sigmas, radii and shuffle distances
are multiplied by ``s = min(H, W) / 32`` (see :func:`size_scale`); the defocus kernel is the
reference kernel resampled by ``s``; zoom factors are relative and need no scaling.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ._filters import clipped_zoom, correlate2d, gaussian_filter, size_scale
from ._motion import magick_motion_blur
from ._registry import RandomSource, register

GAUSSIAN_BLUR_SIGMA = [0.4, 0.6, 0.7, 0.8, 1]
# (sigma, max_delta, iterations)
GLASS_BLUR = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)]
# (disk radius, alias_blur)
DEFOCUS_BLUR = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)]
# (radius, sigma) of ImageMagick's motion blur; angle ~ U(-45, 45) degrees per image
MOTION_BLUR = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)]
# np.arange's float rounding includes the end points 1.06 and 1.11 but not 1.16, 1.21 and 1.26:
# 7, 12, 16, 21 and 26 factors
ZOOM_BLUR_FACTORS = [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
                     np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)]


@register("gaussian_blur")
def gaussian_blur(x: Tensor, severity: int, rng: RandomSource) -> Tensor:  # noqa: ARG001
    """``skimage.filters.gaussian(x, sigma=c * s)`` (border "nearest", truncate 4)."""
    sigma = GAUSSIAN_BLUR_SIGMA[severity - 1] * size_scale(x)
    return gaussian_filter(x, sigma).clamp(0, 1) * 255


@register("glass_blur")
def glass_blur(x: Tensor, severity: int, rng: RandomSource) -> Tensor:
    """Gaussian blur, 8-bit quantisation, local pixel shuffles, Gaussian blur again.

    The reference's loop visits (h, w) for h, w from ``size - delta`` down to ``delta + 1`` and
    does ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` with ``(h', w') = (h + dy, w + dx)``,
    ``dx, dy ~ randint(-delta, delta)``.  On an RGB array both sides are views, so the "swap" only
    copies ``x[h', w']`` into ``x[h, w]``; with delta = 1 (every CIFAR severity) the source is up or
    left of (h, w) and not yet visited, so one iteration is exactly the parallel gather done
    here.  Differences: grey images get the same copy semantics (NumPy would really swap
    scalars), and for delta > 1 (scaled images of 48 px and more) a source below or right of
    (h, w) is read before, not after, its own update.
    """
    sigma, max_delta, iterations = GLASS_BLUR[severity - 1]
    scale = size_scale(x)
    sigma *= scale
    delta = max(1, round(max_delta * scale))
    shuffled = torch.floor(gaussian_filter(x, sigma) * 255)
    for _ in range(iterations):
        shuffled = _local_shuffle(shuffled, delta, rng)
    return gaussian_filter(shuffled / 255, sigma).clamp(0, 1) * 255


def _local_shuffle(x: Tensor, delta: int, rng: RandomSource) -> Tensor:
    n, c, h, w = x.shape
    rows = torch.arange(delta + 1, h - delta + 1, device=x.device)
    cols = torch.arange(delta + 1, w - delta + 1, device=x.device)
    if len(rows) == 0 or len(cols) == 0:
        return x
    dx = rng.integers(-delta, delta, (n, len(rows), len(cols)))
    dy = rng.integers(-delta, delta, (n, len(rows), len(cols)))
    source = torch.arange(h * w, device=x.device).reshape(1, h, w).repeat(n, 1, 1)
    source[:, rows[:, None], cols[None, :]] = (rows[:, None] + dy) * w + (cols[None, :] + dx)
    return x.reshape(n, c, h * w).gather(2, source.reshape(n, 1, -1).expand(n, c, -1)).reshape(n, c, h, w)


@register("defocus_blur")
def defocus_blur(x: Tensor, severity: int, rng: RandomSource) -> Tensor:  # noqa: ARG001
    """Convolution with an anti-aliased disk (reference ``disk`` + OpenCV ``filter2D``,
    border reflect101), the kernel resampled to the image size by :func:`scaled_disk_kernel`."""
    radius, alias_blur = DEFOCUS_BLUR[severity - 1]
    kernel = scaled_disk_kernel(radius, alias_blur, size_scale(x))
    return correlate2d(x, kernel, "reflect101").clamp(0, 1) * 255


def reference_disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The reference's ``disk(radius, alias_blur)`` for radius <= 8: the pixels of a 17 x 17 grid
    with ``X^2 + Y^2 <= radius^2``, normalised, then OpenCV ``GaussianBlur`` with a 3 x 3 kernel of
    ``sigma = alias_blur`` (border reflect101)."""
    if radius > 8:
        raise ValueError("reference_disk_kernel supports radius <= 8 (all CIFAR constants)")
    grid = torch.arange(-8, 9, dtype=torch.float64)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius ** 2).to(torch.float64)
    disk /= disk.sum()
    taps = torch.exp(-torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64) / (2 * alias_blur ** 2))
    taps /= taps.sum()
    blurred = correlate2d(disk.reshape(1, 1, 17, 17), taps.reshape(1, 3), "reflect101")
    return correlate2d(blurred, taps.reshape(3, 1), "reflect101").reshape(17, 17)


def scaled_disk_kernel(radius: float, alias_blur: float, scale: float) -> Tensor:
    """The reference disk kernel for an image ``scale`` times 32 px, renormalised and trimmed to
    its non-zero support.  Enlarged (scale > 1) by bilinear interpolation at ``offset / scale``;
    shrunk (scale < 1) by area: each reference pixel spreads its weight over the pixels its
    shrunk footprint overlaps.  Scale 1 gives the reference kernel exactly.  Unlike rescaling
    the radius of the binary disk, this keeps the kernel continuous in the scale (a radius-1 disk
    at scale 0.875 would collapse to a single pixel).  Below ~12 px the whole reference kernel
    (at most 5 x 5) shrinks inside one pixel and defocus blur becomes the identity.
    """
    reference = reference_disk_kernel(radius, alias_blur)
    half = math.ceil(8 * scale)
    target = torch.arange(-half, half + 1, dtype=torch.float64)[:, None]
    source = torch.arange(-8, 9, dtype=torch.float64)[None, :]
    if scale >= 1:
        resample = (1 - (target / scale - source).abs()).clamp(min=0)
    else:  # overlap of target pixel [t - 1/2, t + 1/2] with the shrunk source pixel
        low = torch.maximum(target - 0.5, (source - 0.5) * scale)
        high = torch.minimum(target + 0.5, (source + 0.5) * scale)
        resample = (high - low).clamp(min=0)
    kernel = resample @ reference @ resample.T
    kernel /= kernel.sum()
    trim = int((kernel.sum(0) > 0).nonzero().min())
    return kernel[trim:len(kernel) - trim, trim:len(kernel) - trim]


@register("motion_blur")
def motion_blur(x: Tensor, severity: int, rng: RandomSource) -> Tensor:
    """ImageMagick motion blur of the 8-bit image (see :mod:`._motion`), radius and sigma times
    ``s``, angle ~ U(-45, 45) degrees per image."""
    radius, sigma = MOTION_BLUR[severity - 1]
    scale = size_scale(x)
    angle = rng.uniform((x.shape[0],), -45.0, 45.0)
    return magick_motion_blur(torch.round(x * 255), radius * scale, sigma * scale, angle)


@register("zoom_blur")
def zoom_blur(x: Tensor, severity: int, rng: RandomSource) -> Tensor:  # noqa: ARG001
    """Mean of the image and its :func:`clipped_zoom` by each factor (relative, size-free).

    Loops over the 7-26 zoom factors, not over images: each zoom is one batched ``interpolate``
    whose crop and output sizes depend on the factor, so the factors cannot share one call."""
    factors = ZOOM_BLUR_FACTORS[severity - 1]
    total = x.clone()
    for factor in factors:
        total += clipped_zoom(x, float(factor))
    return (total / (len(factors) + 1)).clamp(0, 1) * 255
