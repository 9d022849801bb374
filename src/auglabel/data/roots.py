"""Where a dataset's files live: explicit root, environment, user cache, Debian's folder.

Lookup order of :func:`resolve_root` (first hit wins):

1. the explicit ``root`` argument (``--data.root``);
2. ``$AUGLABEL_DATA_<NAME>`` (e.g. ``AUGLABEL_DATA_FASHION_MNIST``), then
   ``$AUGLABEL_DATA/<folder>``, a parent folder holding several datasets;
3. ``${XDG_CACHE_HOME:-~/.cache}/auglabel/datasets/<folder>``;
4. ``/usr/share/datasets/<folder>``, where Debian's ``dataset-*`` packages install.

``<folder>`` is the canonical name or one of its usual spellings (Debian's ``fashion-mnist``,
the archives' ``cifar-10-batches-py``...).  Nothing is downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError

SYSTEM_DATASETS_DIR = Path("/usr/share/datasets")

FOLDER_ALIASES: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("fashion_mnist", "fashion-mnist", "FashionMNIST"),
    "mnist": ("mnist", "MNIST"),
    "cifar10": ("cifar10", "cifar-10", "cifar-10-batches-py"),
    "cifar100": ("cifar100", "cifar-100", "cifar-100-python"),
    "svhn": ("svhn", "SVHN"),
}

INSTALL_HINTS = {"fashion_mnist": "apt-get install dataset-fashion-mnist"}


def folder_aliases(name: str) -> list[str]:
    """Folder names that may hold dataset ``name``, canonical first."""
    aliases = FOLDER_ALIASES.get(name, (name, name.replace("_", "-")))
    return list(dict.fromkeys(aliases))


def env_var_name(name: str) -> str:
    """``fashion_mnist`` / ``fashion-mnist`` -> ``AUGLABEL_DATA_FASHION_MNIST``."""
    return "AUGLABEL_DATA_" + name.upper().replace("-", "_")


def cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/auglabel/datasets``; a relative XDG value is ignored (spec)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "auglabel" / "datasets"


def _existing_dir(path: Path, origin: str) -> Path:
    if not path.exists():
        raise DataError(f"data root {path} (from {origin}) does not exist")
    if not path.is_dir():
        raise DataError(f"data root {path} (from {origin}) is not a directory")
    return path


def candidate_roots(name: str) -> list[Path]:
    """Folders looked at after the explicit root and ``$AUGLABEL_DATA_<NAME>``, in order."""
    parents = []
    if os.environ.get("AUGLABEL_DATA"):
        parents.append(Path(os.environ["AUGLABEL_DATA"]).expanduser())
    parents += [cache_dir(), SYSTEM_DATASETS_DIR]
    return [parent / alias for parent in parents for alias in folder_aliases(name)]


def resolve_root(name: str, root: str | Path | None = None) -> Path:
    """The folder holding dataset ``name``'s files (see the module docstring for the order)."""
    if root is not None:
        return _existing_dir(Path(root).expanduser(), "the explicit root argument")
    variable = env_var_name(name)
    if os.environ.get(variable):
        return _existing_dir(Path(os.environ[variable]).expanduser(), f"${variable}")
    candidates = candidate_roots(name)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate

    looked = [f"${variable} (unset)"]
    if not os.environ.get("AUGLABEL_DATA"):
        looked.append("$AUGLABEL_DATA (unset)")
    looked += [str(c) for c in candidates]
    fixes = ["pass --data.root DIR", f"set {variable}=DIR",
             f"or put the files in {cache_dir() / folder_aliases(name)[0]}"]
    if name in INSTALL_HINTS:
        fixes.insert(0, INSTALL_HINTS[name])
    raise DataError(f"dataset {name!r} not found; looked in: {', '.join(looked)}; "
                    f"fix: {', '.join(fixes)}")
