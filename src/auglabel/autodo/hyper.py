"""AutoDO's hyper step: one pass of implicit-differentiation updates of the per-sample tables (papers/autodo.txt
Alg. 1 lines 10-19, sec. 4.3 and App. A; METHODS.md sec. 7).

For each of the epoch's training batches (or a fraction, ``fraction``), paired with a batch of the clean
validation split of the same size:

1. ``v = dLv/dtheta``: gradient of the clean validation cross-entropy w.r.t. the last layer theta (the head's
   weight and bias; the reference code uses the weight only), from features each validation sample gets once
   per pass (:class:`ValidationFeatures`);
2. the training loss ``L = w L(y_S, f(g_A(x)))`` of the batch, differentiable in the batch's table rows
   (augmentation: :meth:`~auglabel.augment.base.Augmentation.hyper_forward`; weights and soft labels: the
   owner's :meth:`hyper_leaves`);
3. ``p = H^-1 v`` by T Neumann iterations on the last layer's Hessian of L, then the hypergradient
   ``-d/dlambda (dL/dtheta . p)`` (:func:`auglabel.functional.hypergradient.implicit_hypergradient`);
4. an optimiser step (RMSprop, lr 0.05, by default) on the tables.

The pass's training batches are the epoch's training samples as training gets them from its loader (for a
streamed folder: decoded with the training transform), before the learned augmentation; its validation batches
are clean (streamed: the evaluation transform), so a validation sample's features are the same in every batch.
Both are shuffled loaders of the training / validation loader's own kind (``loader.shuffled``).

The model is in eval mode during the pass (BatchNorm uses its running statistics, as ``encoder.eval()`` in the
reference code), and it does not change.  Under DDP every rank takes its slice of each global batch; v, the
Hessian-vector products and the table gradients are all-reduced by hand, so every rank makes the same update.
The pass's randomness comes from its own generator, seeded by the epoch's seed: a resumed run repeats it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import distributed
from ..batch import Batch
from ..data.loader import EpochOrder
from ..errors import ConfigError
from ..functional.hypergradient import implicit_hypergradient
from ..models.compiled import eager
from .optim import OPTIMIZERS, RowSGD
from .tables import HyperLeaf

SCHEDULES = ("cosine", "constant")
HYPER_SCALARS = ("autodo_hyper_lr", "autodo_hyper_val_loss", "autodo_neumann_growth", "autodo_hyper_batches")


@dataclass(frozen=True)
class HyperSettings:
    """When and how the hyper step runs (the ``labels: autodo`` params of the same names, ``hyper_`` prefixed).

    Attributes:
        start: E: hyper passes follow epochs ``E < e < epochs`` (None: ``epochs // 2``, sec. 4.3).  The pass
            after the final epoch is skipped, as no training follows it (the reference code runs each pass
            before an epoch's training, which comes to the same).
        neumann_steps: T (5, from Lorraine et al.'s ablation); 0 is the identity-Hessian estimate.
        neumann_alpha: the Neumann series' step (the reference code's ``hyper_alpha``, 0.01).
        lr: the hyper optimiser's learning rate (0.05; the paper uses 0.01 on ImageNet).
        optimizer: rmsprop (the paper's) or sgd, row-wise (:mod:`auglabel.autodo.optim`).
        schedule: cosine (from ``lr`` at the first pass to 0 after the last, the reference code's
            CosineAnnealingLR over the hyper epochs) or constant.
        fraction: share of the epoch's training batches a pass visits (1: all, Alg. 1).
    """

    start: int | None = None
    neumann_steps: int = 5
    neumann_alpha: float = 0.01
    lr: float = 0.05
    optimizer: str = "rmsprop"
    schedule: str = "cosine"
    fraction: float = 1.0

    def __post_init__(self) -> None:
        def number(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if self.start is not None and not (isinstance(self.start, int) and not isinstance(self.start, bool)
                                           and self.start >= 0):
            raise ConfigError(f"autodo: hyper_start must be an integer >= 0 or null, got {self.start!r}")
        if not (isinstance(self.neumann_steps, int) and not isinstance(self.neumann_steps, bool)
                and self.neumann_steps >= 0):
            raise ConfigError(f"autodo: neumann_steps must be an integer >= 0, got {self.neumann_steps!r}")
        if not (number(self.neumann_alpha) and self.neumann_alpha > 0):
            raise ConfigError(f"autodo: neumann_alpha must be a number > 0, got {self.neumann_alpha!r}")
        if not (number(self.lr) and self.lr > 0):
            raise ConfigError(f"autodo: hyper_lr must be a number > 0, got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"autodo: hyper_optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"autodo: hyper_schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not (number(self.fraction) and 0 < self.fraction <= 1):
            raise ConfigError(f"autodo: hyper_fraction must be in (0, 1], got {self.fraction!r}")

    def first_epoch(self, num_epochs: int) -> int:
        """E: the last epoch without a hyper pass."""
        return num_epochs // 2 if self.start is None else self.start

    def due(self, epoch: int, num_epochs: int) -> bool:
        return self.first_epoch(num_epochs) < epoch < num_epochs

    def lr_at(self, epoch: int, num_epochs: int) -> float:
        if self.schedule == "constant":
            return self.lr
        start = self.first_epoch(num_epochs)
        passes = max(num_epochs - 1 - start, 1)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - start - 1) / passes))

    def build_optimizer(self, params: list[nn.Parameter]) -> RowSGD:
        return OPTIMIZERS[self.optimizer](params, lr=self.lr)


def last_layer(model: nn.Module) -> nn.Linear:
    """The model's ``head`` (the linear layer on its penultimate features)."""
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise ConfigError(f"autodo needs a model whose last layer is a linear `head` on its features; "
                          f"{type(model).__name__} has none")
    return head


def mean_over_ranks(tensors: list[Tensor]) -> list[Tensor]:
    """Each tensor's mean over processes (one flat all-reduce); the identity in one process."""
    if not distributed.is_distributed():
        return tensors
    world = torch.distributed.get_world_size()
    flat = distributed.all_reduce_sum(torch.cat([t.reshape(-1) for t in tensors])) / world
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def _shuffled(loader: EpochOrder, batch_size: int, seed: int, *, clean: bool = False) -> EpochOrder:
    """A shuffled loader of ``loader``'s kind over its indices with this global batch size (each rank its
    slice); ``clean``: samples decoded without training randomness (streamed data; in memory, the same)."""
    world = loader.world_size
    size = min(batch_size, len(loader.indices) // world * world)
    if size < world:
        raise ConfigError(f"autodo: the validation split ({len(loader.indices)} samples) is too small for a "
                          f"hyper batch on {world} processes")
    return loader.shuffled(size, seed, clean=clean)


def _cycle(loader: EpochOrder, epoch: int) -> Iterator[Batch]:
    for cycle in range(1_000_000):
        loader.set_epoch(epoch * 1_000 + cycle)
        yield from loader


class ValidationFeatures:
    """Penultimate features of the validation samples, each computed once per pass on first use: the model
    does not change during a pass and is in eval mode, so a sample's features are the same in every batch it
    is drawn into (the reference code runs the forward again for every batch)."""

    def __init__(self, indices: Tensor):
        self.sorted = indices.sort().values
        self.done = torch.zeros(len(indices), dtype=torch.bool, device=indices.device)
        self.features: Tensor | None = None

    def __call__(self, model: nn.Module, batch: Batch) -> Tensor:
        pos = torch.searchsorted(self.sorted.to(batch.index.device), batch.index).to(self.done.device)
        missing = ~self.done[pos]
        if bool(missing.any()):
            with torch.no_grad():
                _, new = model(batch.inputs[missing.to(batch.inputs.device)], return_features=True)
            if self.features is None:
                self.features = new.new_zeros(len(self.sorted), new.shape[1], dtype=torch.float32)
            self.features[pos[missing].to(new.device)] = new.float()
            self.done[pos[missing]] = True
        return self.features[pos.to(self.features.device)]


def validation_gradient(head: nn.Linear, features: Tensor, labels: Tensor) -> tuple[list[Tensor], Tensor]:
    """``dLv/dtheta`` of the clean cross-entropy of a validation batch's features (mean over processes) and
    the loss."""
    loss = F.cross_entropy(head(features), labels)
    grads = torch.autograd.grad(loss, list(head.parameters()))
    reduced = mean_over_ranks([g.detach() for g in grads] + [loss.detach().reshape(1)])
    return reduced[:-1], reduced[-1][0]


def hyper_pass(context: Any, owner: nn.Module, settings: HyperSettings, optimizer: RowSGD) -> dict[str, float]:
    """One pass of Alg. 1 lines 11-19 after epoch ``context.epoch``; returns scalars to log.

    ``owner`` (the label strategy) supplies ``hyper_leaves(index) -> list[HyperLeaf]`` and
    ``hyper_loss(logits, batch, leaves) -> Tensor``; ``context`` is the trainer's
    :class:`~auglabel.engine.trainer.EpochContext` (model, augmentation, training and validation loaders).
    """
    model, augment = context.model, context.augment
    head = last_layer(model)
    theta = list(head.parameters())
    train = _shuffled(context.train_loader, context.train_loader.batch_size, context.train_loader.seed + 7_919)
    train.set_epoch(context.epoch)
    val_loader = _shuffled(context.val_loader, context.train_loader.batch_size, context.train_loader.seed + 15_485,
                           clean=True)
    val = _cycle(val_loader, context.epoch)
    val_features = ValidationFeatures(context.val_loader.indices.to(context.val_loader.device))
    generator = torch.Generator(device=context.generator.device)
    generator.manual_seed(context.generator.initial_seed() + 104_729)
    lr = optimizer.lr = settings.lr_at(context.epoch, context.num_epochs)
    batches = max(1, round(settings.fraction * len(train)))
    val_loss = growth = 0.0
    was_training = model.training
    model.eval()
    try:
        for i, batch in enumerate(train):
            if i == batches:
                break
            val_batch = next(val)
            v, loss_v = validation_gradient(head, val_features(model, val_batch), val_batch.labels)
            augmented, aug_leaves = augment.hyper_forward(batch, generator=generator, model=model)
            leaves: list[HyperLeaf] = aug_leaves + owner.hyper_leaves(augmented.index)
            if aug_leaves:
                logits = eager(model)(augmented.inputs)  # a compiled forward cannot be differentiated twice
            else:  # nothing before the head depends on the hyperparameters
                with torch.no_grad():
                    _, features = model(augmented.inputs, return_features=True)
                logits = head(features)
            loss = owner.hyper_loss(logits.float(), augmented, leaves)
            grads, g = implicit_hypergradient(loss, theta, v, [leaf.value for leaf in leaves],
                                              steps=settings.neumann_steps, alpha=settings.neumann_alpha,
                                              reduce=mean_over_ranks)
            optimizer.step([(leaf.table.values, *leaf.table.gathered_grad(leaf, grad))
                            for leaf, grad in zip(leaves, grads)])
            val_loss += loss_v
            growth += g
    finally:
        model.train(was_training)
        val.close()
        train.close()
        val_loader.close()
    return dict(zip(HYPER_SCALARS, (lr, float(val_loss) / batches, float(growth) / batches, float(batches))))
