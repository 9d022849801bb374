"""Components handed to the trainer as ready Python objects instead of being built from the config.

``Trainer(cfg, model=net, augmentation=AugMix(width=1), label_strategy=AutoLabel(), train_data=...,
test_data=...)``: each object given replaces its config section; the config still describes everything
else (data split sizes, optimiser, schedule, epochs, run_dir, device).  Handed-in objects go through the
very same build path as configured ones (:mod:`.build`): ``bind``, ``setup(spec)``, ``param_groups``,
the dry-run compatibility check, device moves, DDP, checkpoints.

* ``model``: any ``nn.Module``.  One whose ``forward`` takes ``return_features`` (auglabel's own models)
  is used as it is: it gets images in [0, 1] and normalises them itself.  Any other module (a torchvision
  or timm network, an ``nn.Sequential``) is wrapped like ``model: custom`` is
  (:func:`~auglabel.models.custom.wrap_module`): its inputs are normalised with the training split's
  per-channel mean and std, and the input of its last ``nn.Linear`` serves as its features.
* ``augmentation``: an :class:`~auglabel.augment.Augmentation`; ``label_strategy``: a
  :class:`~auglabel.labels.LabelStrategy`.
* ``train_data`` and ``test_data`` (together): :class:`~auglabel.data.ImageDataset` (uint8 images, int64
  labels) or :class:`~auglabel.data.StreamingImageFolder` (decoded from disk as ``image_folder_stream`` is,
  in ``data.num_workers`` processes; e.g. ``load_dataset("image_folder_stream", "train", root=R,
  image_size=S)``); ``data.val_size``, ``train_subset``, ``test_subset``, ``imbalance_ratio`` and
  ``noise_ratio`` apply to them as to a named dataset.  Both must have samples of the same shape.

The resolved ``config.yaml`` records each handed-in section as ``{name: object, params: {class: ...}}``
(``data: {name: object, ...}``), since no config can rebuild a Python object.  Resuming such a run, or
reopening it with :func:`~auglabel.engine.runs.load_run`, therefore needs the same objects handed in again
(same classes and constructor arguments; the checkpoint restores their state); without them it stops with
one line saying so.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

from torch import nn

from ..augment import Augmentation
from ..data import ImageDataset
from ..data.streaming import StreamingImageFolder, sample_shape
from ..errors import ConfigError
from ..labels import LabelStrategy
from ..models.custom import accepts_return_features, wrap_module
from .config import ComponentConfig, ExperimentConfig

#: The registry name a config section gets when its component was handed in as an object.
OBJECT = "object"
#: config section -> (HandedIn field / keyword, what it must be, and that type's public name).
#: what ``train_data`` / ``test_data`` may be
DATASET_TYPES = (ImageDataset, StreamingImageFolder)
SECTIONS = {"model": ("model", nn.Module, "torch.nn.Module"),
            "augment": ("augmentation", Augmentation, "auglabel.Augmentation"),
            "labels": ("label_strategy", LabelStrategy, "auglabel.LabelStrategy")}


def class_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


@dataclass(frozen=True, eq=False)
class HandedIn:
    """The objects handed to :class:`~auglabel.engine.trainer.Trainer` (or ``load_run``); None: from the config."""

    model: nn.Module | None = None
    augmentation: Augmentation | None = None
    label_strategy: LabelStrategy | None = None
    train_data: ImageDataset | StreamingImageFolder | None = None
    test_data: ImageDataset | StreamingImageFolder | None = None

    def __post_init__(self) -> None:
        for field_name, kind, public in SECTIONS.values():
            value = getattr(self, field_name)
            if value is not None and not isinstance(value, kind):
                raise ConfigError(f"{field_name} must be an instance of {public} (or of a subclass), "
                                  f"got {type(value).__name__}")
        if (self.train_data is None) != (self.test_data is None):
            raise ConfigError("train_data and test_data are handed in together (or neither: data from the config)")
        for name in ("train_data", "test_data"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, DATASET_TYPES):
                raise ConfigError(f"{name} must be an auglabel.ImageDataset (uint8 images, int64 labels) or an "
                                  f"auglabel.data.StreamingImageFolder, got {type(value).__name__}")
        if self.train_data is not None and self.train_data.num_classes != self.test_data.num_classes:
            raise ConfigError(f"train_data has {self.train_data.num_classes} classes, test_data "
                              f"{self.test_data.num_classes}")
        if self.train_data is not None and sample_shape(self.train_data) != sample_shape(self.test_data):
            raise ConfigError(f"train_data has samples of shape {sample_shape(self.train_data)}, test_data "
                              f"{sample_shape(self.test_data)}")

    def _given(self, section: str):  # noqa: ANN202
        return self.train_data if section == "data" else getattr(self, SECTIONS[section][0])

    def check(self, cfg: ExperimentConfig, sections: tuple[str, ...] = (*SECTIONS, "data")) -> None:
        """ConfigError (one line) when one of ``sections`` of ``cfg`` records a handed-in object (a run directory's
        config) that was not handed in this time."""
        missing = [section for section in sections
                   if self._given(section) is None and getattr(cfg, section).name == OBJECT]
        if not missing:
            return
        what = ", ".join("datasets" if section == "data" else str(getattr(cfg, section).params.get("class", "?"))
                         for section in missing)
        keywords = ", ".join("train_data=..., test_data=..." if section == "data" else f"{SECTIONS[section][0]}=..."
                             for section in missing)
        records = (f"config section {missing[0]} records an object" if len(missing) == 1
                   else f"config sections {', '.join(missing)} record objects")
        raise ConfigError(f"{records} handed in from Python ({what}), which the config alone cannot rebuild: hand the "
                          f"same in again, as in Trainer(cfg, run_dir, resume=True, {keywords}) or "
                          f"load_run(run_dir, {keywords})")

    def pick(self, section: str, cfg: ExperimentConfig):  # noqa: ANN201
        """The object handed in for config ``section`` (model, augment, labels, data), or None when the config
        builds it; a section that records a handed-in object the caller did not pass is a ConfigError."""
        self.check(cfg, (section,))
        return self._given(section)

    def describe(self, cfg: ExperimentConfig) -> ExperimentConfig:
        """A copy of ``cfg`` whose sections record the handed-in objects (``cfg`` itself is left alone)."""
        self.check(cfg)
        out = copy.deepcopy(cfg)
        for section in SECTIONS:
            value = self._given(section)
            if value is not None:
                setattr(out, section, ComponentConfig(OBJECT, {"class": class_name(value)}))
        if self.train_data is not None:
            out.data = replace(out.data, name=OBJECT)
        return out


NO_OBJECTS = HandedIn()


def as_classifier(module: nn.Module, *, in_channels: int, num_classes: int, mean: list[float],
                  std: list[float]) -> nn.Module:
    """A handed-in model as the engine uses it: as it is when its forward takes ``return_features``, else
    wrapped like a ``custom`` model (inputs normalised with ``mean``/``std``, features from its last Linear)."""
    if accepts_return_features(module):
        return module
    return wrap_module(module, num_classes, mean, std, in_channels=in_channels)


def display_names(cfg: ExperimentConfig, dataset_name: str) -> tuple[str, str, str]:
    """(dataset, augmentation, label strategy) for reports: the registry names, or for handed-in objects
    the dataset's own name and the objects' class names."""
    def name(section: ComponentConfig) -> str:
        return str(section.params.get("class", OBJECT)).rpartition(".")[2] if section.name == OBJECT else section.name

    return (dataset_name if cfg.data.name == OBJECT else cfg.data.name), name(cfg.augment), name(cfg.labels)
