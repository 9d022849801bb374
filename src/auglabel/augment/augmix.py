"""AugMix as a batch augmentation, with or without the JSD consistency loss (METHODS.md sec. 2).

With ``jsd=True`` the returned batch holds three views view-major, ``[clean, aug1, aug2]``
(``num_views=3``, rows ``v*B .. (v+1)*B - 1`` are view v), so the model sees them in one
forward pass, and :meth:`AugMix.extra_loss` adds ``jsd_weight * JS(p_clean, p_aug1, p_aug2)``.
Loss weights (``batch.weights``; the label strategy's ``weighted_mean`` divides by all 3B rows):

* ``augmented_targets=False`` (the paper): 3 on clean rows, 0 on augmented rows, so the label
  loss is exactly the mean cross-entropy of the clean view: ``CE(clean) + 12 * JS``.
* ``augmented_targets=True``: 1 on every row, the mean label loss over all three views; this is
  AugMix-with-JSD + AutoLabel, where the augmented views are trained towards AutoLabel targets.

Per-row ``info`` holds the AugMix facts of :func:`auglabel.functional.augmix.augmix` plus ``view``;
clean rows get neutral values (ops -1, depths 0, chain weights 0, clean weight 1, distance 0).
With ``jsd=False`` the batch is replaced by one augmented view and there is no extra loss.

For AutoLabel (METHODS.md sec. 5) AugMix reports ``distance = 1 - m`` (m = clean weight) and, when
the depth is drawn per chain, ``group = depth - 1`` (``bucket_groups = 3``), giving the paper's
(depth, ceil(m N)) bucket grid with the distance axis mirrored so it grows away from the clean image;
:meth:`AugMix.apply_at_distance` builds the validation sets at a given depth and distance.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..batch import Batch
from ..errors import ConfigError
from ..functional.augmix import RANDOM_DEPTH_MAX, augmix, check_augmix_params
from ..functional.jsd import jensen_shannon
from .base import AUGMENTATIONS, Augmentation, checked_distance
from .info_keys import declared

NUM_JSD_VIEWS = 3


def _neutral_info(n: int, width: int, max_depth: int, like: Tensor) -> dict[str, Tensor]:
    """AugMix facts of an untouched image: no ops, clean weight 1, distance 0."""
    device, dtype = like.device, like.dtype
    longs = dict(dtype=torch.long, device=device)
    floats = dict(dtype=dtype, device=device)
    return {
        "ops": torch.full((n, width, max_depth), -1, **longs),
        "levels": torch.zeros(n, width, max_depth, **floats),
        "signs": torch.zeros(n, width, max_depth, **longs),
        "depths": torch.zeros(n, width, **longs),
        "chain_weights": torch.zeros(n, width, **floats),
        "skip_weight": torch.ones(n, **floats),
        "mix_weight": torch.ones(n, **floats),
        "depth": torch.zeros(n, **longs),
        "distance": torch.zeros(n, **floats),
    }


def _repeat_rows(value: Tensor, times: int) -> Tensor:
    return value.repeat(times, *([1] * (value.dim() - 1)))


@AUGMENTATIONS.register("augmix")
class AugMix(Augmentation):
    """AugMix (Hendrycks et al. 2020), batched and seeded, reporting every draw per sample.

    Args:
        severity: level range U(0.1, severity) of every op, in [1, 10].
        width: number of mixed chains (1 for AutoLabel's single-chain setting).
        depth: ops per chain, -1 for uniform in 1..3 per chain.
        alpha: Dirichlet concentration of the chain weights (and of the Beta skip weight).
        jsd: produce (clean, aug1, aug2) views and the Jensen-Shannon consistency loss.
        jsd_weight: factor of the JS loss (12 in the paper).
        mix: "beta": clean weight m ~ Beta(alpha, alpha) (paper); "uniform": m ~ U(0, 1) (AutoLabel).
        augmented_targets: with jsd, also give augmented views label-loss weight (see module doc).
    """

    reports_distance = True
    reports = declared("ops", "levels", "signs", "depths", "chain_weights", "skip_weight", "mix_weight", "depth",
                       "distance", "group", "view")

    def reported_keys(self) -> frozenset[str]:
        return self.reports if self.jsd else self.reports - {"view"}

    @property
    def num_views(self) -> int:
        return NUM_JSD_VIEWS if self.jsd else 1

    def __init__(self, severity: float = 3, width: int = 3, depth: int = -1, alpha: float = 1.0,
                 jsd: bool = True, jsd_weight: float = 12.0, mix: str = "beta",
                 augmented_targets: bool = False):
        super().__init__()
        check_augmix_params(severity, width, depth, alpha, mix)
        if not jsd_weight >= 0:
            raise ConfigError(f"augmix: jsd_weight must be >= 0, got {jsd_weight}")
        if augmented_targets and not jsd:
            raise ConfigError("augmix: augmented_targets only applies with jsd=true")
        self.severity, self.width, self.depth, self.alpha = severity, width, depth, alpha
        self.jsd, self.jsd_weight, self.mix = jsd, jsd_weight, mix
        self.augmented_targets = augmented_targets

    @property
    def bucket_groups(self) -> int:
        """Depth buckets for AutoLabel: one per possible depth when it is drawn, else one."""
        return RANDOM_DEPTH_MAX if self.depth == -1 else 1

    def _augment(self, images: Tensor, generator: torch.Generator, **fixed: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        mixed, info = augmix(images, generator, severity=self.severity, width=self.width, depth=self.depth,
                             alpha=self.alpha, mix=self.mix, **fixed)
        info["group"] = info["depth"] - 1 if self.depth == -1 else torch.zeros_like(info["depth"])
        return mixed, info

    def apply_at_distance(self, batch: Batch, distance: Tensor, *, generator: torch.Generator,
                          model: nn.Module | None = None, group: Tensor | None = None) -> Batch:
        """One augmented view with clean weight ``1 - distance`` and (random depth) every chain of
        depth ``group + 1``; labels unchanged."""
        fixed = {"clean_weight": 1.0 - checked_distance(distance, batch, "augmix")}
        if self.depth == -1 and group is not None:
            fixed["depths"] = (group.long() + 1).unsqueeze(1).expand(-1, self.width)
        mixed, info = self._augment(batch.inputs, generator, **fixed)
        return batch.replace(inputs=mixed, info=info)

    def forward(self, batch: Batch, *, generator: torch.Generator, model: nn.Module | None = None) -> Batch:
        x = batch.inputs  # augmix() checks it: float, (N, C, H, W), values in [0, 1]
        if not self.jsd:
            mixed, info = self._augment(x, generator)
            return batch.replace(inputs=mixed, info=info)
        b = x.shape[0]
        # Both augmented views in one call: larger per-op sub-batches.
        mixed, info = self._augment(torch.cat([x, x]), generator)
        max_depth = RANDOM_DEPTH_MAX if self.depth == -1 else self.depth
        clean = _neutral_info(b, self.width, max_depth, x)
        clean["group"] = torch.zeros(b, dtype=torch.long, device=x.device)
        views = torch.arange(NUM_JSD_VIEWS, device=x.device).repeat_interleave(b)
        merged = {key: _repeat_rows(value, NUM_JSD_VIEWS) for key, value in batch.info.items()}
        merged.update({key: torch.cat([clean[key], info[key]]) for key in info})
        merged["view"] = views
        if self.augmented_targets:
            view_weight = torch.ones(NUM_JSD_VIEWS * b, dtype=x.dtype, device=x.device)
        else:
            view_weight = torch.where(views == 0, float(NUM_JSD_VIEWS), 0.0).to(x.dtype)
        weights = view_weight if batch.weights is None else view_weight * _repeat_rows(batch.weights, NUM_JSD_VIEWS)
        return Batch(
            inputs=torch.cat([x, mixed]),
            labels=_repeat_rows(batch.labels, NUM_JSD_VIEWS),
            index=_repeat_rows(batch.index, NUM_JSD_VIEWS),
            num_classes=batch.num_classes,
            info=merged,
            weights=weights,
            num_views=NUM_JSD_VIEWS,
        )

    def extra_loss(self, logits: Tensor, batch: Batch) -> Tensor | None:
        """``jsd_weight * JS(p_clean, p_aug1, p_aug2)`` over the three views; None without jsd."""
        if not self.jsd:
            return None
        if batch.num_views != NUM_JSD_VIEWS or logits.shape[0] % NUM_JSD_VIEWS:
            raise ValueError(
                f"augmix jsd loss needs a 3-view batch from AugMix.forward, got num_views={batch.num_views}"
                f" and {logits.shape[0]} logit rows"
            )
        clean, aug1, aug2 = logits.chunk(NUM_JSD_VIEWS, dim=0)
        return self.jsd_weight * jensen_shannon(clean, aug1, aug2)
