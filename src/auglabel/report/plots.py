"""Plots written as PNG files, drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas.

No pyplot: no global figure state and no backend selection, so plotting is safe in worker
processes and headless runs.  matplotlib is imported on first use only.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from ..errors import DataError
from ..functional.calibration import ece_from_bins
from .io import write_bytes_atomic

_BIN_KEYS = ("edges", "counts", "confidence", "accuracy")
_SCHEMES = ("equal_width", "equal_mass")


def _checked_bins(bins: dict) -> tuple[list[float], list[float], list[float], list[float], str]:
    """The four per-bin lists of ``CalibrationStats.bins()``, with None (empty bin) as NaN, and the scheme."""
    missing = [key for key in _BIN_KEYS if key not in bins]
    if missing:
        raise DataError(f"reliability diagram: bins lack {', '.join(missing)}")
    edges, counts, conf, acc = ([float("nan") if v is None else float(v) for v in bins[k]] for k in _BIN_KEYS)
    if not (len(edges) == len(counts) + 1 == len(conf) + 1 == len(acc) + 1) or not counts:
        raise DataError(
            f"reliability diagram: need B + 1 edges and B counts/confidence/accuracy values, got "
            f"{len(edges)}, {len(counts)}, {len(conf)}, {len(acc)}"
        )
    if sum(counts) <= 0:
        raise DataError("reliability diagram: every bin is empty")
    scheme = bins.get("scheme", "equal_width")
    if scheme not in _SCHEMES:
        raise DataError(f"reliability diagram: unknown binning scheme {scheme!r}")
    return edges, counts, conf, acc, scheme


def reliability_diagram(bins: dict, path: str | os.PathLike, title: str = "") -> Path:
    """Draw a reliability diagram (Guo et al. 2017, fig. 1) from ``CalibrationStats.bins()``.

    Top: accuracy per confidence bin, the shaded gap to the bin's mean confidence, a marker at
    each non-empty bin's (mean confidence, accuracy), the diagonal of perfect calibration and the
    ECE in the legend.  Bottom: the share of predictions in each bin, each non-empty bin's count
    written above its bar, with the overall accuracy and mean confidence marked.  Equal-mass bins
    (``CalibrationStats.bins(equal_mass=True)``) are drawn at their own edges, and the legend then
    gives the adaptive ECE.  The PNG is written atomically; returns its path.
    """
    return reliability_diagrams({title or "Reliability diagram": bins}, path)


def reliability_diagrams(panels: dict[str, dict], path: str | os.PathLike) -> Path:
    """Several reliability diagrams side by side, one column per ``{title: bins}`` entry (same axes)."""
    return _save(reliability_figure(panels), path)


def reliability_figure(panels: dict[str, dict]):
    """The ``matplotlib.figure.Figure`` of :func:`reliability_diagrams`, not yet saved."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not panels:
        raise DataError("reliability diagram: nothing to draw")
    checked = {title: _checked_bins(bins) for title, bins in panels.items()}
    figure = Figure(figsize=(5.0 * len(checked), 6.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, len(checked), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, squeeze=False)
    for column, (title, bins) in enumerate(checked.items()):
        _draw_reliability(axes[0, column], axes[1, column], *bins, title)
    return figure


def _save(figure, path: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return write_bytes_atomic(buffer.getvalue(), path)


def _draw_reliability(top, bottom, edges: list[float], counts: list[float], conf: list[float],
                      acc: list[float], scheme: str, title: str) -> None:
    filled = [c > 0 for c in counts]
    n = sum(counts)
    conf_sums = [c * m if f else 0.0 for c, m, f in zip(counts, conf, filled)]
    correct_sums = [c * a if f else 0.0 for c, a, f in zip(counts, acc, filled)]
    ece = float(ece_from_bins(*(torch.tensor(v, dtype=torch.float64) for v in (counts, conf_sums, correct_sums))))
    lefts, widths = edges[:-1], [b - a for a, b in zip(edges[:-1], edges[1:])]
    acc_heights = [a if f else 0.0 for a, f in zip(acc, filled)]
    gap_bottoms = [min(a, m) if f else 0.0 for a, m, f in zip(acc, conf, filled)]
    gap_heights = [abs(m - a) if f else 0.0 for a, m, f in zip(acc, conf, filled)]

    top.bar(lefts, acc_heights, width=widths, align="edge", color="#4c72b0", edgecolor="#1f2f4f",
            linewidth=0.6, label="Accuracy")
    top.bar(lefts, gap_heights, bottom=gap_bottoms, width=widths, align="edge", color="#dd4444",
            alpha=0.35, edgecolor="#aa2222", hatch="//", linewidth=0.6, label="Gap to confidence")
    top.plot([0, 1], [0, 1], linestyle="--", color="0.35", linewidth=1.0, label="Perfect calibration")
    top.plot([m for m, f in zip(conf, filled) if f], [a for a, f in zip(acc, filled) if f], linestyle="none",
             marker="o", markersize=3, color="#1f2f4f", label="(mean confidence, accuracy)")
    ece_name = "adaptive ECE" if scheme == "equal_mass" else "ECE"
    top.plot([], [], linestyle="none", label=f"{ece_name} = {100 * ece:.2f}% ({len(counts)} "
             f"{'equal-mass' if scheme == 'equal_mass' else 'equal-width'} bins)")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="Accuracy", title=title)
    top.legend(loc="upper left", frameon=False)

    fractions = [c / n for c in counts]
    bottom.bar(lefts, fractions, width=widths, align="edge", color="0.6", edgecolor="0.3", linewidth=0.6)
    mean_accuracy = sum(correct_sums) / n
    mean_confidence = sum(conf_sums) / n
    bottom.axvline(mean_accuracy, color="#4c72b0", linewidth=1.5, label=f"accuracy {100 * mean_accuracy:.1f}%")
    bottom.axvline(mean_confidence, color="#dd4444", linestyle="--", linewidth=1.5,
                   label=f"mean confidence {100 * mean_confidence:.1f}%")
    bottom.set(xlabel="Confidence", ylabel="Share of samples", ylim=(0, max(1e-9, max(fractions)) * 2.0))
    bottom.legend(loc="upper left", frameon=False, fontsize="small")
    _draw_counts(bottom, lefts, widths, counts, fractions)


def _draw_counts(axis, lefts: list[float], widths: list[float], counts: list[float], fractions: list[float]) -> None:
    """Each non-empty bin's count above its bar; a label that would overlap the previous one is left out
    (narrow equal-mass bins), so the counts drawn are always legible."""
    last = -1.0
    for left, width, count, fraction in zip(lefts, widths, counts, fractions):
        centre = left + width / 2
        if count <= 0 or centre - last < 0.03:
            continue
        axis.text(centre, fraction, f" {count:.0f}", rotation=90, ha="center", va="bottom", fontsize=6, color="0.2")
        last = centre


def risk_coverage_plot(curves: dict[str, dict], path: str | os.PathLike, title: str = "") -> Path:
    """Risk-coverage curves (selective prediction) from ``CalibrationStats.risk_coverage()``.

    Left: selective risk (error rate of the accepted predictions) against coverage, AURC in the
    legend.  Right: generalized risk P(wrong and accepted) against coverage (Traub et al. 2024),
    AUGRC in the legend.  One line per ``{label: curve}`` entry.  Written atomically; returns the path.
    """
    return _save(risk_coverage_figure(curves, title), path)


def risk_coverage_figure(curves: dict[str, dict], title: str = ""):
    """The ``matplotlib.figure.Figure`` of :func:`risk_coverage_plot`, not yet saved."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise DataError("risk-coverage plot: nothing to draw")
    for label, curve in curves.items():
        missing = [k for k in ("coverage", "risk", "generalized_risk") if k not in curve]
        if missing:
            raise DataError(f"risk-coverage plot: curve {label!r} lacks {', '.join(missing)}")
        if not (len(curve["coverage"]) == len(curve["risk"]) == len(curve["generalized_risk"]) > 0):
            raise DataError(f"risk-coverage plot: curve {label!r} needs equally long, non-empty lists")
    figure = Figure(figsize=(10.0, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2, sharex=True)
    for label, curve in curves.items():
        aurc_text = f" (AURC {100 * curve['aurc']:.2f}%)" if curve.get("aurc") is not None else ""
        augrc_text = f" (AUGRC {100 * curve['augrc']:.2f}%)" if curve.get("augrc") is not None else ""
        left.plot(curve["coverage"], curve["risk"], linewidth=1.3, label=f"{label}{aurc_text}")
        right.plot([0.0] + list(curve["coverage"]), [0.0] + list(curve["generalized_risk"]), linewidth=1.3,
                   label=f"{label}{augrc_text}")
    left.set(xlim=(0, 1), ylim=(0, None), xlabel="Coverage", ylabel="Selective risk (error rate of accepted)",
             title=title or "Risk-coverage")
    right.set(xlim=(0, 1), ylim=(0, None), xlabel="Coverage", ylabel="Generalized risk P(wrong, accepted)",
              title="Generalized risk-coverage")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(loc="upper left", frameon=False, fontsize="small")
    return figure
