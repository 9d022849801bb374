"""auglabel: what label should augmented data carry?

Train image classifiers with batched augmentations and learned or adaptive labels, and judge
them by accuracy, calibration and robustness.

The public API is importable from here (``from auglabel import Trainer, ExperimentConfig``); the
concrete components come from their family packages (``from auglabel.augment import AugMix``,
``from auglabel.labels import AutoLabel``, ``from auglabel.models import SmallCNN``,
``from auglabel.calibrate import TemperatureScaling``).  Names load on first use, so
``import auglabel`` does not import torch.
"""
from __future__ import annotations

from ._lazy import lazy_exports

TYPE_CHECKING = False  # not typing's: importing typing would double the cost of ``import auglabel``

__version__ = "0.1.0"

_EXPORTS = {
    # configuration (the YAML sections)
    **dict.fromkeys(["ExperimentConfig", "DataConfig", "ComponentConfig", "OptimConfig", "TrainConfig"],
                    "auglabel.engine.config"),
    # training
    "Trainer": "auglabel.engine.trainer",
    "TrainingStep": "auglabel.engine.step", "ComponentSpec": "auglabel.engine.step",
    "EpochContext": "auglabel.engine.context",
    "Batch": "auglabel.batch",
    # base classes and registries of the component families
    "Augmentation": "auglabel.augment", "AUGMENTATIONS": "auglabel.augment",
    "LabelStrategy": "auglabel.labels", "LABEL_STRATEGIES": "auglabel.labels",
    "Classifier": "auglabel.models", "MODELS": "auglabel.models",
    "Calibrator": "auglabel.calibrate", "CALIBRATORS": "auglabel.calibrate",
    "Registry": "auglabel.registry",
    # building pieces
    "build_model": "auglabel.models", "wrap_module": "auglabel.models",
    "build_step": "auglabel.engine.build", "load_splits": "auglabel.engine.build", "Splits": "auglabel.engine.build",
    "ImageDataset": "auglabel.data", "load_dataset": "auglabel.data",
    # finished runs, evaluation and post-hoc calibration
    "load_run": "auglabel.engine.runs", "LoadedRun": "auglabel.engine.runs",
    "evaluate": "auglabel.engine.evaluate", "CalibrationStats": "auglabel.metrics",
    **dict.fromkeys(["TemperatureScaling", "VectorScaling", "IsotonicCalibration", "fit_calibrator",
                     "load_calibrator", "save_calibrator"], "auglabel.calibrate"),
    # errors
    **dict.fromkeys(["AuglabelError", "ConfigError", "DataError", "CheckpointError"], "auglabel.errors"),
}

__all__ = ["__version__", *_EXPORTS]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from .augment import AUGMENTATIONS, Augmentation
    from .batch import Batch
    from .calibrate import (CALIBRATORS, Calibrator, IsotonicCalibration, TemperatureScaling, VectorScaling,
                            fit_calibrator, load_calibrator, save_calibrator)
    from .data import ImageDataset, load_dataset
    from .engine.build import Splits, build_step, load_splits
    from .engine.config import ComponentConfig, DataConfig, ExperimentConfig, OptimConfig, TrainConfig
    from .engine.context import EpochContext
    from .engine.evaluate import evaluate
    from .engine.runs import LoadedRun, load_run
    from .engine.step import ComponentSpec, TrainingStep
    from .engine.trainer import Trainer
    from .errors import AuglabelError, CheckpointError, ConfigError, DataError
    from .labels import LABEL_STRATEGIES, LabelStrategy
    from .metrics import CalibrationStats
    from .models import MODELS, Classifier, build_model, wrap_module
    from .registry import Registry
