"""Batched re-implementations of the OpenCV 8-bit image operations that ``spatter`` uses:
``Canny``, ``distanceTransform(DIST_L2, 5)``, ``equalizeHist`` and ``filter2D`` to uint8.

Each follows OpenCV's integer / fixed-point arithmetic (modules/imgproc: canny.cpp,
distransform.cpp, histogram.cpp) so that results match pixel for pixel in the common case.
Inputs are float tensors (N, 1, H, W) holding 8-bit values.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._filters import correlate2d, pad

_CANNY_SHIFT = 15
_TG22 = int(0.4142135623730950488016887242097 * (1 << _CANNY_SHIFT) + 0.5)


def canny(image: Tensor, low: float, high: float) -> Tensor:
    """``cv2.Canny(image, low, high)`` (3 x 3 Sobel with replicated border, L1 magnitude,
    non-maximum suppression in 4 directions, hysteresis over 8-neighbours) -> bool edges.

    Hysteresis grows the whole batch at once until nothing changes: a data-dependent number of
    rounds, each ending in one host sync (``torch.equal``); no loop over images."""
    p = pad(image, 1, 1, 1, 1, "nearest").long()
    h, w = image.shape[-2:]

    def at(dr: int, dc: int) -> Tensor:
        return p[..., 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]

    dx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    dy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    magnitude = dx.abs() + dy.abs()
    padded = F.pad(magnitude, (1, 1, 1, 1))  # OpenCV pads the magnitude rows with zeros

    def mag(dr: int, dc: int) -> Tensor:
        return padded[..., 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]

    ax, ay = dx.abs(), dy.abs() << _CANNY_SHIFT
    tg22x = ax * _TG22
    horizontal = ay < tg22x
    vertical = ~horizontal & (ay > tg22x + (ax << (_CANNY_SHIFT + 1)))
    diagonal = ~horizontal & ~vertical
    same_sign = torch.bitwise_xor(dx, dy) >= 0  # OpenCV: s = (xs ^ ys) < 0 ? -1 : 1
    keep_diagonal = torch.where(same_sign, (magnitude > mag(-1, -1)) & (magnitude > mag(1, 1)),
                                (magnitude > mag(-1, 1)) & (magnitude > mag(1, -1)))
    local_max = ((horizontal & (magnitude > mag(0, -1)) & (magnitude >= mag(0, 1)))
                 | (vertical & (magnitude > mag(-1, 0)) & (magnitude >= mag(1, 0)))
                 | (diagonal & keep_diagonal))
    candidate = local_max & (magnitude > int(low))
    edges = candidate & (magnitude > int(high))
    while True:
        grown = edges | (candidate & (F.max_pool2d(edges.float(), 3, 1, 1) > 0))
        if torch.equal(grown, edges):
            return edges
        edges = grown


def chamfer_distance(features: Tensor, limit: float = math.inf) -> Tensor:
    """``min(cv2.distanceTransform(src, DIST_L2, 5), limit)`` where ``src`` is zero exactly at
    ``features``: the 5 x 5 chamfer distance (steps 1, 1.4 and 2.1969, float32) to the nearest
    feature, 8192 where there is none.  Computed by relaxing to the fixed point of the chamfer
    recursion, which OpenCV's two raster passes reach in one go (checked against OpenCV 3.4,
    4.10 and 5.0); a finite ``limit`` stops the relaxation early.  Batched like :func:`canny`:
    one host sync per relaxation round of the whole batch, no loop over images."""
    h, w = features.shape[-2:]
    ceiling = min(limit, 8192.0)
    distance = torch.where(features, 0.0, ceiling).to(torch.float32)
    while True:
        padded = F.pad(distance, (2, 2, 2, 2), value=ceiling)
        best = distance
        for step, offsets in _CHAMFER_STEPS:
            for dr, dc in offsets:
                best = torch.minimum(best, padded[..., 2 + dr:2 + dr + h, 2 + dc:2 + dc + w] + step)
        if torch.equal(best, distance):
            break
        distance = best
    return distance


_CHAMFER_STEPS = [(1.0, [(0, 1), (0, -1), (1, 0), (-1, 0)]),
                  (1.4, [(1, 1), (1, -1), (-1, 1), (-1, -1)]),
                  (2.1969, [(1, 2), (1, -2), (-1, 2), (-1, -2), (2, 1), (2, -1), (-2, 1), (-2, -1)])]


def equalize_hist(image: Tensor) -> Tensor:
    """``cv2.equalizeHist`` per image: ``lut[v] = round((cdf(v) - cdf(first)) * 255 /
    (total - count(first)))``, first = the smallest value present; constant images stay."""
    n = image.shape[0]
    values = image.reshape(n, -1).long()
    total = values.shape[1]
    hist = torch.zeros(n, 256, dtype=torch.int64, device=image.device).scatter_add_(1, values, torch.ones_like(values))
    first = (hist > 0).long().argmax(1, keepdim=True)
    first_count = hist.gather(1, first)
    constant = first_count == total
    denominator = (total - first_count).clamp(min=1).to(torch.float32)
    scale = torch.full_like(denominator, 255.0) / denominator  # float32, as OpenCV (not 255 * (1 / d))
    lut = torch.round((hist.cumsum(1) - first_count).to(torch.float32) * scale).clamp(0, 255)
    mapped = lut.gather(1, values)
    mapped = torch.where(constant, values.to(mapped.dtype), mapped)
    return mapped.reshape(image.shape).to(image.dtype)


def filter2d_uint8(image: Tensor, kernel: Tensor) -> Tensor:
    """``cv2.filter2D(image, cv2.CV_8U, kernel)``: correlation, border reflect101, rounded
    (half to even) and saturated to 0..255."""
    return torch.round(correlate2d(image, kernel, "reflect101")).clamp(0, 255)
