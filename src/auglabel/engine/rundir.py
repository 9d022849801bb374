"""A run directory's file names, and the rule that an earlier result is never clobbered unless told."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import CheckpointError, ConfigError
from .checkpoint import CHECKPOINT_NAME, has_checkpoint, remove_stale_temporaries

CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.json"
DISTORTION_NAME = "distortion.json"


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber an earlier result unless told; a resume needs a checkpoint."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other")
    if resume:
        if not has_checkpoint(run_dir):
            raise CheckpointError(f"cannot resume: no {CHECKPOINT_NAME} in {run_dir}")
        remove_stale_temporaries(run_dir)  # left by a writer that was killed
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise ConfigError(f"run directory {run_dir} already exists; pass --resume to continue it "
                              f"or --overwrite to replace it")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
