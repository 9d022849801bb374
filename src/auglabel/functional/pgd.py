"""L-inf PGD (Madry et al. 2018) and FGSM with random start (Wong et al. 2020) on [0, 1] images.

METHODS.md sec. 1 (evaluation attack) and sec. 4 (PGD adversarial training).  The attack only
ever asks autograd for the gradient w.r.t. the input (``torch.autograd.grad(loss, x_adv)``):
parameter ``.grad`` fields are never touched, and a DistributedDataParallel model is attacked
through its unwrapped ``.module`` so DDP's reducer never sees the attack's forward passes
(DESIGN.md, "Pitfalls").
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError

LossFn = Callable[[Tensor, Tensor], Tensor]
BN_MODES = ("eval", "train")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper, else ``model``."""
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


def _per_sample(value: Tensor | float, images: Tensor, name: str) -> Tensor:
    """A number or (N,) tensor as an (N,) tensor on the images' device, checked finite and >= 0."""
    n = images.shape[0]
    value_t = torch.as_tensor(value, dtype=images.dtype, device=images.device)
    if value_t.dim() == 0:
        value_t = value_t.expand(n)
    if value_t.shape != (n,):
        raise ConfigError(f"PGD: {name} must be a number or one value per sample ({n}), got shape {tuple(value_t.shape)}")
    if not bool(torch.isfinite(value_t).all()) or bool((value_t < 0).any()):
        raise ConfigError(f"PGD: {name} must be finite and >= 0")
    return value_t


def _check_settings(steps: int, restarts: int, bn_mode: str) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"PGD: steps must be an integer >= 1, got {steps!r}")
    if not isinstance(restarts, int) or restarts < 1:
        raise ConfigError(f"PGD: restarts must be an integer >= 1, got {restarts!r}")
    if bn_mode not in BN_MODES:
        raise ConfigError(f"PGD: bn_mode must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")


class _AttackMode:
    """Context manager: every submodule in train (``bn_mode="train"``) or eval mode, then each
    submodule's previous mode restored (a model may have mixed modes, e.g. frozen BN)."""

    def __init__(self, net: nn.Module, bn_mode: str):
        self.net, self.training = net, bn_mode == "train"

    def __enter__(self) -> None:
        self.saved = [(module, module.training) for module in self.net.modules()]
        self.net.train(self.training)

    def __exit__(self, *exc) -> None:
        for module, was_training in self.saved:
            module.training = was_training


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


def _project(x_adv: Tensor, images: Tensor, eps: Tensor) -> Tensor:
    """Onto the L-inf ball of radius eps (N,1,1,1) around images, intersected with [0, 1]."""
    return torch.minimum(torch.maximum(x_adv, images - eps), images + eps).clamp(0.0, 1.0)


def _one_restart(net: nn.Module, images: Tensor, labels: Tensor, eps: Tensor, step_size: Tensor,
                 steps: int, random_start: bool, generator: torch.Generator | None, loss_fn: LossFn) -> Tensor:
    if random_start:
        noise = torch.rand(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        x_adv = _project(images + (2.0 * noise - 1.0) * eps, images, eps)
    else:
        x_adv = images.clone()
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(net(x_adv), labels).sum()  # sum: each sample's gradient is its own
            (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = _project(x_adv.detach() + step_size * grad.sign(), images, eps)
    return x_adv.detach()


def pgd_attack(model: nn.Module, images: Tensor, labels: Tensor, eps: Tensor | float, *,
               steps: int = 10, step_size: Tensor | float | None = None, restarts: int = 1,
               random_start: bool = True, generator: torch.Generator | None,
               bn_mode: str = "eval", loss_fn: LossFn | None = None) -> Tensor:
    """Untargeted L-inf PGD; returns adversarial images in [0, 1] with ``||x_adv - x||_inf <= eps``.

    Args:
        model: maps (N, C, H, W) images in [0, 1] to logits; DDP/DataParallel wrappers are unwrapped.
        images: (N, C, H, W) clean images in [0, 1].  The result keeps their dtype.
        labels: (N,) int64 true classes.
        eps: budget, a number or an (N,) tensor (per-sample eps, AutoLabel sec. 4.4).
        steps: gradient-sign steps per restart, >= 1.
        step_size: a number or (N,) tensor; default ``2.5 * eps / steps`` (Madry et al.).
        restarts: independent random starts; per sample the result is the first restart whose
            example is misclassified, else the one with the highest loss.  Restart r uses the
            generator's r-th draw, so R restarts equal R successive single-restart calls.
        random_start: start uniformly in the eps-ball (else at the clean image).
        generator: source of the random start; required when ``random_start``.
        bn_mode: ``"eval"`` or ``"train"``: the model's mode during the attack (``"train"`` lets
            BatchNorm use batch statistics *and update its running statistics*); every
            submodule's previous mode is restored afterwards.
        loss_fn: ``(logits, labels) -> per-sample loss (N,)`` to ascend; default cross-entropy.
    """
    _check_settings(steps, restarts, bn_mode)
    if random_start and generator is None:
        raise ValueError("pgd_attack: random_start needs an explicit torch.Generator")
    if images.shape[0] == 0:
        return images.clone()
    net = unwrap_model(model)
    loss_fn = loss_fn or _cross_entropy
    eps_n = _per_sample(eps, images, "eps")
    step_n = 2.5 * eps_n / steps if step_size is None else _per_sample(step_size, images, "step_size")
    view = (-1,) + (1,) * (images.dim() - 1)
    eps_b, step_b = eps_n.view(view), step_n.view(view)
    images, labels = images.detach(), labels.detach()
    with _AttackMode(net, bn_mode):
        best = _one_restart(net, images, labels, eps_b, step_b, steps, random_start, generator, loss_fn)
        if restarts == 1:
            return best
        best_loss, best_fooled = _loss_and_fooled(net, best, labels, loss_fn)
        for _ in range(restarts - 1):
            candidate = _one_restart(net, images, labels, eps_b, step_b, steps, random_start, generator, loss_fn)
            loss, fooled = _loss_and_fooled(net, candidate, labels, loss_fn)
            take = ~best_fooled & (fooled | (loss > best_loss))
            best = torch.where(take.view(view), candidate, best)
            best_loss = torch.where(take, loss, best_loss)
            best_fooled = best_fooled | fooled
    return best


@torch.no_grad()
def _loss_and_fooled(net: nn.Module, x_adv: Tensor, labels: Tensor, loss_fn: LossFn) -> tuple[Tensor, Tensor]:
    logits = net(x_adv)
    return loss_fn(logits, labels), logits.argmax(dim=1) != labels


def fgsm_attack(model: nn.Module, images: Tensor, labels: Tensor, eps: Tensor | float, *,
                step_size: Tensor | float | None = None, random_start: bool = True,
                generator: torch.Generator | None, bn_mode: str = "eval",
                loss_fn: LossFn | None = None) -> Tensor:
    """FGSM with random start ("Fast is better than free", Wong et al. 2020, Alg. 3).

    ``delta ~ U(-eps, eps)``, one step of ``alpha * sign(grad)`` with ``alpha = 1.25 * eps`` by
    default, projected back onto the eps-ball and [0, 1].  Same arguments as :func:`pgd_attack`.
    """
    if step_size is None:
        step_size = 1.25 * _per_sample(eps, images, "eps")
    return pgd_attack(model, images, labels, eps, steps=1, step_size=step_size, restarts=1,
                      random_start=random_start, generator=generator, bn_mode=bn_mode, loss_fn=loss_fn)


def linf_distance(x_adv: Tensor, images: Tensor) -> Tensor:
    """``||x_adv - x||_inf`` per sample, (N,)."""
    return (x_adv - images).flatten(1).abs().amax(dim=1)


__all__ = ["pgd_attack", "fgsm_attack", "linf_distance", "unwrap_model", "BN_MODES"]
