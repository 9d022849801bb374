"""Batched filtering and resampling with the border rules of the libraries the reference uses.

The reference (``make_cifar_c.py``) filters with scikit-image / SciPy (``gaussian``: border
"nearest", truncate 4), OpenCV (``filter2D``, ``blur``, ``warpAffine``: border "reflect101") and
SciPy ``zoom`` / ``map_coordinates``.  These helpers reproduce those conventions on tensors of shape
(N, C, H, W), any device, any float dtype, with explicit index maps instead of ``F.pad`` so that
a border wider than the image (8 px images) is still well defined.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

REFERENCE_SIZE = 32  # the CIFAR-10-C constants are tuned for 32 x 32 images


def size_scale(x: Tensor) -> float:
    """Factor by which pixel-unit constants (blur radii, sigmas, distances) are scaled:
    ``min(H, W) / 32``, so that a corruption covers the same fraction of any image."""
    return min(x.shape[-2:]) / REFERENCE_SIZE


def border_index(n: int, before: int, after: int, mode: str, device: torch.device) -> Tensor:
    """Source index of positions ``-before .. n + after - 1`` of a length-``n`` axis."""
    return fold_index(torch.arange(-before, n + after, device=device), n, mode)


def fold_index(i: Tensor, n: int, mode: str) -> Tensor:
    """Map integer positions of any value into [0, n) by a border rule:

    ``nearest``    aaa|abcd|ddd   (SciPy "nearest", OpenCV BORDER_REPLICATE)
    ``reflect``    cba|abcd|dcb   (SciPy "reflect", OpenCV BORDER_REFLECT; half-sample symmetric)
    ``reflect101`` dcb|abcd|cba   (OpenCV BORDER_REFLECT_101, SciPy "mirror")
    """
    if mode == "nearest":
        return i.clamp(0, n - 1)
    if mode == "reflect":
        i = i % (2 * n)
        return torch.where(i >= n, 2 * n - 1 - i, i)
    if mode == "reflect101":
        if n == 1:
            return torch.zeros_like(i)
        i = i % (2 * n - 2)
        return torch.where(i >= n, 2 * n - 2 - i, i)
    raise ValueError(f"unknown border mode {mode!r}")


def pad(x: Tensor, top: int, bottom: int, left: int, right: int, mode: str) -> Tensor:
    rows = border_index(x.shape[-2], top, bottom, mode, x.device)
    cols = border_index(x.shape[-1], left, right, mode, x.device)
    return x[..., rows, :][..., cols]  # advanced indexing: much faster than index_select here


def correlate2d(x: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """``out[y, x] = sum_ij kernel[i, j] * in[y + i - kh // 2, x + j - kw // 2]`` per channel
    (OpenCV ``filter2D`` with the anchor at the kernel centre)."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    padded = pad(x.reshape(n * c, 1, h, w), kh // 2, kh - 1 - kh // 2, kw // 2, kw - 1 - kw // 2, mode)
    weight = kernel.to(x.device, x.dtype).reshape(1, 1, kh, kw)
    return F.conv2d(padded, weight).reshape(n, c, h, w)


def gaussian_kernel1d(sigma: float, truncate: float) -> Tensor:
    """SciPy's ``gaussian_filter1d`` weights: radius ``int(truncate * sigma + 0.5)``."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def gaussian_filter(x: Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> Tensor:
    """Separable Gaussian blur over H and W, as ``skimage.filters.gaussian`` (SciPy
    ``gaussian_filter``; defaults: border "nearest", truncate 4).  ``sigma`` 0 is the identity."""
    if sigma <= 1e-15:
        return x
    weights = gaussian_kernel1d(sigma, truncate)
    x = correlate2d(x, weights.reshape(1, -1), mode)
    return correlate2d(x, weights.reshape(-1, 1), mode)


def gaussian_filter_bank(x: Tensor, sigmas: list[float], mode: str = "nearest", truncate: float = 4.0) -> Tensor:
    """:func:`gaussian_filter` of ``x`` (N, C, H, W) at every sigma of ``sigmas`` (each > 0) at once:
    (N, T, C, H, W) for T sigmas, in one padding and two convolutions instead of T filter calls.

    Every kernel is zero-padded to the widest radius R and the input padded once by R: a
    horizontal pass over a border row equals that pass over the row it replicates, so this is
    the same sum as T separate filters up to the accumulation order of ``conv2d`` (~1e-15 relative;
    the -P tests check the uint8 frames are identical)."""
    n, c, h, w = x.shape
    kernels = [gaussian_kernel1d(sigma, truncate) for sigma in sigmas]
    radius = max(len(k) for k in kernels) // 2
    bank = torch.zeros(len(kernels), 2 * radius + 1, dtype=torch.float64)
    for row, k in zip(bank, kernels):
        row[radius - len(k) // 2:radius + len(k) // 2 + 1] = k
    bank = bank.to(x.device, x.dtype)
    padded = pad(x.reshape(n * c, 1, h, w), radius, radius, radius, radius, mode)
    rows = F.conv2d(padded, bank.reshape(-1, 1, 1, 2 * radius + 1))  # (N*C, T, H + 2R, W)
    out = F.conv2d(rows, bank.reshape(-1, 1, 2 * radius + 1, 1), groups=len(kernels))  # (N*C, T, H, W)
    return out.reshape(n, c, len(kernels), h, w).transpose(1, 2).contiguous()


def box_blur(x: Tensor, size: int = 3) -> Tensor:
    """OpenCV ``blur(x, (size, size))``: normalised box filter, border reflect101."""
    kernel = torch.full((size, size), 1.0 / (size * size), dtype=torch.float64)
    return correlate2d(x, kernel, "reflect101")


def clipped_zoom(x: Tensor, factor: float) -> Tensor:
    """The reference's ``clipped_zoom``: crop the central ``ceil(size / factor)`` pixels and zoom
    them back up with SciPy ``zoom(order=1)`` (bilinear, corners aligned, output size rounded),
    then trim the centre to the input size.  Done per axis, so non-square images work too."""
    h, w = x.shape[-2:]
    ch, cw = int(math.ceil(h / factor)), int(math.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top:top + ch, left:left + cw]
    out_h, out_w = int(round(ch * factor)), int(round(cw * factor))
    zoomed = F.interpolate(crop.reshape(-1, 1, ch, cw), size=(out_h, out_w), mode="bilinear", align_corners=True)
    zoomed = zoomed.reshape(*x.shape[:-2], out_h, out_w)
    trim_top, trim_left = (out_h - h) // 2, (out_w - w) // 2
    return zoomed[..., trim_top:trim_top + h, trim_left:trim_left + w]


def sample_bilinear(x: Tensor, rows: Tensor, cols: Tensor, mode: str) -> Tensor:
    """Bilinear interpolation of ``x`` (N, C, H, W) at real coordinates ``rows``, ``cols``
    (N, H', W'), reading outside pixels through the border rule ``mode`` (see
    :func:`fold_index`).  Returns (N, C, H', W')."""
    n, c, h, w = x.shape
    top, left = rows.floor(), cols.floor()
    fr, fc = (rows - top).unsqueeze(1), (cols - left).unsqueeze(1)
    top, left = top.long(), left.long()
    r0, r1 = fold_index(top, h, mode) * w, fold_index(top + 1, h, mode) * w
    c0, c1 = fold_index(left, w, mode), fold_index(left + 1, w, mode)
    flat = x.reshape(n, c, h * w)

    def read(index: Tensor) -> Tensor:
        index = index.reshape(n, 1, -1).expand(n, c, -1)
        return flat.gather(2, index).reshape(n, c, *rows.shape[1:])

    upper = read(r0 + c0) * (1 - fc) + read(r0 + c1) * fc
    lower = read(r1 + c0) * (1 - fc) + read(r1 + c1) * fc
    return upper * (1 - fr) + lower * fr
