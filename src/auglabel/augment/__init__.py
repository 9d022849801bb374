"""Batched, seeded augmentations that report what they did per sample.

Every module in this package is imported, so a new augmentation is one file that registers
itself with ``@AUGMENTATIONS.register("name")``.
"""
from .._autoimport import import_submodules
from .base import AUGMENTATIONS, Augmentation

import_submodules(__name__, __path__)

__all__ = ["AUGMENTATIONS", "Augmentation"]
