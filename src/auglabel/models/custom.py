"""Plug any user ``nn.Module`` in as a classifier.

Configuration: ``model: {name: custom, params: {class_path: ..., init_args: {...}}}`` where
``class_path`` is ``"package.module.ClassName"`` or ``"path/to/file.py:ClassName"`` (any callable
returning an ``nn.Module``) and ``init_args`` are its keyword arguments, passed unchanged; the
user's module should take normalised images and return (N, num_classes) logits.

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
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor, nn

from ..errors import ConfigError, DataError
from .base import MODELS, ChannelNormalize, Stats, positive_int

CLASS_PATH_FORMS = "'package.module.ClassName' or 'path/to/file.py:ClassName'"


def _load_file_module(file: str) -> ModuleType:
    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"custom model: no such file {file!r}")
    # One module per file path, so building twice yields the same class.
    name = f"auglabel_custom_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"custom model: cannot import {file!r} as Python source")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"custom model: importing {file!r} failed: {type(exc).__name__}: {exc}") from exc
    return module


def import_object(class_path: str) -> Any:
    """The object named by ``class_path`` (see the module docstring for the two forms)."""
    if not isinstance(class_path, str) or not class_path.strip():
        raise ConfigError(f"custom model: class_path must be {CLASS_PATH_FORMS}, got {class_path!r}")
    if ":" in class_path:
        source, _, attr = class_path.rpartition(":")
        module = _load_file_module(source)
    else:
        source, _, attr = class_path.rpartition(".")
        if not source:
            raise ConfigError(f"custom model: class_path must be {CLASS_PATH_FORMS}, got {class_path!r}")
        try:
            module = importlib.import_module(source)
        except Exception as exc:
            raise ConfigError(
                f"custom model: cannot import module {source!r}: {type(exc).__name__}: {exc}"
            ) from exc
    if not attr or not hasattr(module, attr):
        raise ConfigError(f"custom model: {source!r} has no attribute {attr!r}")
    return getattr(module, attr)


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
    """Build ``class_path(**init_args)`` and wrap it with :func:`wrap_module`."""
    factory = import_object(class_path)
    if not callable(factory):
        raise ConfigError(f"custom model: {class_path!r} is not a class or callable")
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
