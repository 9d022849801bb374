"""What a resume needs beyond the weights: compatibility checks and the state of an epoch in progress.

A checkpoint records the auglabel version and the resolved configuration that wrote it.  Resuming with another
version, or with a configuration that differs in anything but :data:`MAY_CHANGE_ON_RESUME` (more epochs,
another device, the checkpoint cadence...), is refused with one line naming the difference, because the run
would silently become a different experiment.

A mid-epoch checkpoint (``train.checkpoint_every_steps`` / ``_minutes``, SIGTERM) carries ``progress``: the
epoch in progress, how many of its batches are done, and per process the augmentation generator's state, the
global RNG states and the epoch's running loss / accuracy sums.  With the step counter, optimiser, scheduler and
components' state (in ``step``), the resumed epoch continues with the same batches, random numbers and label
state: the final metrics equal an uninterrupted run's (bit for bit on a CPU).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import __version__
from ..errors import CheckpointError
from .config import ExperimentConfig

MAY_CHANGE_ON_RESUME = frozenset({
    "run_dir", "data.root", "train.epochs", "train.device", "train.threads", "train.deterministic",
    "train.checkpoint_every_steps", "train.checkpoint_every_minutes", "train.check_every_steps",
    "train.collective_timeout_s", "train.compile", "train.compile_mode",
})
_MISSING = "<absent>"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: list(value) if isinstance(value, tuple) else value}


def config_differences(stored: dict[str, Any], cfg: ExperimentConfig) -> list[str]:
    """``key: stored -> now`` for each setting that differs and may not change on a resume; options this
    version added since the checkpoint count as their defaults."""
    old, new = _flatten(stored), _flatten(cfg.to_dict())
    defaults = _flatten(ExperimentConfig().to_dict())
    out = []
    for key in sorted(set(old) | set(new)):
        if key in MAY_CHANGE_ON_RESUME or key.split(".")[0] in MAY_CHANGE_ON_RESUME:
            continue
        before, now = old.get(key, defaults.get(key, _MISSING)), new.get(key, defaults.get(key, _MISSING))
        if before != now:
            out.append(f"{key} {before!r} -> {now!r}")
    return out


def check_resumable(state: dict[str, Any], cfg: ExperimentConfig, world_size: int, where: str) -> None:
    """CheckpointError naming the mismatch when ``state`` cannot continue as ``cfg`` on ``world_size`` processes."""
    written_by = state.get("auglabel_version")
    if written_by is not None and written_by != __version__:
        raise CheckpointError(f"checkpoint {where} was written by auglabel {written_by}, this is auglabel "
                              f"{__version__}: resume it with the version that wrote it")
    if isinstance(state.get("config"), dict):
        diff = config_differences(state["config"], cfg)
        if diff:
            shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
            raise CheckpointError(f"checkpoint {where} was written with another configuration ({shown}); only "
                                  f"{', '.join(sorted(MAY_CHANGE_ON_RESUME))} may change on --resume")
    progress = state.get("progress")
    if progress is not None and int(progress["world_size"]) != world_size:
        raise CheckpointError(f"checkpoint {where} was written in the middle of epoch {progress['epoch']} by "
                              f"{progress['world_size']} processes; resume it with {progress['world_size']} "
                              f"(torchrun --nproc_per_node), not {world_size}")


@dataclass
class EpochProgress:
    """This process's view of the epoch in progress."""

    epoch: int
    batches_done: int
    loss_sum: float
    correct: float
    seen: int
    generator: torch.Tensor
    torch_rng: torch.Tensor
    cuda_rng: torch.Tensor | None = None

    def to_state(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum, "correct": self.correct, "seen": self.seen, "generator": self.generator,
                "torch_rng": self.torch_rng, "cuda_rng": self.cuda_rng}

    @classmethod
    def from_state(cls, progress: dict[str, Any], rank: int) -> "EpochProgress":
        mine = progress["ranks"][rank]
        return cls(int(progress["epoch"]), int(progress["batches_done"]), float(mine["loss_sum"]),
                   float(mine["correct"]), int(mine["seen"]), mine["generator"], mine["torch_rng"],
                   mine.get("cuda_rng"))

    def restore_rng(self, generator: torch.Generator, device: torch.device) -> None:
        generator.set_state(self.generator)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None and device.type == "cuda":
            torch.cuda.set_rng_state(self.cuda_rng, device)


def capture_progress(epoch: int, batches_done: int, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int,
                     generator: torch.Generator, device: torch.device) -> EpochProgress:
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return EpochProgress(epoch, batches_done, float(loss_sum.item()), float(correct.item()), seen,
                         generator.get_state(), torch.get_rng_state(), cuda_rng)
