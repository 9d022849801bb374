"""Pure tensor functions for mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019).

Everything is batched, runs on the inputs' device and draws randomness only from an explicit
``torch.Generator``.  ``torch.distributions.Beta`` cannot take a generator, so Beta variates are
built here from Gamma variates (Marsaglia & Tsang 2000), themselves built from the generator's
normal and uniform draws.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _log_standard_gamma(concentration: float, n: int, *, generator: torch.Generator,
                        device: torch.device, dtype: torch.dtype) -> Tensor:
    """``log`` of n Gamma(concentration, 1) variates, exact (Marsaglia & Tsang 2000).

    For concentration < 1 it uses ``Gamma(a) = Gamma(a + 1) * U^(1/a)``; working in log space
    keeps tiny variates (a = 0.1 gives values below float32's range) finite.
    """
    boost = concentration < 1.0
    shape = concentration + 1.0 if boost else concentration
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    log_gamma = torch.empty(n, device=device, dtype=dtype)
    pending = torch.ones(n, dtype=torch.bool, device=device)
    while bool(pending.any()):  # acceptance rate > 95 %: a handful of rounds
        rows = pending.nonzero().squeeze(1)
        normal = torch.randn(rows.numel(), generator=generator, device=device, dtype=dtype)
        uniform = torch.rand(rows.numel(), generator=generator, device=device, dtype=dtype)
        v = (1.0 + c * normal) ** 3
        safe_v = v.clamp_min(torch.finfo(dtype).tiny)
        accept = (v > 0) & (torch.log(uniform) < 0.5 * normal**2 + d - d * safe_v + d * torch.log(safe_v))
        log_gamma[rows[accept]] = math.log(d) + torch.log(safe_v[accept])
        pending[rows[accept]] = False
    if boost:
        # 1 - U lies in (0, 1], so its log is finite.
        uniform = 1.0 - torch.rand(n, generator=generator, device=device, dtype=dtype)
        log_gamma = log_gamma + torch.log(uniform) / concentration
    return log_gamma


def sample_beta(concentration1: float, concentration0: float, n: int, *, generator: torch.Generator,
                device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """n exact Beta(concentration1, concentration0) variates, shape (n,), as ``X / (X + Y)``.

    X ~ Gamma(concentration1), Y ~ Gamma(concentration0); computed as ``sigmoid(log X - log Y)``.
    """
    if concentration1 <= 0 or concentration0 <= 0:
        raise ValueError(f"Beta concentrations must be > 0, got {concentration1}, {concentration0}")
    device = torch.device(device) if device is not None else generator.device
    log_x = _log_standard_gamma(concentration1, n, generator=generator, device=device, dtype=dtype)
    log_y = _log_standard_gamma(concentration0, n, generator=generator, device=device, dtype=dtype)
    return torch.sigmoid(log_x - log_y)


def random_partners(n: int, *, generator: torch.Generator, device: torch.device) -> Tensor:
    """A random partner row for each of n rows, shape (n,) int64, never the row itself if n >= 2.

    The permutation is one random n-cycle (``perm[i] -> perm[i + 1]``), so every sample is mixed
    with a *different* image, uniformly chosen among the other n - 1; a plain ``randperm`` (as in
    Zhang et al.'s code) leaves about one sample per batch paired with itself, unchanged but
    reported as mixed.  With n = 1 the only choice is the sample itself.
    """
    perm = torch.randperm(n, generator=generator, device=device)
    partner = torch.empty_like(perm)
    partner[perm] = perm.roll(-1)
    return partner


def mix_images(inputs: Tensor, partner: Tensor, gamma: Tensor) -> Tensor:
    """mixup's inputs ``gamma_i * x_i + (1 - gamma_i) * x_partner(i)`` (mixup-calibration eq. 1)."""
    g = gamma.to(inputs.dtype).view(-1, *([1] * (inputs.dim() - 1)))
    return g * inputs + (1.0 - g) * inputs[partner]


def mixup_targets(labels: Tensor, partner_labels: Tensor, gamma: Tensor, num_classes: int,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """mixup's soft targets ``gamma * y_i + (1 - gamma) * y_partner`` (mixup-calibration eq. 2), (N, K)."""
    g = gamma.to(dtype)[:, None]
    own = F.one_hot(labels, num_classes).to(dtype)
    other = F.one_hot(partner_labels, num_classes).to(dtype)
    return g * own + (1.0 - g) * other


def cutmix_boxes(area_gamma: Tensor, height: int, width: int, *,
                 generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample boxes ``(top, bottom, left, right)`` (bottom/right exclusive), each (N,) int64.

    Yun et al. 2019 (CutMix, sec. 3.1 and its reference code): side ratio ``sqrt(1 - gamma)``,
    side ``floor(H * ratio)``, centre uniform over pixels, half-side ``side // 2`` on each side,
    clipped to the image.  Clipping shrinks the box, so the kept fraction must be recomputed
    from the box (:func:`kept_fraction`), not taken from ``area_gamma``.
    """
    device = area_gamma.device
    n = area_gamma.shape[0]
    ratio = torch.sqrt(1.0 - area_gamma.double())
    half_h = torch.floor(height * ratio).long() // 2
    half_w = torch.floor(width * ratio).long() // 2
    centre_y = torch.randint(0, height, (n,), generator=generator, device=device)
    centre_x = torch.randint(0, width, (n,), generator=generator, device=device)
    top = (centre_y - half_h).clamp(0, height)
    bottom = (centre_y + half_h).clamp(0, height)
    left = (centre_x - half_w).clamp(0, width)
    right = (centre_x + half_w).clamp(0, width)
    return top, bottom, left, right


def box_masks(boxes: tuple[Tensor, Tensor, Tensor, Tensor], height: int, width: int) -> Tensor:
    """Boolean masks (N, H, W), True inside each sample's box; built by broadcasting coordinates."""
    top, bottom, left, right = boxes
    rows = torch.arange(height, device=top.device)
    cols = torch.arange(width, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])  # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < right[:, None])  # (N, W)
    return in_rows[:, :, None] & in_cols[:, None, :]


def kept_fraction(boxes: tuple[Tensor, Tensor, Tensor, Tensor], height: int, width: int) -> Tensor:
    """Fraction of each image *outside* its box (the own image's share), (N,) float64, exact."""
    top, bottom, left, right = boxes
    return 1.0 - ((bottom - top) * (right - left)).double() / (height * width)


def cutmix_images(inputs: Tensor, partner: Tensor, masks: Tensor) -> Tensor:
    """Paste ``inputs[partner]`` into each image where ``masks`` (N, H, W) is True."""
    return torch.where(masks[:, None], inputs[partner], inputs)
