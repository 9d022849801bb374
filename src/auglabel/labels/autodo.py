"""AutoDO loss weights and soft labels, and the hyper step (papers/autodo.txt sec. 4.2-4.3; METHODS.md sec. 7).

Per training point i (tables indexed by ``batch.index``, sized by the dataset, :mod:`auglabel.autodo.tables`):

* loss weight ``w_i = 1.4427 softplus(lambda_W_i)`` (1.4427 = 1 / ln 2, so ``w = 1`` at ``lambda_W = 0``, sec. 4.2);
* soft label ``y_S_i = softmax(lambda_S_i)``, initialised to the label-smoothed target
  ``(1 - alpha) y_i + alpha / K`` by ``lambda_S_i(0) = (y_i - 0.5) log(1 - K + K / alpha)`` (sec. 4.2), from the
  (possibly noisy) training label y_i;
* the training loss ``mean_i w_i L_i`` with ``L_i = 0.5 (KL(y_S || p) + KL(p || y_S))``, the symmetric KL of
  sec. 4.2 (``symmetric: false``: ``KL(y_S || p)``; the reference code uses that on undistorted data); without
  soft labels ``L_i`` is the cross-entropy to the hard label (``soft_labels: false``; the A and A+W ablations).

The subsets of Tables 1-4: A = ``augment: autodo`` with ``weights: false, soft_labels: false``; A+W adds
``weights: true``; A+W+S both (the default); lambda_A^SHA is ``augment.params.shared: true``.  With
``augment: standard`` (or none) and weights / soft labels this learns W / S alone.

This strategy runs the hyper step (:func:`auglabel.autodo.hyper.hyper_pass`) after epochs ``E < e < epochs`` and
optimises every hyper parameter of the training step with its own optimiser (RMSprop, lr 0.05): its own
tables and the augmentation's (bound at configuration time).  The optimiser's state is this module's extra
state, so checkpoints carry it; the tables are parameters without gradients
(:meth:`~auglabel.engine.step.TrainingStep.hyper_parameters`).  At the last epoch it plots what it learned
(``autodo.png``, :mod:`auglabel.report.autodo_plots`).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..autodo.hyper import HYPER_SCALARS, HyperSettings, hyper_pass
from ..autodo.optim import RowSGD
from ..autodo.tables import HyperLeaf, PerSampleTable
from ..batch import Batch
from ..errors import ConfigError
from ..losses import weighted_mean
from .base import LABEL_STRATEGIES, LabelStrategy

if TYPE_CHECKING:
    from ..engine.step import ComponentSpec

SOFTPLUS_UNITY = 1.0 / math.log(2.0)  # 1.4427: 1.4427 * softplus(0) = 1


def loss_weights(weight_logits: Tensor) -> Tensor:
    """``w = 1.4427 softplus(lambda_W)``, (B, 1) -> (B,)."""
    return SOFTPLUS_UNITY * F.softplus(weight_logits.reshape(-1))


def soft_label_logits(labels: Tensor, num_classes: int, alpha: float) -> Tensor:
    """``(y - 0.5) log(1 - K + K / alpha)``: logits whose softmax is ``(1 - alpha) y + alpha / K``."""
    one_hot = F.one_hot(labels.long(), num_classes).float()
    return (one_hot - 0.5) * math.log(1.0 - num_classes + num_classes / alpha)


def symmetric_kl(logits: Tensor, target_logits: Tensor, symmetric: bool = True) -> Tensor:
    """Per sample ``0.5 (KL(s || p) + KL(p || s))`` (or ``KL(s || p)``), s = softmax(target_logits)."""
    log_p, log_s = F.log_softmax(logits, 1), F.log_softmax(target_logits, 1)
    forward = (log_s.exp() * (log_s - log_p)).sum(1)
    if not symmetric:
        return forward
    return 0.5 * (forward + (log_p.exp() * (log_p - log_s)).sum(1))


@LABEL_STRATEGIES.register("autodo")
class AutoDOLabels(LabelStrategy):
    """AutoDO's weights W and soft labels S, and the hyper step for them and the augmentation's A.

    Args:
        weights: learn per-sample loss weights (W).
        soft_labels: learn per-sample soft labels (S) and train with the symmetric KL.
        alpha: label-smoothing constant of the soft labels' initialisation, in (0, 1) (0.05; the paper 0.05-0.2).
        symmetric: symmetric KL (True, the paper) or ``KL(y_S || p)`` for the soft-label loss.
        hyper_start, neumann_steps, neumann_alpha, hyper_lr, hyper_optimizer, hyper_schedule, hyper_fraction:
            :class:`~auglabel.autodo.hyper.HyperSettings` (E = epochs // 2, T = 5, 0.01, 0.05, rmsprop, cosine, 1).
        plots: write ``autodo.png`` at the last epoch.
    """

    trains_augment_hyperparameters = True

    def __init__(self, weights: bool = True, soft_labels: bool = True, alpha: float = 0.05, symmetric: bool = True,
                 hyper_start: int | None = None, neumann_steps: int = 5, neumann_alpha: float = 0.01,
                 hyper_lr: float = 0.05, hyper_optimizer: str = "rmsprop", hyper_schedule: str = "cosine",
                 hyper_fraction: float = 1.0, plots: bool = True):
        super().__init__()
        for name, value in (("weights", weights), ("soft_labels", soft_labels), ("symmetric", symmetric),
                            ("plots", plots)):
            if not isinstance(value, bool):
                raise ConfigError(f"autodo: {name} must be true or false, got {value!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise ConfigError(f"autodo: alpha must be a number in (0, 1), got {alpha!r}")
        self.settings = HyperSettings(hyper_start, neumann_steps, neumann_alpha, hyper_lr, hyper_optimizer,
                                      hyper_schedule, hyper_fraction)
        self.use_weights, self.use_soft, self.alpha = weights, soft_labels, float(alpha)
        self.symmetric, self.plots = symmetric, plots
        self.weights: PerSampleTable | None = None
        self.soft: PerSampleTable | None = None
        self.optimizer: RowSGD | None = None
        self._augment: list[nn.Module] = []  # a plain list: the augmentation is not a submodule of this one
        self._pending: dict[str, Any] | None = None

    # -- engine hooks ----------------------------------------------------------------------------
    def bind(self, augment: nn.Module) -> None:
        self._augment = [augment]

    def setup(self, spec: "ComponentSpec") -> None:
        """Tables for every dataset index (validation rows are never trained and stay at their start), and
        the hyper optimiser over them and the augmentation's hyper parameters (set up before this)."""
        if self.use_weights:
            self.weights = PerSampleTable(spec.dataset_size, 1, 0.0, device=spec.device)
        if self.use_soft:
            if spec.labels is None or len(spec.labels) != spec.dataset_size:
                raise ConfigError("autodo: soft labels need every dataset index's label (ComponentSpec.labels)")
            init = soft_label_logits(spec.labels.to(spec.device), spec.num_classes, self.alpha)
            self.soft = PerSampleTable(spec.dataset_size, spec.num_classes, init, device=spec.device)
        params = [p for a in self._augment for p in a.hyper_parameters()] + self.hyper_parameters()
        if params and spec.feature_dim is None:
            raise ConfigError(f"autodo's hyper step needs the model's penultimate features and linear head, but "
                              f"{spec.model_name} exposes no features (no return_features argument)")
        self.optimizer = self.settings.build_optimizer(params) if params else None
        if self._pending is not None:
            self.set_extra_state(self._pending)

    def hyper_parameters(self) -> list[nn.Parameter]:
        return [t.values for t in (self.weights, self.soft) if t is not None]

    def check_reported(self, augment: nn.Module, keys: frozenset[str]) -> None:
        """Per-sample weights and soft labels belong to one image each: refuse augmentations that mix two."""
        if "partner" in keys or "partner_label" in keys:
            raise ConfigError(f"autodo learns one weight and soft label per image and cannot follow "
                              f"{type(augment).__name__}, which mixes pairs of images; use autodo, standard, "
                              "none or another per-image augmentation")

    def get_extra_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict() if self.optimizer is not None else None}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if self.optimizer is None:
            self._pending = state  # restored once setup built the optimiser
        elif state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])

    # -- loss ------------------------------------------------------------------------------------
    def _loss(self, logits: Tensor, batch: Batch, weight_rows: Tensor | None, soft_rows: Tensor | None) -> Tensor:
        if soft_rows is not None:
            per_sample = symmetric_kl(logits, soft_rows, self.symmetric)
        else:
            per_sample = F.cross_entropy(logits, batch.labels, reduction="none")
        weights = batch.weights
        if weight_rows is not None:
            w = loss_weights(weight_rows)
            weights = w if weights is None else w * weights
        return weighted_mean(per_sample, weights)

    def loss(self, logits: Tensor, batch: Batch, features: Tensor | None = None) -> Tensor:
        """The training loss with the current (fixed) tables (Alg. 1 line 8)."""
        w = self.weights.lookup(batch.index) if self.weights is not None else None
        s = self.soft.lookup(batch.index) if self.soft is not None else None
        return self._loss(logits.float(), batch, w, s)

    def targets(self, logits: Tensor, batch: Batch) -> Tensor:
        if self.soft is None:
            return batch.one_hot()
        return torch.softmax(self.soft.lookup(batch.index), 1)

    def hyper_leaves(self, index: Tensor) -> list[HyperLeaf]:
        return [t.leaf(index) for t in (self.weights, self.soft) if t is not None]

    def hyper_loss(self, logits: Tensor, batch: Batch, leaves: list[HyperLeaf]) -> Tensor:
        """The training loss, differentiable in this strategy's leaves (the last of ``leaves``)."""
        own = {id(leaf.table): leaf.rows() for leaf in leaves}
        w = own.get(id(self.weights)) if self.weights is not None else None
        s = own.get(id(self.soft)) if self.soft is not None else None
        return self._loss(logits, batch, w, s)

    # -- the hyper step and what it learned -------------------------------------------------------
    def on_epoch_end(self, context: Any) -> dict[str, float]:
        row: dict[str, float] = {}
        if self.optimizer is not None:  # the same columns every epoch (NaN: no hyper pass)
            due = self.settings.due(context.epoch, context.num_epochs)
            row.update(hyper_pass(context, self, self.settings, self.optimizer) if due else
                       dict.fromkeys(HYPER_SCALARS, float("nan")))
        splits = getattr(context, "splits", None)
        if splits is not None:
            from ..report.autodo_plots import learned_summary, plot_autodo

            learned = next((m for m in self._augment[0].modules() if getattr(m, "probability", None) is not None),
                           None) if self._augment else None  # the learned augmentation, also inside a pipeline
            summary = learned_summary(self, learned, splits)
            row.update(summary.scalars())
            if self.plots and context.is_last_epoch and context.dist.is_main:
                plot_autodo(summary, context.run_dir / "autodo.png")
        return row

    def extra_repr(self) -> str:
        return (f"weights={self.use_weights}, soft_labels={self.use_soft}, alpha={self.alpha}, "
                f"symmetric={self.symmetric}, {self.settings}")
