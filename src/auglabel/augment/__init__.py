"""Batched, seeded augmentations that report what they did per sample.

Every module in this package is imported, so a new augmentation is one file that registers
itself with ``@AUGMENTATIONS.register("name")``; every registered class is exported here under
its class name (``from auglabel.augment import AugMix, Mixup``).
"""
from .._autoimport import export_registered, import_submodules
from .adversarial import AdversarialAugmentation
from .base import AUGMENTATIONS, Augmentation

import_submodules(__name__, __path__)

__all__ = ["AUGMENTATIONS", "AdversarialAugmentation", "Augmentation", *export_registered(globals(), AUGMENTATIONS)]
