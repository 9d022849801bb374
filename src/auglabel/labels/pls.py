"""Pairwise Label Smoothing (Guo, "Regularization via Adaptive Pairwise Label Smoothing";
papers/pairwise-label-smoothing.txt; METHODS.md sec. 6).  No public code exists: this is the reference.

Per training step (:meth:`PairwiseLabelSmoothing.prepare`, then :meth:`~PairwiseLabelSmoothing.loss`):

* inputs: original batches ``x_ii`` alternate with averaged pairs ``x_ij = (x_i + x_j) / 2`` of random
  partners in the mini-batch (eq. 7; :mod:`auglabel.augment.pairwise`), ground truth
  ``q = (y_i + y_j) / 2`` (eq. 8);
* a second linear head ``W_t`` (with bias, "the same as the last fully connected layer of the
  baseline network") on the penultimate features S of the same forward pass gives the smoothing
  distribution ``u = softmax(sigmoid(W_t S))`` (eq. 12-13);
* target ``q' = (q + u) / 2`` (eq. 14); loss ``0.5 H(q, p) + 0.5 H(u, p)`` averaged over the batch
  (eq. 15; the two are the same number: ``H(q', p)``, as H is linear in its first argument).

Prediction, evaluation and temperature scaling use the model's own head only: the model's forward is
unchanged and ``W_t`` lives here, in the label strategy, so checkpoints hold it and DDP (which wraps
the whole training step) averages its gradients.

Gradient routing (the paper is terse; decided here, tested in tests/test_pls.py):

* ``H(q, p)``: q is data, so its gradient reaches the main head ``W_l`` and the body, never ``W_t``.
* ``H(u, p)`` through p (``dl/dz = p - u`` at the logits): ``W_l`` and the body, trained towards u.
* ``H(u, p)`` through u (``dl/du_k = -0.5 log p_k`` at weight 0.5): ``W_t`` and, through S, the body.  This is
  the ONLY gradient ``W_t`` ever gets: with u detached like an ordinary smoothing target, ``W_t``
  would stay at its random initialisation, contradicting "PLS automatically learns the distribution
  mass for each input pair".  The paper writes ``u'_theta`` with the network's parameters theta, says
  the two heads "share the same networks except the last fully connected layer" and minimises eq. 15
  over theta with no stop-gradient, so by default u's gradient also reaches the body
  (``detach_features=True`` feeds ``W_t`` with ``S.detach()`` instead: the body then learns through p only).

Why this does not collapse: the sigmoid bounds ``W_t``'s logits to (0, 1), so every
``u_k`` lies in ``[1 / (1 + (K - 1) e), e / (e + K - 1)]``: u cannot become one-hot, and the u-path
gradient can only move it towards the classes p finds likely, up to that bound.  With both classes of a
pair at the bound, ``u = e / (2e + K - 2)`` there and ``q' = 0.25 + u / 2``: 0.351 for K = 10 and 0.263
for K = 100, the "around 0.35 and 0.25" ground-truth targets of the paper's Figure 4 (CIFAR-10 / -100):
consistent with u being trained, through u, towards the pair's classes.

Ablations (Table 4; Figure 3): ``original_batches=False`` (every batch is pairs), ``distribution="uniform"``
(u = 1/K: "UD"), ``weight`` (the share of u in ``q' = (1 - weight) q + weight u``; 0.5 is PLS, the
paper's UD-0.1/0.2/0.3 are ``distribution="uniform"`` with ``weight`` 0.1/0.2/0.3, and ``weight=0`` is
"no learned distribution": pairs with target q).

Augmentations: PLS pairs images itself, so it follows only augmentations that transform each image on
its own: one view per sample, labels unchanged, no pairing of their own, without running the model
(none, standard crop/flip, gaussian_noise, AugMix without JSD); it rejects mixup/CutMix (already
pairs: a second averaging makes 3-4 image blends that ``q = (y_i + y_j) / 2`` mislabels), AugMix+JSD
(several views of one image whose JSD term pairing would break) and PGD/FGSM (their perturbation is
computed for the unpaired image and its one-hot label; averaging two halves and mixes them).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..augment.pairwise import PairBatches, pair_labels
from ..batch import Batch
from ..errors import ConfigError
from ..losses import soft_cross_entropy, weighted_mean
from .base import LABEL_STRATEGIES, LabelStrategy

if TYPE_CHECKING:
    from ..engine.build import AugmentationReport
    from ..engine.step import ComponentSpec

DISTRIBUTIONS = ("learned", "uniform")


def smoothing_distribution(head_logits: Tensor) -> Tensor:
    """``u = softmax(sigmoid(v))`` row-wise (eq. 12-13), computed in at least float32."""
    return torch.softmax(torch.sigmoid(head_logits.float()), dim=1)


def smoothing_bounds(num_classes: int) -> tuple[float, float]:
    """The range of every ``u_k``: ``(1 / (1 + (K - 1) e), e / (e + K - 1))``."""
    e = math.e
    return 1.0 / (1.0 + (num_classes - 1) * e), e / (e + num_classes - 1)


def pls_targets(q: Tensor, u: Tensor, weight: float = 0.5) -> Tensor:
    """``q' = (1 - weight) q + weight u`` (eq. 14 at weight 0.5); rows sum to 1 when q's and u's do."""
    return q * (1.0 - weight) + u * weight


@LABEL_STRATEGIES.register("pls")
class PairwiseLabelSmoothing(LabelStrategy):
    """Pairwise Label Smoothing (see the module docstring).

    Args:
        original_batches: alternate original and averaged-pair batches (True, the paper); False trains
            on pairs only (Table 4, "no original images").
        distribution: ``"learned"`` (u from the extra head ``W_t``) or ``"uniform"`` (u = 1/K, Table 4's UD).
        weight: share of u in the target, in [0, 1): 0.5 is eq. 14-15.
        detach_features: feed ``W_t`` with ``S.detach()``, so u's gradient stops at ``W_t``.
        head_weight_decay: weight decay of ``W_t``; None (default) uses ``optim.weight_decay``, as the
            paper's training code decays every parameter.
    """

    needs_features = True

    def __init__(self, original_batches: bool = True, distribution: str = "learned", weight: float = 0.5,
                 detach_features: bool = False, head_weight_decay: float | None = None):
        super().__init__()
        if distribution not in DISTRIBUTIONS:
            raise ConfigError(f"pls: distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < 1:
            raise ConfigError(f"pls: weight must be a number in [0, 1), got {weight!r}")
        if head_weight_decay is not None and not (isinstance(head_weight_decay, (int, float)) and head_weight_decay >= 0):
            raise ConfigError(f"pls: head_weight_decay must be a number >= 0 or null, got {head_weight_decay!r}")
        self.pairing = PairBatches(original_batches)
        self.distribution, self.weight = distribution, float(weight)
        self.detach_features = bool(detach_features)
        self.head_weight_decay = None if head_weight_decay is None else float(head_weight_decay)
        self.head: nn.Linear | None = None
        self.needs_features = distribution == "learned" and self.weight > 0

    @property
    def original_batches(self) -> bool:
        return self.pairing.original_batches

    # -- engine hooks ----------------------------------------------------------------------------
    def setup(self, spec: "ComponentSpec") -> None:
        """Create ``W_t`` (K x D, with bias, PyTorch's default init like the model's head) for the
        model's feature width D."""
        if not self.needs_features:
            return
        if spec.feature_dim is None:
            raise ConfigError(
                f"pls needs the model's penultimate features, but {spec.model_name} exposes none: its forward "
                "takes no return_features argument (a custom model's features are the input of its last "
                "nn.Linear, see models/custom.py); or use labels.params.distribution uniform")
        self.head = nn.Linear(spec.feature_dim, spec.num_classes, device=spec.device)

    def param_groups(self) -> list[dict[str, Any]]:
        if self.head is None or self.head_weight_decay is None:
            return []
        return [{"params": list(self.head.parameters()), "weight_decay": self.head_weight_decay}]

    def check_augmentation(self, report: "AugmentationReport") -> None:
        before, after = report.before, report.after
        if after.num_views != 1 or len(after) != len(before):
            reason = f"returns {len(after)} rows in {after.num_views} views for {len(before)} images"
        elif report.calls_model:
            reason = "runs the model (adversarial examples are built for the unpaired image and its label)"
        elif "partner" in after.info or "partner_label" in after.info:
            reason = "already mixes pairs of images"
        elif not torch.equal(after.labels, before.labels):
            reason = "changes the labels"
        else:
            return
        raise ConfigError(
            f"pls pairs images itself and cannot follow augmentation {type(report.augment).__name__}: it {reason}; "
            "use none, standard (crop/flip before pairing) or another per-image augmentation")

    def prepare(self, batch: Batch, *, generator: torch.Generator, step: int) -> Batch:
        """Original (``x_ii``) or averaged-pair (``x_ij``) batch by the step counter (eq. 7)."""
        return self.pairing(batch, generator=generator, step=step)

    # -- targets and loss ------------------------------------------------------------------------
    def smoothing(self, features: Tensor | None) -> Tensor:
        """The learned smoothing distribution u (N, K) from the penultimate features (eq. 12-13)."""
        if self.head is None:
            raise RuntimeError("pls: no W_t head: setup(spec) was not called (build_step calls it)")
        if features is None:
            raise ValueError("pls: the learned distribution needs the model's features")
        return smoothing_distribution(self.head(features.detach() if self.detach_features else features))

    def targets(self, logits: Tensor, batch: Batch, features: Tensor | None = None) -> Tensor:
        """``q'`` (N, K), rows summing to 1; still attached to u's graph (see the module docstring)."""
        if "partner_label" not in batch.info:
            raise ValueError("pls: the batch was not paired (TrainingStep calls prepare() before the model)")
        q = pair_labels(batch.labels, batch.info["partner_label"], batch.num_classes, dtype=torch.float32)
        if self.weight == 0:
            return q
        if self.distribution == "uniform":
            return pls_targets(q, torch.full_like(q, 1.0 / batch.num_classes), self.weight)
        return pls_targets(q, self.smoothing(features), self.weight)

    def loss(self, logits: Tensor, batch: Batch, features: Tensor | None = None) -> Tensor:
        """``(1 - w) H(q, p) + w H(u, p) = H(q', p)`` per sample (eq. 15), weighted mean over the batch."""
        targets = self.targets(logits, batch, features)
        return weighted_mean(soft_cross_entropy(logits.float(), targets.to(torch.float32)), batch.weights)

    def extra_repr(self) -> str:
        return (f"original_batches={self.original_batches}, distribution={self.distribution!r}, "
                f"weight={self.weight}, detach_features={self.detach_features}")

