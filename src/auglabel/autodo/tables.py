"""Per-sample hyperparameter tables (AutoDO paper sec. 4: ``Lambda in R^{K x N}``, one column per training point).

A :class:`PerSampleTable` holds one row of ``width`` hyperparameters per dataset index (``batch.index``), or a
single row for every sample in the shared mode (the paper's lambda_A^SHA ablation).  The values are an
``nn.Parameter`` with ``requires_grad=False``: checkpoints and device moves carry them, while the training
step's backward, the run's SGD and DDP's gradient sync leave them alone (they are outer-loop parameters,
:meth:`auglabel.engine.step.TrainingStep.hyper_parameters`).  The hyper step differentiates through
:meth:`PerSampleTable.leaf` rows instead and steps the rows :meth:`PerSampleTable.gathered_grad` returns.

Memory: ``N x width`` float32 values, plus the same again for RMSprop's square average (the row-wise
optimiser of :mod:`auglabel.autodo.optim` needs no dense gradient buffer, only one int64 step per row and
table).  AutoDO with A ops (2 hyperparameters each: apply probability and magnitude), 1 loss weight and K
soft-label logits stores ``2A + 1 + K`` floats a sample: for ImageNet (N = 1,281,167, A = 4, K = 1000) that
is 1009 x 4 B x N = 5.17 GB (4.82 GiB) of tables, 10.4 GB with the optimiser state; for the test bed
(N = 60,000 indices, K = 10) 19 floats a sample, 4.6 MB (9.6 MB with the optimiser state).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .. import distributed


@dataclass
class HyperLeaf:
    """Rows of a table gathered for one batch, as a leaf tensor that requires grad.

    Attributes:
        table: the table the rows belong to.
        index: dataset index of each batch row, (B,).
        value: the leaf: (B, width) per-sample, (1, width) shared.
    """

    table: "PerSampleTable"
    index: Tensor
    value: Tensor

    def rows(self) -> Tensor:
        """(B, width): the leaf, broadcast over the batch in the shared mode."""
        return self.value.expand(len(self.index), -1) if self.table.shared else self.value


class PerSampleTable(nn.Module):
    """``rows x width`` hyperparameters; ``rows`` is the dataset size, or 1 when ``shared``.

    Args:
        rows: number of dataset indices (``ComponentSpec.dataset_size``).
        width: hyperparameters per sample.
        init: initial values, broadcastable to (rows, width) (one row per index, or one for all).
        shared: one row for every sample.
    """

    def __init__(self, rows: int, width: int, init: Tensor | float, *, shared: bool = False,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.shared = bool(shared)
        n = 1 if self.shared else int(rows)
        start = torch.as_tensor(init, dtype=torch.float32, device=device)
        if self.shared and start.dim() == 2 and start.shape[0] > 1:
            start = start[:1]
        self.values = nn.Parameter(start.expand(n, width).clone(), requires_grad=False)

    @property
    def width(self) -> int:
        return self.values.shape[1]

    def lookup(self, index: Tensor) -> Tensor:
        """(B, width) rows of ``index`` (detached: the training step does not differentiate them)."""
        values = self.values.detach()
        return values.expand(len(index), -1) if self.shared else values[index]

    def leaf(self, index: Tensor) -> HyperLeaf:
        """The rows of ``index`` as a fresh leaf that requires grad."""
        values = self.values.detach()
        value = (values.clone() if self.shared else values[index]).requires_grad_(True)
        return HyperLeaf(self, index, value)

    def gathered_grad(self, leaf: HyperLeaf, grad: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(rows, grads)``: the table rows ``leaf`` covers and the loss gradient of each, (R,) and (R, width),
        for a row-wise optimiser step (:mod:`auglabel.autodo.optim`).

        Under DDP the global objective is the mean of the ranks' losses, so every rank's leaf gradient is
        divided by the world size and the rows of every rank are exchanged (all-reduced by hand: the gradient
        of ``autograd.grad`` is not synchronised by DDP), so all ranks step the same rows by the same
        gradients and their tables stay identical.  Needs equal batch sizes on every rank (the training loader's).
        """
        grad = torch.zeros_like(leaf.value) if grad is None else grad.detach()
        grad = grad.to(self.values.dtype)
        index = leaf.index.to(self.values.device)
        if distributed.is_distributed():
            world, rank = dist.get_world_size(), dist.get_rank()
            grad = grad / world
            if self.shared:
                grad = distributed.all_reduce_sum(grad)
            else:
                b = len(index)
                grads = grad.new_zeros(world * b, grad.shape[1])
                indices = index.new_zeros(world * b)
                grads[rank * b:(rank + 1) * b] = grad
                indices[rank * b:(rank + 1) * b] = index
                grad, index = distributed.all_reduce_sum(grads), distributed.all_reduce_sum(indices)
        if self.shared:
            return torch.zeros(1, dtype=torch.int64, device=grad.device), grad.sum(0, keepdim=True)
        return index, grad

    def extra_repr(self) -> str:
        return f"rows={self.values.shape[0]}, width={self.width}, shared={self.shared}"
