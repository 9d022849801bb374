"""The training loop: config in, run directory out.

The loop knows nothing about methods: it calls the :class:`TrainingStep` module, the optimiser
(built from :meth:`TrainingStep.param_groups`: the components' own groups plus the rest), the
scheduler and the components' ``on_epoch_end`` hooks.  Every epoch ends with an atomic
checkpoint, so ``--resume`` continues a run exactly where it stopped.
"""
from __future__ import annotations

import copy
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import distributed
from ..augment import Augmentation
from ..data.loader import DeviceLoader
from ..errors import CheckpointError, ConfigError
from ..labels import LabelStrategy
from ..report import write_json_atomic
from ..report.plots import reliability_diagram
from .build import Splits, build_step, check_compatible, load_splits, make_loader
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .config import ExperimentConfig
from .evaluate import ClassAccuracy, evaluate
from .logger import EpochLogger
from .step import TrainingStep

CONFIG_NAME = "config.yaml"
METRICS_NAME = "metrics.json"
DISTORTION_NAME = "distortion.json"


@dataclass
class EpochContext:
    """What an ``on_epoch_end`` hook may use (AutoLabel's validation update, AutoDO's hyper step).

    ``model`` is the unwrapped model (not DDP's wrapper); ``train_loader`` the training split's loader (a
    hook that needs training batches builds its own iteration order from it: the trainer sets its epoch);
    ``splits`` the data (indices, labels, distortion record); ``optimizer_steps`` the number of training
    steps taken so far (continued across a resume).
    """

    epoch: int
    model: nn.Module
    augment: Augmentation
    labels: LabelStrategy
    val_loader: DeviceLoader
    generator: torch.Generator
    dist: distributed.DistContext
    run_dir: Path
    num_epochs: int
    train_loader: DeviceLoader | None = None
    splits: Splits | None = None
    optimizer_steps: int = 0

    @property
    def is_last_epoch(self) -> bool:
        return self.epoch >= self.num_epochs


class BestEpoch:
    """The epoch with the highest clean validation accuracy so far and a copy of its weights.

    Every rank sees the same (all-reduced) validation accuracy, so every rank keeps the same copy;
    it travels in the checkpoint, so a resumed run selects the same epoch as an uninterrupted one.
    The first epoch reaching the maximum wins a tie.
    """

    def __init__(self, epoch: int = 0, val_accuracy: float = -1.0, model_state: dict | None = None):
        self.epoch, self.val_accuracy, self.model_state = epoch, val_accuracy, model_state

    def offer(self, epoch: int, val_accuracy: float, model: nn.Module) -> bool:
        if val_accuracy <= self.val_accuracy:
            return False
        self.epoch, self.val_accuracy = epoch, val_accuracy
        self.model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return True

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "val_accuracy": self.val_accuracy, "model": self.model_state}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "BestEpoch":
        return cls(int(state["epoch"]), float(state["val_accuracy"]), state.get("model"))


class WarmupCosine:
    """Learning-rate factor per optimiser step: linear warm-up, then cosine decay to 0."""

    def __init__(self, total_steps: int, warmup_steps: int):
        self.total_steps = max(total_steps, 1)
        self.warmup_steps = min(warmup_steps, self.total_steps - 1)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber an earlier result unless told; a resume needs a checkpoint."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite contradict each other")
    if resume:
        if not (run_dir / CHECKPOINT_NAME).is_file():
            raise CheckpointError(f"cannot resume: no {CHECKPOINT_NAME} in {run_dir}")
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise ConfigError(f"run directory {run_dir} already exists; pass --resume to continue it "
                              f"or --overwrite to replace it")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def show_progress() -> bool:
    return sys.stderr.isatty()


class Trainer:
    """Trains one experiment into ``run_dir``; :meth:`fit` returns the test metrics."""

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, *, resume: bool = False,
                 overwrite: bool = False, ctx: distributed.DistContext | None = None,
                 progress: bool | None = None):
        self.cfg = cfg.validate()
        self.run_dir = Path(run_dir)
        self.ctx = ctx or distributed.setup(cfg.train.device)
        self.progress = show_progress() if progress is None else progress
        if self.ctx.is_main:
            prepare_run_dir(self.run_dir, resume=resume, overwrite=overwrite)
        distributed.barrier()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(cfg.train.seed)

        self.splits = load_splits(cfg)
        self.train_loader = make_loader(self.splits.train_set, self.splits.train_idx, cfg, self.ctx, train=True)
        self.val_loader = make_loader(self.splits.train_set, self.splits.val_idx, cfg, self.ctx, train=False)
        self.test_loader = make_loader(self.splits.test_set, self.splits.test_idx, cfg, self.ctx, train=False)
        if cfg.train.precision == "bf16" and self.ctx.device.type != "cuda" and self.ctx.is_main:
            print(f"note: train.precision bf16 applies on CUDA only; training on {self.ctx.device} in fp32",
                  file=sys.stderr)
        # the components are set up (their parameters created) here, before the optimiser and the restore
        self.step: TrainingStep = build_step(cfg, self.splits, self.ctx.device)
        check_compatible(self.step.augment, self.step.labels, self.step.model, self.val_loader)
        self.step_ddp: nn.Module = self.step
        if self.ctx.enabled:
            device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.step_ddp = DistributedDataParallel(self.step, device_ids=device_ids)
        o = cfg.optim
        self.optimizer = torch.optim.SGD(self.step.param_groups(), lr=o.lr, momentum=o.momentum,
                                         nesterov=o.nesterov, weight_decay=o.weight_decay)
        steps_per_epoch = len(self.train_loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, WarmupCosine(cfg.train.epochs * steps_per_epoch, round(o.warmup_epochs * steps_per_epoch)))
        self.generator = torch.Generator(device=self.ctx.device)
        self.start_epoch = 1
        self.best = BestEpoch()
        if resume:
            self._restore(load_checkpoint(self.run_dir / CHECKPOINT_NAME))
        if self.ctx.is_main:
            (self.run_dir / CONFIG_NAME).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            if self.splits.distortion is not None:  # which samples were dropped / relabelled
                write_json_atomic(self.splits.distortion.to_dict(), self.run_dir / DISTORTION_NAME)
        self.logger = EpochLogger(self.run_dir, enabled=self.ctx.is_main,
                                  resume_epoch=self.start_epoch - 1 if resume else None)

    @property
    def model(self) -> nn.Module:
        return self.step.model

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.step.load_state_dict(state["step"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            self.start_epoch = int(state["epoch"]) + 1
            if "best" in state:
                self.best = BestEpoch.from_state(state["best"])
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"checkpoint does not match this configuration: {first}") from None

    def _checkpoint_state(self, epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "step": self.step.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                "config": self.cfg.to_dict(), "best": self.best.state()}

    def _epoch_seed(self, epoch: int) -> int:
        return (self.cfg.train.seed * 1_000_003 + epoch) * 1_009 + self.ctx.rank

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.step.train()
        self.train_loader.set_epoch(epoch)
        self.generator.manual_seed(self._epoch_seed(epoch))
        loss_sum = torch.zeros((), device=self.ctx.device, dtype=torch.float64)
        correct = torch.zeros((), device=self.ctx.device, dtype=torch.float64)
        seen = 0
        bar = tqdm(self.train_loader, desc=f"epoch {epoch}/{self.cfg.train.epochs}", leave=False,
                   disable=not (self.progress and self.ctx.is_main), dynamic_ncols=True)
        for batch in bar:
            loss, logits, augmented = self.step_ddp(batch, self.generator)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            n = len(batch)
            loss_sum += loss.detach().double() * n
            first_view = logits[:n].detach()
            correct += (first_view.argmax(1) == augmented.labels[:n]).sum()
            seen += n
        totals = distributed.all_reduce_sum(torch.stack([loss_sum, correct,
                                                         torch.tensor(float(seen), device=loss_sum.device, dtype=torch.float64)]))
        loss_total, correct_total, seen_total = totals.tolist()
        if not math.isfinite(loss_total):
            raise ConfigError(f"training diverged at epoch {epoch} (loss is {loss_total}); lower optim.lr")
        return {"train_loss": loss_total / seen_total, "train_accuracy": correct_total / seen_total,
                "lr": self.optimizer.param_groups[0]["lr"]}

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch, evaluate on the validation split, run hooks, log and checkpoint."""
        tic = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch, **self.train_epoch(epoch)}
        train_time = time.perf_counter() - tic
        val_stats, _, _ = evaluate(self.model, self.val_loader)
        row.update({f"val_{key}": value for key, value in val_stats.compute().items()})
        if self.cfg.train.keep_best:
            self.best.offer(epoch, row["val_accuracy"], self.model)
        context = EpochContext(epoch, self.model, self.step.augment, self.step.labels, self.val_loader,
                               self.generator, self.ctx, self.run_dir, self.cfg.train.epochs,
                               train_loader=self.train_loader, splits=self.splits,
                               optimizer_steps=self.step.steps_done)
        row.update(self.step.augment.on_epoch_end(context))
        row.update(self.step.labels.on_epoch_end(context))
        row["epoch_time_s"] = time.perf_counter() - tic
        row["train_images_per_s"] = self.train_loader.num_samples() * self.ctx.world_size / train_time
        self.logger.log(row)
        if self.ctx.is_main:
            save_checkpoint(self._checkpoint_state(epoch), self.run_dir / CHECKPOINT_NAME)
            if not self.progress:
                print(f"epoch {epoch}: loss {row['train_loss']:.4f}  val acc {row['val_accuracy']:.4f}  "
                      f"val ece {row['val_ece']:.4f}  ({row['epoch_time_s']:.1f}s)", flush=True)
        distributed.barrier()
        return row

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, then evaluate on the test split and write metrics.json."""
        start = time.perf_counter()
        images = 0
        for epoch in range(self.start_epoch, self.cfg.train.epochs + 1):
            self.run_epoch(epoch)
            images += self.train_loader.num_samples() * self.ctx.world_size
        self.logger.close()
        wall = time.perf_counter() - start
        metrics = self.final_metrics()
        metrics["train_wall_time_s"] = wall
        if images:
            metrics["train_images_per_s"] = images / wall
        if self.ctx.is_main:
            write_json_atomic(metrics, self.run_dir / METRICS_NAME)
        distributed.barrier()
        return metrics

    def _best_epoch_metrics(self) -> dict[str, Any]:
        """Test metrics of the best-validation epoch's weights (the final weights are left in place)."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.best.model_state)
        per_class = ClassAccuracy(self.splits.num_classes)
        test_stats, _, _ = evaluate(model, self.test_loader, per_class=per_class)
        return {"epoch": self.best.epoch, "val_accuracy": self.best.val_accuracy, **test_stats.compute(),
                "per_class_accuracy": per_class.compute()}

    def final_metrics(self) -> dict[str, Any]:
        per_class = ClassAccuracy(self.splits.num_classes)
        test_stats, _, _ = evaluate(self.model, self.test_loader, per_class=per_class)
        val_stats, _, _ = evaluate(self.model, self.val_loader)
        metrics: dict[str, Any] = {"dataset": self.cfg.data.name, "split": "test", **test_stats.compute(),
                                   "per_class_accuracy": per_class.compute(),
                                   "brier_scale": "0..2", "val": val_stats.compute(), "epochs": self.cfg.train.epochs}
        if self.cfg.train.keep_best and self.best.model_state is not None:
            metrics["best_val"] = self._best_epoch_metrics()
        if self.ctx.is_main:
            reliability_diagram(test_stats.bins(), self.run_dir / "reliability.png",
                                title=f"{self.cfg.data.name} test ({self.cfg.augment.name} + {self.cfg.labels.name})")
        return metrics
