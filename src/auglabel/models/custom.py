"""Plug any user ``nn.Module`` in as a classifier.

Configuration: ``model: {name: custom, params: {class_path: ..., init_args: {...}}}`` where
``class_path`` is ``"package.module.ClassName"`` or ``"path/to/file.py:ClassName"``, naming an
``nn.Module`` subclass, and ``init_args`` are its keyword arguments, passed unchanged; the user's
module should take normalised images and return (N, num_classes) logits.

**A config cannot run code.** A class path is checked before anything is imported or called
(:func:`resolve_class`): it must be plain dotted identifiers (no ``..``, no leading dot, no
``__dunder__`` part such as ``__import__``), its module must be on the allow-list *before* it is
imported (importing runs a module's top level), the object must be a class and a subclass of
``torch.nn.Module`` (so ``os.system``, ``builtins.eval``, ``subprocess.Popen``, a factory function
or ``math.pi`` are refused even from an allowed module), and the class's own ``__module__`` must
be allowed too (``torch.nn.modules.module.os.system`` or a class re-exported into an allowed
module from elsewhere are refused).  Every refusal is one ConfigError; nothing has run.

The allow-list (:func:`allowed_modules`) is

* the defaults :data:`DEFAULT_ALLOWED_MODULES`: ``torch.nn``, ``torchvision.models``, ``timm``,
  ``auglabel``; an entry ``a.b`` allows module ``a.b`` and its submodules ``a.b.*`` (not ``a.bc``);
* the comma-separated entries of the environment variable ``AUGLABEL_ALLOW_MODULES``;
* entries given with ``auglabel train --allow_module PREFIX`` (repeatable), or in Python inside
  ``with allow_modules("mypkg"): ...``.

An entry that looks like a path (contains ``/``, starts with ``.`` or ``~`` or ends in ``.py``)
allows the ``file.py:ClassName`` form for that file, or for every file under that directory; no
file is allowed by default.  Only the user can widen the list: it is not a config key, and
``init_args`` and the other model params never reach it, so a config file received from someone
else can name only classes the user already trusts.  Allowing a module means trusting its code
(its top level runs on import, its constructor with the config's ``init_args``).

The module is wrapped so it behaves like :class:`~auglabel.models.base.Classifier`: inputs in
[0, 1] are normalised first, and penultimate features come either from the module itself (when
its ``forward`` accepts ``return_features``) or, otherwise, from a forward pre-hook that records
the input of its LAST ``nn.Linear`` (in registration order), taken to be the classifier head.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError, DataError
from .base import MODELS, ChannelNormalize, Stats, positive_int

CLASS_PATH_FORMS = "'package.module.ClassName' or 'path/to/file.py:ClassName'"

#: Module prefixes whose ``nn.Module`` classes a config may name without being allowed by the user.
DEFAULT_ALLOWED_MODULES: tuple[str, ...] = ("torch.nn", "torchvision.models", "timm", "auglabel")
#: Environment variable with more comma-separated allow-list entries (module prefixes or paths).
ALLOW_MODULES_ENV = "AUGLABEL_ALLOW_MODULES"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_extra_allowed: tuple[str, ...] = ()  # entries added by allow_modules(), i.e. by the user, never a config


def _is_path_entry(entry: str) -> bool:
    return "/" in entry or os.sep in entry or entry.startswith((".", "~")) or entry.endswith(".py")


def _plain_name(name: str) -> bool:
    """``a.b.C``: ASCII identifiers joined by single dots, none starting with ``__``."""
    parts = name.split(".")
    return all(_IDENTIFIER.fullmatch(part) and not part.startswith("__") for part in parts)


def _check_entry(entry: object, origin: str) -> str:
    if not isinstance(entry, (str, os.PathLike)) or not str(entry).strip():
        raise ConfigError(f"{origin}: an allowed module must be a module prefix or a path, got {entry!r}")
    entry = str(entry).strip()
    if not _is_path_entry(entry) and not _plain_name(entry):
        raise ConfigError(f"{origin}: {entry!r} is neither a module prefix (like 'mypkg.models') nor a path")
    return entry


def _env_entries() -> list[str]:
    raw = os.environ.get(ALLOW_MODULES_ENV, "")
    return [_check_entry(item, ALLOW_MODULES_ENV) for item in raw.split(",") if item.strip()]


def allowed_modules() -> tuple[str, ...]:
    """The allow-list now: the defaults, then ``AUGLABEL_ALLOW_MODULES``, then :func:`allow_modules`."""
    return (*DEFAULT_ALLOWED_MODULES, *_env_entries(), *_extra_allowed)


@contextmanager
def allow_modules(*entries: str | os.PathLike) -> Iterator[tuple[str, ...]]:
    """Also allow ``entries`` (module prefixes, files or directories) inside the ``with`` block.

    This is how the user, not a config, widens the list: ``auglabel train --allow_module mypkg``
    wraps the command in ``with allow_modules("mypkg")``.  Yields the whole allow-list.
    """
    global _extra_allowed
    checked = tuple(_check_entry(entry, "allow_modules") for entry in entries)
    previous = _extra_allowed
    _extra_allowed = previous + checked
    try:
        yield allowed_modules()
    finally:
        _extra_allowed = previous


def _module_allowed(name: object, entries: tuple[str, ...]) -> bool:
    if not isinstance(name, str) or not _plain_name(name):
        return False
    return any(name == entry or name.startswith(entry + ".") for entry in entries if not _is_path_entry(entry))


def _file_allowed(path: Path, entries: tuple[str, ...]) -> bool:
    for entry in entries:
        if _is_path_entry(entry):
            allowed = Path(entry).expanduser().resolve()
            if path == allowed or (allowed.is_dir() and path.is_relative_to(allowed)):
                return True
    return False


def _refuse_module(module: str, class_path: str, entries: tuple[str, ...]) -> ConfigError:
    listed = ", ".join(entries)
    return ConfigError(
        f"custom model: module {module!r} of class_path {class_path!r} is not allowed (allowed: {listed}); "
        f"if you trust it, allow it with 'auglabel train --allow_module {module}' "
        f"or {ALLOW_MODULES_ENV}={module} (a config file cannot)"
    )


def _load_file_module(path: Path) -> ModuleType:
    # One module per file path, so building twice yields the same class.
    name = f"auglabel_custom_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"custom model: cannot import {str(path)!r} as Python source")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"custom model: importing {str(path)!r} failed: {type(exc).__name__}: {exc}") from exc
    return module


def _describe(obj: object) -> str:
    if inspect.ismodule(obj):
        return "a module"
    if inspect.isroutine(obj):
        return "a function"
    return f"an object of type {type(obj).__name__}"


def resolve_class(class_path: object) -> type[nn.Module]:
    """The ``nn.Module`` subclass named by ``class_path``, checked before anything runs.

    Refused with one ConfigError, before its module is imported, when the path is malformed or
    its module (or file) is not on :func:`allowed_modules`; after the import of an allowed
    module, unless the object is a class, a subclass of ``torch.nn.Module``, and defined in an
    allowed module.  Nothing is called.
    """
    if not isinstance(class_path, str) or not class_path.strip():
        raise ConfigError(f"custom model: class_path must be {CLASS_PATH_FORMS}, got {class_path!r}")
    entries = allowed_modules()
    if ":" in class_path:
        source, _, attr = class_path.rpartition(":")
        if not _plain_name(attr) or "." in attr:
            raise ConfigError(f"custom model: class_path must be {CLASS_PATH_FORMS}, got {class_path!r}")
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"custom model: no such file {source!r}")
        if not _file_allowed(path, entries):
            raise ConfigError(
                f"custom model: file {str(path)!r} of class_path {class_path!r} is not allowed (no file is by "
                f"default); if you trust it, allow it or its folder with 'auglabel train --allow_module "
                f"{path.parent}/' or {ALLOW_MODULES_ENV}={path.parent}/ (a config file cannot)"
            )
        module = _load_file_module(path)
    else:
        source, _, attr = class_path.rpartition(".")
        if not source or not _plain_name(class_path):
            raise ConfigError(f"custom model: class_path must be {CLASS_PATH_FORMS} "
                              f"(plain identifiers, no '__' names), got {class_path!r}")
        if not _module_allowed(source, entries):
            raise _refuse_module(source, class_path, entries)
        try:
            module = importlib.import_module(source)
        except Exception as exc:
            raise ConfigError(
                f"custom model: cannot import module {source!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if not _module_allowed(module.__name__, entries):  # an alias in sys.modules
            raise _refuse_module(module.__name__, class_path, entries)
    if not hasattr(module, attr):
        raise ConfigError(f"custom model: {source!r} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if not issubclass(type(obj), type):  # not inspect.isclass: that trusts a spoofable __class__
        raise ConfigError(f"custom model: {class_path!r} is {_describe(obj)}, not a class "
                          "(class_path must name a torch.nn.Module subclass)")
    if not issubclass(obj, nn.Module):
        raise ConfigError(f"custom model: {class_path!r} is a class but not a torch.nn.Module subclass")
    owner = obj.__dict__.get("__module__", getattr(obj, "__module__", None))
    if owner != module.__name__ and not _module_allowed(owner, entries):
        raise ConfigError(f"custom model: {class_path!r} is defined in module {owner!r}, which is not allowed; "
                          f"allow it with 'auglabel train --allow_module {owner}' or {ALLOW_MODULES_ENV}")
    return obj


def accepts_return_features(module: nn.Module) -> bool:
    """True when ``module.forward`` has a parameter named ``return_features``."""
    try:
        return "return_features" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def last_linear(module: nn.Module) -> tuple[str, nn.Linear] | None:
    """Qualified name and layer of the last ``nn.Linear`` in registration order, or None."""
    found = None
    for name, sub in module.named_modules():
        if isinstance(sub, nn.Linear):
            found = (name, sub)
    return found


def _infer_in_channels(module: nn.Module, mean: Stats, std: Stats) -> int | None:
    for stats in (mean, std):
        if stats is not None and not isinstance(stats, (int, float)):
            return len(stats)
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else None


class WrappedClassifier(nn.Module):
    """A user module with :class:`Classifier`'s interface (normalisation, ``return_features``).

    Attributes ``num_classes``, ``feature_dim`` (None when it cannot be known), ``head`` (the
    hooked last ``nn.Linear``, or the module's own ``head``) and ``module`` (the user's module).
    """

    def __init__(self, module: nn.Module, num_classes: int, *, in_channels: int,
                 mean: Stats = None, std: Stats = None):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ConfigError(f"custom model must be a torch.nn.Module, got {type(module).__name__}")
        self.num_classes = positive_int(num_classes, "num_classes", minimum=2)
        self.normalize = ChannelNormalize(in_channels, mean, std)
        self.module = module
        self.native_features = accepts_return_features(module)
        found = last_linear(module)
        self._head_name = found[0] if found is not None else None
        if self.native_features:
            own_dim = getattr(module, "feature_dim", None)
            self.feature_dim = own_dim if own_dim is not None else (found[1].in_features if found else None)
            return
        if found is None:
            raise ConfigError(
                f"custom model {type(module).__name__}: its forward has no return_features argument "
                "and it has no nn.Linear whose input could serve as features"
            )
        name, linear = found
        if linear.out_features != num_classes:
            raise ConfigError(
                f"custom model {type(module).__name__}: its last nn.Linear ({name or 'the module'}) "
                f"has {linear.out_features} outputs but the data has {num_classes} classes"
            )
        self.feature_dim = linear.in_features
        self._capturing = False
        self._captured: Tensor | None = None
        linear.register_forward_pre_hook(self._capture_features)

    def _capture_features(self, layer: nn.Module, args: tuple[Any, ...]) -> None:  # noqa: ARG002
        # Only inside our forward: calling ``head`` directly must not leave a tensor behind.
        if self._capturing:
            self._captured = args[0]

    @property
    def head(self) -> nn.Module | None:
        if self.native_features and isinstance(getattr(self.module, "head", None), nn.Module):
            return self.module.head
        return self.module.get_submodule(self._head_name) if self._head_name is not None else None

    @property
    def in_channels(self) -> int:
        return self.normalize.in_channels

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        x = self.normalize(x)
        if self.native_features:
            out = self.module(x, return_features=return_features)
            self._check_logits(out[0] if return_features else out)
            return out
        self._capturing, self._captured = True, None
        try:
            logits = self.module(x)
        finally:
            self._capturing = False
        features, self._captured = self._captured, None  # drop the reference: no leaked graph
        self._check_logits(logits)
        if features is None:
            raise ConfigError(
                f"custom model {type(self.module).__name__}: its last nn.Linear ({self._head_name}) "
                "was not called in forward, so no features were captured"
            )
        return (logits, features) if return_features else logits

    def _check_logits(self, logits: Tensor) -> None:
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise DataError(
                f"custom model {type(self.module).__name__} returned shape {tuple(logits.shape)}; "
                f"expected (N, {self.num_classes}) logits"
            )


def wrap_module(module: nn.Module, num_classes: int, mean: Stats = None, std: Stats = None, *,
                in_channels: int | None = None) -> WrappedClassifier:
    """Wrap a user module as a classifier (see the module docstring).

    ``in_channels`` defaults to the length of ``mean``/``std`` or the first ``nn.Conv2d``'s input.
    """
    if in_channels is None and isinstance(module, nn.Module):
        in_channels = _infer_in_channels(module, mean, std)
        if in_channels is None:
            raise ConfigError("wrap_module: cannot infer the input channels; pass in_channels=")
    return WrappedClassifier(module, num_classes, in_channels=in_channels, mean=mean, std=std)  # type: ignore[arg-type]


@MODELS.register("custom")
def custom_model(*, in_channels: int, num_classes: int, mean: Stats = None, std: Stats = None,
                 class_path: str, init_args: dict[str, Any] | None = None) -> WrappedClassifier:
    """Build ``class_path(**init_args)`` (see :func:`resolve_class`) and wrap it with :func:`wrap_module`."""
    factory = resolve_class(class_path)
    if init_args is None:
        init_args = {}
    if not isinstance(init_args, dict):
        raise ConfigError(f"custom model: init_args must be a mapping, got {type(init_args).__name__}")
    try:
        inspect.signature(factory).bind(**init_args)
    except TypeError as exc:
        raise ConfigError(f"custom model {class_path!r}: {exc}") from None
    except ValueError:
        pass  # no introspectable signature (builtin): let the call decide
    try:
        module = factory(**init_args)
    except Exception as exc:  # the user's constructor rejected its arguments
        raise ConfigError(f"custom model {class_path!r}: construction failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ConfigError(f"custom model: {class_path!r} returned {type(module).__name__}, not an nn.Module")
    return wrap_module(module, num_classes, mean, std, in_channels=in_channels)
