"""Label strategies: what target an augmented sample is trained towards.

Every module in this package is imported, so a new strategy is one file that registers itself
with ``@LABEL_STRATEGIES.register("name")``; every registered class is exported here under its
class name (``from auglabel.labels import AutoLabel, OneHot, PairwiseLabelSmoothing``).
"""
from .._autoimport import export_registered, import_submodules
from .base import LABEL_STRATEGIES, LabelStrategy

import_submodules(__name__, __path__)

__all__ = ["LABEL_STRATEGIES", "LabelStrategy", *export_registered(globals(), LABEL_STRATEGIES)]
