"""One training step as a module: augment -> label strategy's prepare -> model -> loss.

Wrapping the whole step (model, augmentation and label strategy) in one ``nn.Module`` means
DDP synchronises the gradients of every learned piece (a PLS head, AutoDO tables) with no
special case, checkpoints hold them, and attacks inside the augmentation use the unwrapped model.

Engine hooks for components that own parameters (the trainer never branches on a method name):

* :meth:`TrainingStep.setup` hands both components a :class:`ComponentSpec` once the model and
  data are known, before the optimiser is built and before a checkpoint is restored;
* :meth:`TrainingStep.param_groups` gathers the components' optimiser groups (their own options)
  and puts every other parameter in one default group: each parameter exactly once;
* the step counter ``step_count`` counts training forwards; the label strategy's ``prepare`` gets
  it as ``step``.  It is a buffer, so checkpoints carry it and a resumed run continues it;
* :meth:`TrainingStep.hyper_parameters` gathers the components' outer-loop parameters (AutoDO's
  per-sample tables): parameters with ``requires_grad=False`` that a component optimises itself (its own
  optimiser, its own hypergradients, e.g. in ``on_epoch_end``).  They are left out of the run's optimiser
  and, not requiring gradients, out of DDP's gradient all-reduce; the owner keeps them identical on every
  rank by reducing its hypergradients by hand.  Being parameters, checkpoints and device moves carry them.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..augment import Augmentation
from ..batch import Batch
from ..errors import ConfigError
from ..labels import LabelStrategy


@dataclass(frozen=True)
class ComponentSpec:
    """What a component's :meth:`setup` may size itself by.

    Attributes:
        num_classes: K.
        feature_dim: D, the width of the model's penultimate features
            (``model(x, return_features=True)``), or None when the model exposes none.
        input_shape: (C, H, W) of the training images.
        dataset_size: number of dataset indices: every ``batch.index`` is in ``[0, dataset_size)``
            (the training file's rows, validation rows included), the size of a per-sample table.
        train_size: number of training samples (the training split).
        device: where the model lives and batches arrive.
        model_name: the model's class name, for error messages.
        labels: int64 (dataset_size,) label of every dataset index as training sees it (after label noise;
            validation rows keep their clean labels), for components initialised from the labels
            (AutoDO's soft labels); None when unknown.
    """

    num_classes: int
    feature_dim: int | None
    input_shape: tuple[int, ...]
    dataset_size: int
    train_size: int
    device: torch.device = torch.device("cpu")
    model_name: str = "model"
    labels: Tensor | None = None


class TrainingStep(nn.Module):
    """``augment -> label_strategy.prepare -> model -> label_strategy.loss (+ augment.extra_loss)``.

    The label strategy is :attr:`label_strategy`; its submodule (and so its checkpoint keys, ``labels.*``)
    keeps the name of its config section, ``labels``, so checkpoints of every auglabel version read alike.

    Args:
        autocast_dtype: run the step (augmentation, forward and loss) under ``torch.autocast`` with
            this dtype on CUDA (bf16 mixed precision); ignored on other devices.
        channels_last: hand the model its inputs in channels-last memory format.
    """

    def __init__(self, model: nn.Module, augment: Augmentation, label_strategy: LabelStrategy, *,
                 autocast_dtype: torch.dtype | None = None, channels_last: bool = False):
        super().__init__()
        self.model = model
        self.augment = augment
        self.labels = label_strategy  # the submodule's name is the checkpoint's key prefix: see the class doc
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        # The count lives twice: a Python int read every step (no GPU sync) and a buffer, written
        # with an asynchronous fill_, that checkpoints and load_state_dict see.
        self.register_buffer("step_count", torch.zeros((), dtype=torch.int64))
        self._steps = 0

    @property
    def label_strategy(self) -> LabelStrategy:
        return self.labels

    @property
    def steps_done(self) -> int:
        """Training forwards so far (the ``step`` the next one hands to ``label_strategy.prepare``)."""
        return self._steps

    def setup(self, spec: ComponentSpec) -> None:
        """Size the components' own parameters (see :meth:`LabelStrategy.setup`); an augmentation with hyper
        parameters needs a label strategy that trains them (ConfigError otherwise)."""
        self.augment.setup(spec)
        self.label_strategy.setup(spec)
        if self.augment.hyper_parameters() and not self.label_strategy.trains_augment_hyperparameters:
            raise ConfigError(f"augmentation {type(self.augment).__name__} has hyperparameters that only a label "
                              f"strategy with a hyper step learns (labels: autodo), not "
                              f"{type(self.label_strategy).__name__}")

    def hyper_parameters(self) -> list[nn.Parameter]:
        """The components' outer-loop parameters (augmentation's first), each once; they must not require
        gradients (the training backward and DDP leave them alone).  A violation is a ValueError."""
        found: list[nn.Parameter] = []
        for component in (self.augment, self.label_strategy):
            for p in component.hyper_parameters():
                if p.requires_grad:
                    raise ValueError(f"{type(component).__name__}.hyper_parameters() lists a parameter that "
                                     "requires grad: outer-loop parameters are optimised by their owner")
                if any(p is q for q in found):
                    raise ValueError(f"{type(component).__name__}.hyper_parameters() lists a parameter twice")
                found.append(p)
        return found

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser groups: first every parameter no component claims (the run's ``optim``
        settings), then each component's own groups with their options; hyper parameters
        (:meth:`hyper_parameters`) are in none.  A parameter claimed twice, or one that is not part
        of this step, is a ValueError."""
        mine = {id(p) for p in self.parameters()}
        claimed: set[int] = {id(p) for p in self.hyper_parameters()}
        special: list[dict[str, Any]] = []
        for component in (self.augment, self.label_strategy):
            for group in component.param_groups():
                params = list(group["params"])
                for p in params:
                    if id(p) not in mine:
                        raise ValueError(f"{type(component).__name__}.param_groups() lists a parameter "
                                         "that is not part of the training step")
                    if id(p) in claimed:
                        raise ValueError(f"{type(component).__name__}.param_groups() lists a parameter twice "
                                         "(or a hyper parameter)")
                    claimed.add(id(p))
                if params:
                    special.append({**group, "params": params})
        rest = [p for p in self.parameters() if id(p) not in claimed]
        return ([{"params": rest}] if rest else []) + special

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        key = prefix + "step_count"
        if key not in state_dict:  # a checkpoint from before the counter existed: start at 0
            state_dict[key] = torch.zeros((), dtype=torch.int64)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._steps = int(self.step_count)

    def _precision(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None or device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, Tensor, Batch]:
        """Returns (loss, logits, batch as the model saw it)."""
        step = self._steps
        if self.training:
            self._steps += 1
            self.step_count.fill_(self._steps)
        with self._precision(batch.inputs.device):
            batch = self.augment(batch, generator=generator, model=self.model)
            batch = self.label_strategy.prepare(batch, generator=generator, step=step)
            inputs = batch.inputs
            if self.channels_last and inputs.dim() == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            features = None
            if self.label_strategy.needs_features:
                logits, features = self.model(inputs, return_features=True)
            else:
                logits = self.model(inputs)
            loss = self.label_strategy.loss(logits.float(), batch, features=features)
            extra = self.augment.extra_loss(logits.float(), batch)
            if extra is not None:
                loss = loss + extra
        return loss, logits, batch
