"""Row-wise optimisers for per-sample tables: a step touches only the rows of the batch.

AutoDO's hyper optimiser is RMSprop (papers/autodo.txt App. A, lr 0.05; the reference code runs
``torch.optim.RMSprop`` on the dense tables, where every row but the batch's has a zero gradient).  Dense
RMSprop decays every element's square average by alpha at every step, but moves a parameter only where the
gradient is nonzero.  :class:`RowRMSprop` gives exactly that result while touching only the batch's rows: each
row remembers the step its square average was last brought up to date, and when the row is next stepped, at
step t after step s, its average is decayed by ``alpha^(t - s)`` before the new ``(1 - alpha) g^2`` is added.
So a hyper step costs O(batch) rather than O(dataset) (for ImageNet: 1.3e9 table entries), and needs no
dense gradient buffer.  :class:`RowSGD` is plain ``p -= lr g`` on the rows.

State (``state_dict``: plain tensors and numbers, safe for ``torch.load(weights_only=True)``): the step
count, and per table the square averages and each row's last step.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def coalesce(rows: Tensor, grads: Tensor) -> tuple[Tensor, Tensor]:
    """Unique rows (sorted) with the gradients of repeated rows summed, as a dense gradient would hold them."""
    unique, inverse = torch.unique(rows, return_inverse=True)
    if len(unique) == len(rows):
        order = torch.argsort(rows)
        return rows[order], grads[order]
    return unique, grads.new_zeros(len(unique), grads.shape[1]).index_add_(0, inverse, grads)


class RowSGD:
    """``p[rows] -= lr * g`` for each stepped table."""

    def __init__(self, params: list[nn.Parameter], lr: float):
        self.params, self.lr, self.steps = list(params), float(lr), 0

    def _position(self, param: nn.Parameter) -> int:
        for i, p in enumerate(self.params):
            if p is param:
                return i
        raise ValueError("the optimiser does not hold this parameter")

    @torch.no_grad()
    def step(self, updates: list[tuple[nn.Parameter, Tensor, Tensor]]) -> None:
        """One step: ``updates`` lists ``(table parameter, rows, gradient rows)``."""
        self.steps += 1
        for param, rows, grads in updates:
            rows, grads = coalesce(rows.to(param.device), grads.to(param.device, param.dtype))
            self._update(self._position(param), param, rows, grads)

    def _update(self, i: int, param: nn.Parameter, rows: Tensor, grads: Tensor) -> None:  # noqa: ARG002
        param[rows] -= self.lr * grads

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])


class RowRMSprop(RowSGD):
    """RMSprop with torch.optim.RMSprop's rule (no momentum, not centred, no weight decay), row-wise:
    ``v = alpha^(t - s) v + (1 - alpha) g^2``, ``p -= lr g / (sqrt(v) + eps)`` on the stepped rows."""

    def __init__(self, params: list[nn.Parameter], lr: float, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(params, lr)
        self.alpha, self.eps = float(alpha), float(eps)
        self.square_avg = [torch.zeros_like(p, memory_format=torch.contiguous_format) for p in self.params]
        self.last = [torch.zeros(p.shape[0], dtype=torch.int64, device=p.device) for p in self.params]

    def _update(self, i: int, param: nn.Parameter, rows: Tensor, grads: Tensor) -> None:
        decay = torch.pow(torch.tensor(self.alpha, dtype=torch.float64, device=rows.device),
                          (self.steps - self.last[i][rows]).to(torch.float64)).to(grads.dtype)
        average = decay[:, None] * self.square_avg[i][rows] + (1 - self.alpha) * grads * grads
        self.square_avg[i][rows] = average
        self.last[i][rows] = self.steps
        param[rows] -= self.lr * grads / (average.sqrt() + self.eps)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "square_avg": list(self.square_avg), "last": list(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        if len(state["square_avg"]) != len(self.params):
            raise ValueError(f"optimiser state has {len(state['square_avg'])} tables, expected {len(self.params)}")
        for mine, saved in zip(self.square_avg + self.last, state["square_avg"] + state["last"]):
            if mine.shape != saved.shape:
                raise ValueError(f"optimiser state of shape {tuple(saved.shape)} does not fit {tuple(mine.shape)}")
            mine.copy_(saved)


OPTIMIZERS = {"rmsprop": RowRMSprop, "sgd": RowSGD}
