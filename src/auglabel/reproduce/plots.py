"""The figures of a reproduction, mean ± std over seeds: accuracy / ECE against corruption severity
per group, the learned AutoLabel values, and ECE / OE bars per method.

Drawn on bare Agg figures (no pyplot state) and written atomically, like :mod:`auglabel.report`.
"""
from __future__ import annotations

import io
import statistics
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..report.io import write_bytes_atomic
from .papers import Group
from .tables import read_autolabel_csv


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _figure(size: tuple[float, float], columns: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(1, columns, squeeze=False)[0]


def _save(figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return write_bytes_atomic(buffer.getvalue(), path)


def plot_group_severity(group: Group, runs: Mapping[str, Sequence[Mapping[str, Any]]], path: Path,
                        title: str) -> Path | None:
    """Accuracy and ECE against severity 0 (clean subsample) .. 5 per row of ``group`` (AutoLabel paper,
    Fig. 2), mean over seeds with std error bars.  Rows without -C results are left out; None if all are."""
    from ..report.robustness_plots import plot_severity_comparison
    from ..robustness.suite import severity_curves

    curves, spread = {}, {}
    for stem, label in group.rows:
        per_seed = [severity_curves(m) for m in runs.get(stem, []) if "corruption.per_severity" in m]
        if not per_seed:
            continue
        curves[label] = {k: [_mean_std(v)[0] for v in zip(*(c[k] for c in per_seed))] for k in ("accuracy", "ece")}
        spread[label] = {k: [_mean_std(v)[1] for v in zip(*(c[k] for c in per_seed))] for k in ("accuracy", "ece")}
    if not curves:
        return None
    return plot_severity_comparison(curves, path, spread=spread, title=title)


def plot_learned_labels(rows: Sequence[tuple[str, str]], run_dirs: Mapping[str, Sequence[Path]],
                        path: Path) -> Path | None:
    """The final learned true-class value of every bucket against distance, one panel per AutoLabel
    ``(stem, label)``: mean over seeds, band min..max.  None when no run has an ``autolabel.csv``."""
    panels = []
    for stem, label in rows:
        tables = [read_autolabel_csv(run) for run in run_dirs.get(stem, []) if (Path(run) / "autolabel.csv").is_file()]
        if tables:
            panels.append((stem, label, tables))
    if not panels:
        return None
    figure, axes = _figure((4.2 * len(panels), 3.4), len(panels))
    for axis, (stem, label, tables) in zip(axes, panels):
        curves: dict[int, list[list[float]]] = {}
        for table in tables:
            last = max(r["epoch"] for r in table)
            for group in sorted({int(r["group"]) for r in table}):
                final = [r for r in table if r["epoch"] == last and int(r["group"]) == group]
                curves.setdefault(group, []).append([r["t"] for r in sorted(final, key=lambda r: r["bucket"])])
        for group, per_seed in curves.items():
            n = min(len(values) for values in per_seed)
            columns = [list(v) for v in zip(*(values[:n] for values in per_seed))]
            centres = [(b + 0.5) / n for b in range(n)]
            axis.plot(centres, [statistics.mean(v) for v in columns], marker="o",
                      label=f"depth {group}" if len(curves) > 1 else "mean")
            axis.fill_between(centres, [min(v) for v in columns], [max(v) for v in columns], alpha=0.15)
        axis.set_title(f"{stem}\n{label}", fontsize=9)
        axis.set(xlabel="bucket distance", ylabel="learned true-class value t")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, frameon=False)
    figure.suptitle("Final AutoLabel values (mean over seeds; band: min..max)")
    return _save(figure, path)


def plot_calibration_bars(rows: Sequence[tuple[str, str]], runs: Mapping[str, Sequence[Mapping[str, Any]]],
                          path: Path, title: str = "") -> Path | None:
    """ECE and overconfidence error (OE) in % per method on the clean test split, mean ± std over seeds
    (the mixup-calibration paper's Fig. 2 as bars).  None when no row has metrics."""
    present = [(stem, label) for stem, label in rows if any("ece" in m for m in runs.get(stem, []))]
    if not present:
        return None
    figure, (axis,) = _figure((max(6.0, 1.0 + 0.9 * len(present)), 4.2), 1)
    width = 0.38
    for offset, (key, name, colour) in zip((-width / 2, width / 2),
                                           (("ece", "ECE", "#dd4444"), ("oe", "OE", "#4c72b0"))):
        stats = [_mean_std([100 * m[key] for m in runs[stem] if key in m] or [float("nan")]) for stem, _ in present]
        axis.bar([i + offset for i in range(len(present))], [s[0] for s in stats], width, yerr=[s[1] for s in stats],
                 capsize=3, color=colour, label=name)
    axis.set_xticks(range(len(present)), [label for _, label in present], rotation=30, ha="right", fontsize=8)
    axis.set(ylabel="% (clean test split)", title=title or "Calibration per method (mean ± std over seeds)")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(frameon=False)
    return _save(figure, path)


__all__ = ["plot_calibration_bars", "plot_group_severity", "plot_learned_labels"]
