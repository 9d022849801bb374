"""Import every module of a package so their ``@REGISTRY.register`` lines run.

Adding a method is then one new file: no list of modules to keep in sync.
"""
from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package_name: str, package_path: list[str]) -> None:
    for module in pkgutil.iter_modules(package_path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package_name}.{module.name}")
