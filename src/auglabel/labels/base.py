"""Label-strategy interface.

A label strategy decides what target each (possibly augmented) sample is trained towards.
It is an ``nn.Module`` so learned state (an extra head, per-bucket values, per-sample tables)
is saved in checkpoints, moved between devices and handled by DDP like any other state.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..batch import Batch
from ..errors import ConfigError
from ..losses import soft_cross_entropy, weighted_mean
from ..registry import Registry

LABEL_STRATEGIES: Registry["LabelStrategy"] = Registry("label strategy")


class LabelStrategy(nn.Module):
    """Base class: subclasses implement :meth:`targets` (and may override :meth:`loss`)."""

    #: True when :meth:`loss` needs the model's penultimate features (PLS, AutoDO).
    needs_features: bool = False
    #: info keys the strategy reads from the batch; checked at configuration time.
    requires_info: tuple[str, ...] = ()

    def bind(self, augment: nn.Module) -> None:  # noqa: ARG002
        """Called once at configuration time with the run's augmentation, before any state is
        loaded: a strategy that depends on it (AutoLabel's bucket grid) checks and sizes itself here."""

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
