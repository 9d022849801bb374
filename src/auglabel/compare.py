"""``auglabel compare RUN [RUN ...]``: the main metrics of several runs side by side (issue 4, item 7).

Runs whose ``config.yaml`` are equal except for ``train.seed`` and ``run_dir`` are one
configuration: their cells read ``mean ± std (n=k)``, std being the sample standard deviation
(``ddof = 1``) over the k runs that have the metric.  Rows keep the order of first appearance.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from .errors import CheckpointError, DataError
from .report.io import write_bytes_atomic
from .report.markdown import markdown_table

#: Columns in this order when at least one run has them; ``adversarial.<eps>`` go before ``ood``.
MAIN_METRICS = ("accuracy", "ece", "rms_ce", "oe", "brier", "nll", "corruption.acc", "corruption.ece",
                "corruption.mce", "perturbation.flip_probability")
TAIL_METRICS = ("ood.auroc_noise",)
#: seed and run_dir, plus the options that change how a run is checkpointed, not what it computes
IGNORED_CONFIG_KEYS = (("train", "seed"), ("run_dir",), ("train", "checkpoint_every_steps"),
                       ("train", "checkpoint_every_minutes"), ("train", "check_every_steps"),
                       ("train", "collective_timeout_s"))


@dataclass
class RunRecord:
    path: Path
    config: dict
    metrics: dict

    @property
    def seed(self) -> Any:
        return self.config.get("train", {}).get("seed")


def read_run(run_dir: str | os.PathLike) -> RunRecord:
    """A run's config (as a plain dict) and metrics.json; one-line errors when either is missing."""
    path = Path(run_dir)
    if not path.is_dir():
        raise CheckpointError(f"run directory {path} does not exist")
    config_path, metrics_path = path / "config.yaml", path / "metrics.json"
    if not config_path.is_file():
        raise CheckpointError(f"{path} is not an auglabel run directory (no config.yaml)")
    if not metrics_path.is_file():
        raise DataError(f"{path} has no metrics.json; train or evaluate it first")
    try:
        config = yaml.safe_load(config_path.read_text())
        metrics = json.loads(metrics_path.read_text())
    except (yaml.YAMLError, ValueError) as exc:
        raise DataError(f"cannot parse a file of {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        raise DataError(f"{path}: config.yaml or metrics.json does not hold a mapping")
    return RunRecord(path, config, metrics)


def configuration_key(config: dict) -> str:
    """The config without seed and run_dir, as canonical JSON (equal key = same configuration)."""
    stripped = copy.deepcopy(config)
    for path in IGNORED_CONFIG_KEYS:
        section = stripped
        for key in path[:-1]:
            section = section.get(key, {}) if isinstance(section, dict) else {}
        if isinstance(section, dict):
            section.pop(path[-1], None)
    return json.dumps(stripped, sort_keys=True, default=str)


def group_runs(records: Sequence[RunRecord]) -> list[list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(configuration_key(record.config), []).append(record)
    return list(groups.values())


def summarize(values: Sequence[float]) -> tuple[float, float | None, int]:
    """``(mean, sample std or None for one value, count)``."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return mean, std, n


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_columns(records: Sequence[RunRecord]) -> list[str]:
    present = {key for r in records for key, v in r.metrics.items() if _is_number(v)}
    adversarial = sorted((k for k in present if k.startswith("adversarial.")), key=lambda k: float(k.split(".", 1)[1]))
    return [k for k in MAIN_METRICS if k in present] + adversarial + [k for k in TAIL_METRICS if k in present]


def _flatten(config: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(config, dict):
        out: dict[str, str] = {}
        for key, value in config.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(config, default=str)}


def group_labels(groups: Sequence[Sequence[RunRecord]]) -> list[str]:
    """Each group named by the config entries that differ between groups (else its first run's folder)."""
    flats = [_flatten(json.loads(configuration_key(g[0].config))) for g in groups]
    keys = sorted({k for flat in flats for k in flat})
    differing = [k for k in keys if len({flat.get(k) for flat in flats}) > 1]
    if not differing:
        return [g[0].path.name for g in groups]
    return [", ".join(f"{k}={flat.get(k, '-')}".replace('"', "") for k in differing) for flat in flats]


@dataclass
class Comparison:
    columns: list[str]
    labels: list[str]
    runs: list[list[str]]
    cells: list[dict[str, tuple[float, float | None, int]]]

    def markdown(self) -> str:
        def show(cell: tuple[float, float | None, int] | None) -> str:
            if cell is None:
                return "-"
            mean, std, n = cell
            return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f} (n={n})"

        rows = [[label, ", ".join(runs)] + [show(cells.get(c)) for c in self.columns]
                for label, runs, cells in zip(self.labels, self.runs, self.cells)]
        note = "\n\nmean ± sample standard deviation over runs that differ only by train.seed."
        return markdown_table(["configuration", "runs"] + self.columns, rows) + note

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        header = ["configuration", "runs", "n"]
        for column in self.columns:
            header += [f"{column}_mean", f"{column}_std", f"{column}_n"]
        writer.writerow(header)
        for label, runs, cells in zip(self.labels, self.runs, self.cells):
            row: list[Any] = [label, " ".join(runs), len(runs)]
            for column in self.columns:
                mean, std, n = cells.get(column, ("", "", 0))
                row += [mean, "" if std is None else std, n]
            writer.writerow(row)
        return buffer.getvalue()


def compare_runs(run_dirs: Sequence[str | os.PathLike]) -> Comparison:
    """Read, group and summarise runs; any unreadable run fails before anything is written."""
    if not run_dirs:
        raise DataError("compare needs at least one run directory")
    records = [read_run(d) for d in run_dirs]
    groups = group_runs(records)
    columns = metric_columns(records)
    cells = []
    for group in groups:
        summary = {}
        for column in columns:
            values = [float(r.metrics[column]) for r in group if _is_number(r.metrics.get(column))]
            if values:
                summary[column] = summarize(values)
        cells.append(summary)
    return Comparison(columns, group_labels(groups), [[str(r.path) for r in g] for g in groups], cells)


def write_comparison(comparison: Comparison, out: str | None = None, csv_path: str | None = None) -> None:
    if out:
        write_bytes_atomic((comparison.markdown() + "\n").encode("utf-8"), out)
    if csv_path:
        write_bytes_atomic(comparison.csv().encode("utf-8"), csv_path)


__all__ = ["compare_runs", "write_comparison", "Comparison", "RunRecord", "read_run", "group_runs",
           "configuration_key", "summarize", "metric_columns", "MAIN_METRICS"]
