"""AutoLabel: calibration-guided labels per transformation-distance bucket.

Reference implementation of METHODS.md section 5 (papers/autolabel.txt, sec. 4).  The
augmentation reports per sample a distance in [0, 1] (and optionally a discrete ``group``, e.g.
AugMix's chain depth); the distance falls into one of N buckets, ``n = ceil(distance * N)`` with
0 merged into bucket 1.  Each (group, bucket) holds a learned true-class value ``t``:

* single-label target: ``t`` on the true class, ``(1 - t) / (K - 1)`` on every other class;
* two-image target (the sample reports ``gamma`` and ``partner_label``: mixup, CutMix): the dominant
  class gets ``t``, the other ``min(1 - t, g / (1 - g) * t)`` with ``g = min(gamma, 1 - gamma)``, the
  rest spread uniformly over the remaining K - 2 classes (both images of one class: that class gets
  the sum, the rest over K - 1 classes);
* clean rows of a multi-view batch (``view == 0``) keep their one-hot label.

After every epoch (eq. 3 of the paper), for every bucket S_n:
``t <- t - alpha * ECE(Q) * sign(Conf(Q) - Acc(Q))``, clipped to ``[Acc(Q), 1]``, where Q(S_n) is the
clean validation split augmented at distances drawn uniformly inside S_n.  This is ``rule="paper"``,
the default.

``rule="signed_gap"`` (an option, not in the paper): with ~100 validation samples a bucket the
binned ECE is biased upward (a perfectly calibrated model measures ~9 %), so the paper's rule takes
spurious steps whose sign, ``sign(Conf - Acc)``, is noise as well.  The signed gap
``g = mean(conf_i - correct_i)`` is an unbiased estimate of ``Conf - Acc``; with its standard error
``se = std(conf_i - correct_i, ddof=1) / sqrt(n)`` a bucket steps only when ``|g| > z * se``, and then
by ``t <- clip(t - alpha * g, Acc(Q), 1)``.  Buckets that fail the test, or hold n < 2 samples, keep t.

Design choice on cost: one pass over the validation split per epoch in total; each validation
sample is drawn into one uniformly random bucket (so every bucket sees ~|val| / (G * N) samples).
Per-bucket calibration bins are summed across DDP ranks, so every rank holds identical values; the
statistics are (G * N, 4, num_bins) sums per bin: counts, confidence sums, correct sums and sums of
``(conf - correct) ** 2`` (the last one feeds the signed gap's standard error).
"""
from __future__ import annotations

import csv
import time
from typing import Any

import torch
from torch import Tensor, nn

from .. import distributed
from ..batch import Batch
from ..errors import ConfigError
from ..functional.calibration import bin_statistics, confidences_and_correct, ece_from_bins
from .base import LABEL_STRATEGIES, LabelStrategy


def bucket_index(distance: Tensor, num_buckets: int) -> Tensor:
    """0-based bucket of each distance: ``ceil(distance * N) - 1``, with distance 0 in the first bucket."""
    return (torch.ceil(distance * num_buckets).long() - 1).clamp(0, num_buckets - 1)


def single_label_targets(one_hot: Tensor, true_value: Tensor) -> Tensor:
    """``t`` on the true class, ``(1 - t) / (K - 1)`` elsewhere (rows sum to 1)."""
    k = one_hot.shape[1]
    t = true_value[:, None]
    return one_hot * t + (1 - one_hot) * (1 - t) / (k - 1)


def sample_statistics(conf: Tensor, correct: Tensor, num_bins: int) -> Tensor:
    """float64 (4, num_bins) per-bin sums of one bucket's samples: counts, ``conf``, ``correct`` and
    ``(conf - correct) ** 2``.  All are sums, so batches and DDP ranks add up exactly."""
    squared = (conf.to(torch.float64) - correct.to(torch.float64)) ** 2
    # bin_statistics bins by ``conf`` and sums its second argument per bin: the squared gaps here
    return torch.stack([*bin_statistics(conf, correct, num_bins), bin_statistics(conf, squared, num_bins)[2]])


def signed_gap(stats: Tensor) -> tuple[Tensor, Tensor]:
    """Per bucket ``g = mean(conf - correct)`` and ``se = std(conf - correct, ddof=1) / sqrt(n)``.

    From (B, 4, num_bins) sums; ``g`` is 0 for an empty bucket, ``se`` is NaN for n < 2 (and when the
    squared-gap row is absent, i.e. 3-row statistics).  The unbiased estimate of eq. 3's Conf - Acc.
    """
    n = stats[:, 0].sum(dim=1)
    total = stats[:, 1].sum(dim=1) - stats[:, 2].sum(dim=1)
    gap = total / n.clamp(min=1)
    if stats.shape[1] < 4:
        return gap, torch.full_like(gap, float("nan"))
    variance = ((stats[:, 3].sum(dim=1) - n * gap**2) / (n - 1).clamp(min=1)).clamp(min=0)
    se = torch.where(n >= 2, (variance / n.clamp(min=1)).sqrt(), torch.full_like(gap, float("nan")))
    return gap, se


def paper_update(t: Tensor, counts: Tensor, accuracy: Tensor, confidence: Tensor, ece: Tensor,
                 alpha: float) -> Tensor:
    """Eq. 3 as in the paper: ``clip(t - alpha * ECE * sign(Conf - Acc), Acc, 1)``; empty buckets keep t."""
    updated = t - alpha * ece * torch.sign(confidence - accuracy)
    updated = torch.maximum(torch.minimum(updated, torch.ones_like(updated)), accuracy)
    return torch.where(counts > 0, updated, t)


def signed_gap_update(t: Tensor, counts: Tensor, accuracy: Tensor, gap: Tensor, se: Tensor, alpha: float,
                      z: float) -> Tensor:
    """Eq. 3 with the signed gap: ``clip(t - alpha * g, Acc, 1)`` where ``|g| > z * se`` and n >= 2, else t."""
    updated = torch.maximum(torch.minimum(t - alpha * gap, torch.ones_like(t)), accuracy)
    significant = (counts >= 2) & (gap.abs() > z * se)  # se is NaN for n < 2: never significant
    return torch.where(significant, updated, t)


RULES = ("paper", "signed_gap")


def two_image_targets(labels: Tensor, partner_labels: Tensor, gamma: Tensor, true_value: Tensor,
                      num_classes: int) -> Tensor:
    """AutoLabel's mixup target (METHODS.md sec. 5): dominant class ``t``, other ``min(1-t, g/(1-g) t)``."""
    g = torch.minimum(gamma, 1 - gamma)
    dominant = torch.where(gamma >= 0.5, labels, partner_labels)
    other = torch.where(gamma >= 0.5, partner_labels, labels)
    t = true_value
    t_other = torch.minimum(1 - t, g / (1 - g) * t)
    same = dominant == other
    rest = (1 - t - t_other).clamp(min=0)
    spread = torch.where(same, rest / (num_classes - 1), rest / max(num_classes - 2, 1))
    targets = spread[:, None].expand(-1, num_classes).clone()
    rows = torch.arange(len(labels), device=labels.device)
    targets[rows, other] = torch.where(same, spread, t_other)
    targets[rows, dominant] = torch.where(same, t + t_other, t)
    return targets


@LABEL_STRATEGIES.register("autolabel")
class AutoLabel(LabelStrategy):
    """Per-bucket learned true-class values, updated from augmented-validation calibration.

    Args:
        num_buckets: N buckets along the distance axis.
        alpha: step size of the update.
        init: initial true-class value of every bucket (1 = one-hot).
        num_bins: confidence bins of the per-bucket ECE.
        two_image: use the two-image (mixup) target when the batch reports ``partner_label``.
        rule: ``"paper"`` (eq. 3: step by the binned ECE with the sign of Conf - Acc, every non-empty
            bucket) or ``"signed_gap"`` (step by the unbiased signed gap ``g = mean(conf - correct)``,
            only in buckets where ``|g| > z * se``; see the module docstring: binned ECE is biased
            upward on small buckets, so the paper's rule also moves calibrated buckets).
        z: significance threshold of ``"signed_gap"`` in standard errors (>= 0; unused by ``"paper"``).
    """

    requires_info = ("distance",)

    def __init__(self, num_buckets: int = 10, alpha: float = 1.0, init: float = 1.0, num_bins: int = 15,
                 two_image: bool = True, rule: str = "paper", z: float = 2.0):
        super().__init__()
        if isinstance(num_buckets, bool) or not isinstance(num_buckets, int) or num_buckets < 1:
            raise ConfigError(f"autolabel: num_buckets must be an integer >= 1, got {num_buckets!r}")
        if not alpha > 0:
            raise ConfigError(f"autolabel: alpha must be > 0, got {alpha}")
        if not 0 < init <= 1:
            raise ConfigError(f"autolabel: init must be in (0, 1], got {init}")
        if num_bins < 1:
            raise ConfigError(f"autolabel: num_bins must be >= 1, got {num_bins}")
        if rule not in RULES:
            raise ConfigError(f"autolabel: rule must be one of {', '.join(RULES)}, got {rule!r}")
        if not z >= 0:
            raise ConfigError(f"autolabel: z must be >= 0, got {z}")
        self.num_buckets, self.alpha, self.init, self.num_bins = num_buckets, alpha, init, num_bins
        self.rule, self.z = rule, float(z)
        self.two_image = two_image
        self.register_buffer("values", torch.full((1, num_buckets), float(init)))
        self.history: list[list[list[float]]] = []

    # -- configuration -------------------------------------------------------------------------
    def bind(self, augment: nn.Module) -> None:
        try:
            augment.check_distance_control()  # Augmentation's hook; a Pipeline says which member(s) report one
        except ConfigError as exc:
            raise ConfigError(f"autolabel needs an augmentation that reports a distance and can be applied "
                              f"at a given distance; {exc}") from None
        except AttributeError:  # a bare nn.Module
            raise ConfigError(f"autolabel needs an augmentation that reports a distance and can be applied "
                              f"at a given distance; {type(augment).__name__} cannot") from None
        groups = int(getattr(augment, "bucket_groups", 1))
        self.values = torch.full((groups, self.num_buckets), float(self.init))

    def get_extra_state(self) -> dict[str, Any]:
        return {"history": self.history}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.history = [list(map(list, epoch)) for epoch in state.get("history", [])]

    # -- targets -------------------------------------------------------------------------------
    def true_values(self, batch: Batch) -> Tensor:
        """The bucket value ``t`` of every row of ``batch``."""
        info = batch.info
        n = bucket_index(info["distance"].to(self.values.dtype), self.num_buckets)
        group = info.get("group")
        g = torch.zeros_like(n) if group is None else group.long().clamp(0, self.values.shape[0] - 1)
        return self.values[g, n]

    def targets(self, logits: Tensor, batch: Batch) -> Tensor:
        t = self.true_values(batch).to(logits.dtype)
        info, k = batch.info, batch.num_classes
        if self.two_image and "partner_label" in info and "gamma" in info:
            targets = two_image_targets(batch.labels, info["partner_label"], info["gamma"].to(t.dtype), t, k)
        else:
            targets = single_label_targets(batch.one_hot().to(t.dtype), t)
        if "view" in info:
            clean = (info["view"] == 0)[:, None]
            targets = torch.where(clean, batch.one_hot().to(t.dtype), targets)
        return targets

    # -- end-of-epoch update ------------------------------------------------------------------------
    def bucket_statistics(self, model: nn.Module, augment: nn.Module, loader, generator: torch.Generator) -> Tensor:
        """Per-bucket calibration bins on the augmented validation split, summed over ranks.

        Returns float64 (G * N, 4, num_bins) per-bin sums: counts, confidence sums, correct sums and
        sums of ``(conf - correct) ** 2`` (see :func:`sample_statistics`).
        """
        groups, n_buckets = self.values.shape
        total = groups * n_buckets
        stats = torch.zeros(total, 4, self.num_bins, dtype=torch.float64)
        was_training = model.training
        model.eval()
        for batch in loader:
            rows = len(batch)
            bucket = torch.randint(0, total, (rows,), generator=generator, device=generator.device)
            u = torch.rand(rows, generator=generator, device=generator.device)
            distance = ((bucket % n_buckets) + 1 - u) / n_buckets  # uniform in the bucket's (lo, hi]
            augmented = augment.apply_at_distance(batch, distance.to(batch.device), generator=generator,
                                                  model=model, group=(bucket // n_buckets).to(batch.device))
            with torch.no_grad():
                conf, correct = confidences_and_correct(model(augmented.inputs), augmented.labels)
            bucket, conf, correct = bucket.cpu(), conf.cpu(), correct.cpu()
            for b in torch.unique(bucket).tolist():
                mask = bucket == b
                stats[b] += sample_statistics(conf[mask], correct[mask], self.num_bins)
        model.train(was_training)
        return distributed.all_reduce_sum(stats)

    def update_from_statistics(self, stats: Tensor) -> dict[str, Tensor]:
        """Apply eq. 3 under ``self.rule`` (:func:`paper_update` or :func:`signed_gap_update`).

        ``stats``: (G * N, 4, num_bins) from :meth:`bucket_statistics`; the paper rule also accepts the
        first three rows alone (counts, confidence sums, correct sums).
        """
        groups, n_buckets = self.values.shape
        counts = stats[:, 0].sum(dim=1)
        accuracy = stats[:, 2].sum(dim=1) / counts.clamp(min=1)
        confidence = stats[:, 1].sum(dim=1) / counts.clamp(min=1)
        ece = torch.stack([ece_from_bins(s[0], s[1], s[2]) if c > 0 else s.new_zeros(())
                           for s, c in zip(stats, counts)])
        gap, se = signed_gap(stats)
        t = self.values.flatten().to(torch.float64)
        if self.rule == "paper":
            updated = paper_update(t, counts, accuracy, confidence, ece, self.alpha)
        elif stats.shape[1] < 4:
            raise ValueError("autolabel: rule signed_gap needs 4-row statistics (with squared-gap sums)")
        else:
            updated = signed_gap_update(t, counts, accuracy, gap, se, self.alpha, self.z)
        self.values.copy_(updated.view(groups, n_buckets).to(self.values.dtype))
        return {"count": counts, "accuracy": accuracy, "confidence": confidence, "ece": ece, "gap": gap,
                "gap_se": se}

    def on_epoch_end(self, context: Any) -> dict[str, float]:
        tic = time.perf_counter()
        generator = torch.Generator(device=context.generator.device)
        generator.manual_seed(context.generator.initial_seed() + 7919)
        stats = self.bucket_statistics(context.model, context.augment, context.val_loader, generator)
        if stats[:, 0].sum() == 0:
            raise ConfigError("autolabel: the validation split is empty; set data.val_size > 0")
        details = self.update_from_statistics(stats)
        self.history.append(self.values.tolist())
        if context.dist.is_main:
            self._write_epoch(context, details)
        scalars = {f"autolabel_t/g{g + 1}_b{n + 1}": v for g, row in enumerate(self.values.tolist())
                   for n, v in enumerate(row)}
        scalars["autolabel_update_s"] = time.perf_counter() - tic
        return scalars

    def _write_epoch(self, context: Any, details: dict[str, Tensor]) -> None:
        from ..report.autolabel_plots import plot_autolabel

        path = context.run_dir / "autolabel.csv"
        new = not path.exists() or context.epoch == 1
        groups, n_buckets = self.values.shape
        rows = []
        for i, t in enumerate(self.values.flatten().tolist()):
            g, n = divmod(i, n_buckets)
            rows.append([context.epoch, g + 1, n + 1, n / n_buckets, (n + 1) / n_buckets, t,
                         *(float(details[k][i]) for k in ("count", "accuracy", "confidence", "ece", "gap", "gap_se"))])
        header = ["epoch", "group", "bucket", "distance_lo", "distance_hi", "t", "val_count", "val_accuracy",
                  "val_confidence", "val_ece", "val_gap", "val_gap_se"]
        if not new:  # a resumed run: drop rows of epochs being redone (pad rows of an older, shorter file)
            with path.open(newline="") as handle:
                kept = [r for r in csv.reader(handle)][1:]
            kept = [r + ["nan"] * (len(header) - len(r)) for r in kept if int(r[0]) < context.epoch]
        else:
            kept = []
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(kept + rows)
        if getattr(context, "is_last_epoch", True):  # plotting costs ~1 s: once, at the end
            plot_autolabel(self.history, context.run_dir / "autolabel.png")
