"""The Markdown tables of a reproduction: mean ± std over seeds per method, per group.

Everything here works on plain metrics dicts (one per seed, as read from ``metrics.json``), so
it is tested on hand-built numbers.  Values a table derives from two runs (the mCE relative to
the group's baseline run of the same seed) are added as ``derived.*`` keys by :func:`add_derived`.
"""
from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .papers import Group
from .plan import ADV_EPS, lookup

MISSING = "—"


def mean_std_cell(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± sample std`` of ``values * scale`` with ``digits`` decimals (the value alone for one run)."""
    if len(values) == 1:
        return f"{values[0] * scale:.{digits}f}"
    return f"{statistics.mean(values) * scale:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def cell(values: Sequence[float | None], scale: float = 100.0, digits: int = 2) -> str:
    """:func:`mean_std_cell` of the present values; ``—`` when none is, ``(n=k)`` when some are missing."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return MISSING
    text = mean_std_cell(present, scale, digits)
    return text if len(present) == len(values) else f"{text} (n={len(present)})"


@dataclass(frozen=True)
class Column:
    """A table column: header, metrics key (dotted keys walk nested dicts), scale, decimals."""

    header: str
    key: str
    scale: float = 100.0
    digits: int = 2

    def render(self, runs: Sequence[Mapping[str, Any]]) -> str:
        return cell([_number(lookup(m, self.key)) for m in runs], self.scale, self.digits)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


HEAD = (Column("Acc %", "accuracy"), Column("ECE %", "ece"), Column("OE %", "oe"), Column("RMS-CE %", "rms_ce"),
        Column("NLL", "nll", 1.0, 3), Column("Brier", "brier", 1.0, 3),
        # temperature_scaling.after is on the full test split; temperature.* holds the -C subsample's
        Column("ECE after TS %", "temperature_scaling.after.ece"),
        Column("T", "temperature_scaling.temperature", 1.0, 3),  # > 1: over-confident, < 1: under-confident
        Column("cAcc %", "corruption.acc"), Column("cECE %", "corruption.ece"))
TAIL = (Column("best-val epoch", "best_val.epoch", 1.0, 1), Column("best-val Acc %", "best_val.accuracy"),
        Column("best-val ECE %", "best_val.ece"), Column("train s/run", "train_wall_time_s", 1.0, 0))


def extra_columns(group: Group, ood_name: str | None = None) -> list[Column]:
    """The group's own columns: corruption errors against its baseline, then one set per extra suite."""
    columns = []
    if group.baseline is not None:
        columns += [Column("CE % (1 − cAcc)", "derived.corruption_error"),
                    Column(f"mCE % (rel. {group.baseline})", "derived.mce_relative"),
                    Column("cRMS-CE %", "corruption.rms_ce")]
    if "distortion" in group.columns:
        columns += [Column("error %", "derived.error"),
                    Column("rare-class Acc %", "derived.rare_class_accuracy")]
    if "autodo" in group.columns:
        columns += [Column("weight, flipped", "final_log.autodo_weight_flipped", 1.0, 3),
                    Column("weight, clean", "final_log.autodo_weight_clean", 1.0, 3),
                    Column("weight AUROC clean vs flipped %", "final_log.autodo_weight_auroc"),
                    Column("soft label = clean, flipped %", "final_log.autodo_soft_finds_clean_flipped")]
    for suite in group.suites:
        if suite == "adversarial":
            columns += [Column(f"PGD-50 acc ε={eps} %", f"adversarial.{eps}") for eps in ADV_EPS]
        elif suite == "ood":
            columns += [Column("AUROC noise %", "ood.auroc_noise")]
            if ood_name:
                columns += [Column(f"AUROC {ood_name} %", f"ood.auroc_{ood_name}")]
        elif suite == "perturbations":
            columns += [Column("-P flip prob. %", "perturbation.flip_probability")]
    return columns


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def group_table(group: Group, runs: Mapping[str, Sequence[Mapping[str, Any]]], ood_name: str | None = None) -> str:
    """One Markdown table: a row per (stem, label) of ``group``, cells over the stem's per-seed metrics."""
    columns = [*HEAD, *extra_columns(group, ood_name), *TAIL]
    rows = [[label, *(column.render(runs.get(stem, [])) for column in columns)] for stem, label in group.rows]
    return markdown_table(["method", *(c.header for c in columns)], rows)


# ---- values derived from two runs ----

def corruption_errors(metrics: Mapping[str, Any]) -> dict[str, list[float]]:
    """``{corruption: [error at severity 1..5]}`` from ``corruption.per_type_severity``."""
    cells = metrics["corruption.per_type_severity"]
    names = metrics.get("corruption.names") or list(cells)
    return {name: [1.0 - c["accuracy"] for c in cells[name]] for name in names}


def relative_mce(metrics: Mapping[str, Any], baseline: Mapping[str, Any]) -> float | None:
    """mCE normalised by ``baseline``'s errors per corruption type (Hendrycks & Dietterich 2019).

    None when either run lacks -C results or they were evaluated on different -C sets.
    """
    from ..robustness.suite import mean_corruption_error

    if "corruption.per_type_severity" not in metrics or "corruption.per_type_severity" not in baseline:
        return None
    if metrics.get("corruption.set_id") != baseline.get("corruption.set_id"):
        return None
    mce, _ = mean_corruption_error(corruption_errors(metrics), corruption_errors(baseline))
    return mce


def rare_class_accuracy(per_class: Any) -> float | None:
    """Mean test accuracy of classes ``K//2 .. K-1``, the ones AutoDO's imbalance subsamples (None: absent)."""
    if not isinstance(per_class, Sequence) or len(per_class) < 2:
        return None
    rare = [_number(value) for value in per_class[len(per_class) // 2:]]
    return None if any(value is None for value in rare) else statistics.mean(rare)


def add_derived(runs: Mapping[str, Mapping[int, dict[str, Any]]], groups: Sequence[Group]) -> None:
    """Add ``derived.error`` (1 − Acc), ``derived.rare_class_accuracy`` (:func:`rare_class_accuracy`),
    ``derived.corruption_error`` (1 − cAcc) to every run and ``derived.mce_relative`` to every
    run of a group with a baseline (against the baseline's run of the same seed), in place."""
    for per_seed in runs.values():
        for metrics in per_seed.values():
            if "corruption.acc" in metrics:
                metrics["derived.corruption_error"] = 1.0 - metrics["corruption.acc"]
            if "accuracy" in metrics:
                metrics["derived.error"] = 1.0 - metrics["accuracy"]
            rare = rare_class_accuracy(metrics.get("per_class_accuracy"))
            if rare is not None:
                metrics["derived.rare_class_accuracy"] = rare
    for group in groups:
        if group.baseline is None:
            continue
        for stem in group.stems:
            for seed, metrics in runs.get(stem, {}).items():
                reference = runs.get(group.baseline, {}).get(seed)
                value = None if reference is None else relative_mce(metrics, reference)
                if value is not None:
                    metrics["derived.mce_relative"] = value


# ---- OOD table ----

def ood_table(group: Group, runs: Mapping[str, Sequence[Mapping[str, Any]]], reference: str | None,
              ood_name: str | None) -> str:
    """AUROC against noise / the OOD dataset per row; after ``reference``'s row, the same runs with
    temperature scaling (``ood_temperature_scaled.*``: max-softmax of logits / T)."""
    keys = [("AUROC noise %", "auroc_noise")] + ([(f"AUROC {ood_name} %", f"auroc_{ood_name}")] if ood_name else [])
    rows = []
    for stem, label in group.rows:
        per_seed = runs.get(stem, [])
        rows.append([label, *(Column(h, f"ood.{k}").render(per_seed) for h, k in keys)])
        if stem == reference:
            rows.append([f"{label} + temperature scaling",
                         *(Column(h, f"ood_temperature_scaled.{k}").render(per_seed) for h, k in keys)])
    return markdown_table(["method", *(h for h, _ in keys)], rows)


# ---- AutoLabel diagnostics ----

def read_autolabel_csv(run: Path) -> list[dict[str, float]]:
    """``autolabel.csv`` of a run as rows of floats keyed by column name."""
    with (Path(run) / "autolabel.csv").open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def label_stats(rows: Sequence[Mapping[str, float]]) -> tuple[float, float, float, float]:
    """(final mean t, final min t, share of updates at epochs 2+ with Conf > Acc, mean Conf − Acc over
    the last 5 epochs) of one run's ``autolabel.csv`` rows."""
    last = max(r["epoch"] for r in rows)
    final = [r["t"] for r in rows if r["epoch"] == last]
    later = [r for r in rows if r["epoch"] >= 2] or list(rows)
    over = sum(r["val_confidence"] > r["val_accuracy"] for r in later) / len(later)
    gap = [r["val_confidence"] - r["val_accuracy"] for r in rows if r["epoch"] > last - 5]
    return statistics.mean(final), min(final), over, statistics.mean(gap)


def label_diagnostics(stems: Sequence[str], run_dirs: Mapping[str, Sequence[Path]]) -> str:
    """Why the labels moved (or not): per AutoLabel stem, mean ± std over seeds of the final bucket
    values and of how often the augmented validation split found the model over-confident."""
    rows = []
    for stem in stems:
        stats = [label_stats(read_autolabel_csv(run)) for run in run_dirs.get(stem, [])
                 if (Path(run) / "autolabel.csv").is_file()]
        cells = [cell([s[i] for s in stats], scale) if stats else MISSING
                 for i, scale in enumerate((1.0, 1.0, 100.0, 100.0))]
        rows.append([stem, *cells])
    return markdown_table(["config", "final mean t", "final min t", "updates with Conf > Acc, epochs 2+ (%)",
                           "Conf − Acc, last 5 epochs (pp)"], rows)


__all__ = ["Column", "add_derived", "rare_class_accuracy", "cell", "corruption_errors", "extra_columns", "group_table", "label_diagnostics",
           "label_stats", "markdown_table", "mean_std_cell", "ood_table", "read_autolabel_csv", "relative_mce"]
