"""Accumulate calibration statistics over batches and processes (METHODS.md section 1).

Binned metrics (ECE, OE, MCE, signed gap, debiased L2-ECE), Brier and NLL are kept as sums,
which add exactly across batches and ranks; so are the per-class bin sums (K, bins) of the full
probability vectors for the class-wise ECE.  The RMS calibration error's and the adaptive ECE's
equal-mass bins, and the risk-coverage metrics (AURC, AUGRC), depend on the global confidence
order, so the per-sample (confidence, correct) pairs are kept too (CPU float64 + bool, 9 bytes a
prediction) and gathered across ranks.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import ConfigError, DataError
from ..functional.binned import (
    adaptive_ece,
    calibration_gap_from_bins,
    classwise_bin_statistics_from_logits,
    classwise_ece_from_bins,
    debiased_ece_from_bins,
    equal_mass_bin_statistics,
    mce_from_bins,
)
from ..functional.calibration import (
    bin_statistics,
    ece_from_bins,
    overconfidence_from_bins,
    per_sample_scores,
    rms_calibration_error,
)
from ..functional.selective import aurc, augrc, risk_coverage_points


class CalibrationStats:
    """Accuracy, ECE and its variants, RMS calibration error, overconfidence, Brier (0..2 scale),
    NLL and selective-prediction areas (AURC, AUGRC).

    Usage: ``update(logits, labels)`` per batch, optionally ``merge`` other instances,
    ``all_reduce()`` once under torch.distributed, then ``compute()`` / ``bins()``.

    Args:
        num_bins: equal-width confidence bins for ECE, OE and the reliability diagram.
        rms_bin_size: predictions per adaptive bin of the RMS calibration error.
    """

    def __init__(self, num_bins: int = 15, rms_bin_size: int = 100):
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ConfigError(f"num_bins must be an integer >= 1, got {num_bins!r}")
        if isinstance(rms_bin_size, bool) or not isinstance(rms_bin_size, int) or rms_bin_size < 1:
            raise ConfigError(f"rms_bin_size must be an integer >= 1, got {rms_bin_size!r}")
        self.num_bins = num_bins
        self.rms_bin_size = rms_bin_size
        zeros = torch.zeros(num_bins, dtype=torch.float64)
        self.counts, self.conf_sums, self.correct_sums = zeros.clone(), zeros.clone(), zeros.clone()
        self.brier_sum = torch.zeros((), dtype=torch.float64)
        self.nll_sum = torch.zeros((), dtype=torch.float64)
        # (K, num_bins) sums over p_k for the class-wise ECE; K is learnt from the first batch.
        self.num_classes: int | None = None
        self.class_counts = self.class_prob_sums = self.class_hit_sums = None
        self._confidences: list[Tensor] = []
        self._correct: list[Tensor] = []
        self._reduced = False

    @torch.no_grad()
    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add a batch of logits (N, K) and integer labels (N,), on any device."""
        if self._reduced:
            raise RuntimeError("CalibrationStats.update after all_reduce would mix global and local statistics")
        conf, correct, brier, nll = per_sample_scores(logits.detach(), labels)
        self._ensure_classes(logits.shape[1])
        class_bins = classwise_bin_statistics_from_logits(logits.detach(), labels, self.num_bins)
        for total, part in zip((self.class_counts, self.class_prob_sums, self.class_hit_sums), class_bins):
            total += part
        conf = conf.to("cpu", torch.float64)
        correct = correct.cpu()
        counts, conf_sums, correct_sums = bin_statistics(conf, correct, self.num_bins)
        self.counts += counts
        self.conf_sums += conf_sums
        self.correct_sums += correct_sums
        # Per-sample values from the input device, summed on CPU in float64 (MPS has no float64).
        self.brier_sum += brier.to("cpu", torch.float64).sum()
        self.nll_sum += nll.to("cpu", torch.float64).sum()
        self._confidences.append(conf)
        self._correct.append(correct)

    def merge(self, other: "CalibrationStats") -> "CalibrationStats":
        """Add ``other``'s statistics to this one (in place) and return self."""
        if (other.num_bins, other.rms_bin_size) != (self.num_bins, self.rms_bin_size):
            raise ConfigError(
                f"cannot merge calibration statistics with num_bins/rms_bin_size "
                f"{other.num_bins}/{other.rms_bin_size} into {self.num_bins}/{self.rms_bin_size}"
            )
        if other.num_classes is not None:
            self._ensure_classes(other.num_classes)
            self.class_counts += other.class_counts
            self.class_prob_sums += other.class_prob_sums
            self.class_hit_sums += other.class_hit_sums
        self.counts += other.counts
        self.conf_sums += other.conf_sums
        self.correct_sums += other.correct_sums
        self.brier_sum += other.brier_sum
        self.nll_sum += other.nll_sum
        self._confidences.extend(other._confidences)
        self._correct.extend(other._correct)
        return self

    def _ensure_classes(self, num_classes: int) -> None:
        """Allocate the (K, bins) class-wise sums, or check that K has not changed."""
        if self.num_classes is None:
            self.num_classes = int(num_classes)
            zeros = torch.zeros(self.num_classes, self.num_bins, dtype=torch.float64)
            self.class_counts, self.class_prob_sums, self.class_hit_sums = zeros.clone(), zeros.clone(), zeros.clone()
        elif num_classes != self.num_classes:
            raise DataError(f"calibration statistics of {self.num_classes} classes cannot take {num_classes} classes")

    @property
    def count(self) -> int:
        return int(self.counts.sum().item())

    def samples(self) -> tuple[Tensor, Tensor]:
        """All accumulated (confidence float64, correct bool) pairs, in update order."""
        if not self._confidences:
            return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.bool)
        return torch.cat(self._confidences), torch.cat(self._correct)

    def all_reduce(self, device: torch.device | str | None = None, group=None) -> "CalibrationStats":
        """Replace the local statistics by those of all ranks (in place); return self.

        A no-op without an initialised process group.  Sums (also the class-wise (K, bins) sums;
        a rank without data takes K from the others) are all-reduced with SUM (gloo has no AVG);
        the per-sample pairs are all-gathered exactly: sizes first, then pairs
        padded to the largest shard and trimmed again, so shards may differ in size.  Tensors
        travel on ``device``, by default the current CUDA device for nccl and the CPU
        otherwise.  Every rank must call it; calling it again does nothing.
        """
        if self._reduced or not (dist.is_available() and dist.is_initialized()):
            return self
        if device is None:
            nccl = "nccl" in str(dist.get_backend(group))
            device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        # Shard sizes and class counts first: a rank that saw no batch learns K from the others.
        conf, correct = self.samples()
        world_size = dist.get_world_size(group)
        shape = torch.tensor([conf.numel(), self.num_classes or 0], dtype=torch.int64, device=device)
        shapes = [torch.zeros_like(shape) for _ in range(world_size)]
        dist.all_gather(shapes, shape, group=group)
        sizes = [int(s[0].item()) for s in shapes]
        classes = sorted({int(s[1].item()) for s in shapes} - {0})
        if len(classes) > 1:
            raise DataError(f"calibration statistics of different numbers of classes across ranks: {classes}")
        if classes:
            self._ensure_classes(classes[0])

        nb = self.num_bins
        parts = [self.counts, self.conf_sums, self.correct_sums, self.brier_sum[None], self.nll_sum[None]]
        if classes:
            parts += [self.class_counts.reshape(-1), self.class_prob_sums.reshape(-1), self.class_hit_sums.reshape(-1)]
        sums = torch.cat(parts).to(device)
        dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
        sums = sums.cpu()
        self.counts, self.conf_sums, self.correct_sums = sums[:nb], sums[nb : 2 * nb], sums[2 * nb : 3 * nb]
        self.brier_sum, self.nll_sum = sums[3 * nb], sums[3 * nb + 1]
        if classes:
            per_class = sums[3 * nb + 2 :].reshape(3, classes[0], nb)
            self.class_counts, self.class_prob_sums, self.class_hit_sums = per_class[0], per_class[1], per_class[2]

        padded = torch.zeros(2, max(sizes), dtype=torch.float64)
        padded[0, : conf.numel()] = conf
        padded[1, : conf.numel()] = correct.to(torch.float64)
        padded = padded.to(device)
        gathered = [torch.empty_like(padded) for _ in range(world_size)]
        dist.all_gather(gathered, padded, group=group)
        pairs = torch.cat([g[:, :s] for g, s in zip(gathered, sizes)], dim=1).cpu()
        self._confidences, self._correct = [pairs[0]], [pairs[1] > 0.5]
        self._reduced = True
        return self

    def compute(self) -> dict[str, float]:
        """Metrics as plain numbers: accuracy and calibration errors are fractions in [0, 1].

        Keys: accuracy, ece, rms_ce, oe, brier (0..2 scale), nll (nats), ece_adaptive (equal-mass
        bins), ece_classwise (Kull et al. 2019), ece_debiased (Kumar et al. 2019, an L2 error),
        mce, calibration_gap (mean confidence - accuracy, signed: > 0 over-confident), aurc,
        augrc, count.  ``num_bins`` bins for every binned metric.
        """
        n = self.count
        if n == 0:
            raise DataError("no predictions were accumulated: cannot compute calibration metrics")
        bins = (self.counts, self.conf_sums, self.correct_sums)
        conf, correct = self.samples()
        return {
            "accuracy": float(self.correct_sums.sum() / n),
            "ece": float(ece_from_bins(*bins)),
            "rms_ce": float(rms_calibration_error(conf, correct, self.rms_bin_size)),
            "oe": float(overconfidence_from_bins(*bins)),
            "brier": float(self.brier_sum / n),
            "nll": float(self.nll_sum / n),
            "ece_adaptive": float(adaptive_ece(conf, correct, self.num_bins)),
            "ece_classwise": float(classwise_ece_from_bins(self.class_counts, self.class_prob_sums,
                                                           self.class_hit_sums)),
            "ece_debiased": float(debiased_ece_from_bins(*bins)),
            "mce": float(mce_from_bins(*bins)),
            "calibration_gap": float(calibration_gap_from_bins(*bins)),
            "aurc": float(aurc(conf, correct)),
            "augrc": float(augrc(conf, correct)),
            "count": n,
        }

    def bins(self, equal_mass: bool = False) -> dict[str, list]:
        """Per-bin data for a reliability diagram, JSON-ready.

        ``edges`` has one entry more than the bins; ``counts``, mean ``confidence`` and
        ``accuracy`` have one per bin, the latter two None for an empty bin; ``scheme`` names
        the binning.  By default the ``num_bins`` equal-width bins of the ECE.  With
        ``equal_mass`` the bins of the adaptive ECE (min(num_bins, n) of them, from all
        predictions, ties averaged): the inner edges lie halfway between neighbouring bins'
        extreme confidences, the outer ones at the lowest and highest confidence.
        """
        if equal_mass:
            conf, correct = self.samples()
            if conf.numel() == 0:
                raise DataError("no predictions were accumulated: no equal-mass bins")
            counts_t, conf_sums, correct_sums, lowest, highest = equal_mass_bin_statistics(
                conf, correct, min(self.num_bins, conf.numel()))
            edges = torch.cat([lowest[:1], (highest[:-1] + lowest[1:]) / 2, highest[-1:]]).tolist()
            scheme = "equal_mass"
        else:
            counts_t, conf_sums, correct_sums = self.counts, self.conf_sums, self.correct_sums
            edges = (torch.arange(self.num_bins + 1, dtype=torch.float64) / self.num_bins).tolist()
            scheme = "equal_width"
        counts = counts_t.tolist()

        def mean(sums: Tensor) -> list[float | None]:
            return [s / c if c > 0 else None for s, c in zip(sums.tolist(), counts)]

        return {"edges": edges, "counts": counts, "confidence": mean(conf_sums), "accuracy": mean(correct_sums),
                "scheme": scheme}

    def risk_coverage(self, max_points: int = 501) -> dict:
        """The risk-coverage curve of all predictions (confidence = max softmax), thinned to at most
        ``max_points`` points, JSON-ready (see :func:`auglabel.functional.selective.risk_coverage_points`)."""
        conf, correct = self.samples()
        return risk_coverage_points(conf, correct, max_points)
