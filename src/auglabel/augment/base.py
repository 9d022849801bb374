"""Augmentation interface.

An augmentation is an ``nn.Module`` whose ``forward(batch, generator=..., model=...)`` returns a
new :class:`~auglabel.batch.Batch`, reporting per sample what it did in ``batch.info``.
Randomness comes only from the explicit ``generator`` (a ``torch.Generator`` on the batch's
device), so a run is reproducible and each sample gets its own draw.

Every ``info`` key, with its meaning and shape, is listed in :mod:`auglabel.augment.info_keys`; each
class declares the keys it reports (``reports``), so label-strategy compatibility is a set check.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..batch import Batch
from ..errors import ConfigError
from ..registry import Registry
from .info_keys import declared

if TYPE_CHECKING:
    from ..autodo.tables import HyperLeaf
    from ..engine.step import ComponentSpec

AUGMENTATIONS: Registry["Augmentation"] = Registry("augmentation")


class Augmentation(nn.Module):
    """Base class: identity.  Subclasses override :meth:`forward` and maybe :meth:`extra_loss`."""

    #: True when ``forward`` reports ``info["distance"]`` in [0, 1] per sample.
    reports_distance: bool = False
    #: Number of values of ``info["group"]`` (a discrete distance axis, e.g. AugMix chain depth).
    bucket_groups: int = 1
    #: The ``info`` keys ``forward`` may report (names from :mod:`.info_keys`); None: undeclared (a
    #: user's own augmentation), so the configuration-time check dry-runs it instead.
    reports: frozenset[str] | None = None

    def reported_keys(self) -> frozenset[str] | None:
        """The keys THIS instance's ``forward`` reports (its parameters may drop some of ``reports``)."""
        return self.reports

    @property
    def num_views(self) -> int:
        """Views per sample in ``forward``'s output (AugMix + JSD: 3)."""
        return 1

    def check_distance_control(self) -> None:
        """ConfigError (one line) unless ``apply_at_distance`` works (AutoLabel's ``bind`` calls this)."""
        if not self.supports_distance_control():
            raise ConfigError(f"{type(self).__name__} cannot")

    def forward(self, batch: Batch, *, generator: torch.Generator, model: nn.Module | None = None) -> Batch:  # noqa: ARG002
        return batch

    def extra_loss(self, logits: Tensor, batch: Batch) -> Tensor | None:  # noqa: ARG002
        """A loss term this augmentation adds (AugMix's JSD), or None."""
        return None

    def setup(self, spec: "ComponentSpec") -> None:  # noqa: ARG002
        """Called once the model and data are known, before the optimiser is built and before a
        checkpoint is restored: a learned augmentation (AutoDO's per-sample tables, sized by
        ``spec.dataset_size`` and indexed by ``batch.index``) creates its parameters here."""

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups with their own options; parameters listed nowhere train with
        the run's ``optim`` settings.  The default lists none."""
        return []

    def hyper_parameters(self) -> list[nn.Parameter]:
        """Outer-loop parameters (``requires_grad=False``) that a hyper step optimises, not the run's
        optimiser (see :meth:`~auglabel.engine.step.TrainingStep.hyper_parameters`).  Default: none."""
        return []

    def hyper_forward(self, batch: Batch, *, generator: torch.Generator,
                      model: nn.Module | None = None) -> tuple[Batch, list["HyperLeaf"]]:
        """Like ``forward``, but differentiable in this augmentation's hyper parameters: returns the
        batch and the leaves (rows of the hyper parameters, requiring grad) the output depends on, for a
        hypergradient (AutoDO's hyper step).  The default: ``forward`` and no leaves."""
        return self(batch, generator=generator, model=model), []

    def on_epoch_end(self, context: Any) -> dict[str, float]:  # noqa: ARG002
        """Hook after each training epoch; returns scalars to log."""
        return {}

    def apply_at_distance(self, batch: Batch, distance: Tensor, *, generator: torch.Generator,
                          model: nn.Module | None = None, group: Tensor | None = None) -> Batch:
        """Augment each sample at a GIVEN distance in [0, 1] (and ``group``), for AutoLabel's
        augmented validation sets.  Returns a single-view batch whose ``labels`` are the classes
        that count as correct (for mixup: the dominant image's class).  Augmentations that cannot
        be driven this way leave this unimplemented."""
        raise NotImplementedError(f"{type(self).__name__} cannot be applied at a given distance")

    @classmethod
    def supports_distance_control(cls) -> bool:
        return cls.apply_at_distance is not Augmentation.apply_at_distance


def checked_distance(distance: Tensor, batch: Batch, name: str) -> Tensor:
    """``distance`` as given to ``apply_at_distance``: one finite value in [0, 1] per row of ``batch``."""
    if not isinstance(distance, Tensor) or distance.shape != (len(batch),):
        shape = tuple(distance.shape) if isinstance(distance, Tensor) else type(distance).__name__
        raise ValueError(f"{name}: distance must be a tensor of shape ({len(batch)},), got {shape}")
    if not bool(((distance >= 0) & (distance <= 1)).all()):  # NaN fails both comparisons
        raise ValueError(f"{name}: distance must lie in [0, 1]")
    return distance


@AUGMENTATIONS.register("none")
class NoAugmentation(Augmentation):
    """Clean images, nothing reported."""

    reports = declared()


def _uniform(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator, device=device)


@AUGMENTATIONS.register("standard")
class StandardAugmentation(Augmentation):
    """Random crop with zero padding and (optionally) random horizontal flip, per sample.

    Args:
        padding: pixels of zero padding before the random crop back to the input size.
        flip: whether to flip horizontally with probability 0.5.
    """

    reports = declared("crop_offset", "flipped")

    def __init__(self, padding: int = 2, flip: bool = True):
        super().__init__()
        if padding < 0:
            raise ConfigError(f"standard augmentation: padding must be >= 0, got {padding}")
        self.padding = padding
        self.flip = flip

    def reported_keys(self) -> frozenset[str]:
        return frozenset(k for k, on in (("crop_offset", self.padding > 0), ("flipped", self.flip)) if on)

    def forward(self, batch: Batch, *, generator: torch.Generator, model: nn.Module | None = None) -> Batch:
        x = batch.inputs
        n, _, h, w = x.shape
        p = self.padding
        info: dict[str, Tensor] = {}
        if p > 0:
            padded = nn.functional.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (n, h)
            cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (n, w)
            batch_idx = torch.arange(n, device=x.device)[:, None, None]
            # gather the crop: padded[b, :, rows[b, i], cols[b, j]]
            x = padded.permute(0, 2, 3, 1)[batch_idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
            info["crop_offset"] = torch.stack([dy, dx], dim=1) - p
        if self.flip:
            flipped = _uniform(n, generator, x.device) < 0.5
            x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
            info["flipped"] = flipped
        return batch.replace(inputs=x.contiguous(), info=info)
