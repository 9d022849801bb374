"""The training engine: config -> data splits -> training step -> trainer loop -> run directory.

``config`` (the experiment dataclasses), ``build`` (splits, loaders and the :class:`TrainingStep` from a config
or from handed-in objects, :mod:`.objects`), ``step`` (augment -> label strategy -> model -> loss), ``trainer``
(the loop, checkpoints, resume), ``runs`` (reopening a run directory), ``evaluate`` (evaluation passes).
The names below load on first use, so importing ``auglabel.engine.config`` does not import the trainer.
"""
from __future__ import annotations

from .._lazy import TYPE_CHECKING, lazy_exports

_EXPORTS = {
    **dict.fromkeys(["ExperimentConfig", "DataConfig", "ComponentConfig", "OptimConfig", "TrainConfig"],
                    "auglabel.engine.config"),
    "Trainer": "auglabel.engine.trainer",
    "TrainingStep": "auglabel.engine.step", "ComponentSpec": "auglabel.engine.step",
    "EpochContext": "auglabel.engine.context",
    **dict.fromkeys(["Splits", "build_step", "check_compatible", "load_splits", "make_loaders"], "auglabel.engine.build"),
    "HandedIn": "auglabel.engine.objects",
    **dict.fromkeys(["LoadedRun", "load_run", "read_run_config"], "auglabel.engine.runs"),
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .build import Splits, build_step, check_compatible, load_splits, make_loaders
    from .config import ComponentConfig, DataConfig, ExperimentConfig, OptimConfig, TrainConfig
    from .context import EpochContext
    from .objects import HandedIn
    from .runs import LoadedRun, load_run, read_run_config
    from .step import ComponentSpec, TrainingStep
    from .trainer import Trainer
