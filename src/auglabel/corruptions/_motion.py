"""ImageMagick's motion blur, which the reference calls through Wand for ``motion_blur`` and
``snow`` (``MagickMotionBlurImage(wand, radius, sigma, angle)``).

ImageMagick (MagickCore/effect.c, ``MotionBlurImage``) uses a one-sided line kernel:
``width = 2 ceil(radius) + 1`` taps (``GetOptimalKernelWidth1D``), weights
``exp(-i^2 / (2 sigma^2))`` normalised (``GetMotionBlurKernel``), tap ``i`` reading the pixel at
offset ``(ceil(i cos(angle) - 0.5), ceil(i sin(angle) - 0.5))`` (x right, y down), outside pixels
replaced by the nearest edge pixel (the default "edge" virtual-pixel method).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def motion_kernel(radius: float, sigma: float) -> Tensor:
    """The normalised half-Gaussian weights of ImageMagick's motion blur (float64, CPU)."""
    width = 2 * math.ceil(radius) + 1 if radius > 1e-12 else 3
    sigma = max(sigma, 1e-12)
    taps = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-(taps ** 2) / (2 * sigma ** 2))
    return weights / weights.sum()


def magick_motion_blur(x: Tensor, radius: float, sigma: float, angle_degrees: Tensor) -> Tensor:
    """Motion-blur each 8-bit image of ``x`` (N, C, H, W, values 0..255) along its own angle (N,),
    in degrees, and quantise like ImageMagick Q16 writing an 8-bit PNG: the sum is rounded to a
    16-bit quantum (``v * 257``) and the quantum truncated to 8 bits.

    The loop runs over the kernel's taps (13-19 at 32 px), not over images: each tap is one
    gather for the whole batch with per-image offsets.  It accumulates tap by tap in the
    reference's order; a single reduction over taps would sum in another order and could move
    a value across the 16-bit rounding."""
    n, c, h, w = x.shape
    weights = motion_kernel(radius, sigma)
    taps = torch.arange(len(weights), dtype=torch.float64)
    theta = torch.deg2rad(angle_degrees.to("cpu", torch.float64)).unsqueeze(1)  # (N, 1)
    # ImageMagick scales the direction by the width and divides by hypot(): same unit vector.
    # Offsets in float64 on the CPU, so that every device rounds them alike.
    off_x = torch.ceil(taps * torch.cos(theta) - 0.5).long().to(x.device)  # (N, width)
    off_y = torch.ceil(taps * torch.sin(theta) - 0.5).long().to(x.device)
    rows = (torch.arange(h, device=x.device) + off_y.unsqueeze(2)).clamp(0, h - 1)  # (N, width, H)
    cols = (torch.arange(w, device=x.device) + off_x.unsqueeze(2)).clamp(0, w - 1)  # (N, width, W)
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(x)
    for tap, weight in enumerate(weights.tolist()):
        index = rows[:, tap, :, None] * w + cols[:, tap, None, :]  # (N, H, W)
        out += weight * flat.gather(2, index.reshape(n, 1, -1).expand(n, c, -1)).reshape(n, c, h, w)
    return torch.div(torch.round(out * 257), 257, rounding_mode="floor").clamp(0, 255)
