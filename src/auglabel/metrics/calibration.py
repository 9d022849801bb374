"""Accumulate calibration statistics over batches and processes (METHODS.md section 1).

Binned metrics (ECE, OE), Brier and NLL are kept as sums, which add exactly across batches
and ranks.  The RMS calibration error's adaptive bins depend on the global confidence order,
so the per-sample (confidence, correct) pairs are kept too (CPU float64 + bool, 9 bytes a
prediction) and gathered across ranks.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import ConfigError, DataError
from ..functional.calibration import (
    bin_statistics,
    ece_from_bins,
    overconfidence_from_bins,
    per_sample_scores,
    rms_calibration_error,
)


class CalibrationStats:
    """Accuracy, ECE, RMS calibration error, overconfidence, Brier (0..2 scale) and NLL.

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
        self._confidences: list[Tensor] = []
        self._correct: list[Tensor] = []
        self._reduced = False

    @torch.no_grad()
    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add a batch of logits (N, K) and integer labels (N,), on any device."""
        if self._reduced:
            raise RuntimeError("CalibrationStats.update after all_reduce would mix global and local statistics")
        conf, correct, brier, nll = per_sample_scores(logits.detach(), labels)
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
        self.counts += other.counts
        self.conf_sums += other.conf_sums
        self.correct_sums += other.correct_sums
        self.brier_sum += other.brier_sum
        self.nll_sum += other.nll_sum
        self._confidences.extend(other._confidences)
        self._correct.extend(other._correct)
        return self

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

        A no-op without an initialised process group.  Sums are all-reduced with SUM (gloo
        has no AVG); the per-sample pairs are all-gathered exactly: sizes first, then pairs
        padded to the largest shard and trimmed again, so shards may differ in size.  Tensors
        travel on ``device``, by default the current CUDA device for nccl and the CPU
        otherwise.  Every rank must call it; calling it again does nothing.
        """
        if self._reduced or not (dist.is_available() and dist.is_initialized()):
            return self
        if device is None:
            nccl = "nccl" in str(dist.get_backend(group))
            device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        nb = self.num_bins
        sums = torch.cat([self.counts, self.conf_sums, self.correct_sums, self.brier_sum[None], self.nll_sum[None]])
        sums = sums.to(device)
        dist.all_reduce(sums, op=dist.ReduceOp.SUM, group=group)
        sums = sums.cpu()
        self.counts, self.conf_sums, self.correct_sums = sums[:nb], sums[nb : 2 * nb], sums[2 * nb : 3 * nb]
        self.brier_sum, self.nll_sum = sums[3 * nb], sums[3 * nb + 1]

        conf, correct = self.samples()
        world_size = dist.get_world_size(group)
        size = torch.tensor([conf.numel()], dtype=torch.int64, device=device)
        sizes = [torch.zeros_like(size) for _ in range(world_size)]
        dist.all_gather(sizes, size, group=group)
        sizes = [int(s.item()) for s in sizes]
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

        Keys: accuracy, ece, rms_ce, oe, brier (0..2 scale), nll (nats), count.
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
            "count": n,
        }

    def bins(self) -> dict[str, list]:
        """Per-bin data for a reliability diagram, JSON-ready.

        ``edges`` has num_bins + 1 entries; ``counts``, mean ``confidence`` and ``accuracy``
        have one per bin, the latter two None for an empty bin.
        """
        counts = self.counts.tolist()

        def mean(sums: Tensor) -> list[float | None]:
            return [s / c if c > 0 else None for s, c in zip(sums.tolist(), counts)]

        return {
            "edges": (torch.arange(self.num_bins + 1, dtype=torch.float64) / self.num_bins).tolist(),
            "counts": counts,
            "confidence": mean(self.conf_sums),
            "accuracy": mean(self.correct_sums),
        }
