"""Label-strategy interface.

A label strategy decides what target each (possibly augmented) sample is trained towards.
It is an ``nn.Module`` so learned state (an extra head, per-bucket values, per-sample tables)
is saved in checkpoints, moved between devices and handled by DDP like any other state.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..batch import Batch
from ..errors import ConfigError
from ..losses import soft_cross_entropy, weighted_mean
from ..registry import Registry

if TYPE_CHECKING:
    from ..engine.build import AugmentationReport
    from ..engine.step import ComponentSpec

LABEL_STRATEGIES: Registry["LabelStrategy"] = Registry("label strategy")


class LabelStrategy(nn.Module):
    """Base class: subclasses implement :meth:`targets` (and may override :meth:`loss`).

    Hooks, in the order the engine calls them (all optional; the defaults do nothing):
    :meth:`bind` (configuration), :meth:`setup` (model and data known: create parameters),
    :meth:`param_groups` (optimiser options), :meth:`check_augmentation` (dry run),
    then per training step :meth:`prepare` -> model -> :meth:`loss`, and :meth:`on_epoch_end`.
    """

    #: True when :meth:`loss` needs the model's penultimate features (PLS, AutoDO).
    needs_features: bool = False
    #: info keys the strategy reads from the batch; checked at configuration time.
    requires_info: tuple[str, ...] = ()
    #: True when this strategy's own hyper step also optimises the augmentation's hyper parameters
    #: (:meth:`~auglabel.augment.base.Augmentation.hyper_parameters`); an augmentation that has some needs one.
    trains_augment_hyperparameters: bool = False

    def bind(self, augment: nn.Module) -> None:  # noqa: ARG002
        """Called once at configuration time with the run's augmentation, before any state is
        loaded: a strategy that depends on it (AutoLabel's bucket grid) checks and sizes itself here."""

    def setup(self, spec: "ComponentSpec") -> None:  # noqa: ARG002
        """Called once the model and data are known (feature width, classes, input shape, dataset
        size, device: :class:`~auglabel.engine.step.ComponentSpec`), before the optimiser is built and
        before a checkpoint is restored: a strategy that owns parameters (PLS's head, per-sample
        tables indexed by ``batch.index``) creates them here, so they are optimised and restored."""

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups with their own options (e.g. ``{"params": [...],
        "weight_decay": 0.0}``).  Parameters listed nowhere train with the run's ``optim``
        settings; the default lists none."""
        return []

    def hyper_parameters(self) -> list[nn.Parameter]:
        """Outer-loop parameters this strategy optimises itself (AutoDO's per-sample tables): created in
        :meth:`setup` with ``requires_grad=False``, kept out of the run's optimiser and of DDP's gradient
        sync (see :meth:`~auglabel.engine.step.TrainingStep.hyper_parameters`).  The default lists none."""
        return []

    def check_reported(self, augment: nn.Module, keys: frozenset[str]) -> None:  # noqa: ARG002
        """Raise ConfigError when an augmentation that reports info ``keys`` (its declaration,
        :mod:`auglabel.augment.info_keys`; a dry run's keys when it declares none) is one this strategy
        cannot work with.  A set check, no dry run; prefer it to :meth:`check_augmentation`."""

    def check_augmentation(self, report: "AugmentationReport") -> None:  # noqa: ARG002
        """Only for checks that need values (it makes the engine dry-run the augmentation): raise
        ConfigError when the augmentation, dry-run on two samples at configuration time
        (:class:`~auglabel.engine.build.AugmentationReport`: batch before and after, whether it
        called the model), is one this strategy cannot work with."""

    def prepare(self, batch: Batch, *, generator: torch.Generator, step: int) -> Batch:  # noqa: ARG002
        """Transform the augmented batch just before the model sees it (PLS pairs images here).

        ``step`` is the number of training steps taken before this one (0-based, continued across
        a resume); ``generator`` is the step's seeded generator.  The default returns ``batch``."""
        return batch

    def check_info(self, batch: Batch) -> None:
        """Raise ConfigError naming the ``requires_info`` keys that ``batch.info`` lacks."""
        missing = [key for key in self.requires_info if key not in batch.info]
        if missing:
            raise ConfigError(
                f"label strategy {type(self).__name__} needs batch info {', '.join(missing)}, which the "
                f"augmentation did not report (reported: {', '.join(sorted(batch.info)) or 'nothing'})"
            )

    def targets(self, logits: Tensor, batch: Batch) -> Tensor:
        """Soft targets of shape (N, K); each row sums to 1."""
        raise NotImplementedError

    def loss(self, logits: Tensor, batch: Batch, features: Tensor | None = None) -> Tensor:  # noqa: ARG002
        """Scalar training loss: soft cross-entropy to :meth:`targets`, weighted per sample."""
        per_sample = soft_cross_entropy(logits, self.targets(logits, batch))
        return weighted_mean(per_sample, batch.weights)

    def on_epoch_end(self, context: Any) -> dict[str, float]:  # noqa: ARG002
        """Hook after each training epoch (AutoLabel's update); returns scalars to log."""
        return {}
