"""Reopen a finished (or interrupted) run directory: its config, splits and trained model."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ..errors import CheckpointError
from ..report import write_json_atomic
from .build import Splits, build_step, load_splits
from .checkpoint import load_latest_checkpoint
from .config import ExperimentConfig
from .objects import HandedIn
from .resume import config_differences
from .trainer import CONFIG_NAME, METRICS_NAME


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: ExperimentConfig
    splits: Splits
    model: nn.Module
    epoch: int

    def update_metrics(self, updates: dict[str, Any]) -> dict[str, Any]:
        """Merge ``updates`` into the run's metrics.json (atomic rewrite)."""
        path = self.run_dir / METRICS_NAME
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        metrics.update(updates)
        write_json_atomic(metrics, path)
        return metrics


def read_run_config(run_dir: Path) -> ExperimentConfig:
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not an auglabel run directory (no {CONFIG_NAME})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CheckpointError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} does not hold a configuration")
    return ExperimentConfig.from_dict(raw).validate()


def load_run(run_dir: str | Path, device: torch.device | str = "cpu", **objects: Any) -> LoadedRun:
    """Reopen ``run_dir``: its config, splits and trained model (from the latest checkpoint) on ``device``.

    A run trained with objects handed to the Trainer needs the same ones again as keywords (``model=``,
    ``augmentation=``, ``label_strategy=``, ``train_data=`` + ``test_data=``): the config cannot rebuild them."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    cfg = read_run_config(run_dir)
    handed_in = HandedIn(**objects)
    diff = config_differences(cfg.to_dict(), handed_in.describe(cfg))
    if diff:  # an object for a section the run built from its config, or one of another class
        raise CheckpointError(f"the objects handed to load_run do not match run {run_dir}: {'; '.join(diff)}")
    state = load_latest_checkpoint(run_dir, map_location=device)
    splits = load_splits(cfg, handed_in)
    step = build_step(cfg, splits, objects=handed_in)  # components set up before the restore
    try:
        step.load_state_dict(state["step"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint in {run_dir} does not match its config: {first}") from None
    model = step.model.to(device).eval()
    return LoadedRun(run_dir, cfg, splits, model, int(state.get("epoch", 0)))
