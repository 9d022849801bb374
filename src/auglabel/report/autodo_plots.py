"""What AutoDO learned, per training sample: did it find the noisy labels and the rare classes?

:func:`learned_summary` collects, over the training split, the learned loss weights, soft labels and
augmentation hyperparameters next to each sample's given (possibly noisy) and clean label;
:func:`plot_autodo` draws four panels into ``autodo.png`` (written by ``labels: autodo`` at the last epoch):

1. histograms of the loss weights of samples whose label was flipped and of the others;
2. for flipped samples, the soft label's mass on the TRUE (clean) label and on the given noisy label;
3. the augmentation magnitude scale ``sigmoid(lambda_m)`` per class and op (mean over the class's samples);
4. the apply probability ``sigmoid(lambda_b)`` per class and op.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .io import write_bytes_atomic


@dataclass
class AutoDOSummary:
    """Per training sample (rows of the training split): labels and what AutoDO learned (None: not learned)."""

    given_labels: Tensor
    clean_labels: Tensor
    num_classes: int
    weights: Tensor | None = None
    soft: Tensor | None = None
    ops: tuple[str, ...] = ()
    probability: Tensor | None = None
    magnitude: Tensor | None = None

    @property
    def flipped(self) -> Tensor:
        return self.given_labels != self.clean_labels

    def scalars(self) -> dict[str, float]:
        """Means for log.csv: weights (all / flipped / clean, and the AUROC of the weights as a detector of
        clean labels), soft-label agreement, ops' hyperparameters."""
        out: dict[str, float] = {}
        flipped = self.flipped
        if self.weights is not None:
            out["autodo_weight_mean"] = float(self.weights.mean())
            if flipped.any() and (~flipped).any():
                from ..robustness.ood import auroc

                out["autodo_weight_flipped"] = float(self.weights[flipped].mean())
                out["autodo_weight_clean"] = float(self.weights[~flipped].mean())
                # how well the weights rank clean samples above flipped ones (0.5: not at all)
                out["autodo_weight_auroc"] = auroc(self.weights[~flipped], self.weights[flipped])
        if self.soft is not None:
            top = self.soft.argmax(1)
            out["autodo_soft_agrees_given"] = float((top == self.given_labels).float().mean())
            if flipped.any():
                out["autodo_soft_finds_clean_flipped"] = float((top[flipped] == self.clean_labels[flipped]).float().mean())
        for name, table in (("prob", self.probability), ("magnitude", self.magnitude)):
            if table is not None:
                for a, op in enumerate(self.ops):
                    out[f"autodo_{name}_{op}"] = float(table[:, a].mean())
        return out


def _rows(table: Any, index: Tensor) -> Tensor | None:
    if table is None:
        return None
    values = table.values.detach().float().cpu()
    return values.expand(len(index), -1) if table.shared else values[index]


def learned_summary(labels: Any, augment: Any, splits: Any) -> AutoDOSummary:
    """The summary of ``labels`` (an ``AutoDOLabels``) and ``augment`` over ``splits.train_idx``."""
    from ..labels.autodo import loss_weights

    index = splits.train_idx.cpu()
    given = splits.train_set.labels.cpu()[index]
    clean = splits.clean_labels.cpu()[index] if getattr(splits, "clean_labels", None) is not None else given
    summary = AutoDOSummary(given, clean, splits.num_classes)
    w = _rows(getattr(labels, "weights", None), index)
    summary.weights = loss_weights(w) if w is not None else None
    s = _rows(getattr(labels, "soft", None), index)
    summary.soft = torch.softmax(s, 1) if s is not None else None
    if augment is not None and getattr(augment, "probability", None) is not None:
        summary.ops = tuple(augment.ops)
        summary.probability = torch.sigmoid(_rows(augment.probability, index))
        summary.magnitude = torch.sigmoid(_rows(augment.magnitude, index))
    return summary


def _per_class(ax: Any, table: Tensor | None, summary: AutoDOSummary, what: str) -> None:
    """One line per op: the class means of ``table`` (n, A); the ticks give each class's training count."""
    if table is None:
        ax.text(0.5, 0.5, "no learned augmentation\n(augment: autodo not used)", ha="center", va="center")
        ax.set_axis_off()
        return
    k = summary.num_classes
    labels = summary.given_labels
    counts = torch.bincount(labels, minlength=k).float()[:, None]
    means = torch.zeros(k, table.shape[1]).index_add_(0, labels, table) / counts.clamp(min=1)
    means[counts.flatten() == 0] = float("nan")
    for a, op in enumerate(summary.ops):
        ax.plot(range(k), means[:, a].tolist(), marker="o", label=op)
    ax.set_xticks(range(k), [f"{c}\n{int(n)}" for c, n in enumerate(counts.flatten().tolist())], fontsize=7)
    ax.set(xlabel="class (given label) / training samples", ylabel=what, title=f"learned {what}, class means")
    ax.legend(fontsize=7, ncols=min(len(summary.ops), 4))


def plot_autodo(summary: AutoDOSummary, path: str | os.PathLike) -> Path:
    """The four panels of the module docstring, as one PNG (written atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13.0, 8.0), layout="constrained")
    FigureCanvasAgg(figure)
    (weights_ax, soft_ax), (magnitude_ax, prob_ax) = figure.subplots(2, 2)
    flipped = summary.flipped
    if summary.weights is not None:
        w = summary.weights
        low, high = float(w.min()), float(w.max())
        bins = torch.linspace(low - 0.01, max(high, low + 0.01) + 0.01, 41, dtype=torch.float64).tolist()
        groups = [("clean label", ~flipped), ("flipped label", flipped)] if flipped.any() else [("all", ~flipped)]
        for name, mask in groups:
            if mask.any():
                weights_ax.hist(w[mask].tolist(), bins=bins, density=True, alpha=0.6,
                                label=f"{name}: n={int(mask.sum())}, mean {float(w[mask].mean()):.3f}")
        weights_ax.set(xlabel="loss weight w = 1.4427 softplus(lambda_W)", ylabel="density",
                       title="learned loss weights vs label noise")
        weights_ax.legend(fontsize=8)
    else:
        weights_ax.text(0.5, 0.5, "no learned loss weights (weights: false)", ha="center", va="center")
        weights_ax.set_axis_off()
    if summary.soft is not None:
        rows = flipped if flipped.any() else torch.ones_like(flipped)
        picked = summary.soft[rows]
        on_clean = picked.gather(1, summary.clean_labels[rows, None]).flatten()
        on_given = picked.gather(1, summary.given_labels[rows, None]).flatten()
        found = float((picked.argmax(1) == summary.clean_labels[rows]).float().mean())
        bins = torch.linspace(0, 1, 41).tolist()
        soft_ax.hist(on_clean.tolist(), bins=bins, alpha=0.6, label="mass on the true (clean) label")
        if flipped.any():
            soft_ax.hist(on_given.tolist(), bins=bins, alpha=0.6, label="mass on the given (noisy) label")
        who = f"{int(rows.sum())} flipped samples" if flipped.any() else "all samples (no label was flipped)"
        soft_ax.set(xlabel="soft-label probability", ylabel="samples",
                    title=f"soft labels of {who}: argmax = true label for {100 * found:.1f}%")
        soft_ax.legend(fontsize=8)
    else:
        soft_ax.text(0.5, 0.5, "no learned soft labels (soft_labels: false)", ha="center", va="center")
        soft_ax.set_axis_off()
    _per_class(magnitude_ax, summary.magnitude, summary, "magnitude scale sigmoid(lambda_m)")
    _per_class(prob_ax, summary.probability, summary, "apply probability sigmoid(lambda_b)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return write_bytes_atomic(buffer.getvalue(), path)
