"""Per-epoch scalar logging: a CSV file always, TensorBoard events when tensorboard is installed."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from .outputs import write_text_output


class EpochLogger:
    """Writes one CSV row per epoch to ``run_dir/log.csv``.

    Columns are the union of keys seen; when a later epoch brings a new key (a hook's scalar),
    the file is rewritten with the wider header.  On resume, rows after the resumed epoch are
    dropped so the log matches the restored state.  Each rewrite is atomic: a full disk leaves the
    previous file and raises a one-line OutputError.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, resume_epoch: int | None = None):
        self.path = run_dir / "log.csv"
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []
        if enabled and resume_epoch is not None and self.path.exists():
            with self.path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    if int(row["epoch"]) <= resume_epoch:
                        self.rows.append(row)
            for row in self.rows:
                self._extend_columns(row)
        self.tensorboard = _tensorboard_writer(run_dir) if enabled else None

    def _extend_columns(self, row: dict[str, Any]) -> bool:
        new = [key for key in row if key not in self.columns]
        self.columns.extend(new)
        return bool(new)

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.rows.append(row)
        self._extend_columns(row)
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_output("log", text.getvalue(), self.path)
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tensorboard.add_scalar(key, value, row["epoch"])
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _tensorboard_writer(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))
