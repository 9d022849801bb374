"""Elastic transform (benchmark corruption).

Reference: Hendrycks & Dietterich (ICLR 2019), ``elastic_transform`` in
``ImageNet-C/create_c/make_cifar_c.py`` (github.com/hendrycks/robustness), itself after
Simard et al. (2003): a random affine map (three points moved by up to ``c2`` px, OpenCV
``warpAffine``, bilinear, border reflect101) followed by a smooth random displacement field
(uniform noise blurred with ``sigma = c1``, truncate 3, times ``alpha = c0``; SciPy
``map_coordinates``, bilinear, border "reflect").  The reference writes its constants as multiples
of the image size (``IMSIZE * k`` with IMSIZE = 32); here IMSIZE = min(H, W).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._filters import gaussian_filter, sample_bilinear
from ._registry import RandomSource, register

# (alpha, sigma, affine jitter) as multiples of the image size
ELASTIC_TRANSFORM = [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)]


@register("elastic_transform")
def elastic_transform(x: Tensor, severity: int, rng: RandomSource) -> Tensor:
    n, _, h, w = x.shape
    size = min(h, w)
    alpha, sigma, jitter = (k * size for k in ELASTIC_TRANSFORM[severity - 1])
    # three control points around the centre, as OpenCV (x, y) points
    cx, cy, half = float(w // 2), float(h // 2), float(size // 3)
    source = torch.tensor([[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]],
                          dtype=x.dtype, device=x.device).expand(n, 3, 2)
    target = source + rng.uniform((n, 3, 2), -jitter, jitter)
    warped = warp_affine_reflect101(x, _inverse_affine(source, target))
    dx = gaussian_filter(rng.uniform((n, 1, h, w), -1.0, 1.0), sigma, "reflect", truncate=3.0) * alpha
    dy = gaussian_filter(rng.uniform((n, 1, h, w), -1.0, 1.0), sigma, "reflect", truncate=3.0) * alpha
    rows, cols = _pixel_grid(h, w, x)
    out = sample_bilinear(warped, rows + dy[:, 0], cols + dx[:, 0], "reflect")
    return out.clamp(0, 1) * 255


def _inverse_affine(source: Tensor, target: Tensor) -> Tensor:
    """The (N, 2, 3) map from target points back to source points, i.e. the inverse of OpenCV's
    ``getAffineTransform(source, target)``, which ``warpAffine`` applies to every output pixel."""
    ones = torch.ones_like(target[..., :1])
    # [target, 1] @ M^T = source, three equations per coordinate
    return torch.linalg.solve(torch.cat([target, ones], -1), source).transpose(1, 2)


def warp_affine_reflect101(x: Tensor, inverse: Tensor) -> Tensor:
    """OpenCV ``warpAffine(INTER_LINEAR, BORDER_REFLECT_101)`` with the inverse map given.
    OpenCV evaluates the map in fixed point and rounds the source position to 1/32 px
    (INTER_BITS = 5); so does this."""
    h, w = x.shape[-2:]
    rows, cols = _pixel_grid(h, w, x)
    m = inverse.unsqueeze(-1).unsqueeze(-1)  # (N, 2, 3, 1, 1)
    ab_scale = 1024.0  # OpenCV's AB_BITS = 10
    src_x = torch.round(m[:, 0, 0] * cols * ab_scale) + torch.round((m[:, 0, 1] * rows + m[:, 0, 2]) * ab_scale)
    src_y = torch.round(m[:, 1, 0] * cols * ab_scale) + torch.round((m[:, 1, 1] * rows + m[:, 1, 2]) * ab_scale)
    src_x = torch.floor((src_x + 16) / 32) / 32
    src_y = torch.floor((src_y + 16) / 32) / 32
    return sample_bilinear(x, src_y, src_x, "reflect101")


def _pixel_grid(h: int, w: int, like: Tensor) -> tuple[Tensor, Tensor]:
    rows = torch.arange(h, dtype=like.dtype, device=like.device).reshape(1, h, 1).expand(1, h, w)
    cols = torch.arange(w, dtype=like.dtype, device=like.device).reshape(1, 1, w).expand(1, h, w)
    return rows, cols
