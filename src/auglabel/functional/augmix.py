"""Batched AugMix (Hendrycks et al. 2020, augmix.txt sec. 3; METHODS.md sec. 2).

``x_augmix = m * x + (1 - m) * sum_i w_i * chain_i(x)`` with ``w ~ Dirichlet(alpha)`` over
``width`` chains, each chain ``depth`` ops (uniform in {1, 2, 3} when depth = -1) drawn with
replacement from the safe ops, every op with level ``l ~ U(0.1, severity)`` and a random sign.
``m`` is the weight of the CLEAN image: ``m ~ Beta(alpha, alpha)`` (``mix="beta"``, the paper) or
``m ~ U(0, 1)`` (``mix="uniform"``, AutoLabel's single-chain setting, METHODS.md sec. 5).
The reference code writes ``(1 - m) * x + m * mix``; with a symmetric Beta that is the same
distribution, and we keep METHODS.md's convention.

Like the reference code, which chains ops on 8-bit PIL images, the chains start from the image
quantised to 8 bits and stay on integer levels (see :mod:`.augmix_ops`); the clean term ``m * x``
uses the input as given.  Replaying the reported ops with PIL reproduces the output to float
rounding (tested).  Every draw comes from the given generator, per sample, and is returned in
``info``; all images and chains are processed together, one grouped op step per chain position.

GPU readiness (docs/results/gpu_readiness.md): no loop over images or chains; host syncs per call
are the [0, 1] input check (1), the Gamma rejection rounds (a few, see :func:`sample_gamma`) and
one per chain position (group sizes, :func:`.augmix_ops.apply_ops_to_levels_`).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import ConfigError
from .augmix_ops import OP_INDEX, OP_NAMES, apply_ops_to_levels_, quantise

RANDOM_DEPTH_MAX = 3  # depth = -1 draws each chain's depth uniformly from 1..3 (reference code)
MIX_MODES = ("beta", "uniform")


def check_augmix_params(severity: float, width: int, depth: int, alpha: float, mix: str = "beta",
                        ops: Sequence[str] | None = None) -> None:
    """Raise :class:`ConfigError` with a one-line message for an invalid AugMix setting."""
    if not 1 <= severity <= 10:
        raise ConfigError(f"augmix: severity must be in [1, 10], got {severity}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"augmix: width must be an integer >= 1, got {width!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or not (depth == -1 or 1 <= depth <= 10):
        raise ConfigError(f"augmix: depth must be -1 (random 1..3) or an integer in 1..10, got {depth!r}")
    if not alpha > 0:
        raise ConfigError(f"augmix: alpha must be > 0, got {alpha}")
    if mix not in MIX_MODES:
        raise ConfigError(f"augmix: mix must be one of {', '.join(MIX_MODES)}, got {mix!r}")
    if ops is not None:
        unknown = [name for name in ops if name not in OP_INDEX]
        if unknown or not ops:
            raise ConfigError(f"augmix: ops must be a non-empty subset of {', '.join(OP_NAMES)}, got {list(ops)}")


def check_images(images: Tensor) -> None:
    """Raise ValueError unless ``images`` is a float (N, C, H, W) tensor with values in [0, 1]."""
    if images.dim() != 4:
        raise ValueError(f"augmix expects images of shape (N, C, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"augmix expects floating-point images in [0, 1], got dtype {images.dtype}")
    if not images.numel():
        return
    low, high = torch.aminmax(images)  # one fused reduction and one host sync (was two of each)
    if bool((low < 0) | (high > 1)):
        raise ValueError(
            f"augmix expects images in [0, 1], got values in [{low.item():.4g}, {high.item():.4g}]"
            " (normalise inside the model, not before augmenting)"
        )


def sample_gamma(concentration: float, shape: tuple[int, ...], generator: torch.Generator,
                 device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """Gamma(concentration, 1) samples from ``generator`` (Marsaglia & Tsang 2000).

    ``torch.distributions`` takes no generator, hence this.  Rejection rounds redraw the whole
    shape and fill only still-empty slots, so results depend on the seed alone.  For
    concentration < 1 it uses ``Gamma(a) = Gamma(a + 1) * U^(1/a)``.

    GPU note: the loop is over rejection rounds (typically 2-4 for a whole batch), never over
    samples; each round ends in one host sync (``.any()``).  It stays: a fixed number of
    speculative rounds would consume the generator differently and change every later draw.
    """
    boost = concentration < 1
    a = concentration + 1.0 if boost else concentration
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    out = torch.full(shape, float("nan"), dtype=torch.float64, device=device)
    while True:
        z = torch.randn(shape, generator=generator, device=device, dtype=torch.float64)
        u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
        v = (1.0 + c * z) ** 3
        accept = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp(min=1e-300)))
        out = torch.where(out.isnan() & accept, d * v, out)
        if not out.isnan().any():
            break
    if boost:
        u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
        out = out * u.pow(1.0 / concentration)
    return out.to(dtype)


def sample_dirichlet(alpha: float, n: int, k: int, generator: torch.Generator, device: torch.device,
                     dtype: torch.dtype = torch.float32) -> Tensor:
    """(n, k) rows from the symmetric Dirichlet(alpha, ..., alpha)."""
    g = sample_gamma(alpha, (n, k), generator, device, torch.float64)
    return (g / g.sum(dim=1, keepdim=True)).to(dtype)


def sample_beta(alpha: float, n: int, generator: torch.Generator, device: torch.device,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """(n,) samples from Beta(alpha, alpha) as the first coordinate of a 2-way Dirichlet."""
    return sample_dirichlet(alpha, n, 2, generator, device, dtype)[:, 0]


def augmix(images: Tensor, generator: torch.Generator, severity: float = 3, width: int = 3,
           depth: int = -1, alpha: float = 1.0, ops: Sequence[str] | None = None,
           mix: str = "beta", depths: Tensor | None = None,
           clean_weight: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """AugMix every image of a batch independently.

    Args:
        images: (N, C, H, W) float in [0, 1].
        generator: source of every random draw (on the images' device).
        severity: upper end of the level range U(0.1, severity), in [1, 10].
        width: number of chains k.
        depth: ops per chain, or -1 for uniform in 1..3 per chain.
        alpha: Dirichlet/Beta concentration.
        ops: names from :data:`OP_NAMES` to draw from (default all nine).
        mix: "beta" (m ~ Beta(alpha, alpha)) or "uniform" (m ~ U(0, 1)); m weights the clean image.
        depths: optional (N, width) chain depths to use instead of drawing them (AutoLabel's
            validation sets fix the depth bucket); each in 1..D.
        clean_weight: optional (N,) clean-image weights m to use instead of drawing them.

    Returns:
        ``(mixed, info)``; mixed has the input's shape and dtype, info holds per sample:
        ``ops`` (N, width, D) int64 indices into OP_NAMES, -1 past a chain's depth
        (D = depth, or 3 when depth = -1); ``levels`` (N, width, D), 0 where padded;
        ``signs`` (N, width, D) int64 +-1, 0 where padded; ``depths`` (N, width) int64;
        ``chain_weights`` (N, width); ``skip_weight`` (N,) = m, the clean image's weight;
        ``mix_weight`` (N,) = m again (AutoLabel's lam); ``depth`` (N,) the deepest chain
        (the chain depth when width = 1); ``distance`` (N,) = 1 - m in [0, 1].
    """
    check_augmix_params(severity, width, depth, alpha, mix, ops)
    check_images(images)
    n, c, h, w = images.shape
    device, dtype = images.device, images.dtype
    max_depth = RANDOM_DEPTH_MAX if depth == -1 else depth
    allowed = torch.tensor([OP_INDEX[name] for name in (ops or OP_NAMES)], device=device)

    shape = (n, width, max_depth)
    op = allowed[torch.randint(0, len(allowed), shape, generator=generator, device=device)]
    level = 0.1 + (severity - 0.1) * torch.rand(shape, generator=generator, device=device, dtype=dtype)
    sign = torch.where(torch.rand(shape, generator=generator, device=device) < 0.5, -1, 1)
    if depths is not None:
        if depths.shape != (n, width) or depths.min() < 1 or depths.max() > max_depth:
            raise ValueError(f"augmix: depths must have shape ({n}, {width}) with values in 1..{max_depth}")
        depths = depths.to(device=device, dtype=torch.long)
    elif depth == -1:
        depths = torch.randint(1, RANDOM_DEPTH_MAX + 1, (n, width), generator=generator, device=device)
    else:
        depths = torch.full((n, width), depth, dtype=torch.long, device=device)
    chain_weights = sample_dirichlet(alpha, n, width, generator, device, dtype)
    if clean_weight is not None:
        if clean_weight.shape != (n,) or clean_weight.min() < 0 or clean_weight.max() > 1:
            raise ValueError(f"augmix: clean_weight must have shape ({n},) with values in [0, 1]")
        clean_weight = clean_weight.to(device=device, dtype=dtype)
    elif mix == "beta":
        clean_weight = sample_beta(alpha, n, generator, device, dtype)
    else:
        clean_weight = torch.rand(n, generator=generator, device=device, dtype=dtype)

    active = torch.arange(max_depth, device=device) < depths.unsqueeze(-1)
    op = torch.where(active, op, -1)
    level = torch.where(active, level, torch.zeros_like(level))
    sign = torch.where(active, sign, 0).long()

    # All chains of all images as one batch of 8-bit levels (the reference chains PIL images),
    # sample-major: row i * width + j is chain j of image i.
    chains = quantise(images).repeat_interleave(width, dim=0)
    flat_op, flat_level, flat_sign = (t.reshape(n * width, max_depth) for t in (op, level, sign))
    for step in range(max_depth):
        apply_ops_to_levels_(chains, flat_op[:, step], flat_level[:, step], flat_sign[:, step])
    # m * x + (1 - m) * sum_i w_i chain_i / 255 as one batched matrix product plus one fused add.
    chain_coefficients = ((1.0 - clean_weight).unsqueeze(1) * chain_weights / 255.0).unsqueeze(1)  # (n, 1, width)
    mixed = torch.bmm(chain_coefficients, chains.reshape(n, width, c * h * w)).reshape(n, c, h, w)
    mixed.addcmul_(clean_weight.reshape(n, 1, 1, 1), images).clamp_(0.0, 1.0)

    info = {
        "ops": op, "levels": level, "signs": sign, "depths": depths,
        "chain_weights": chain_weights, "skip_weight": clean_weight, "mix_weight": clean_weight.clone(),
        "depth": depths.amax(dim=1), "distance": 1.0 - clean_weight,
    }
    return mixed, info
