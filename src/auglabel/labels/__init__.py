"""Label strategies: what target an augmented sample is trained towards.

Every module in this package is imported, so a new strategy is one file that registers itself
with ``@LABEL_STRATEGIES.register("name")``.
"""
from .._autoimport import import_submodules
from .base import LABEL_STRATEGIES, LabelStrategy

import_submodules(__name__, __path__)

__all__ = ["LABEL_STRATEGIES", "LabelStrategy"]
