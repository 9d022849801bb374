"""The common-corruption benchmark (-C): CIFAR-10-C's 15 corruptions and its 4 extra ones, for
any image size from 8 px, grey (C = 1) or RGB (C = 3).

Reference: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations", ICLR 2019; severity constants copied from their CIFAR-10-C generator
``ImageNet-C/create_c/make_cifar_c.py`` (github.com/hendrycks/robustness, commit ca36008).
The library calls of that script (scikit-image, SciPy, OpenCV, ImageMagick, PIL) are
re-implemented on batched tensors with the same arithmetic; at 32 x 32 RGB the deterministic
corruptions match the script to within one grey level (float rounding before truncation).

Other image sizes, ``s = min(H, W) / 32``:

* per-pixel or relative constants need nothing: noise, brightness, contrast, saturate, JPEG
  quality, pixelate factor, zoom factors, snow's zoom;
* pixel-unit constants are multiplied by ``s``: Gaussian / glass / spatter sigmas, glass shuffle
  distance (at least 1), motion-blur radius and sigma (also snow's), spatter's distance cap;
  elastic_transform's constants are already multiples of the image size (IMSIZE = min(H, W));
* the defocus disk is the reference kernel resampled by ``s`` (``blur.scaled_disk_kernel``);
* fog's plasma fractal is drawn on the next power of two >= max(H, W) and cropped; frost crops
  come from procedural textures 5 x the image size (``_frost_texture``).

Each module documents its departures from the reference.  The five severities of one image
share their random draws (see ``_registry.RandomSource``).

    >>> corrupted = corrupt(images_uint8, "gaussian_noise", severity=3, seed=0)
"""
from __future__ import annotations

import numbers

import torch
from torch import Tensor

from .._autoimport import import_submodules
from ..errors import ConfigError, DataError
from ._registry import CORRUPTIONS, RandomSource

import_submodules(__name__, __path__)

#: The 15 corruptions of the benchmark, in the paper's order (noise, blur, weather, digital).
BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
#: The 4 held-out corruptions released with the benchmark for validation.
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
MIN_SIZE = 8

if set(CORRUPTIONS) != set(BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS):  # a module went missing or extra
    raise RuntimeError(f"corruption registry out of sync: {sorted(CORRUPTIONS)}")


def corruption_names(extra: bool = True) -> list[str]:
    """The benchmark corruptions, followed by the extra ones when ``extra``."""
    return list(BENCHMARK_CORRUPTIONS + (EXTRA_CORRUPTIONS if extra else ()))


def corrupt(images: Tensor, name: str, severity: int, seed: int) -> Tensor:
    """Corrupt a batch of 8-bit images.

    Args:
        images: uint8 tensor (N, C, H, W), C = 1 or 3, H and W >= 8, on any device.
        name: one of :func:`corruption_names`.
        severity: 1 (mildest) to 5.
        seed: integer; the same (images, name, severity, seed) always gives the same result,
            on any device.  Every image gets its own random draws, made for the whole batch:
            an image's corruption depends on its position in the batch, so give each chunk of
            a large set its own seed.

    Returns:
        uint8 tensor of the same shape and device: the reference's float result clipped to
        [0, 255] and truncated, like ``np.uint8`` in ``make_cifar_c.py``.
    """
    if name not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}; choose one of: {', '.join(corruption_names())}")
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral) or severity not in SEVERITIES:
        raise ConfigError(f"corruption severity must be an integer from 1 to 5, got {severity!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"corruption seed must be an integer, got {seed!r}")
    check_uint8_images(images)
    if images.shape[0] == 0:
        return images.clone()
    dtype = torch.float32 if images.device.type == "mps" else torch.float64
    rng = RandomSource(int(seed), name, images.device, dtype)
    result = CORRUPTIONS[name](images.to(dtype) / 255.0, int(severity), rng)
    return result.nan_to_num(0.0).clamp(0, 255).floor().to(torch.uint8)


def check_uint8_images(images: Tensor, what: str = "corruptions") -> None:
    """Raise :class:`DataError` unless ``images`` is uint8 (N, C, H, W), C in {1, 3}, H, W >= 8."""
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        got = (f"{images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, Tensor)
               else type(images).__name__)
        raise DataError(f"{what} need a uint8 tensor of shape (N, C, H, W); got {got}")
    if images.shape[1] not in (1, 3):
        raise DataError(f"{what} need 1 (grey) or 3 (RGB) channels; got {images.shape[1]}")
    if min(images.shape[-2:]) < MIN_SIZE:
        raise DataError(f"{what} need images of at least {MIN_SIZE} x {MIN_SIZE} px; "
                        f"got {tuple(images.shape[-2:])}")


__all__ = ["BENCHMARK_CORRUPTIONS", "CORRUPTIONS", "EXTRA_CORRUPTIONS", "SEVERITIES", "check_uint8_images", "corrupt",
           "corruption_names"]
