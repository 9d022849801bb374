"""Out-of-distribution detection from a classifier's logits (METHODS.md sec. 1 and 9).

The baseline detector of Hendrycks & Gimpel (2017), as used in the mixup-calibration paper
(sec. 7, Table 1): score every image by ``c = max_k softmax(z)_k``; in-distribution test images
are the positive class, the OOD set (another dataset, or Gaussian noise with the training set's
per-channel mean and variance) the negative class; report the area under the ROC curve.

Beside it (:data:`OOD_SCORES`, every one oriented so that **higher = more in-distribution**):
``max_logit`` ``max_k z_k`` (Hendrycks et al. 2022), ``energy`` the negative free energy
``-E(x) = T logsumexp(z / T)`` with ``T = 1`` (Liu et al. 2020), ``entropy`` the negative
predictive entropy ``sum_k p_k log p_k``.  Max-softmax is computed in float32 exactly as before
(it saturates at 1 for logit margins beyond ~17; such ties count half); the others in float64.

Metrics (:func:`detection_metrics`), in-distribution = positive throughout: AUROC (exact
Mann-Whitney, ties half), AUPR-in (average precision with the in-distribution set positive),
AUPR-out (OOD positive, scores negated), and FPR at 95% TPR: the fraction of OOD images accepted
by the highest threshold that accepts at least 95% of the in-distribution images (every image
tied at the threshold is accepted, none is split at random; no interpolation).

AUROC is not a sum over samples, so under DDP gather the scores (or run on one process).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import ConfigError, DataError
from ..functional.pgd import unwrap_model
from .adversarial import EvalMode, as_unit_images, model_device, show_progress


def _scores_1d(scores: Tensor | Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    if isinstance(scores, Tensor):
        scores = scores.detach().cpu().double().numpy()
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise DataError(f"OOD: {what} scores must be a non-empty 1-D array, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise DataError(f"OOD: {what} scores contain NaN or infinity")
    return values


def auroc(in_scores: Tensor | Sequence[float], out_scores: Tensor | Sequence[float]) -> float:
    """Exact area under the ROC curve, in-distribution = positive, higher score = more "in".

    Equals the Mann-Whitney statistic ``U / (n_in * n_out)`` with
    ``U = #{(i, o): s_i > s_o} + 1/2 #{(i, o): s_i = s_o}``.  Counted in integers (twice U, by
    binary search in the sorted OOD scores), so the only rounding is the final division.
    """
    inside, outside = _scores_1d(in_scores, "in-distribution"), _scores_1d(out_scores, "OOD")
    outside = np.sort(outside)
    below = np.searchsorted(outside, inside, side="left").astype(np.int64)
    below_or_tied = np.searchsorted(outside, inside, side="right").astype(np.int64)
    twice_u = int(below.sum()) + int(below_or_tied.sum())  # 2 * (below + ties / 2)
    return twice_u / (2 * inside.size * outside.size)


def _positive_first(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives (int64) at every distinct threshold ``t``, highest first: the
    counts of scores ``>= t`` (the whole tie group at ``t`` is accepted together)."""
    thresholds = np.unique(np.concatenate([positive, negative]))[::-1]
    pos, neg = np.sort(positive), np.sort(negative)
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    return tp.astype(np.int64), fp.astype(np.int64)


def average_precision(positive_scores: Tensor | Sequence[float], negative_scores: Tensor | Sequence[float]) -> float:
    """Area under the precision-recall curve of the ``positive_scores`` set, as average precision
    ``sum_t (R_t - R_{t-1}) P_t`` over the distinct thresholds (step-wise, no interpolation;
    scikit-learn's ``average_precision_score``); higher score = more "positive"."""
    positive, negative = _scores_1d(positive_scores, "positive"), _scores_1d(negative_scores, "negative")
    tp, fp = _positive_first(positive, negative)
    recall_steps = np.diff(np.concatenate([[0], tp])) / positive.size
    return float(np.sum(recall_steps * (tp / (tp + fp))))


def fpr_at_tpr(in_scores: Tensor | Sequence[float], out_scores: Tensor | Sequence[float], tpr: float = 0.95) -> float:
    """FPR at ``tpr`` TPR, in-distribution = positive, higher score = more "in".

    The threshold is the highest one accepting at least ``ceil(tpr * n_in)`` in-distribution
    images, i.e. the ``ceil(tpr * n_in)``-th largest in-distribution score; the result is the
    fraction of OOD scores ``>=`` it (OOD images tied with the threshold are accepted).
    ``tpr`` is read as the decimal it prints as (0.95 = 19/20 exactly).
    """
    if isinstance(tpr, bool) or not isinstance(tpr, (int, float)) or not 0 < tpr <= 1:
        raise ConfigError(f"OOD: tpr must be in (0, 1], got {tpr!r}")
    inside, outside = _scores_1d(in_scores, "in-distribution"), _scores_1d(out_scores, "OOD")
    need = math.ceil(Fraction(repr(float(tpr))) * inside.size)
    threshold = np.sort(inside)[::-1][need - 1]
    return int(np.count_nonzero(outside >= threshold)) / outside.size


def detection_metrics(in_scores: Tensor | Sequence[float], out_scores: Tensor | Sequence[float]) -> dict[str, float]:
    """``auroc``, ``aupr_in``, ``aupr_out`` and ``fpr_at_95_tpr`` of one score (higher = more "in")."""
    inside, outside = _scores_1d(in_scores, "in-distribution"), _scores_1d(out_scores, "OOD")
    return {"auroc": auroc(inside, outside), "aupr_in": average_precision(inside, outside),
            "aupr_out": average_precision(-outside, -inside), "fpr_at_95_tpr": fpr_at_tpr(inside, outside, 0.95)}


def _max_softmax(logits: Tensor) -> Tensor:
    return logits.float().softmax(dim=1).amax(dim=1)  # float32, as max_softmax_scores always did


def _max_logit(logits: Tensor) -> Tensor:
    return logits.double().amax(dim=1)


def _energy(logits: Tensor, temperature: float = 1.0) -> Tensor:
    return temperature * torch.logsumexp(logits.double() / temperature, dim=1)


def _negative_entropy(logits: Tensor) -> Tensor:
    log_p = torch.log_softmax(logits.double(), dim=1)
    p = log_p.exp()
    return torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(dim=1)  # 0 log 0 = 0 (a -inf logit)


#: name -> function of logits (N, K) giving (N,) scores, higher = more in-distribution.
OOD_SCORES = {"max_softmax": _max_softmax, "max_logit": _max_logit, "energy": _energy, "entropy": _negative_entropy}


def ood_scores(logits: Tensor) -> dict[str, Tensor]:
    """Every score of :data:`OOD_SCORES` for ``logits`` (N, K)."""
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise DataError(f"OOD: logits must be a non-empty (N, K) tensor, got {got}")
    return {name: score(logits.detach().cpu()) for name, score in OOD_SCORES.items()}


def detection_report(in_logits: Tensor, out_logits: Tensor) -> dict[str, dict[str, float]]:
    """``{score: {auroc, aupr_in, aupr_out, fpr_at_95_tpr}}`` for every score of :data:`OOD_SCORES`."""
    inside, outside = ood_scores(in_logits), ood_scores(out_logits)
    if in_logits.shape[1] != out_logits.shape[1]:
        raise DataError(f"OOD: in-distribution and OOD logits have {in_logits.shape[1]} and "
                        f"{out_logits.shape[1]} classes")
    return {name: detection_metrics(inside[name], outside[name]) for name in OOD_SCORES}


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"OOD: batch_size must be an integer >= 1, got {batch_size!r}")
    return batch_size


@torch.no_grad()
def ood_logits(model: nn.Module, images: Tensor, batch_size: int = 512, device: torch.device | str | None = None,
               progress: bool | None = None) -> Tensor:
    """``model(x)`` per image, (N, K) float32 on CPU.

    ``images`` are uint8 (divided by 255) or float in [0, 1], moved to ``device`` (default: the
    model's) batch by batch.  The model runs in eval mode; every submodule's mode is restored.
    """
    _check_batch_size(batch_size)
    as_unit_images(images[:1] if isinstance(images, Tensor) and images.dim() == 4 else images)
    if len(images) == 0:
        raise DataError("OOD: no images to score")
    device = torch.device(device) if device is not None else model_device(model)
    net = unwrap_model(model)
    show = show_progress() if progress is None else progress
    logits = []
    with EvalMode(net):
        for start in tqdm(range(0, len(images), batch_size), desc="OOD logits", leave=False, disable=not show):
            x = as_unit_images(images[start:start + batch_size].to(device))
            logits.append(net(x).float().cpu())
    return torch.cat(logits)


def max_softmax_scores(model: nn.Module, images: Tensor, batch_size: int = 512,
                       device: torch.device | str | None = None, progress: bool | None = None) -> Tensor:
    """``max_k softmax(model(x))_k`` per image, (N,) float32 on CPU (see :func:`ood_logits`)."""
    return _max_softmax(ood_logits(model, images, batch_size, device, progress))


def _channel_moments(images: Tensor, chunk_size: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel mean and population variance of uint8 images on the 0..255 scale, float64.

    Sums of values and squares are exact int64 (no float drift on 47M pixels)."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.int64)
    total_sq = torch.zeros(channels, dtype=torch.int64)
    for start in range(0, len(images), chunk_size):
        chunk = images[start:start + chunk_size].cpu().to(torch.int64)
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += (chunk * chunk).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total.double() / count
    # count * sum(x^2) - sum(x)^2 is exact in Python integers and never negative
    variance = torch.tensor([(count * int(q) - int(t) ** 2) / count ** 2 for t, q in zip(total, total_sq)],
                            dtype=torch.float64)
    return mean, variance


def gaussian_noise_like(train_images: Tensor, n: int, seed: int = 0) -> Tensor:
    """``n`` uint8 noise images shaped like ``train_images`` (N, C, H, W) uint8.

    Every pixel of channel c is drawn independently from ``N(mean_c, var_c)``, the training
    set's per-channel pixel mean and variance (mixup-calibration paper, sec. 7: "random noise
    images"), then rounded and clipped to 0..255.  Clipping pulls the moments slightly toward
    the middle when ``mean_c +- 2 std_c`` leaves [0, 255].  Drawn on CPU from
    ``torch.Generator().manual_seed(seed)``, so the images are the same on every machine.
    """
    if not isinstance(train_images, Tensor) or train_images.dtype != torch.uint8 or train_images.dim() != 4:
        got = (tuple(train_images.shape), train_images.dtype) if isinstance(train_images, Tensor) else type(train_images).__name__
        raise DataError(f"gaussian_noise_like: training images must be uint8 (N, C, H, W), got {got}")
    if len(train_images) == 0 or train_images[0].numel() == 0:
        raise DataError("gaussian_noise_like: the training set is empty")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"gaussian_noise_like: n must be an integer >= 1, got {n!r}")
    mean, variance = _channel_moments(train_images)
    generator = torch.Generator().manual_seed(int(seed))
    shape = (n,) + tuple(train_images.shape[1:])
    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    pixels = noise * variance.sqrt().view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
    return pixels.round_().clamp_(0, 255).to(torch.uint8)


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in pair):
        raise ConfigError(f"match_format: size must be a positive int or (height, width), got {size!r}")
    return pair


def match_format(images: Tensor, channels: int, size: int | Sequence[int]) -> Tensor:
    """Adapt another dataset to the in-distribution format: ``channels`` x ``size``.

    Bilinear resize (``align_corners=False``, antialiased so downsizing averages instead of
    aliasing); channels: equal -> kept, 1 -> replicated, ``channels == 1`` -> averaged; any other
    pair is a DataError.  uint8 in -> uint8 out (rounded), float in -> float out; a no-op
    adaptation returns ``images`` itself.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"match_format: images must be a 4-D (N, C, H, W) tensor, got {got}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise DataError(f"match_format: images must be uint8 or floating point, got {images.dtype}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ConfigError(f"match_format: channels must be an integer >= 1, got {channels!r}")
    height, width = _size_pair(size)
    have = images.shape[1]
    if have not in (channels, 1) and channels != 1:
        raise DataError(f"match_format: cannot turn {have}-channel images into {channels} channels "
                        f"(only equal, 1 -> C or C -> 1)")
    if have == channels and tuple(images.shape[2:]) == (height, width):
        return images
    if len(images) == 0:
        return images.new_empty((0, channels, height, width))
    is_uint8 = images.dtype == torch.uint8
    x = images.float() if is_uint8 else images
    if have != channels:
        x = x.mean(dim=1, keepdim=True) if channels == 1 else x.expand(-1, channels, -1, -1)
    if tuple(x.shape[2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    if is_uint8:
        return x.round().clamp_(0, 255).to(torch.uint8)
    return x


def ood_auroc(model: nn.Module, in_images: Tensor, out_images: Tensor, *, batch_size: int = 512,
              device: torch.device | str | None = None, progress: bool | None = None) -> float:
    """Max-softmax AUROC of ``in_images`` (positive) against ``out_images``.

    ``out_images`` are first adapted to the in-distribution channels and size by
    :func:`match_format`; both sets are uint8 or float in [0, 1] and must be non-empty.
    """
    out_images = adapt_ood_images(in_images, out_images)
    score = dict(batch_size=batch_size, device=device, progress=progress)
    return auroc(max_softmax_scores(model, in_images, **score), max_softmax_scores(model, out_images, **score))


def adapt_ood_images(in_images: Tensor, out_images: Tensor) -> Tensor:
    """``out_images`` in the in-distribution channels and size (:func:`match_format`); both sets
    must be non-empty (N, C, H, W) tensors."""
    for what, images in (("in-distribution", in_images), ("OOD", out_images)):
        if not isinstance(images, Tensor) or images.dim() != 4 or len(images) == 0:
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise DataError(f"OOD: {what} images must be a non-empty (N, C, H, W) tensor, got {got}")
    out_images = match_format(out_images, in_images.shape[1], tuple(in_images.shape[2:]))
    if out_images.shape[1:] != in_images.shape[1:]:
        raise DataError(f"OOD: image shapes differ after adaptation: {tuple(in_images.shape[1:])} "
                        f"vs {tuple(out_images.shape[1:])}")
    return out_images


def ood_detection(model: nn.Module, in_images: Tensor, out_images: Tensor, *, batch_size: int = 512,
                  device: torch.device | str | None = None, progress: bool | None = None,
                  in_logits: Tensor | None = None) -> dict[str, dict[str, float]]:
    """:func:`detection_report` of ``in_images`` (positive) against ``out_images`` (adapted by
    :func:`match_format`); ``in_logits`` reuses the in-distribution logits of an earlier call."""
    out_images = adapt_ood_images(in_images, out_images)
    score = dict(batch_size=batch_size, device=device, progress=progress)
    if in_logits is None:
        in_logits = ood_logits(model, in_images, **score)
    return detection_report(in_logits, ood_logits(model, out_images, **score))


__all__ = ["OOD_SCORES", "adapt_ood_images", "auroc", "average_precision", "detection_metrics", "detection_report",
           "fpr_at_tpr", "gaussian_noise_like", "match_format", "max_softmax_scores", "ood_auroc", "ood_detection",
           "ood_logits", "ood_scores"]
