"""Hypergradients by implicit differentiation (Lorraine, Vicol & Duvenaud, AISTATS 2020; the AutoDO paper
sec. 3.2, eq. 3-5 and Alg. 1 lines 12-19).

At a minimum ``theta*(lambda)`` of the training loss L, the implicit function theorem gives eq. 5:

    dLv/dlambda = - dLv/dtheta  [d2L / dtheta dtheta^T]^-1  d2L / dtheta dlambda^T

(the direct term dLv/dlambda is 0: the validation loss does not depend on lambda).  The inverse
Hessian-vector product ``p = H^-1 v`` (v = dLv/dtheta) is approximated by the truncated Neumann series
``p = alpha * sum_{j=0..T} (I - alpha H)^j v`` (Lorraine et al., Alg. 3), which converges to ``H^-1 v``
when every eigenvalue of ``alpha H`` lies in (0, 2); then the hypergradient is minus the mixed second
derivative applied to p: ``- d/dlambda (dL/dtheta . p)``, one more backward pass.  T = 0 is the
identity-Hessian (DARTS-like, sec. 3.3) estimate ``- alpha d/dlambda (dL/dtheta . v)``.

Every function works on lists of tensors (one per parameter), any shapes; ``reduce`` (optional) maps a
list of local tensors to their mean over processes, so under DDP the Hessian-vector products are those of
the global batch (``autograd.grad`` results are not synchronised by DDP).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

Reduce = Callable[[list[Tensor]], list[Tensor]]


def _dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def neumann_inverse_hvp(grads: Sequence[Tensor], params: Sequence[Tensor], vector: Sequence[Tensor], *,
                        steps: int = 5, alpha: float = 0.01,
                        reduce: Reduce | None = None) -> tuple[list[Tensor], Tensor]:
    """``p ~ H^-1 v`` with ``H = d grads / d params``, by ``alpha * sum_{j=0..steps} (I - alpha H)^j v``.

    Args:
        grads: ``dL/dparams`` computed with ``create_graph=True`` (its graph is kept).
        params: the parameters theta.
        vector: v, one tensor per parameter.
        steps: T, the number of Hessian-vector products.
        alpha: the series' step; needs ``0 < alpha * lambda_max(H) < 2``.
        reduce: mean over processes of each Hessian-vector product (DDP), or None.

    Returns ``(p, growth)``: p detached, and the 0-d tensor ``|(I - alpha H)^T v| / |v|`` (below 1 when the
    series contracts; above 1 when alpha is too large for this Hessian, or the Hessian has negative
    eigenvalues, which the symmetric KL's reverse term can give).
    """
    current = [v.detach().clone() for v in vector]
    total = [v.clone() for v in current]
    for _ in range(steps):
        hvp = torch.autograd.grad(grads, params, grad_outputs=current, retain_graph=True, allow_unused=True)
        hvp = [torch.zeros_like(c) if h is None else h.detach() for h, c in zip(hvp, current)]
        if reduce is not None:
            hvp = reduce(hvp)
        current = [c - alpha * h for c, h in zip(current, hvp)]
        total = [t + c for t, c in zip(total, current)]
    growth = _dot(current, current).sqrt() / _dot(vector, vector).sqrt().clamp(min=1e-30)
    return [alpha * t for t in total], growth.detach()


def implicit_hypergradient(train_loss: Tensor, params: Sequence[Tensor], val_grad: Sequence[Tensor],
                           hyper: Sequence[Tensor], *, steps: int = 5, alpha: float = 0.01,
                           reduce: Reduce | None = None) -> tuple[list[Tensor | None], Tensor]:
    """``dLv/dlambda`` of eq. 5 for the hyperparameters ``hyper`` (leaves the training loss depends on).

    Args:
        train_loss: scalar L(lambda, theta) with its graph to ``params`` and ``hyper``.
        params: theta (AutoDO: the last layer).
        val_grad: ``dLv/dtheta``, one tensor per parameter (already reduced over processes under DDP).
        hyper: the hyperparameter leaves.
        steps, alpha, reduce: see :func:`neumann_inverse_hvp`.

    Returns ``(hypergradients, growth)``: one tensor per ``hyper`` entry (None where L does not depend on
    it); under DDP each rank's are the local term of the global mean (divide by the world size and sum).
    """
    grads = torch.autograd.grad(train_loss, params, create_graph=True)
    inverse, growth = neumann_inverse_hvp(grads, params, val_grad, steps=steps, alpha=alpha, reduce=reduce)
    mixed = torch.autograd.grad(grads, list(hyper), grad_outputs=[-p for p in inverse], allow_unused=True)
    return list(mixed), growth
