"""The nine "safe" AugMix operations, batched with per-sample parameters (METHODS.md sec. 2).

They reproduce the PIL code of the reference AugMix implementation (Hendrycks et al. 2020,
``augmentations.py``), which transforms 8-bit PIL images:

* Pixel ops (autocontrast, equalize, posterize, solarize) are Pillow's ``ImageOps`` tables,
  bit for bit, applied per image and channel.
* Geometric ops (rotate, shear, translate) follow ``Image.transform(..., AFFINE, BILINEAR)``:
  each output pixel centre ``(x + 0.5, y + 0.5)`` is mapped through a 2x3 matrix to a source
  point; a source point outside ``[0, W) x [0, H)`` gives the fill value 0, any other point is
  interpolated bilinearly with edge pixels replicated.  Rotation is about the image centre
  ``(W/2, H/2)``; shears are about the top-left corner, as in the reference code.  All of them
  run as ONE batched ``grid_sample`` with a per-sample matrix.  Like Pillow, the chain then
  truncates the result to an integer level (float32 here against Pillow's float64, so a value
  within ~1e-3 below an integer may land one level apart).

Quantisation: a [0, 1] image enters the 8-bit world as ``round(x * 255)`` (nearest, so an image
made from uint8 data maps back to exactly its bytes).  :func:`apply_ops_to_levels_` works on
float tensors holding integer levels 0..255 and is what AugMix chains use (no conversion per op);
the per-op functions and :func:`apply_ops` take and return [0, 1] images.

Different ops for different images of a batch are grouped with one sort: all pixel-op images
share one table ``gather`` (one 256-entry table per image and channel), all geometric-op images
share one ``grid_sample``.  Nothing loops over images.  Each call makes one host sync (the group
sizes, ``.tolist()``): the sub-batches have data-dependent sizes, and running every op on every
image instead (sync-free) would cost up to 3 ``grid_sample`` passes plus all tables per image.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

OP_NAMES: tuple[str, ...] = (
    "autocontrast", "equalize", "posterize", "rotate", "solarize",
    "shear_x", "shear_y", "translate_x", "translate_y",
)
"""The reference implementation's ``augmentations`` list, in its order; ``info['ops']`` indexes it."""

OP_INDEX: dict[str, int] = {name: i for i, name in enumerate(OP_NAMES)}
_INTERPOLATED = ("rotate", "shear_x", "shear_y")
_SHIFTS = ("translate_x", "translate_y")  # whole pixels: no interpolation needed


def quantise(images: Tensor) -> Tensor:
    """[0, 1] images -> float tensor of integer grey levels 0..255: ``floor(x * 255 + 0.5)``."""
    return images.mul(255.0).add_(0.5).floor_()


def to_levels(images: Tensor) -> Tensor:
    """[0, 1] images -> int64 grey levels 0..255, rounding to nearest (halves up).

    No clamp, to save a pass: values a rounding error outside [0, 1] still land in 0..255.
    """
    return images.mul(255.0).add_(0.5).long()


# Pillow truncates interpolated values to uint8; float32 puts exact integers a hair below.
_TRUNCATION_SLACK = 1e-3


def _per_sample(values: Tensor) -> Tensor:
    """(N,) -> (N, 1, 1) so a per-sample parameter broadcasts over (N, C, 256) tables."""
    return values.reshape(-1, 1, 1)


def _look_up(levels: Tensor, lut: Tensor, dtype: torch.dtype) -> Tensor:
    """Map int64 levels (N, C, H, W) through per-channel tables (N, C, 256): float levels out."""
    n, c, h, w = levels.shape
    table = lut.to(dtype).reshape(n * c, 256)
    return table.gather(1, levels.reshape(n * c, h * w)).reshape(n, c, h, w)


def _identity_lut(levels: Tensor) -> Tensor:
    n, c = levels.shape[:2]
    return torch.arange(256, device=levels.device).expand(n, c, 256)


def autocontrast_lut(levels: Tensor) -> Tensor:
    """Pillow's ``ImageOps.autocontrast`` table (cutoff 0) per channel, shape (N, C, 256).

    ``lut[v] = clip(int(v * scale + offset))`` with ``scale = 255 / (hi - lo)``, ``offset = -lo * scale``
    in float64 exactly as Pillow writes it: the exact rational ``floor((v - lo) * 255 / (hi - lo))``
    differs from it on thousands of (lo, hi, v) triples.  Identity when a channel is constant.
    ``levels`` may be int64 or float levels (float min/max reductions are several times faster).
    """
    lo = levels.amin(dim=(2, 3)).unsqueeze(-1).double()
    hi = levels.amax(dim=(2, 3)).unsqueeze(-1).double()
    scale = 255.0 / (hi - lo).clamp(min=1)
    offset = -lo * scale
    grey = torch.arange(256, device=levels.device, dtype=torch.float64)
    stretched = (grey * scale + offset).trunc().clamp(0, 255).long()
    return torch.where(hi > lo, stretched, _identity_lut(levels))


def equalize_lut(levels: Tensor) -> Tensor:
    """Pillow's ``ImageOps.equalize`` table per channel, shape (N, C, 256), from int64 levels.

    For a channel with more than one grey level: ``step = (n_pixels - count(max level)) // 255``
    (Pillow >= 10; the AugMix authors' older Pillow divided by 256) and
    ``lut[i] = (step // 2 + #pixels below i) // step`` clipped to 255; identity when step is 0.
    Histograms of all (image, channel) rows come from one ``scatter_add_``; the integer
    arithmetic runs in float64, exact for these magnitudes and much faster than int64 division.
    """
    n, c, h, w = levels.shape
    flat = levels.reshape(n * c, h * w)
    hist = torch.zeros(n * c, 256, dtype=torch.float64, device=levels.device)
    hist.scatter_add_(1, flat, torch.ones(flat.shape, dtype=torch.float64, device=levels.device))
    step = ((h * w - hist.gather(1, flat.amax(dim=1, keepdim=True))) / 255).floor_()  # (R, 1)
    below = hist.cumsum(dim=1).sub_(hist)  # pixels strictly below each level
    lut = (((step / 2).floor() + below) / step.clamp(min=1)).floor_().clamp_(max=255)
    usable = ((hist > 0).sum(dim=1, keepdim=True) > 1) & (step > 0)
    identity = torch.arange(256, device=levels.device, dtype=torch.float64)
    return torch.where(usable, lut, identity).long().reshape(n, c, 256)


def posterize_lut(levels: Tensor, bits: Tensor) -> Tensor:
    """``ImageOps.posterize``: keep the top ``bits[i]`` (0..8) bits of every level of image i.

    bits = 0 (AugMix level 10, never drawn from U(0.1, 10)) gives black, as in the Pillow the
    reference code ran on; Pillow >= 10 rejects it.
    """
    mask = ~((2 ** (8 - bits.long())) - 1)
    return _identity_lut(levels) & _per_sample(mask)


def solarize_lut(levels: Tensor, threshold: Tensor) -> Tensor:
    """``ImageOps.solarize``: invert (255 - v) every level v >= ``threshold[i]``."""
    grey = _identity_lut(levels)
    return torch.where(grey < _per_sample(threshold.long()), grey, 255 - grey)


def autocontrast(images: Tensor) -> Tensor:
    """``ImageOps.autocontrast(img)`` on [0, 1] images: stretch each channel to [0, 1]."""
    levels = to_levels(images)
    return _look_up(levels, autocontrast_lut(levels), images.dtype).div_(255.0)


def equalize(images: Tensor) -> Tensor:
    """``ImageOps.equalize(img)`` on [0, 1] images: per-channel histogram equalisation."""
    levels = to_levels(images)
    return _look_up(levels, equalize_lut(levels), images.dtype).div_(255.0)


def posterize(images: Tensor, bits: Tensor) -> Tensor:
    """``ImageOps.posterize(img, bits[i])`` per image; ``bits`` of shape (N,)."""
    levels = to_levels(images)
    return _look_up(levels, posterize_lut(levels, bits), images.dtype).div_(255.0)


def solarize(images: Tensor, threshold: Tensor) -> Tensor:
    """``ImageOps.solarize(img, threshold[i])`` per image; ``threshold`` of shape (N,)."""
    levels = to_levels(images)
    return _look_up(levels, solarize_lut(levels, threshold), images.dtype).div_(255.0)


def _sampling_grid(matrix: Tensor, n: int, h: int, w: int, like: Tensor) -> Tensor:
    """grid_sample's (N, H, W, 2) grid for PIL-style output-to-source matrices (see :func:`affine`)."""
    dtype, device = like.dtype, like.device
    size = torch.tensor([w, h], dtype=torch.float64, device=device)
    # Fold grid_sample's normalisation (align_corners=False: g = 2 * s / size - 1, s the continuous
    # pixel coordinate) into the coefficients, then build the grid from its separable parts:
    # g[n, y, x, k] = a_k * (x + 0.5) + (b_k * (y + 0.5) + c_k), k = 0 (x), 1 (y).
    m = matrix.to(torch.float64) * (2.0 / size).reshape(1, 2, 1)
    m[:, :, 2] -= 1.0
    m = m.to(dtype)
    xs = torch.arange(w, dtype=dtype, device=device) + 0.5
    ys = torch.arange(h, dtype=dtype, device=device) + 0.5
    grid = torch.empty(n, h, w, 2, dtype=dtype, device=device)
    for k in range(2):
        along_x = (m[:, k, 0:1] * xs).reshape(n, 1, w)
        along_y = (m[:, k, 1:2] * ys + m[:, k, 2:3]).reshape(n, h, 1)
        torch.add(along_y, along_x, out=grid[..., k])
    return grid


def _bilinear_and_inside(images: Tensor, matrix: Tensor) -> tuple[Tensor, Tensor]:
    n, _, h, w = images.shape
    grid = _sampling_grid(matrix, n, h, w, images)
    sampled = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # PIL's cut-off "source inside [0, size)" is "the nearest source pixel exists" (up to a tie at
    # exactly s = size for odd sizes): sampling ones with nearest/zeros padding gives it in one kernel.
    ones = torch.ones(n, 1, h, w, dtype=images.dtype, device=images.device)
    inside = F.grid_sample(ones, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return sampled, inside


def affine(images: Tensor, matrix: Tensor) -> Tensor:
    """``Image.transform(size, AFFINE, matrix, BILINEAR)`` for a batch, per-sample matrices.

    Linear in the pixel values, so it works on [0, 1] images and on levels alike; it does not
    truncate (the AugMix chain does, see :func:`apply_ops_to_levels_`).

    Args:
        images: (N, C, H, W) float.
        matrix: (N, 2, 3); row ``(a, b, c)`` maps an output point ``(x, y)`` in continuous pixel
            coordinates (pixel centres at ``i + 0.5``) to the source ``x = a*x + b*y + c``.
    """
    sampled, inside = _bilinear_and_inside(images, matrix)
    return sampled.mul_(inside)


def _affine_truncated(levels: Tensor, matrix: Tensor) -> Tensor:
    """:func:`affine` on levels, truncated to integers like PIL's uint8 output (3 passes fused to 2)."""
    sampled, inside = _bilinear_and_inside(levels, matrix)
    slack = torch.tensor(_TRUNCATION_SLACK, dtype=levels.dtype, device=levels.device)
    return torch.addcmul(slack, sampled, inside).floor_()


def _integer_shift(images: Tensor, matrix: Tensor) -> Tensor:
    """:func:`affine` for whole-pixel translations: sources are pixel centres, so nearest sampling
    with zero padding is exact (and needs neither the inside mask nor truncation)."""
    n, _, h, w = images.shape
    grid = _sampling_grid(matrix, n, h, w, images)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def geometric_matrix(op: Tensor, amount: Tensor, height: int, width: int) -> Tensor:
    """PIL's (N, 2, 3) output-to-source matrices for geometric ops given per sample.

    Args:
        op: (N,) indices into :data:`OP_NAMES`, each one of the five geometric ops.
        amount: (N,) signed degrees (rotate), shear factor (shear) or pixels (translate).
    """
    amount = amount.to(torch.float64)
    zero, one = torch.zeros_like(amount), torch.ones_like(amount)
    # Image.rotate(deg): source = R(-deg) (p - centre) + centre.
    angle = -amount * (math.pi / 180.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = width / 2.0, height / 2.0
    rows = {
        "rotate": (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy),
        "shear_x": (one, amount, zero, zero, one, zero),
        "shear_y": (one, zero, zero, amount, one, zero),
        "translate_x": (one, zero, amount, zero, one, zero),
        "translate_y": (one, zero, zero, zero, one, amount),
    }
    matrix = torch.zeros(amount.shape[0], 6, dtype=torch.float64, device=amount.device)
    for name, coefficients in rows.items():
        chosen = (op == OP_INDEX[name]).unsqueeze(1)
        matrix = torch.where(chosen, torch.stack(coefficients, dim=1), matrix)
    return matrix.reshape(-1, 2, 3)


_PIXEL_LUTS = {  # f(float levels, int64 levels, amount) -> (N, C, 256) int64 table
    "autocontrast": lambda grey, index, amount: autocontrast_lut(grey),
    "equalize": lambda grey, index, amount: equalize_lut(index),
    "posterize": lambda grey, index, amount: posterize_lut(index, amount),
    "solarize": lambda grey, index, amount: solarize_lut(index, amount),
}


def op_amount(op: Tensor, level: Tensor, sign: Tensor, height: int, width: int) -> Tensor:
    """The reference code's level -> parameter map, per sample (METHODS.md sec. 2).

    ``int_parameter(l, m) = int(l * m / 10)``, ``float_parameter(l, m) = l * m / 10``:
    rotate ``sign * int(3 l)`` degrees; shear ``sign * 0.03 l``; translate ``sign * int(l * size/3 / 10)``
    pixels (size = width for x, height for y); posterize ``4 - int(0.4 l)`` bits; solarize threshold
    ``256 - int(25.6 l)``; autocontrast/equalize ignore it.  Computed in float64 like Python.
    """
    level = level.to(torch.float64)
    sign = sign.to(torch.float64)
    candidates = {
        "rotate": sign * (level * 30 / 10).trunc(),
        "shear_x": sign * (level * 0.3 / 10),
        "shear_y": sign * (level * 0.3 / 10),
        "translate_x": sign * (level * (width / 3) / 10).trunc(),
        "translate_y": sign * (level * (height / 3) / 10).trunc(),
        "posterize": 4 - (level * 4 / 10).trunc(),
        "solarize": 256 - (level * 256 / 10).trunc(),
    }
    amount = torch.zeros_like(level)
    for name, value in candidates.items():
        amount = torch.where(op == OP_INDEX[name], value, amount)
    return amount


def apply_ops(images: Tensor, op: Tensor, level: Tensor, sign: Tensor) -> Tensor:
    """Apply op ``op[i]`` (index into :data:`OP_NAMES`, -1 = identity) to image i, like PIL.

    Args:
        images: (N, C, H, W) float in [0, 1]; quantised to 8 bits first, like a PIL image.
        op: (N,) int64 op indices in -1..8.
        level: (N,) AugMix levels in [0.1, severity].
        sign: (N,) +1 / -1 direction of rotate, shear and translate.

    Returns:
        (N, C, H, W) float in [0, 1], multiples of 1/255.
    """
    return apply_ops_to_levels_(quantise(images), op, level, sign).div_(255.0)


def apply_ops_to_levels_(levels: Tensor, op: Tensor, level: Tensor, sign: Tensor) -> Tensor:
    """In-place :func:`apply_ops` on a float tensor of integer levels 0..255; returns it."""
    _, _, height, width = levels.shape
    amount = op_amount(op, level, sign, height, width)
    # Sort key: -1 identity, each pixel op by its own index, 9 rotate/shear, 10 translations.
    interpolated_key, shift_key = len(OP_NAMES), len(OP_NAMES) + 1
    key = op
    for names, group_key in ((_INTERPOLATED, interpolated_key), (_SHIFTS, shift_key)):
        for name in names:
            key = torch.where(op == OP_INDEX[name], group_key, key)
    order = torch.argsort(key, stable=True)
    counts = torch.bincount(key + 1, minlength=shift_key + 2).tolist()  # the one host sync
    start = [sum(counts[:k]) for k in range(len(counts))]  # sorted position where key k - 1 starts

    def rows_of(key_value: int) -> Tensor:
        return order[start[key_value + 1]:start[key_value + 1] + counts[key_value + 1]]

    # Every group reads its input before any group writes, so updating in place is safe.
    pixel_start, pixel_end = counts[0], start[interpolated_key + 1]
    results = []
    if pixel_end > pixel_start:
        pixel_rows = order[pixel_start:pixel_end]
        grey = levels.index_select(0, pixel_rows)
        index = grey.long()
        tables = []
        for name in sorted(_PIXEL_LUTS, key=OP_INDEX.__getitem__):  # the sort order of the rows
            k = OP_INDEX[name] + 1
            part = slice(start[k] - pixel_start, start[k] - pixel_start + counts[k])
            if counts[k]:
                tables.append(_PIXEL_LUTS[name](grey[part], index[part], amount[pixel_rows[part]]))
        results.append((pixel_rows, _look_up(index, torch.cat(tables), levels.dtype)))
    for key_value, transform in ((interpolated_key, _affine_truncated), (shift_key, _integer_shift)):
        if counts[key_value + 1]:
            rows = rows_of(key_value)
            matrix = geometric_matrix(op[rows], amount[rows], height, width)
            results.append((rows, transform(levels.index_select(0, rows), matrix)))
    for rows, values in results:
        levels.index_copy_(0, rows, values)
    return levels
