"""Fitting a calibrator on every process's held-out logits, and its JSON file in the run directory."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from ..errors import DataError
from .calibrators import CALIBRATORS, Calibrator
from .fit import STATE_FORMAT

def gather_logits(logits: Tensor, labels: Tensor, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Every process's (logits, labels) shard, concatenated on every process (CPU, float64 / int64).

    A no-op (apart from the copy to CPU) without an initialised process group.  Shards may differ
    in size, an empty one included.  With ``index`` (each row's position in the whole held-out set)
    the rows come back sorted by it: the very order one process would have seen, so a fit on the
    gathered rows is the single-process fit exactly.  Every rank must call it.
    """
    from .. import distributed

    logits = logits.detach().to("cpu", torch.float64)
    labels = labels.detach().to("cpu", torch.int64)
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise DataError(f"gather_logits: logits (N, K) and labels (N,) expected, got {tuple(logits.shape)} "
                        f"and {tuple(labels.shape)}")
    if index is not None:
        index = index.detach().to("cpu", torch.int64)
        if index.shape != labels.shape:
            raise DataError(f"gather_logits: index must have shape {tuple(labels.shape)}, got {tuple(index.shape)}")
    if not distributed.is_distributed():
        if index is not None:
            order = torch.argsort(index, stable=True)
            return logits[order], labels[order]
        return logits, labels
    import torch.distributed as dist

    device = distributed.communication_device()
    world = dist.get_world_size()
    size = torch.tensor([logits.shape[0], logits.shape[1]], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    rows = [int(s[0]) for s in sizes]
    if len({int(s[1]) for s in sizes}) != 1:
        raise DataError(f"gather_logits: processes hold different numbers of classes: {[int(s[1]) for s in sizes]}")
    extra = 2 if index is not None else 1
    packed = torch.zeros(max(rows), logits.shape[1] + extra, dtype=torch.float64)
    packed[:logits.shape[0], :logits.shape[1]] = logits
    packed[:logits.shape[0], logits.shape[1]] = labels.double()  # exact: labels and indices < 2**53
    if index is not None:
        packed[:logits.shape[0], logits.shape[1] + 1] = index.double()
    packed = packed.to(device)
    gathered = [torch.empty_like(packed) for _ in range(world)]
    dist.all_gather(gathered, packed)
    table = torch.cat([g[:n].cpu() for g, n in zip(gathered, rows)])
    k = logits.shape[1]
    out_logits, out_labels = table[:, :k].contiguous(), table[:, k].round().to(torch.int64)
    if index is not None:
        order = torch.argsort(table[:, k + 1], stable=True)
        out_logits, out_labels = out_logits[order], out_labels[order]
    return out_logits, out_labels


def fit_calibrator(method: str, logits: Tensor, labels: Tensor, index: Tensor | None = None) -> Calibrator:
    """Fit calibration ``method`` (a :data:`CALIBRATORS` name) on held-out ``logits`` and ``labels``.

    Under an initialised process group each rank passes its shard: the shards are gathered
    (:func:`gather_logits`, sorted by ``index`` when given), every rank fits on all of them, and
    rank 0's state is broadcast so that every rank holds the identical calibrator.
    """
    from .. import distributed

    factory = CALIBRATORS.get(method)
    if distributed.is_distributed():
        logits, labels = gather_logits(logits, labels, index)
        state = distributed.broadcast_object(factory.fit(logits, labels).state())
        return factory.from_state(state)
    return factory.fit(logits, labels)


def calibrator_from_state(state: Mapping[str, Any]) -> Calibrator:
    if not isinstance(state, Mapping) or not isinstance(state.get("method"), str):
        raise DataError("calibrator state must be a mapping with a 'method' name")
    return CALIBRATORS.get(state["method"]).from_state(state)


def calibrator_path(run_dir: str | Path, method: str) -> Path:
    """Where ``calibrate --method METHOD`` keeps the fitted calibrator: ``calibrator_<method>.json``."""
    return Path(run_dir) / f"calibrator_{method}.json"


def save_calibrator(calibrator: Calibrator, path: str | Path, **info: Any) -> Path:
    """Write the calibrator's state (plus ``info``, e.g. what it was fitted on) as JSON, atomically."""
    from ..report.io import write_json_atomic

    return write_json_atomic({"format": STATE_FORMAT, **info, **calibrator.state()}, path)


def load_calibrator(path: str | Path) -> Calibrator:
    """The calibrator saved by :func:`save_calibrator`; one-line errors for a missing or foreign file."""
    path = Path(path)
    try:
        state = json.loads(path.read_text())
    except OSError as exc:
        raise DataError(f"cannot read calibrator {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise DataError(f"cannot parse calibrator {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        raise DataError(f"{path} is not an auglabel calibrator file (format {STATE_FORMAT})")
    return calibrator_from_state(state)
