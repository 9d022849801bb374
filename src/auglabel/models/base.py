"""Classifier = per-channel normalisation -> feature extractor ``body`` -> linear ``head``.

Models take images in [0, 1] and normalise them internally, so augmentations and attacks work
in pixel space and a checkpoint carries its own normalisation statistics.  Everything happens
inside :meth:`Classifier.forward`, so a DDP-wrapped model answers
``ddp_model(x, return_features=True)`` like the bare one.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from ..registry import Registry

MODELS: Registry[nn.Module] = Registry("model")

Stats = float | Sequence[float] | None


def positive_int(value: object, what: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a ConfigError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def channel_stats(values: Stats, channels: int, what: str, default: float) -> Tensor:
    """Per-channel statistics as a (C, 1, 1) float tensor; one number is used for every channel."""
    if values is None:
        values = [default] * channels
    elif isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [float(values)] * channels
    try:
        numbers = [float(v) for v in values]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number or a list of numbers, got {values!r}") from None
    if len(numbers) == 1:
        numbers = numbers * channels
    if len(numbers) != channels:
        raise ConfigError(f"{what} has {len(numbers)} values but the images have {channels} channels")
    if not all(math.isfinite(v) for v in numbers):
        raise ConfigError(f"{what} must be finite, got {numbers}")
    return torch.tensor(numbers, dtype=torch.float32).view(channels, 1, 1)


class ChannelNormalize(nn.Module):
    """``(x - mean) / std`` per channel; ``mean``/``std`` are buffers saved with the model."""

    def __init__(self, in_channels: int, mean: Stats = None, std: Stats = None):
        super().__init__()
        self.in_channels = positive_int(in_channels, "in_channels")
        std_t = channel_stats(std, in_channels, "std", 1.0)
        if (std_t <= 0).any():
            raise ConfigError(f"std must be > 0 in every channel, got {std_t.flatten().tolist()}")
        self.register_buffer("mean", channel_stats(mean, in_channels, "mean", 0.0))
        self.register_buffer("std", std_t)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or not x.is_floating_point():
            raise DataError(
                f"model expects float images of shape (N, {self.in_channels}, H, W) in [0, 1], "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}"


def init_conv_bn(module: nn.Module, mode: str = "fan_out") -> None:
    """He init for convolutions (He et al. 2015; fan-out as in the WRN reference code, fan-in keeps
    activations from shrinking in networks without BN), BN weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class Classifier(nn.Module):
    """Normalisation, a ``body`` mapping images to (N, D) penultimate features, a linear ``head``.

    Args:
        body: module mapping normalised (N, C, H, W) images to (N, ``feature_dim``) features.
        feature_dim: D, the width of the features and the input of ``head``.
        num_classes: K, the number of logits.
        in_channels: C of the input images.
        mean, std: per-channel statistics of the [0, 1] training images (one number or C numbers);
            ``None`` leaves that part of the normalisation out.
    """

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int, *, in_channels: int,
                 mean: Stats = None, std: Stats = None):
        super().__init__()
        self.feature_dim = positive_int(feature_dim, "feature_dim")
        self.num_classes = positive_int(num_classes, "num_classes", minimum=2)
        self.normalize = ChannelNormalize(in_channels, mean, std)
        self.body = body
        self.head = nn.Linear(feature_dim, num_classes)

    @property
    def in_channels(self) -> int:
        return self.normalize.in_channels

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Logits (N, K) of images ``x`` in [0, 1]; with ``return_features`` also the (N, D) features."""
        features = self.body(self.normalize(x))
        logits = self.head(features)
        return (logits, features) if return_features else logits
