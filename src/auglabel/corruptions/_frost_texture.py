"""Procedural frost textures, standing in for the reference's frost photographs.

``make_cifar_c.py`` adds a random 32 x 32 crop of one of five photos of frost on a window (each
scaled by 0.2, i.e. roughly 5x the image).  Those photos are not ours to ship, so five textures
are synthesised once per process, deterministically (fixed seeds, independent of the user's
seed), on a 160 x 160 canvas for 32 px images and resized to 5 x max(H, W) for other sizes:

* haze: multi-octave value noise (dim, uneven condensation),
* crystals: clusters of six-armed dendrites (arms at 60 degrees, as ice grows, each with
  shorter side barbs), splatted along their length and slightly blurred,
* grain: fine noise,

mixed to a grey level of mean ~0.45 and tinted pale blue.  The look and the brightness
statistics imitate frost photos; the per-pixel values of course differ from the real files.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._filters import gaussian_filter

FROST_TEXTURE_COUNT = 5
_CANVAS = 160  # texture side for a 32 px image
_SEED = 20190501
_TINT = (0.86, 0.94, 1.0)  # pale blue ice
_CLUSTERS = 40
_ARMS = 6
_BARBS = (0.25, 0.45, 0.65, 0.85)  # positions of side barbs along an arm


def frost_textures(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(5, 3, T, T) textures on the 0..255 scale (integers, like the photos' 8-bit pixels),
    ``T = 5 max(h, w)`` so that every crop position of an h x w crop is possible."""
    return _textures(5 * max(h, w)).to(device, dtype)


@functools.lru_cache(maxsize=4)
def _textures(side: int) -> Tensor:
    canvas = _canvases()
    if side != _CANVAS:
        canvas = F.interpolate(canvas, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    return torch.round(canvas.clamp(0, 1) * 255)


@functools.lru_cache(maxsize=1)
def _canvases() -> Tensor:
    return torch.stack([_canvas_texture(i) for i in range(FROST_TEXTURE_COUNT)])


def _canvas_texture(index: int) -> Tensor:
    generator = torch.Generator().manual_seed(_SEED + index)
    haze = _value_noise(generator)
    crystals = _dendrites(generator)
    grain = gaussian_filter(torch.rand(1, 1, _CANVAS, _CANVAS, generator=generator, dtype=torch.float64), 0.7)
    grey = (0.15 + 0.35 * haze + 0.75 * crystals + 0.3 * (grain - 0.5)).clamp(0, 1)
    tint = torch.tensor(_TINT, dtype=torch.float64).reshape(3, 1, 1)
    return grey[0] * tint + (1 - tint) * grey[0] ** 4  # the brightest ice is white


def _value_noise(generator: torch.Generator, octaves: int = 5) -> Tensor:
    total = torch.zeros(1, 1, _CANVAS, _CANVAS, dtype=torch.float64)
    for octave in range(octaves):
        cells = 3 * 2 ** octave
        coarse = torch.rand(1, 1, cells + 1, cells + 1, generator=generator, dtype=torch.float64)
        total += 0.5 ** octave * F.interpolate(coarse, size=(_CANVAS, _CANVAS), mode="bicubic", align_corners=True)
    total -= total.min()
    return total / total.max()


def _dendrites(generator: torch.Generator) -> Tensor:
    """Six-armed ice crystals with side barbs, as a (1, 1, C, C) intensity map in [0, 1]."""
    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> Tensor:
        return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)

    centre = uniform(_CLUSTERS, 2, high=_CANVAS)
    angle = uniform(_CLUSTERS, 1, high=math.pi / 3) + torch.arange(_ARMS) * math.pi / 3  # (clusters, arms)
    length = uniform(_CLUSTERS, _ARMS, low=5.0, high=20.0)
    brightness = uniform(_CLUSTERS, _ARMS, low=0.5, high=1.0)
    starts, ends, values = [centre[:, None].expand(-1, _ARMS, -1)], [], [brightness]
    direction = torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    ends.append(centre[:, None] + length[..., None] * direction)
    for t in _BARBS:
        base = centre[:, None] + (t * length)[..., None] * direction
        for side in (-1.0, 1.0):
            barb_angle = angle + side * math.pi / 3
            barb = torch.stack([torch.cos(barb_angle), torch.sin(barb_angle)], -1)
            starts.append(base)
            ends.append(base + (0.45 * (1 - t) * length)[..., None] * barb)
            values.append(0.8 * brightness)
    start = torch.stack(starts).reshape(-1, 2)
    end = torch.stack(ends).reshape(-1, 2)
    value = torch.stack(values).reshape(-1)
    # sample every segment at half-pixel spacing and splat the samples bilinearly
    steps = torch.linspace(0, 1, 2 * 24 + 1, dtype=torch.float64)
    points = start[:, None] + steps[None, :, None] * (end - start)[:, None]  # (segments, steps, 2)
    # each sample carries its share of the segment, so a stroke's ink per pixel of length is `value`
    seg_length = (end - start).norm(dim=-1)
    weights = (value * seg_length / len(steps))[:, None].expand(-1, len(steps)).reshape(-1)
    points = points.reshape(-1, 2) % _CANVAS  # the texture wraps around, like a tile
    image = torch.zeros(_CANVAS * _CANVAS, dtype=torch.float64)
    x0, y0 = points.floor().long().unbind(-1)
    fx, fy = (points - points.floor()).unbind(-1)
    for dx, dy, share in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        flat = ((y0 + dy) % _CANVAS) * _CANVAS + (x0 + dx) % _CANVAS
        image.index_add_(0, flat, weights * share)
    image = gaussian_filter(image.reshape(1, 1, _CANVAS, _CANVAS), 0.6)
    return 1 - torch.exp(-1.5 * image)  # overlapping strokes saturate instead of piling up
