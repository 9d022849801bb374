"""The confidence study of a paper's rows: winning scores and reliability before and after temperature scaling.

PLS (papers/pairwise-label-smoothing.txt, Fig. 5-7) trains models whose winning scores (the top softmax
probability) sit just above 0.5, so they are under-confident by design and temperature scaling fits T < 1.
For each studied row this reads the temperature every run already has (``temperature_scaling`` in its
metrics.json, fitted on the clean validation split by ``auglabel calibrate``), recomputes the first seed's
test logits, and draws:

* ``winning_scores.png``: per row, the histogram of the test winning scores before and after dividing the
  logits by T;
* ``reliability_temperature.png``: per row, the reliability diagram before and after.

The Markdown table (mean ± std over seeds) gives T, the mean winning score before/after and ECE before/after.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from ..report.io import write_bytes_atomic
from .plan import lookup
from .tables import Column, cell, markdown_table

TEMPERATURE_KEY = "temperature_scaling.temperature"
BINS = 20


def test_logits(run_dir: Path, device: str = "cpu") -> tuple[Tensor, Tensor]:
    """The run's model on its whole test split: ``(logits, labels)``; ``device`` as ``--device`` (``auto``...)."""
    from ..data.loader import DeviceLoader
    from ..distributed import resolve_device
    from ..engine.evaluate import evaluate
    from ..engine.runs import load_run

    device = resolve_device(device)
    run = load_run(run_dir, device)
    test = run.splits.test_set
    loader = DeviceLoader(test.images, test.labels, run.splits.test_idx, test.num_classes,
                          run.cfg.train.eval_batch_size, train=False, device=device)
    _, logits, labels = evaluate(run.model, loader, keep_logits=True)
    return logits.float().cpu(), labels.cpu()


def winning_scores(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """The top softmax probability of each row of ``logits / temperature``."""
    return torch.softmax(logits.double() / temperature, dim=1).max(dim=1).values


def study_table(rows: Sequence[tuple[str, str]], runs: Mapping[str, Sequence[Mapping[str, Any]]],
                scores: Mapping[str, Sequence[tuple[float, float]]]) -> str:
    """T, mean winning score before/after (over each seed's test split), ECE before/after TS, per row."""
    columns = (Column("T", TEMPERATURE_KEY, 1.0, 3), Column("ECE %", "ece"),
               Column("ECE after TS %", "temperature_scaling.after.ece"))
    lines = []
    for stem, label in rows:
        per_seed = runs.get(stem, [])
        means = scores.get(stem, [])
        lines.append([label, columns[0].render(per_seed), cell([m[0] for m in means]), cell([m[1] for m in means]),
                      *(c.render(per_seed) for c in columns[1:])])
    return markdown_table(["method", "T", "mean winning score %", "after TS %", "ECE %", "ECE after TS %"], lines)


def confidence_study(rows: Sequence[tuple[str, str]], runs: Mapping[str, Sequence[Mapping[str, Any]]],
                     run_dirs: Mapping[str, Sequence[Path]], out: Path) -> tuple[str, list[Path]]:
    """The study's Markdown (a heading and :func:`study_table`) and the two figures written into ``out``.

    Each run's logits are computed on the device it was trained on (:func:`~auglabel.reproduce.runner.run_device`).
    Rows without a finished, temperature-scaled run are left out of the figures (and show ``—`` cells).
    """
    from ..metrics import CalibrationStats
    from ..report.plots import reliability_diagrams
    from .runner import run_device

    scores: dict[str, list[tuple[float, float]]] = {}
    histograms: list[tuple[str, float, Tensor, Tensor]] = []
    panels: dict[str, dict] = {}
    for stem, label in rows:
        for i, (run, metrics) in enumerate(zip(run_dirs.get(stem, []), runs.get(stem, []))):
            temperature = lookup(metrics, TEMPERATURE_KEY)
            if not isinstance(temperature, (int, float)) or not (Path(run) / "checkpoint.pt").is_file():
                continue
            logits, labels = test_logits(Path(run), run_device(Path(run)))
            before, after = winning_scores(logits), winning_scores(logits, float(temperature))
            scores.setdefault(stem, []).append((float(before.mean()), float(after.mean())))
            if i == 0:
                histograms.append((label, float(temperature), before, after))
                for name, scaled in ((label, logits), (f"{label}, T = {temperature:.3f}", logits / temperature)):
                    stats = CalibrationStats()
                    stats.update(scaled, labels)
                    panels[name] = stats.bins()
    written: list[Path] = []
    if histograms:
        written.append(_plot_histograms(histograms, Path(out) / "winning_scores.png"))
        written.append(reliability_diagrams(panels, Path(out) / "reliability_temperature.png"))
    text = ("## Confidence before and after temperature scaling\n\n"
            "T is fitted on the clean validation split (T < 1 sharpens an under-confident model); winning score = "
            "top softmax probability on the test split, mean over its images, then mean ± std over seeds. "
            "Figures (first seed): `winning_scores.png`, `reliability_temperature.png`.\n\n"
            + study_table(rows, runs, scores) + "\n")
    return text, written


def _plot_histograms(histograms: Sequence[tuple[str, float, Tensor, Tensor]], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.6 * len(histograms), 3.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(histograms), sharey=True, squeeze=False)[0]
    edges = torch.linspace(0, 1, BINS + 1).tolist()
    for ax, (label, temperature, before, after) in zip(axes, histograms):
        ax.hist(before.numpy(), bins=edges, weights=torch.full_like(before, 100 / len(before)).numpy(),
                color="tab:blue", alpha=0.6, label="before")
        ax.hist(after.numpy(), bins=edges, weights=torch.full_like(after, 100 / len(after)).numpy(),
                histtype="step", color="tab:red", linewidth=1.5, label=f"after TS (T = {temperature:.2f})")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("winning score (top softmax probability)")
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("% of test images")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return write_bytes_atomic(buffer.getvalue(), path)


__all__ = ["confidence_study", "study_table", "test_logits", "winning_scores"]
