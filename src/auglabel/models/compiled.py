"""``torch.compile`` for auglabel models (``train.compile``), in place and checkpoint-neutral.

:func:`compile_model` uses :meth:`torch.nn.Module.compile`, which compiles the module's ``__call__`` and
leaves the module itself (its class, parameters and ``state_dict`` keys) unchanged, so checkpoints of compiled
and eager runs are interchangeable and DDP, PGD and evaluation call it as before.  AOTAutograd's compiled
backward cannot be differentiated again, so code that needs second derivatives through the model (AutoDO's
hyper step) calls :func:`eager` on it.
"""
from __future__ import annotations

import os
import shutil
import sys
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError

BACKEND = "inductor"  # torch.compile's backend; tests use "aot_eager" (same graph capture, no code generation)


def _cpu_compiler_available() -> bool:
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "clang++", "c++"]
    return any(shutil.which(name) for name in names)


def compile_model(model: nn.Module, *, mode: str = "default", device: torch.device | str = "cpu") -> nn.Module:
    """Compile ``model``'s forward in place (TorchInductor) and return it.

    A missing C++ compiler on a CPU, or a platform torch.compile does not support, is a ConfigError at build
    time rather than a compiler traceback at the first step.
    """
    if sys.platform == "win32":
        raise ConfigError("train.compile is not supported by torch.compile on Windows; set train.compile false")
    if torch.device(device).type == "cpu" and not _cpu_compiler_available():
        raise ConfigError("train.compile on a CPU needs a C++ compiler (g++ or clang++, or $CXX); install one or "
                          "set train.compile false")
    model.compile(backend=BACKEND, mode=None if BACKEND != "inductor" else mode)
    return model


def is_compiled(model: nn.Module) -> bool:
    return getattr(model, "_compiled_call_impl", None) is not None


def eager(model: nn.Module) -> Callable[..., torch.Tensor]:
    """``model``'s forward without compilation (the model itself when it is not compiled)."""
    return model.forward if is_compiled(model) else model
