"""Atomic file writes: a reader (or a crash) never sees a half-written result file."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to a temporary file next to ``path``, then ``os.replace`` it into place.

    The parent directory is created if needed; an unwritable location is a ConfigError.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _json_ready(value: Any) -> Any:
    """Tensors / numpy values to Python numbers and lists; NaN and infinity to None (strict JSON)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented, strict JSON (non-finite floats become null), atomically.

    Tensors and numpy arrays/scalars are converted with ``.tolist()``.
    """
    text = json.dumps(_json_ready(obj), indent=2, allow_nan=False) + "\n"
    return write_bytes_atomic(text.encode("utf-8"), path)
