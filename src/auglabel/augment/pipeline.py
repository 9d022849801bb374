"""A composition of augmentations applied in order: ``augment: [standard, mixup]`` in a config.

Config forms (:class:`~auglabel.engine.config.ExperimentConfig` turns the list into the canonical one)::

    augment: [standard, mixup]                                   # names
    augment: [standard, {name: augmix, params: {jsd: true}}]    # names or {name, params} mappings
    augment: {name: pipeline, params: {members: [standard, mixup]}}   # canonical, as config.yaml records it

and from Python ``Pipeline([StandardAugmentation(), Mixup()])`` (members may also be names or mappings).

Randomness: the members SHARE the step's one ``torch.Generator`` and draw from it in order (member 1's
draws, then member 2's ...); it is not split.  So a run is deterministic for a seed, every sample still gets
its own draws, a one-member pipeline draws exactly what that member alone draws (``[mixup]`` trains
bit-identically to ``mixup``), and a resumed run continues identically: the checkpoint saves the
generator's state, and every member's own state (AutoDO's tables ...) is a submodule (``members.<i>.``).

Info merge rule: ``info`` is the union of the members' keys (:mod:`.info_keys`), each kept under its
own name.  A key declared (``reports``) by two members is a ConfigError when the pipeline is built, with
one exception: the distance keys (:data:`.info_keys.DISTANCE_KEYS`, ``distance`` and ``group``), which
several members may report; the pipeline then withholds them (no single distance describes the sample),
and AutoLabel, which needs one, refuses such a pipeline at build time.  Members that declare nothing
(``reports = None``) are not checked.

Distance control (AutoLabel): when exactly one member reports a distance, :meth:`Pipeline.apply_at_distance`
delegates to it and applies the other members as usual (``forward``), in order; its ``bucket_groups`` are
the pipeline's.  Multi-view members (AugMix with ``jsd: true``) must come last: a preceding crop/flip
transforms the clean image once, and all views are made from that same cropped image.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..batch import Batch
from ..errors import ConfigError
from .base import AUGMENTATIONS, Augmentation
from .info_keys import DISTANCE_KEYS

if TYPE_CHECKING:
    from ..autodo.tables import HyperLeaf
    from ..engine.step import ComponentSpec


def build_member(spec: Any) -> tuple[str, Augmentation]:
    """(display name, augmentation) of one member: a registry name, a ``{name, params}`` mapping (or an
    object with those attributes, like a ComponentConfig) or a ready Augmentation."""
    if isinstance(spec, Augmentation):
        return type(spec).__name__, spec
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping) and set(spec) <= {"name", "params"} and isinstance(spec.get("name"), str):
        name, params = spec["name"], dict(spec.get("params") or {})
    elif isinstance(getattr(spec, "name", None), str) and isinstance(getattr(spec, "params", None), Mapping):
        name, params = spec.name, dict(spec.params)
    else:
        raise ConfigError(f"pipeline: a member must be a name, a {{name, params}} mapping or an Augmentation, "
                          f"got {spec!r}")
    return name, AUGMENTATIONS.build(name, **params)


@AUGMENTATIONS.register("pipeline")
class Pipeline(Augmentation):
    """Apply ``members`` in order (see the module docstring for randomness, info merging and distances).

    Args:
        members: a non-empty list of names, ``{name, params}`` mappings or Augmentation objects.
    """

    def __init__(self, members: Sequence[Any]):
        super().__init__()
        if isinstance(members, (str, Mapping)) or not isinstance(members, Sequence) or not members:
            raise ConfigError(f"pipeline: members must be a non-empty list of augmentations, got {members!r}")
        built = [build_member(spec) for spec in members]
        self.member_names = [name for name, _ in built]
        self.members = nn.ModuleList([aug for _, aug in built])
        for i, member in enumerate(self.members[:-1]):
            if member.num_views > 1:
                raise ConfigError(f"pipeline {self._label()}: {self.member_names[i]} makes {member.num_views} views "
                                  f"and must be the last member (put crop/flip before it)")
        owner: dict[str, str] = {}
        withheld: set[str] = set()
        for name, member in zip(self.member_names, self.members):
            for key in sorted(member.reported_keys() or ()):
                if key in owner and key in DISTANCE_KEYS:
                    withheld.add(key)
                elif key in owner:
                    raise ConfigError(f"pipeline {self._label()}: members {owner[key]} and {name} both report info "
                                      f"key {key!r}; keep one of them")
                owner[key] = name
        self.withheld = frozenset(withheld)

    def _label(self) -> str:
        return "[" + ", ".join(self.member_names) + "]"

    # -- declarations --------------------------------------------------------------------------
    def reported_keys(self) -> frozenset[str] | None:
        keys = [member.reported_keys() for member in self.members]
        if any(k is None for k in keys):
            return None
        return frozenset().union(*keys) - self.withheld

    @property
    def reports(self) -> frozenset[str] | None:  # type: ignore[override]
        return self.reported_keys()

    @property
    def num_views(self) -> int:
        return self.members[-1].num_views

    def _distance_reporters(self) -> list[int]:
        return [i for i, member in enumerate(self.members) if member.reports_distance]

    @property
    def reports_distance(self) -> bool:  # type: ignore[override]
        return len(self._distance_reporters()) == 1

    @property
    def bucket_groups(self) -> int:  # type: ignore[override]
        reporters = self._distance_reporters()
        return int(getattr(self.members[reporters[0]], "bucket_groups", 1)) if len(reporters) == 1 else 1

    def supports_distance_control(self) -> bool:  # type: ignore[override]
        try:
            self.check_distance_control()
        except ConfigError:
            return False
        return True

    def check_distance_control(self) -> None:
        reporters = self._distance_reporters()
        if len(reporters) != 1:
            which = "no member reports one" if not reporters else (
                f"{len(reporters)} members report one ({', '.join(self.member_names[i] for i in reporters)})")
            raise ConfigError(f"pipeline {self._label()} cannot: {which}, and exactly one must")
        self.members[reporters[0]].check_distance_control()

    # -- application ---------------------------------------------------------------------------
    def _withhold(self, batch: Batch) -> Batch:
        if not self.withheld:
            return batch
        return dataclasses.replace(batch, info={k: v for k, v in batch.info.items() if k not in self.withheld})

    def forward(self, batch: Batch, *, generator: torch.Generator, model: nn.Module | None = None) -> Batch:
        for member in self.members:
            batch = member(batch, generator=generator, model=model)
        return self._withhold(batch)

    def apply_at_distance(self, batch: Batch, distance: Tensor, *, generator: torch.Generator,
                          model: nn.Module | None = None, group: Tensor | None = None) -> Batch:
        """The distance-reporting member at ``distance`` (and ``group``), the others as usual, in order."""
        self.check_distance_control()
        driver = self._distance_reporters()[0]
        for i, member in enumerate(self.members):
            if i == driver:
                batch = member.apply_at_distance(batch, distance, generator=generator, model=model, group=group)
            else:
                batch = member(batch, generator=generator, model=model)
        return batch

    def hyper_forward(self, batch: Batch, *, generator: torch.Generator,
                      model: nn.Module | None = None) -> tuple[Batch, list["HyperLeaf"]]:
        leaves: list[HyperLeaf] = []
        for member in self.members:
            batch, more = member.hyper_forward(batch, generator=generator, model=model)
            leaves += more
        return self._withhold(batch), leaves

    def extra_loss(self, logits: Tensor, batch: Batch) -> Tensor | None:
        losses = [loss for m in self.members if (loss := m.extra_loss(logits, batch)) is not None]
        return sum(losses[1:], losses[0]) if losses else None

    # -- engine hooks --------------------------------------------------------------------------
    def setup(self, spec: "ComponentSpec") -> None:
        for member in self.members:
            member.setup(spec)

    def param_groups(self) -> list[dict[str, Any]]:
        return [group for member in self.members for group in member.param_groups()]

    def hyper_parameters(self) -> list[nn.Parameter]:
        return [p for member in self.members for p in member.hyper_parameters()]

    def on_epoch_end(self, context: Any) -> dict[str, float]:
        logged: dict[str, float] = {}
        for member in self.members:
            logged.update(member.on_epoch_end(context))
        return logged

    def extra_repr(self) -> str:
        return f"members={self._label()}"
