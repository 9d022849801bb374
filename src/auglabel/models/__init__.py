"""Image classifiers that take [0, 1] images, normalise internally and expose their features.

Registered: ``small_cnn``, ``preact_resnet18``, ``wide_resnet`` and ``custom`` (any user
``nn.Module``).  Every module in this package is imported, so a new architecture is one file
that registers itself with ``@MODELS.register("name")``; every registered factory is exported here
under its own name (``from auglabel.models import SmallCNN, PreActResNet18``).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from .._autoimport import export_registered, import_submodules
from .base import MODELS, ChannelNormalize, Classifier, Stats, positive_int
from .custom import WrappedClassifier, wrap_module

import_submodules(__name__, __path__)


def build_model(name: str, *, in_channels: int, num_classes: int, mean: Stats = None,
                std: Stats = None, **params: Any) -> nn.Module:
    """Build registered model ``name`` for ``in_channels``-channel images and ``num_classes`` classes.

    ``mean``/``std`` are the per-channel statistics of the [0, 1] training images; ``params`` are
    the model's own options.  Unknown names or parameters and bad values raise ConfigError.
    """
    positive_int(in_channels, "in_channels")
    positive_int(num_classes, "num_classes", minimum=2)
    return MODELS.build(name, in_channels=in_channels, num_classes=num_classes, mean=mean, std=std,
                        **params)


__all__ = ["MODELS", "ChannelNormalize", "Classifier", "WrappedClassifier", "build_model", "wrap_module",
           *export_registered(globals(), MODELS)]
