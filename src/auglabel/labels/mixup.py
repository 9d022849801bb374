"""Label strategies for mixed images: full mixup and the feature-only ablation.

METHODS.md sec. 3; mixup-calibration.txt sec. 2 (mixup targets) and sec. 5 (feature-only
mixup: "the resulting image assumes the hard label of the nearer class").  Both read the
``gamma`` and ``partner_label`` that the ``"mixup"`` and ``"cutmix"`` augmentations report.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..batch import Batch
from ..functional.mixup import mixup_targets
from .base import LABEL_STRATEGIES, LabelStrategy


@LABEL_STRATEGIES.register("mixup")
class MixupLabels(LabelStrategy):
    """``y = gamma * y_i + (1 - gamma) * y_partner`` (mixup-calibration eq. 2).

    With CutMix's reported gamma (kept area fraction) this is CutMix's label too.
    """

    requires_info = ("gamma", "partner_label")

    def targets(self, logits: Tensor, batch: Batch) -> Tensor:
        self.check_info(batch)
        return mixup_targets(batch.labels, batch.info["partner_label"], batch.info["gamma"],
                             batch.num_classes, dtype=batch.inputs.dtype)


@LABEL_STRATEGIES.register("feature_mixup")
class FeatureMixupLabels(LabelStrategy):
    """Hard one-hot label of the dominant image: own label if ``gamma >= 0.5``, else the partner's.

    A tie (``gamma == 0.5`` exactly, a measure-zero event for mixup) keeps the own label, so
    the choice never depends on which of the two images happens to be the "partner".
    """

    requires_info = ("gamma", "partner_label")

    def targets(self, logits: Tensor, batch: Batch) -> Tensor:
        self.check_info(batch)
        own_dominates = batch.info["gamma"] >= 0.5
        dominant = torch.where(own_dominates, batch.labels, batch.info["partner_label"])
        return torch.nn.functional.one_hot(dominant, batch.num_classes).to(batch.inputs.dtype)
