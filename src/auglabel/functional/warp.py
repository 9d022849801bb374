"""Differentiable per-sample geometric warps and a relaxed Bernoulli, for AutoDO's augmentation
sub-model (papers/autodo.txt sec. 4.1, eq. 8; METHODS.md sec. 7).

Coordinates: pixel units centred on the image centre, x to the right, y DOWN (image rows); pixel
``(i, j)`` sits at ``(j - (W - 1) / 2, i - (H - 1) / 2)``.  In these units a rotation is a rotation
whatever the aspect ratio (normalised [-1, 1] coordinates would turn it into a shear on a non-square
image).  A positive angle turns the content counter-clockwise on screen, as ``torch.rot90(x, 1, (-2, -1))``,
PIL and kornia do.  Operation parameters (``params`` columns):

=============  ==========  =====  ==========================================================
op             columns     range  forward map of a point (x, y)
=============  ==========  =====  ==========================================================
rotate         angle       30     by ``angle`` degrees counter-clockwise
translate      tx, ty      0.45   ``+ (tx * W, ty * H)``: fractions of the width / height
translate_x/y  tx / ty     0.45   one axis
shear          sx, sy      0.3    ``x + sx * y`` then ``y + sy * x`` (two shears)
shear_x/y      sx / sy     0.3    one axis
scale          s           0.5    ``* (1 + s)`` (isotropic)
scale_x/y      s           0.5    one axis
=============  ==========  =====  ==========================================================

``ranges`` are the AutoDO paper's (sec. 5.1, "[mu, rng]": rotation [0, 30], scale [1, 0.5], translate
[0, 0.45], shear [0, 0.3]).  Ops compose in list order (op 1 first, eq. 8) into one 3 x 3 matrix per sample,
and :func:`warp` resamples every image once (``affine_grid`` + ``grid_sample``, bilinear), so composed ops
interpolate once.  ``align_corners`` only decides where the image ends (the edge of the border pixels,
False, PyTorch's default; or their centres, True): the map in pixel units is the same either way.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: op name -> (parameter columns, range of the parameter at magnitude 1)
OPS: dict[str, tuple[tuple[str, ...], float]] = {
    "rotate": (("angle",), 30.0),
    "translate": (("tx", "ty"), 0.45),
    "translate_x": (("tx",), 0.45),
    "translate_y": (("ty",), 0.45),
    "shear": (("sx", "sy"), 0.3),
    "shear_x": (("sx",), 0.3),
    "shear_y": (("sy",), 0.3),
    "scale": (("s",), 0.5),
    "scale_x": (("zx",), 0.5),
    "scale_y": (("zy",), 0.5),
}


def _matrix(a: Tensor, b: Tensor, c: Tensor, d: Tensor, tx: Tensor, ty: Tensor) -> Tensor:
    """(B, 3, 3) from the entries of ``[[a, b, tx], [c, d, ty], [0, 0, 1]]``, each (B,)."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([torch.stack([a, b, tx], -1), torch.stack([c, d, ty], -1),
                        torch.stack([zero, zero, one], -1)], -2)


def op_matrix(name: str, params: Tensor, height: int, width: int) -> Tensor:
    """Forward maps (B, 3, 3) in centred pixel units of op ``name`` with parameters ``params`` (B, columns)."""
    zero, one = torch.zeros_like(params[:, 0]), torch.ones_like(params[:, 0])
    p = params.unbind(1)
    if name == "rotate":
        r = p[0] * (math.pi / 180.0)
        cos, sin = torch.cos(r), torch.sin(r)
        return _matrix(cos, sin, -sin, cos, zero, zero)
    if name.startswith("translate"):
        tx = p[0] if name in ("translate", "translate_x") else zero
        ty = p[-1] if name in ("translate", "translate_y") else zero
        return _matrix(one, zero, zero, one, tx * width, ty * height)
    if name == "shear":  # x + sx * y first, then y + sy * x'
        sx, sy = p
        return _matrix(one, sx, sy, one + sy * sx, zero, zero)
    if name == "shear_x":
        return _matrix(one, p[0], zero, one, zero, zero)
    if name == "shear_y":
        return _matrix(one, zero, p[0], one, zero, zero)
    if name == "scale":
        return _matrix(one + p[0], zero, zero, one + p[0], zero, zero)
    if name == "scale_x":
        return _matrix(one + p[0], zero, zero, one, zero, zero)
    if name == "scale_y":
        return _matrix(one, zero, zero, one + p[0], zero, zero)
    raise ValueError(f"unknown warp op {name!r}; choose from {', '.join(OPS)}")


def compose(ops: list[str] | tuple[str, ...], params: Tensor, height: int, width: int) -> Tensor:
    """One (B, 3, 3) forward map per sample: ``M_A ... M_2 M_1`` (op 1 applied first, eq. 8).

    ``params`` (B, P) holds the ops' columns side by side, in op order."""
    batch = params.shape[0]
    matrix = torch.eye(3, dtype=params.dtype, device=params.device).expand(batch, 3, 3)
    start = 0
    for name in ops:
        count = len(OPS[name][0])
        matrix = op_matrix(name, params[:, start:start + count], height, width) @ matrix
        start += count
    if start != params.shape[1]:
        raise ValueError(f"params have {params.shape[1]} columns, ops {list(ops)} need {start}")
    return matrix


def sampling_theta(matrices: Tensor, height: int, width: int, align_corners: bool = False) -> Tensor:
    """``affine_grid``'s (B, 2, 3) theta for forward maps ``matrices`` in centred pixel units: the inverse
    map (output -> input) in normalised coordinates, ``D M^-1 D^-1`` with ``D = diag(2 / W', 2 / H')``,
    ``W' = W`` (align_corners False) or ``W - 1`` (True)."""
    a, b, c, d = matrices[:, 0, 0], matrices[:, 0, 1], matrices[:, 1, 0], matrices[:, 1, 1]
    tx, ty = matrices[:, 0, 2], matrices[:, 1, 2]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    itx, ity = -(ia * tx + ib * ty), -(ic * tx + id_ * ty)
    sx = 2.0 / max(width - 1 if align_corners else width, 1)
    sy = 2.0 / max(height - 1 if align_corners else height, 1)
    return torch.stack([torch.stack([ia, ib * sx / sy, itx * sx], -1),
                        torch.stack([ic * sy / sx, id_, ity * sy], -1)], -2)


def warp(images: Tensor, matrices: Tensor, *, align_corners: bool = False, padding_mode: str = "zeros",
         mode: str = "bilinear") -> Tensor:
    """Resample each image (B, C, H, W) by its forward map (B, 3, 3) in centred pixel units, once;
    differentiable w.r.t. ``matrices`` (and ``images``)."""
    _, _, height, width = images.shape
    theta = sampling_theta(matrices.to(images.dtype), height, width, align_corners)
    grid = F.affine_grid(theta, list(images.shape), align_corners=align_corners)
    return F.grid_sample(images, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


def relaxed_bernoulli(logits: Tensor, generator: torch.Generator, *, temperature: float = 1.0,
                      hard: bool = True) -> Tensor:
    """Bernoulli(sigmoid(logits)) samples relaxed by the two-class Gumbel-softmax (Jang et al. 2017; the
    AutoDO paper's ``b ~ Bern(sigma(lambda_b))``, sec. 4.1).

    The difference of two Gumbel variables is logistic, so with ``u ~ U(0, 1)`` and ``l = log u - log(1 - u)``
    the relaxed sample is ``sigmoid((logits + l) / temperature)``.  ``hard`` returns the exact 0/1 sample
    ``1[logits + l > 0]`` (distributed as Bernoulli(sigmoid(logits))) in the forward pass with the relaxed
    sample's gradient (straight-through), as ``F.gumbel_softmax(..., hard=True)`` in the reference code.
    """
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    u = u.clamp(1e-6, 1 - 1e-6)
    noisy = logits + (torch.log(u) - torch.log1p(-u))
    soft = torch.sigmoid(noisy / temperature)
    if not hard:
        return soft
    return (noisy > 0).to(soft.dtype) + (soft - soft.detach())  # exactly 0 or 1 forward
