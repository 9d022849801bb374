"""Adversarial accuracy under white-box untargeted L-inf PGD (METHODS.md sec. 1).

AutoLabel paper, sec. 5.1: PGD with 50 iterations and 3 random restarts, step ``eps / 4``,
``eps`` in {0.02, 0.03, 0.04} on images in [0, 1].  The attack itself is
:func:`auglabel.functional.pgd.pgd_attack`.

Counting rule (documented decision).  A sample is *robust at eps* only if

* its clean image is classified correctly (the clean image lies in every eps-ball), and
* none of the ``restarts`` PGD runs at this eps **or at any smaller eps of the list** found a
  misclassified example (a smaller ball lies inside the larger one): one fooling restart
  breaks the sample.

Restarts are run here one at a time (``pgd_attack(..., restarts=1)``, each from a fresh random
start) and only on the samples still unbroken, so the any-restart rule does not depend on how
``pgd_attack`` picks among its own restarts and broken samples cost nothing more.  Robust
accuracy therefore never exceeds clean accuracy and never increases with eps.  Clean accuracy
is always reported under the key ``"0"`` as a sanity value.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import ConfigError, DataError
from ..functional.pgd import pgd_attack, unwrap_model

PAPER_EPS = (0.02, 0.03, 0.04)
CLEAN_KEY = "0"
Counts = dict[str, tuple[int, int]]


def eps_key(eps: float) -> str:
    """The report key of a budget: ``0.02 -> "0.02"``, ``8/255 -> "0.0313725"``, ``0 -> "0"``."""
    return format(float(eps), "g")


def as_unit_images(images: Tensor, what: str = "images") -> Tensor:
    """uint8 (N, C, H, W) -> float in [0, 1] by ``/255``; a float tensor must already be in [0, 1]."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"{what} must be a 4-D (N, C, H, W) tensor, got {shape}")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise DataError(f"{what} must be uint8 or floating point in [0, 1], got {images.dtype}")
    if images.numel() and not bool(((images >= 0) & (images <= 1)).all()):
        raise DataError(f"{what}: float images must lie in [0, 1] (NaN not allowed)")
    return images


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer; CPU for a stateless model."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def show_progress() -> bool:
    """tqdm floods logs without a terminal (DESIGN.md, "Pitfalls"): show bars only on a TTY."""
    return sys.stderr.isatty()


class EvalMode:
    """Context manager: the whole model in eval mode (BatchNorm running statistics, no dropout),
    then every submodule's previous ``training`` flag restored (mixed modes survive)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self) -> nn.Module:
        self.saved = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        for module, was_training in self.saved:
            module.training = was_training


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"adversarial accuracy: {name} must be an integer >= 1, got {value!r}")
    return value


def _check_eps_list(eps_list: Sequence[float]) -> list[float]:
    try:
        values = [float(eps) for eps in eps_list]
    except (TypeError, ValueError):
        raise ConfigError(f"adversarial accuracy: eps_list must be a list of numbers, got {eps_list!r}") from None
    if not values:
        raise ConfigError("adversarial accuracy: eps_list is empty")
    for eps in values:
        if not math.isfinite(eps) or not 0.0 < eps <= 1.0:
            raise ConfigError(f"adversarial accuracy: every eps must be in (0, 1] on [0, 1] images, got {eps!r} "
                              f"(clean accuracy is always reported under '0')")
    keys = [eps_key(eps) for eps in values]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"adversarial accuracy: eps values must be distinct, got {keys}")
    return values


def _check_data(images: Tensor, labels: Tensor) -> None:
    as_unit_images(images[:1] if isinstance(images, Tensor) and images.dim() == 4 else images)
    if len(images) == 0:
        raise DataError("adversarial accuracy: no images to evaluate")
    if not isinstance(labels, Tensor) or labels.shape != (len(images),) or labels.dtype != torch.int64:
        got = (tuple(labels.shape), labels.dtype) if isinstance(labels, Tensor) else type(labels).__name__
        raise DataError(f"adversarial accuracy: labels must be an int64 tensor of shape ({len(images)},), got {got}")


@torch.no_grad()
def _clean_correct(net: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    logits = net(images)
    num_classes = logits.shape[1]
    if bool((labels < 0).any()) or bool((labels >= num_classes).any()):
        raise DataError(f"adversarial accuracy: labels must be in 0..{num_classes - 1} for a "
                        f"{num_classes}-class model")
    return logits.argmax(dim=1) == labels


def _survives_attack(net: nn.Module, images: Tensor, labels: Tensor, robust: Tensor, eps: float,
                     steps: int, step_size: float, restarts: int, generator: torch.Generator) -> Tensor:
    """``robust`` (N,) bool, updated in place: a sample stays robust only if every restart fails."""
    for _ in range(restarts):
        alive = robust.nonzero().squeeze(1)
        if alive.numel() == 0:
            break
        x_adv = pgd_attack(net, images[alive], labels[alive], eps, steps=steps, step_size=step_size,
                           restarts=1, random_start=True, generator=generator, bn_mode="eval")
        with torch.no_grad():
            robust[alive] = net(x_adv).argmax(dim=1) == labels[alive]
    return robust


def adversarial_counts(model: nn.Module, images: Tensor, labels: Tensor,
                       eps_list: Sequence[float] = PAPER_EPS, *, steps: int = 50, restarts: int = 3,
                       step_size: float | None = None, batch_size: int = 256,
                       device: torch.device | str | None = None, seed: int = 0,
                       progress: bool | None = None) -> Counts:
    """Exact ``(correct, total)`` per budget, so DDP ranks can all-reduce them (sum both).

    Args:
        model: maps (N, C, H, W) images in [0, 1] to logits; already on ``device``.  Evaluated in
            eval mode (BatchNorm running statistics); every submodule's mode is restored after.
        images: (N, C, H, W) uint8 (divided by 255) or float in [0, 1]; may stay on the host,
            each batch is moved to ``device``.
        labels: (N,) int64 classes.
        eps_list: L-inf budgets in (0, 1] (any order; attacked from the smallest up).
        steps, restarts: PGD iterations per restart and random restarts (paper: 50 and 3).
        step_size: PGD step; default ``eps / 4`` (paper).
        batch_size: images per attack batch.
        device: where to attack; default the model's device.
        seed: seeds one ``torch.Generator`` on ``device`` for all random starts (a DDP caller
            should pass a rank-dependent seed so shards draw different noise).
        progress: tqdm bar over batches; default only when stderr is a terminal.

    Returns:
        ``{"0": clean, "0.02": ..., ...}``: clean counts first, then the budgets in the given order,
        keyed by :func:`eps_key`; see the module docstring for the counting rule.
    """
    budgets = _check_eps_list(eps_list)
    _check_positive_int(steps, "steps")
    _check_positive_int(restarts, "restarts")
    _check_positive_int(batch_size, "batch_size")
    if step_size is not None and not (isinstance(step_size, (int, float)) and 0 < step_size < math.inf):
        raise ConfigError(f"adversarial accuracy: step_size must be a positive number, got {step_size!r}")
    _check_data(images, labels)
    device = torch.device(device) if device is not None else model_device(model)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    ascending = sorted(budgets)
    correct = dict.fromkeys([CLEAN_KEY] + [eps_key(eps) for eps in ascending], 0)
    net = unwrap_model(model)
    starts = range(0, len(images), batch_size)
    show = show_progress() if progress is None else progress
    with EvalMode(net):
        for start in tqdm(starts, desc="PGD", leave=False, disable=not show):
            x = as_unit_images(images[start:start + batch_size].to(device))
            y = labels[start:start + batch_size].to(device)
            robust = _clean_correct(net, x, y)
            correct[CLEAN_KEY] += int(robust.sum())
            for eps in ascending:
                step = eps / 4 if step_size is None else float(step_size)
                _survives_attack(net, x, y, robust, eps, steps, step, restarts, generator)
                correct[eps_key(eps)] += int(robust.sum())
    total = len(images)
    order = [CLEAN_KEY] + [eps_key(eps) for eps in budgets]
    return {key: (correct[key], total) for key in order}


def accuracy_from_counts(counts: Counts) -> dict[str, float]:
    """``{key: correct / total}``; use after summing the counts of all DDP ranks."""
    return {key: correct / total for key, (correct, total) in counts.items()}


def adversarial_accuracy(model: nn.Module, images: Tensor, labels: Tensor,
                         eps_list: Sequence[float] = PAPER_EPS, **kwargs) -> dict[str, float]:
    """Robust accuracy per budget (and clean accuracy under ``"0"``) on this process's data.

    Same arguments as :func:`adversarial_counts`; with DDP, all-reduce the counts instead.
    """
    return accuracy_from_counts(adversarial_counts(model, images, labels, eps_list, **kwargs))


__all__ = ["adversarial_counts", "adversarial_accuracy", "accuracy_from_counts", "eps_key",
           "as_unit_images", "EvalMode", "PAPER_EPS", "CLEAN_KEY"]
