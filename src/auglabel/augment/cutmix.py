"""CutMix augmentation (Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong
Classifiers with Localizable Features", sec. 3.1).

Each sample gets its own box, whose area ratio is drawn from Beta(beta, beta), filled with the
same region of a partner image.  The reported ``gamma`` is the fraction of the own image that
survives *after* clipping the box to the image, so the ``"mixup"`` label strategy
(``gamma * y_i + (1 - gamma) * y_partner``) gives CutMix's area-proportional labels.
:meth:`CutMix.apply_at_distance` pastes boxes of a requested area for AutoLabel's validation
sets (METHODS.md sec. 5).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..batch import Batch
from ..errors import ConfigError
from ..functional.mixup import box_masks, cutmix_boxes, cutmix_images, kept_fraction, random_partners, sample_beta
from .base import AUGMENTATIONS, Augmentation, checked_distance
from .info_keys import declared
from .mixup import mixing_info

Boxes = tuple[Tensor, Tensor, Tensor, Tensor]


def box_sides_for_area(area_fraction: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Integer box sides ``(h, w)``, each (N,) int64, whose area ``h * w`` is the closest possible
    to ``area_fraction * H * W`` pixels; among equally close boxes, the one whose shape is nearest
    the image's (``|h / H - w / W|`` smallest), as CutMix's boxes keep the image's aspect ratio.
    A zero area gives ``h = w = 0``.

    For each height h the best width is ``floor`` or ``ceil`` of ``target / h`` (clipped to W), so
    the 2H candidates per sample contain the optimum over all H * W boxes.
    """
    device = area_fraction.device
    target = area_fraction.double() * (height * width)  # (N,)
    heights = torch.arange(1, height + 1, device=device, dtype=torch.float64)  # (H,)
    below = torch.floor(target[:, None] / heights).clamp(0, width)  # (N, H)
    widths = torch.stack([below, (below + 1).clamp(max=width)], dim=2)  # (N, H, 2)
    heights = heights[None, :, None].expand_as(widths)
    error = (heights * widths - target[:, None, None]).abs().flatten(1)
    shape_gap = (heights / height - widths / width).abs().flatten(1)
    closest = error <= error.amin(dim=1, keepdim=True) + 1e-9  # float64 pixel counts: exact up to rounding
    choice = shape_gap.masked_fill(~closest, math.inf).argmin(dim=1, keepdim=True)
    h = heights.flatten(1).gather(1, choice).squeeze(1).long()
    w = widths.flatten(1).gather(1, choice).squeeze(1).long()
    empty = (h * w) == 0
    return h.masked_fill(empty, 0), w.masked_fill(empty, 0)


def boxes_with_area(area_fraction: Tensor, height: int, width: int, *, generator: torch.Generator) -> Boxes:
    """Boxes ``(top, bottom, left, right)`` (bottom/right exclusive) of the area closest to
    ``area_fraction`` of the image (:func:`box_sides_for_area`), placed uniformly at random
    entirely inside the image, so no clipping changes the area."""
    h, w = box_sides_for_area(area_fraction, height, width)
    n, device = area_fraction.shape[0], area_fraction.device
    u_top = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    u_left = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    top = torch.minimum(torch.floor(u_top * (height - h + 1)).long(), height - h)
    left = torch.minimum(torch.floor(u_left * (width - w + 1)).long(), width - w)
    return top, top + h, left, left + w


@AUGMENTATIONS.register("cutmix")
class CutMix(Augmentation):
    """Paste a per-sample random box of a partner image.

    Reports per sample: ``gamma`` (own-image area fraction, exact), ``partner`` (row index,
    a different row whenever the batch has >= 2 samples), ``partner_label``, the box as
    ``box`` (N, 4) int64 ``(top, bottom, left, right)``, bottom/right exclusive, and
    ``distance = 1 - gamma``: the pasted-area fraction, in [0, 1].  (Unlike mixup's
    ``2 * min(gamma, 1 - gamma)``, a fully pasted image is maximally far from the clean one.)

    Args:
        beta: concentration of the symmetric Beta distribution of the box area, > 0.
    """

    reports_distance = True
    reports = declared("gamma", "partner", "partner_label", "box", "distance")

    def __init__(self, beta: float = 1.0):
        super().__init__()
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
            raise ConfigError(f"cutmix: beta must be a finite number > 0, got {beta!r}")
        self.beta = float(beta)

    def forward(self, batch: Batch, *, generator: torch.Generator, model: nn.Module | None = None) -> Batch:
        _, _, height, width = batch.inputs.shape
        area_gamma = sample_beta(self.beta, self.beta, len(batch), generator=generator, device=batch.device)
        return self._paste(batch, cutmix_boxes(area_gamma, height, width, generator=generator), generator)

    def apply_at_distance(self, batch: Batch, distance: Tensor, *, generator: torch.Generator,
                          model: nn.Module | None = None, group: Tensor | None = None) -> Batch:
        """CutMix with a pasted-area fraction as close to ``distance`` as integer boxes
        allow, for AutoLabel's Q(S_n) (METHODS.md sec. 5).

        ``info["distance"]`` is the ACHIEVED pasted fraction (``gamma = 1 - distance``): it misses
        the request by the fewest pixels possible, at most half the box's longer side (checked
        exhaustively for images up to 19 x 19).  The returned ``labels`` are the dominant image's
        class: the partner's when more than half is pasted, else the own one
        (``info["own_label"]`` keeps the clean label).
        """
        distance = checked_distance(distance, batch, "cutmix")
        _, _, height, width = batch.inputs.shape
        pasted = self._paste(batch, boxes_with_area(distance, height, width, generator=generator), generator)
        info = pasted.info
        labels = torch.where(info["distance"] > 0.5, info["partner_label"], batch.labels)
        return pasted.replace(labels=labels, info={"own_label": batch.labels})

    def _paste(self, batch: Batch, boxes: Boxes, generator: torch.Generator) -> Batch:
        """Fill each box with a random partner's pixels; report the exact kept fraction as gamma."""
        x = batch.inputs
        _, _, height, width = x.shape
        partner = random_partners(len(batch), generator=generator, device=x.device)
        mixed = cutmix_images(x, partner, box_masks(boxes, height, width))
        gamma = kept_fraction(boxes, height, width).to(x.dtype)
        info = mixing_info(batch, partner, gamma, 1.0 - gamma)
        info["box"] = torch.stack(boxes, dim=1)
        return batch.replace(inputs=mixed, info=info)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"
