"""Colour helpers: scikit-image's HSV conversion, batched, and grey/RGB handling.

Grey images (C = 1) go through the RGB formulas as R = G = B; a result is brought back to one
channel with the ITU-R 601 luma (OpenCV ``COLOR_RGB2GRAY``, PIL ``convert("L")`` weights),
written so that R = G = B returns that value exactly.
"""
from __future__ import annotations

import torch
from torch import Tensor

# hsv2rgb's table, skimage.color.hsv2rgb: sector hi -> (r, g, b) as indices into (v, p, q, t)
_V, _P, _Q, _T = range(4)
_SECTOR_TO_RGB = torch.tensor([
    [_V, _T, _P], [_Q, _V, _P], [_P, _V, _T], [_P, _Q, _V], [_T, _P, _V], [_V, _P, _Q],
])


def as_rgb(x: Tensor) -> Tensor:
    """(N, 1 or 3, H, W) -> (N, 3, H, W)."""
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def luma(rgb: Tensor) -> Tensor:
    """(N, 3, H, W) -> (N, 1, H, W), ``0.299 R + 0.587 G + 0.114 B``."""
    r, g, b = rgb.unbind(1)
    return (g + 0.299 * (r - g) + 0.114 * (b - g)).unsqueeze(1)


def gray_if(rgb: Tensor, channels: int) -> Tensor:
    """Back to the input's channel count: ``rgb`` itself for C = 3, its luma for C = 1."""
    return rgb if channels == 3 else luma(rgb)


def colour(rgb255: tuple[float, float, float], channels: int, like: Tensor) -> Tensor:
    """A constant colour (0..255 RGB) as a (1, C, 1, 1) tensor in [0, 1] for C = 1 or 3."""
    value = torch.tensor(rgb255, dtype=like.dtype, device=like.device).reshape(1, 3, 1, 1) / 255.0
    return gray_if(value, channels)


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """``skimage.color.rgb2hsv`` on (N, 3, H, W) in [0, 1]; hue in [0, 1)."""
    r, g, b = rgb.unbind(1)
    v = rgb.amax(1)
    delta = v - rgb.amin(1)
    grey = delta == 0
    safe_delta = torch.where(grey, torch.ones_like(delta), delta)
    s = torch.where(grey, torch.zeros_like(delta), delta / torch.where(grey, torch.ones_like(v), v))
    # skimage assigns red, then green, then blue: a later maximum overrides an earlier one
    h = torch.zeros_like(v)
    h = torch.where(r == v, (g - b) / safe_delta, h)
    h = torch.where(g == v, 2.0 + (b - r) / safe_delta, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe_delta, h)
    h = torch.where(grey, torch.zeros_like(h), torch.remainder(h / 6.0, 1.0))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """``skimage.color.hsv2rgb`` on (N, 3, H, W)."""
    h, s, v = hsv.unbind(1)
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    p = v * (1.0 - s)
    q = v * (1.0 - f * s)
    t = v * (1.0 - (1.0 - f) * s)
    candidates = torch.stack([v, p, q, t], 1)  # (N, 4, H, W)
    table = _SECTOR_TO_RGB.to(hsv.device)[sector.long() % 6]  # (N, H, W, 3)
    return candidates.gather(1, table.permute(0, 3, 1, 2))
