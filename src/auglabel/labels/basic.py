"""The simple label strategies: one-hot, uniform label smoothing, confidence penalty."""
from __future__ import annotations

from torch import Tensor

from ..batch import Batch
from ..errors import ConfigError
from ..losses import entropy, soft_cross_entropy, weighted_mean
from .base import LABEL_STRATEGIES, LabelStrategy


def uniform_smoothing(one_hot: Tensor, eps: float) -> Tensor:
    """ULS-eps targets ``(1 - eps) * y + eps / K`` (mixup-calibration paper, sec. 3)."""
    return one_hot * (1.0 - eps) + eps / one_hot.shape[1]


@LABEL_STRATEGIES.register("onehot")
class OneHot(LabelStrategy):
    """The clean image's one-hot label for every sample."""

    def targets(self, logits: Tensor, batch: Batch) -> Tensor:
        return batch.one_hot()


@LABEL_STRATEGIES.register("uniform")
class UniformSmoothing(LabelStrategy):
    """Uniform label smoothing: ``(1 - eps) * y + eps / K``.

    Args:
        eps: smoothing mass in [0, 1).
    """

    def __init__(self, eps: float = 0.1):
        super().__init__()
        if not 0.0 <= eps < 1.0:
            raise ConfigError(f"uniform label smoothing: eps must be in [0, 1), got {eps}")
        self.eps = eps

    def targets(self, logits: Tensor, batch: Batch) -> Tensor:
        return uniform_smoothing(batch.one_hot(), self.eps)


@LABEL_STRATEGIES.register("confidence_penalty")
class ConfidencePenalty(LabelStrategy):
    """Confidence penalty / entropy regularisation (Pereyra et al. 2017): ``CE - beta * H(p)``.

    Args:
        beta: weight of the entropy bonus, >= 0.
    """

    def __init__(self, beta: float = 0.1):
        super().__init__()
        if beta < 0:
            raise ConfigError(f"confidence penalty: beta must be >= 0, got {beta}")
        self.beta = beta

    def targets(self, logits: Tensor, batch: Batch) -> Tensor:
        return batch.one_hot()

    def loss(self, logits: Tensor, batch: Batch, features: Tensor | None = None) -> Tensor:
        per_sample = soft_cross_entropy(logits, batch.one_hot()) - self.beta * entropy(logits)
        return weighted_mean(per_sample, batch.weights)
