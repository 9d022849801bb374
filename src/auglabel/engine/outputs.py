"""Result files that survive a full disk: the previous file stays in place and the error is one line.

Every file the trainer writes goes through :func:`write_output`: the bytes are written to a temporary file
next to the target and renamed over it (:func:`auglabel.report.io.write_bytes_atomic`), so a failed write
(ENOSPC, EIO, a quota) leaves the old file untouched, and the ``OSError`` becomes an :class:`OutputError`
naming the file, the reason and what was kept.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Callable

from ..errors import OutputError
from ..report.io import write_bytes_atomic


def describe_write_error(what: str, path: Path, exc: OSError, existed: bool) -> str:
    code = errno.errorcode.get(exc.errno or 0)
    reason = (exc.strerror or str(exc) or type(exc).__name__) + (f" [{code}]" if code else "")
    kept = f"the previous {path.name} is intact" if existed else f"no {path.name} was written"
    return f"cannot write {what} {path}: {reason}; {kept}"


def write_output(what: str, path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Run ``write(path)`` (an atomic writer); an ``OSError`` becomes a one-line :class:`OutputError`."""
    path = Path(path)
    existed = path.is_file()
    try:
        write(path)
    except OSError as exc:
        raise OutputError(describe_write_error(what, path, exc, existed)) from None


def write_text_output(what: str, text: str, path: str | os.PathLike) -> None:
    """Write ``text`` atomically (UTF-8) with :func:`write_output`'s error handling."""
    write_output(what, path, lambda target: write_bytes_atomic(text.encode("utf-8"), target))
