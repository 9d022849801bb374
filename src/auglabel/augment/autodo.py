"""AutoDO's augmentation sub-model g_A(x, lambda_A) (papers/autodo.txt sec. 4.1, eq. 8; METHODS.md sec. 7).

For each training point i and each of A geometric ops (default: rotate +-30 deg, translate +-0.45, shear +-0.3,
scale 1 +- 0.5; :mod:`auglabel.functional.warp` has the list and conventions), two learned hyperparameters:

* the apply probability ``sigmoid(lambda_b)``: a Bernoulli draw ``b`` relaxed by the two-class Gumbel-softmax
  (hard 0/1 forward, relaxed gradient; :func:`~auglabel.functional.warp.relaxed_bernoulli`), 25 % at init;
* the magnitude scale ``sigmoid(lambda_m)`` (0.5 at init: lambda_m = 0, "the middle of the available range"):
  the op's parameter is ``range * b * clip(sigmoid(lambda_m) * n, -1, 1)`` with ``n ~ N(0, 1)`` (one draw per
  parameter column: translate and shear have two).  Decision: the clip keeps every op inside its stated range
  (the reference code leaves the Gaussian unbounded, so a scale factor ``1 + 0.5 m`` can reach 0 or below).

The ops compose (op 1 first) into one affine matrix per sample and every image is resampled once, batched on
the batch's device (``affine_grid`` + ``grid_sample``, bilinear, zero padding by default).  ``shared: true``
keeps one row of hyperparameters for all samples (the paper's lambda_A^SHA ablation).  The tables are learned
by the hyper step of ``labels: autodo``, which must be the run's label strategy.

Reported per sample: ``autodo_applied`` (B, A) bool and ``autodo_params`` (B, P) the ops' parameters.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..autodo.tables import HyperLeaf, PerSampleTable
from ..batch import Batch
from ..errors import ConfigError
from ..functional.warp import OPS, compose, relaxed_bernoulli, warp
from .base import AUGMENTATIONS, Augmentation
from .info_keys import declared

if TYPE_CHECKING:
    from ..engine.step import ComponentSpec

DEFAULT_OPS = ("rotate", "translate", "shear", "scale")
PADDING = ("zeros", "border", "reflection")


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _fraction(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(f"autodo augmentation: {what} must be a number in (0, 1), got {value!r}")
    return float(value)


@AUGMENTATIONS.register("autodo")
class AutoDOAugment(Augmentation):
    """Per-sample learned geometric augmentation (see the module docstring).

    Args:
        ops: op names, applied in this order (:data:`auglabel.functional.warp.OPS`).
        shared: one set of hyperparameters for every sample (lambda_A^SHA) instead of one per sample.
        prob_init: initial apply probability of every op (0.25).
        magnitude_init: initial magnitude scale ``sigmoid(lambda_m)`` (0.5).
        temperature: the Gumbel-softmax temperature (1, as the reference code).
        padding_mode: grid_sample's: zeros, border (the reference code's) or reflection.
        align_corners: grid_sample's (False, PyTorch's default: the image spans the border pixels' edges).
    """

    reports = declared("autodo_applied", "autodo_params")

    def __init__(self, ops: list[str] | tuple[str, ...] = DEFAULT_OPS, shared: bool = False, prob_init: float = 0.25,
                 magnitude_init: float = 0.5, temperature: float = 1.0, padding_mode: str = "zeros",
                 align_corners: bool = False):
        super().__init__()
        if isinstance(ops, str) or not ops or any(op not in OPS for op in ops):
            raise ConfigError(f"autodo augmentation: ops must be a non-empty list of {', '.join(OPS)}; got {ops!r}")
        if len(set(ops)) != len(ops):
            raise ConfigError(f"autodo augmentation: ops lists an op twice: {list(ops)}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ConfigError(f"autodo augmentation: temperature must be a number > 0, got {temperature!r}")
        if padding_mode not in PADDING:
            raise ConfigError(f"autodo augmentation: padding_mode must be one of {', '.join(PADDING)}, "
                              f"got {padding_mode!r}")
        for name, value in (("shared", shared), ("align_corners", align_corners)):
            if not isinstance(value, bool):
                raise ConfigError(f"autodo augmentation: {name} must be true or false, got {value!r}")
        self.ops = tuple(ops)
        self.shared, self.temperature = shared, float(temperature)
        self.prob_init, self.magnitude_init = _fraction(prob_init, "prob_init"), _fraction(magnitude_init, "magnitude_init")
        self.padding_mode, self.align_corners = padding_mode, align_corners
        columns = [(a, OPS[op][1]) for a, op in enumerate(self.ops) for _ in OPS[op][0]]
        self.register_buffer("column_op", torch.tensor([a for a, _ in columns]), persistent=False)
        self.register_buffer("column_range", torch.tensor([r for _, r in columns]), persistent=False)
        self.probability: PerSampleTable | None = None
        self.magnitude: PerSampleTable | None = None

    def setup(self, spec: "ComponentSpec") -> None:
        a = len(self.ops)
        self.probability = PerSampleTable(spec.dataset_size, a, _logit(self.prob_init), shared=self.shared,
                                          device=spec.device)
        self.magnitude = PerSampleTable(spec.dataset_size, a, _logit(self.magnitude_init), shared=self.shared,
                                        device=spec.device)

    def hyper_parameters(self) -> list[nn.Parameter]:
        return [t.values for t in (self.probability, self.magnitude) if t is not None]

    def _tables(self) -> tuple[PerSampleTable, PerSampleTable]:
        if self.probability is None or self.magnitude is None:
            raise RuntimeError("autodo augmentation: setup(spec) was not called (build_step calls it)")
        return self.probability, self.magnitude

    def op_parameters(self, prob_logits: Tensor, magnitude_logits: Tensor,
                      generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(applied (B, A), params (B, P))`` drawn for rows of lambda_b and lambda_m (differentiable)."""
        applied = relaxed_bernoulli(prob_logits, generator, temperature=self.temperature)
        noise = torch.randn((prob_logits.shape[0], len(self.column_op)), generator=generator,
                            device=prob_logits.device, dtype=prob_logits.dtype)
        scale = torch.sigmoid(magnitude_logits)[:, self.column_op]
        magnitude = (scale * noise).clamp(-1.0, 1.0)
        return applied, self.column_range * applied[:, self.column_op] * magnitude

    def transform(self, batch: Batch, prob_logits: Tensor, magnitude_logits: Tensor,
                  generator: torch.Generator) -> Batch:
        """Warp every image of ``batch`` by ops drawn from these hyperparameter rows (each (B, A))."""
        x = batch.inputs
        applied, params = self.op_parameters(prob_logits.to(x.dtype), magnitude_logits.to(x.dtype), generator)
        matrices = compose(self.ops, params, x.shape[-2], x.shape[-1])
        warped = warp(x, matrices, align_corners=self.align_corners, padding_mode=self.padding_mode)
        return batch.replace(inputs=warped, info={"autodo_applied": applied.detach() > 0.5,
                                                  "autodo_params": params.detach()})

    def forward(self, batch: Batch, *, generator: torch.Generator, model: nn.Module | None = None) -> Batch:
        probability, magnitude = self._tables()
        with torch.no_grad():
            return self.transform(batch, probability.lookup(batch.index), magnitude.lookup(batch.index), generator)

    def hyper_forward(self, batch: Batch, *, generator: torch.Generator,
                      model: nn.Module | None = None) -> tuple[Batch, list[HyperLeaf]]:
        probability, magnitude = self._tables()
        leaves = [probability.leaf(batch.index), magnitude.leaf(batch.index)]
        return self.transform(batch, leaves[0].rows(), leaves[1].rows(), generator), leaves

    def extra_repr(self) -> str:
        return f"ops={list(self.ops)}, shared={self.shared}, prob_init={self.prob_init}"
