"""Checkpoints: atomic writes that keep the previous good file, safe loads (``weights_only=True``), clear errors.

``checkpoint.pt`` is replaced atomically (temporary file, fsync, rename); just before, the file it replaces
becomes ``checkpoint.prev.pt`` (a hard link, so no copy and no extra space until the new file lands).  A kill
at any moment leaves a readable ``checkpoint.pt``; should it still be unreadable (a damaged disk),
:func:`load_latest_checkpoint` falls back to the previous one.  A failed write (a full disk) leaves both in
place and raises a one-line :class:`~auglabel.errors.OutputError`.
"""
from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import CheckpointError, OutputError
from ..report.io import write_bytes_atomic
from .outputs import describe_write_error

FORMAT = "auglabel-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_NAME = "checkpoint.prev.pt"


class UnreadableCheckpoint(CheckpointError):
    """The file is missing, truncated or not a checkpoint at all (as opposed to a foreign version)."""


def save_checkpoint(state: dict[str, Any], path: str | Path, *, keep_previous: bool = True) -> None:
    """Write ``state`` to ``path`` atomically: a crash mid-write never leaves a broken file.

    With ``keep_previous`` the file being replaced is kept as ``checkpoint.prev.pt`` next to it."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save({**state, "format": FORMAT, "version": VERSION, "auglabel_version": __version__}, buffer)
    existed = path.is_file()
    try:
        if keep_previous and existed:
            _keep_previous(path)
        write_bytes_atomic(buffer.getvalue(), path)
    except OSError as exc:
        raise OutputError(describe_write_error("checkpoint", path, exc, existed)) from None


def _keep_previous(path: Path) -> None:
    previous = path.with_name(PREVIOUS_NAME)
    tmp = path.with_name(f".{PREVIOUS_NAME}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:  # no hard links here (some network or FAT file systems): copy
        shutil.copyfile(path, tmp)
    os.replace(tmp, previous)


def remove_stale_temporaries(run_dir: str | Path) -> None:
    """Delete temporary files a killed writer left behind (``.checkpoint.pt.*.tmp`` and the like)."""
    for tmp in Path(run_dir).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load an auglabel checkpoint with ``weights_only=True`` (no arbitrary code execution)."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableCheckpoint(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, unsafe globals...
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnreadableCheckpoint(f"cannot read checkpoint {path}: {first_line}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UnreadableCheckpoint(f"{path} is not an auglabel checkpoint")
    if state.get("version") != VERSION:
        written_by = f" (written by auglabel {state['auglabel_version']})" if "auglabel_version" in state else ""
        raise CheckpointError(f"{path} has checkpoint format version {state.get('version')}{written_by}; "
                              f"auglabel {__version__} reads version {VERSION}")
    return state


def has_checkpoint(run_dir: str | Path) -> bool:
    run_dir = Path(run_dir)
    return (run_dir / CHECKPOINT_NAME).is_file() or (run_dir / PREVIOUS_NAME).is_file()


def load_latest_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``checkpoint.pt``, or ``checkpoint.prev.pt`` (with a note on stderr) when the former is missing or
    unreadable (not when it is of another format version); the first error when neither loads."""
    run_dir = Path(run_dir)
    try:
        return load_checkpoint(run_dir / CHECKPOINT_NAME, map_location)
    except UnreadableCheckpoint as first:
        if not (run_dir / PREVIOUS_NAME).is_file():
            raise
        try:
            state = load_checkpoint(run_dir / PREVIOUS_NAME, map_location)
        except CheckpointError:
            raise first from None
        print(f"note: {first}; resuming from {PREVIOUS_NAME}", file=sys.stderr)
        return state
