"""Robustness plots: metrics against corruption severity (AutoLabel paper, Fig. 2) and per-type bars.

Drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot state), written
atomically like :mod:`auglabel.report.plots`.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import DataError
from .io import write_bytes_atomic


def _figure(size: tuple[float, float], columns: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(1, columns)


def _save(figure, path: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return write_bytes_atomic(buffer.getvalue(), path)


def plot_corruption_severity(curves: Mapping[str, Sequence[float]], path: str | os.PathLike,
                             title: str = "") -> Path:
    """Accuracy (left) and ECE (right) in % against severity 0 (clean) .. 5, as in the AutoLabel
    paper's Figure 2.  ``curves`` holds ``accuracy`` and ``ece`` (6 values each) and optionally
    ``ece_scaled`` (after temperature scaling), fractions in [0, 1]."""
    for key in ("accuracy", "ece"):
        if len(curves.get(key, ())) != 6:
            raise DataError(f"severity plot: need 6 values (severity 0..5) of {key!r}")
    severities = list(range(6))
    figure, (left, right) = _figure((9.0, 3.6), 2)
    left.plot(severities, [100 * v for v in curves["accuracy"]], marker="o", color="#4c72b0")
    left.set(xlabel="corruption severity (0 = clean)", ylabel="accuracy (%)", title="Accuracy")
    right.plot(severities, [100 * v for v in curves["ece"]], marker="o", color="#dd4444", label="ECE")
    if curves.get("ece_scaled") is not None:
        right.plot(severities, [100 * v for v in curves["ece_scaled"]], marker="s", ls="--", color="#55a868",
                   label="ECE after temperature scaling")
    right.set(xlabel="corruption severity (0 = clean)", ylabel="ECE (%)", title="Calibration error")
    right.legend(loc="upper left", frameon=False)
    for axis in (left, right):
        axis.set_xticks(severities)
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_severity_comparison(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | os.PathLike,
                             title: str = "", spread: Mapping[str, Mapping[str, Sequence[float]]] | None = None) -> Path:
    """Several methods on the panels of :func:`plot_corruption_severity`: ``curves[label]`` holds
    ``accuracy`` and ``ece`` (6 fractions, severity 0..5); ``spread[label]`` optional error bars."""
    if not curves:
        raise DataError("severity comparison: no curves to plot")
    for label, curve in curves.items():
        for key in ("accuracy", "ece"):
            if len(curve.get(key, ())) != 6:
                raise DataError(f"severity comparison: {label!r} needs 6 values (severity 0..5) of {key!r}")
    severities = list(range(6))
    figure, axes = _figure((9.0, 3.6), 2)
    for label, curve in curves.items():
        for axis, key in zip(axes, ("accuracy", "ece")):
            errors = None if spread is None else [100 * v for v in spread[label][key]]
            axis.errorbar(severities, [100 * v for v in curve[key]], yerr=errors, marker="o", capsize=3, label=label)
    axes[0].set(xlabel="corruption severity (0 = clean)", ylabel="accuracy (%)", title="Accuracy")
    axes[1].set(xlabel="corruption severity (0 = clean)", ylabel="ECE (%)", title="Calibration error")
    axes[1].legend(loc="upper left", frameon=False)
    for axis in axes:
        axis.set_xticks(severities)
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_corruption_types(per_type: Mapping[str, Mapping[str, float]], path: str | os.PathLike,
                          title: str = "") -> Path:
    """Horizontal bars of accuracy and ECE (in %, mean over the 5 severities) per corruption type."""
    if not per_type:
        raise DataError("per-corruption plot: no corruption types")
    names = list(per_type)
    figure, (left, right) = _figure((9.0, 1.2 + 0.32 * len(names)), 2)
    positions = list(range(len(names)))
    left.barh(positions, [100 * per_type[n]["acc"] for n in names], color="#4c72b0")
    right.barh(positions, [100 * per_type[n]["ece"] for n in names], color="#dd4444")
    left.set(xlabel="accuracy (%)", title="Accuracy per corruption")
    right.set(xlabel="ECE (%)", title="ECE per corruption")
    for axis in (left, right):
        axis.set_yticks(positions, names if axis is left else [""] * len(names))
        axis.invert_yaxis()
        axis.grid(axis="x", alpha=0.3)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


__all__ = ["plot_corruption_severity", "plot_corruption_types"]
