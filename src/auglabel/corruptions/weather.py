"""Weather corruptions: snow, frost, fog (benchmark).

Constants: Hendrycks & Dietterich (ICLR 2019), CIFAR-10-C script
``ImageNet-C/create_c/make_cifar_c.py`` of github.com/hendrycks/robustness, copied exactly.

Image size: snow's motion-blur radius and sigma are multiplied by ``s = min(H, W) / 32``; its zoom
factor is relative.  Fog's plasma fractal is drawn on the next power of two >= max(H, W) and
cropped, as the reference does (32 for CIFAR, 256 for 224 px ImageNet).  Frost crops come from
procedural textures drawn at 5 x the image size (see :mod:`._frost_texture`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._color import as_rgb, gray_if, luma
from ._filters import clipped_zoom, size_scale
from ._frost_texture import FROST_TEXTURE_COUNT, frost_textures
from ._motion import magick_motion_blur
from ._registry import RandomSource, register

# (mean, std, zoom, threshold, blur radius, blur sigma, image weight)
SNOW = [(0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)]
# (image weight, frost weight)
FROST = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)]
# (fog strength, wibble decay of the plasma fractal)
FOG = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)]


@register("snow")
def snow(x: Tensor, severity: int, rng: RandomSource) -> Tensor:
    """Gaussian flakes, zoomed, thresholded, 8-bit, motion-blurred by ImageMagick at an angle
    ~ U(-135, -45) degrees per image, added twice (once rotated 180 degrees) to the brightened
    image ``w x + (1 - w) max(x, 1.5 gray(x) + 0.5)``."""
    mean, std, zoom, threshold, radius, sigma, weight = SNOW[severity - 1]
    n, _, h, w = x.shape
    scale = size_scale(x)
    layer = clipped_zoom(rng.normal((n, 1, h, w), mean, std), zoom)
    layer = torch.where(layer < threshold, torch.zeros_like(layer), layer)
    layer = torch.floor(layer.clamp(0, 1) * 255)  # the reference's 8-bit PNG of the layer
    angle = rng.uniform((n,), -135.0, -45.0)
    layer = magick_motion_blur(layer, radius * scale, sigma * scale, angle) / 255
    gray = luma(as_rgb(x))
    x = weight * x + (1 - weight) * torch.maximum(x, gray * 1.5 + 0.5)
    return (x + layer + layer.flip(-1, -2)).clamp(0, 1) * 255


@register("frost")
def frost(x: Tensor, severity: int, rng: RandomSource) -> Tensor:
    """``a x + b frost`` on the 0..255 scale, ``frost`` a random crop of one of five textures.

    The reference crops photographs of frost (frost1.png ... frost6.jpg, scaled by 0.2; its
    ``randint(5)`` only ever picks the first five); we don't have them and synthesise five
    deterministic frost textures instead (:mod:`._frost_texture`), so absolute Frost numbers are
    not comparable to the published CIFAR-10-C Frost.
    """
    image_weight, frost_weight = FROST[severity - 1]
    n, channels, h, w = x.shape
    textures = frost_textures(h, w, x.device, x.dtype)  # (K, 3, T, T), 0..255
    size = textures.shape[-1]
    which = rng.integers(0, FROST_TEXTURE_COUNT, (n,))
    top = rng.integers(0, size - h, (n,))
    left = rng.integers(0, size - w, (n,))
    rows = top[:, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = left[:, None] + torch.arange(w, device=x.device)  # (N, W)
    crops = textures[which[:, None, None, None], torch.arange(3, device=x.device)[None, :, None, None],
                     rows[:, None, :, None], cols[:, None, None, :]]  # (N, 3, H, W)
    return (image_weight * torch.round(x * 255) + frost_weight * gray_if(crops, channels)).clamp(0, 255)


@register("fog")
def fog(x: Tensor, severity: int, rng: RandomSource) -> Tensor:
    """``(x + c plasma) max(x) / (max(x) + c)``, a fresh plasma fractal per image."""
    strength, decay = FOG[severity - 1]
    n, _, h, w = x.shape
    map_size = 1 << (max(h, w) - 1).bit_length()
    plasma = plasma_fractal(n, map_size, decay, rng)[:, None, :h, :w]
    max_value = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x + strength * plasma) * max_value / (max_value + strength)).clamp(0, 1) * 255


def plasma_fractal(n: int, map_size: int, wibble_decay: float, rng: RandomSource) -> Tensor:
    """The reference's diamond-square height map (after FLHerne/mapgen), batched over ``n``
    maps of ``map_size`` (a power of two), each scaled to [0, 1].

    As in the reference, a new point is the mean of its neighbours plus
    ``wibble * U(-wibble, wibble)`` (wibble enters twice), wibble starting at 100 and divided
    by ``wibble_decay`` per level; the map wraps around (np.roll)."""
    heights = torch.zeros(n, map_size, map_size, dtype=rng.dtype, device=rng.device)
    step, wibble = map_size, 100.0

    def wibbled_mean(total: Tensor) -> Tensor:
        return total / 4 + wibble * rng.uniform(tuple(total.shape), -wibble, wibble)

    while step >= 2:
        half = step // 2
        corners = heights[:, 0::step, 0::step]
        square = corners + corners.roll(-1, 1)
        square = square + square.roll(-1, 2)
        heights[:, half::step, half::step] = wibbled_mean(square)
        centres = heights[:, half::step, half::step]
        corners = heights[:, 0::step, 0::step]
        left_right = centres + centres.roll(1, 1) + corners + corners.roll(-1, 2)
        heights[:, 0::step, half::step] = wibbled_mean(left_right)
        up_down = centres + centres.roll(1, 2) + corners + corners.roll(-1, 1)
        heights[:, half::step, 0::step] = wibbled_mean(up_down)
        step //= 2
        wibble /= wibble_decay
    heights = heights - heights.amin(dim=(1, 2), keepdim=True)
    return heights / heights.amax(dim=(1, 2), keepdim=True)
