"""Import every module of a package so their ``@REGISTRY.register`` lines run.

Adding a method is then one new file: no list of modules to keep in sync.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .registry import Registry


def import_submodules(package_name: str, package_path: list[str]) -> None:
    for module in pkgutil.iter_modules(package_path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package_name}.{module.name}")


def export_registered(namespace: dict[str, Any], registry: Registry) -> list[str]:
    """Put every factory of ``registry`` into ``namespace`` (a package's ``globals()``) under its own name
    (``AugMix``, ``AutoLabel``...) and return those names, for the package's ``__all__``.

    So ``from auglabel.augment import AugMix`` works for every registered class with no list to keep in sync:
    a new method is still one file.  Two factories of one name, or one shadowing another package attribute,
    are a programming error (RuntimeError at import)."""
    names = []
    for key in registry.names():
        factory = registry.get(key)
        name = factory.__name__
        if namespace.get(name, factory) is not factory:
            raise RuntimeError(f"{namespace['__name__']}: registered {key!r} ({factory.__module__}.{name}) "
                               f"would shadow {namespace['__name__']}.{name}")
        namespace[name] = factory
        names.append(name)
    return names
