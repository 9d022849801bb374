"""Lazy package attributes (PEP 562): ``import auglabel`` stays cheap (no torch) until a name is used."""
from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # typing itself costs more to import than the rest of ``import auglabel``
if TYPE_CHECKING:
    from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module ``__getattr__`` and ``__dir__`` that import ``exports[name]`` (a module path) on the
    first use of ``name`` and keep the value as a plain attribute from then on."""
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
