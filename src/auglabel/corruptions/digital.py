"""Digital corruptions: brightness, contrast, pixelate, JPEG (benchmark) and saturate (extra).

Constants: Hendrycks & Dietterich (ICLR 2019), CIFAR-10-C script
``ImageNet-C/create_c/make_cifar_c.py`` of github.com/hendrycks/robustness, copied exactly.
All of them are per pixel or relative to the image size, so they need no scaling.  Grey images
go through the RGB formulas as R = G = B and come back through the luma (see :mod:`._color`):
brightness and contrast then act on grey as expected; saturate leaves grey unchanged at
severities 1-3 (saturation 0 times anything is 0) and darkens it slightly at 4-5, where the
reference adds 0.1 / 0.2 saturation of hue 0 (red).
"""
from __future__ import annotations

import io

import numpy as np
import torch
from torch import Tensor

from ..errors import AuglabelError
from ._color import as_rgb, gray_if, hsv_to_rgb, rgb_to_hsv
from ._registry import RandomSource, register

BRIGHTNESS_SHIFT = [0.05, 0.1, 0.15, 0.2, 0.3]
CONTRAST_FACTOR = [0.75, 0.5, 0.4, 0.3, 0.15]
# (saturation factor, saturation shift)
SATURATE = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)]
PIXELATE_FACTOR = [0.95, 0.9, 0.85, 0.75, 0.65]
JPEG_QUALITY = [80, 65, 58, 50, 40]


@register("brightness")
def brightness(x: Tensor, severity: int, rng: RandomSource) -> Tensor:  # noqa: ARG001
    """HSV value ``V <- clip(V + c, 0, 1)`` (skimage ``rgb2hsv`` / ``hsv2rgb``)."""
    shift = BRIGHTNESS_SHIFT[severity - 1]
    hue, saturation, value = rgb_to_hsv(as_rgb(x)).unbind(1)
    rgb = hsv_to_rgb(torch.stack([hue, saturation, (value + shift).clamp(0, 1)], 1))
    return gray_if(rgb, x.shape[1]).clamp(0, 1) * 255


@register("saturate")
def saturate(x: Tensor, severity: int, rng: RandomSource) -> Tensor:  # noqa: ARG001
    """HSV saturation ``S <- clip(S * a + b, 0, 1)``."""
    factor, shift = SATURATE[severity - 1]
    hue, saturation, value = rgb_to_hsv(as_rgb(x)).unbind(1)
    rgb = hsv_to_rgb(torch.stack([hue, (saturation * factor + shift).clamp(0, 1), value], 1))
    return gray_if(rgb, x.shape[1]).clamp(0, 1) * 255


@register("contrast")
def contrast(x: Tensor, severity: int, rng: RandomSource) -> Tensor:  # noqa: ARG001
    """``(x - m) c + m``, m the mean of each channel of each image."""
    factor = CONTRAST_FACTOR[severity - 1]
    means = x.mean(dim=(2, 3), keepdim=True)
    return ((x - means) * factor + means).clamp(0, 1) * 255


@register("pixelate")
def pixelate(x: Tensor, severity: int, rng: RandomSource) -> Tensor:  # noqa: ARG001
    """PIL ``resize(BOX)`` down to ``int(size * c)`` and back up, reproduced exactly with PIL's
    fixed-point coefficients and per-pass 8-bit rounding (horizontal pass first)."""
    factor = PIXELATE_FACTOR[severity - 1]
    h, w = x.shape[-2:]
    pixels = torch.round(x * 255)
    small = _pil_box_resize(pixels, int(h * factor), int(w * factor))
    return _pil_box_resize(small, h, w)


def _pil_box_resize(x: Tensor, out_h: int, out_w: int) -> Tensor:
    h, w = x.shape[-2:]
    if out_w != w:
        x = _pil_pass(x, _pil_box_coefficients(w, out_w).to(x.device, x.dtype).T)
    if out_h != h:
        x = _pil_pass(x.transpose(-1, -2), _pil_box_coefficients(h, out_h).to(x.device, x.dtype).T).transpose(-1, -2)
    return x


def _pil_pass(x: Tensor, coefficients_t: Tensor) -> Tensor:
    """One 8-bit resampling pass along the last axis: ``clip8((sum + 2^21) >> 22)``."""
    total = x @ coefficients_t + float(1 << (_PRECISION_BITS - 1))
    return torch.floor(total / float(1 << _PRECISION_BITS)).clamp(0, 255)


_PRECISION_BITS = 32 - 8 - 2


def _pil_box_coefficients(in_size: int, out_size: int) -> Tensor:
    """Pillow's ``precompute_coeffs`` for the BOX filter + ``normalize_coeffs_8bpc``, as an
    (out_size, in_size) matrix of integer fixed-point weights (libImaging/Resample.c)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    weights = np.zeros((out_size, in_size))
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), in_size)
        box = [1.0 if -0.5 < (i - center + 0.5) / filter_scale <= 0.5 else 0.0 for i in range(first, last)]
        total = sum(box)
        for i, value in zip(range(first, last), box):
            value = value / total if total != 0.0 else value
            weights[out, i] = int(value * (1 << _PRECISION_BITS) + 0.5)
    return torch.from_numpy(weights)


@register("jpeg_compression")
def jpeg_compression(x: Tensor, severity: int, rng: RandomSource) -> Tensor:  # noqa: ARG001
    """PIL JPEG encode/decode of each image at quality c (RGB, or "L" for grey images).

    A per-image loop, and the only corruption that must stay per-sample: there is no tensor JPEG
    codec with PIL's quantisation and chroma subsampling (each image is a variable-length byte
    stream).  On a GPU it costs one device-to-host copy of the batch and N PIL calls on the CPU;
    -C sets are generated once and cached (:mod:`auglabel.robustness.corruption_data`), so this
    is not a training hot path."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL is a dependency of the corruption suite
        raise AuglabelError("jpeg_compression needs Pillow: pip install pillow") from None
    quality = JPEG_QUALITY[severity - 1]
    pixels = torch.round(x * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(pixels)
    for i, image in enumerate(pixels):
        buffer = io.BytesIO()
        if image.shape[-1] == 1:
            Image.fromarray(image[..., 0]).save(buffer, "JPEG", quality=quality)
        else:
            Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(buffer))
        out[i] = decoded.reshape(image.shape)
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(x.device, x.dtype)
