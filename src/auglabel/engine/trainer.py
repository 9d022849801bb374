"""The training loop: config in, run directory out.

The loop knows nothing about methods: it calls the :class:`TrainingStep` module, the optimiser
(built from :meth:`TrainingStep.param_groups`: the components' own groups plus the rest), the
scheduler and the components' ``on_epoch_end`` hooks.  Every epoch ends with an atomic
checkpoint, and ``train.checkpoint_every_steps`` / ``_minutes`` and SIGTERM add mid-epoch ones
(:mod:`.preemption`, :mod:`.resume`), so ``--resume`` continues a run exactly where it stopped.
"""
from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import distributed
from ..augment import Augmentation
from ..data import ImageDataset
from ..errors import CheckpointError, ConfigError, TrainingStopped
from ..labels import LabelStrategy
from ..report import write_json_atomic
from ..report.plots import reliability_diagram
from .build import build_step, check_compatible, load_splits, make_loaders
from .checkpoint import CHECKPOINT_NAME, load_latest_checkpoint, save_checkpoint
from .config import ExperimentConfig
from .context import EpochContext
from .evaluate import ClassAccuracy, evaluate
from .logger import EpochLogger
from .objects import HandedIn, display_names
from .outputs import write_output, write_text_output
from .preemption import StepMonitor, StopRequest, explain_failure
from .resume import EpochProgress, capture_progress, check_resumable
from .rundir import CONFIG_NAME, DISTORTION_NAME, METRICS_NAME, prepare_run_dir
from .schedule import BestEpoch, WarmupCosine
from .step import TrainingStep

__all__ = ["CONFIG_NAME", "DISTORTION_NAME", "METRICS_NAME", "BestEpoch", "EpochContext", "Trainer", "WarmupCosine",
           "prepare_run_dir"]


def show_progress() -> bool:
    return sys.stderr.isatty()


class Trainer:
    """Trains one experiment into ``run_dir`` (default: ``cfg.run_dir``); :meth:`fit` returns the test metrics.

    ``model``, ``augmentation``, ``label_strategy``, ``train_data`` + ``test_data``: ready objects instead of their
    config sections (:mod:`.objects`: how a plain module is wrapped); a resume needs them handed in again."""

    def __init__(self, cfg: ExperimentConfig | None = None, run_dir: str | Path | None = None, *, resume: bool = False,
                 overwrite: bool = False, ctx: distributed.DistContext | None = None, progress: bool | None = None,
                 model: nn.Module | None = None, augmentation: Augmentation | None = None,
                 label_strategy: LabelStrategy | None = None, train_data: ImageDataset | None = None,
                 test_data: ImageDataset | None = None):
        objects = HandedIn(model, augmentation, label_strategy, train_data, test_data)
        cfg = self.cfg = objects.describe(ExperimentConfig() if cfg is None else cfg).validate()
        if run_dir is None and cfg.run_dir is None:
            raise ConfigError("Trainer needs a run directory: pass run_dir or set cfg.run_dir")
        self.run_dir = Path(cfg.run_dir if run_dir is None else run_dir)
        self.ctx = ctx or distributed.setup(cfg.train.device, cfg.train.collective_timeout_s)
        self.progress = show_progress() if progress is None else progress
        if self.ctx.is_main:
            prepare_run_dir(self.run_dir, resume=resume, overwrite=overwrite)
        distributed.barrier()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        if cfg.train.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(cfg.train.seed)

        self.splits = load_splits(cfg, objects)
        self.train_loader, self.val_loader, self.test_loader = make_loaders(self.splits, cfg, self.ctx)
        if cfg.train.precision == "bf16" and self.ctx.device.type != "cuda" and self.ctx.is_main:
            print(f"note: train.precision bf16 applies on CUDA only; training on {self.ctx.device} in fp32",
                  file=sys.stderr)
        # the components are set up (their parameters created) here, before the optimiser and the restore
        self.step: TrainingStep = build_step(cfg, self.splits, self.ctx.device, objects)
        check_compatible(self.step.augment, self.step.label_strategy, self.step.model, self.val_loader)
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
        self._progress: EpochProgress | None = None  # the epoch in progress of a mid-epoch checkpoint
        if resume:
            state = load_latest_checkpoint(self.run_dir)
            check_resumable(state, cfg, self.ctx.world_size, str(self.run_dir / CHECKPOINT_NAME))
            self._restore(state)
        if self.ctx.is_main:
            write_text_output("config", yaml.safe_dump(cfg.to_dict(), sort_keys=False), self.run_dir / CONFIG_NAME)
            if self.splits.distortion is not None:  # which samples were dropped / relabelled
                record = self.splits.distortion.to_dict()
                write_output("distortion record", self.run_dir / DISTORTION_NAME,
                             lambda path: write_json_atomic(record, path))
        self.logger = EpochLogger(self.run_dir, enabled=self.ctx.is_main,
                                  resume_epoch=self.start_epoch - 1 if resume else None)
        self.stop_request = StopRequest()
        self.monitor = StepMonitor(cfg.train, self.ctx.device, self.stop_request)
        self._where, self._images_run = "before training", 0

    @property
    def model(self) -> nn.Module:
        return self.step.model

    @property
    def label_strategy(self) -> LabelStrategy:
        return self.step.label_strategy

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.step.load_state_dict(state["step"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])
            if state.get("cuda_rng") is not None and self.ctx.device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], self.ctx.device)
            self.start_epoch = int(state["epoch"]) + 1
            if "best" in state:
                self.best = BestEpoch.from_state(state["best"])
            if state.get("progress") is not None:
                self._progress = EpochProgress.from_state(state["progress"], self.ctx.rank)
                self.start_epoch = self._progress.epoch
        except (KeyError, RuntimeError, ValueError, IndexError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"checkpoint does not match this configuration: {first}") from None

    def _checkpoint_state(self, epoch: int, progress: EpochProgress | None = None) -> dict[str, Any]:
        """``epoch``: the last finished one; ``progress``: the epoch in progress (gathered from every rank)."""
        device = self.ctx.device
        state = {"epoch": epoch, "step": self.step.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                 "config": self.cfg.to_dict(), "best": self.best.state()}
        if progress is not None:
            state["progress"] = {"epoch": progress.epoch, "batches_done": progress.batches_done,
                                 "world_size": self.ctx.world_size,
                                 "ranks": distributed.all_gather_object(progress.to_state())}
        return state

    def _save(self, epoch: int, progress: EpochProgress | None = None) -> None:
        """Every rank calls this (a mid-epoch state is gathered); the main rank writes."""
        state = self._checkpoint_state(epoch, progress)
        if self.ctx.is_main:
            save_checkpoint(state, self.run_dir / CHECKPOINT_NAME)
        self.monitor.saved()
        distributed.barrier()

    def _stopped(self, where: str) -> TrainingStopped:
        return TrainingStopped(f"stopped by SIGTERM at {where}; checkpoint written to {self.run_dir / CHECKPOINT_NAME}"
                               f"; continue with: auglabel train --run_dir {self.run_dir} --resume")

    def _epoch_seed(self, epoch: int) -> int:
        return (self.cfg.train.seed * 1_000_003 + epoch) * 1_009 + self.ctx.rank

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch (or the rest of the one a mid-epoch checkpoint was in): the monitor checkpoints or stops
        at step boundaries and raises on a non-finite loss."""
        self.step.train()
        self.train_loader.set_epoch(epoch)
        device, num_batches = self.ctx.device, len(self.train_loader)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.float64)
        seen = start = 0
        progress, self._progress = self._progress, None
        if progress is not None and progress.epoch == epoch:
            progress.restore_rng(self.generator, device)
            loss_sum.fill_(progress.loss_sum)
            correct.fill_(progress.correct)
            seen, start = progress.seen, progress.batches_done
        else:
            self.generator.manual_seed(self._epoch_seed(epoch))
        bar = tqdm(self.train_loader.iter_from(start), total=num_batches, initial=start, leave=False,
                   desc=f"epoch {epoch}/{self.cfg.train.epochs}", disable=not (self.progress and self.ctx.is_main),
                   dynamic_ncols=True)
        for batch_no, batch in enumerate(bar, start + 1):
            self._where = f"at epoch {epoch}, step {batch_no} of {num_batches}"
            loss, logits, augmented = self.step_ddp(batch, self.generator)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.monitor.observe(loss, batch_no)
            n = len(batch)
            loss_sum += loss.detach().double() * n
            first_view = logits[:n].detach()
            correct += (first_view.argmax(1) == augmented.labels[:n]).sum()
            seen += n
            decision = self.monitor.after_step(epoch=epoch, batch=batch_no, num_batches=num_batches,
                                               global_step=self.step.steps_done)
            if decision.checkpoint:
                snapshot = capture_progress(epoch, batch_no, loss_sum, correct, seen, self.generator, device)
                self._save(epoch - 1, snapshot)
            if decision.stop:
                raise self._stopped(f"epoch {epoch}, step {batch_no} of {num_batches}")
        self._images_run = (num_batches - start) * (self.train_loader.batch_size // self.ctx.world_size)
        self.monitor.check_finite(epoch=epoch, batch=num_batches, num_batches=num_batches,
                                  global_step=self.step.steps_done)
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
        self._where = f"at the end of epoch {epoch}"
        val_stats, _, _ = evaluate(self.model, self.val_loader)
        row.update({f"val_{key}": value for key, value in val_stats.compute().items()})
        if self.cfg.train.keep_best:
            self.best.offer(epoch, row["val_accuracy"], self.model)
        context = EpochContext(epoch, self.model, self.step.augment, self.label_strategy, self.val_loader,
                               self.generator, self.ctx, self.run_dir, self.cfg.train.epochs,
                               train_loader=self.train_loader, splits=self.splits,
                               optimizer_steps=self.step.steps_done)
        row.update(self.step.augment.on_epoch_end(context))
        row.update(self.label_strategy.on_epoch_end(context))
        row["epoch_time_s"] = time.perf_counter() - tic
        row["train_images_per_s"] = self._images_run * self.ctx.world_size / max(train_time, 1e-9)
        self.logger.log(row)
        self._save(epoch)
        if self.ctx.is_main and not self.progress:
            print(f"epoch {epoch}: loss {row['train_loss']:.4f}  val acc {row['val_accuracy']:.4f}  "
                  f"val ece {row['val_ece']:.4f}  ({row['epoch_time_s']:.1f}s)", flush=True)
        if self.monitor.stop_agreed():  # SIGTERM during validation or the hooks: the checkpoint is written
            raise self._stopped(f"the end of epoch {epoch}")
        return row

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, then evaluate on the test split and write metrics.json.

        While training, SIGTERM makes the loop checkpoint at the next step boundary and raise
        TrainingStopped; a dead or hung torchrun peer is a one-line DistributedError."""
        try:
            return self._fit()
        except (RuntimeError, OSError) as exc:
            explained = explain_failure(exc, self.ctx, self._where)
            if explained is exc:
                raise
            raise explained from None

    def _fit(self) -> dict[str, Any]:
        start = time.perf_counter()
        images = 0
        with self.stop_request:  # a SIGTERM in the final evaluation lets it finish: the run is then complete
            for epoch in range(self.start_epoch, self.cfg.train.epochs + 1):
                self.run_epoch(epoch)
                images += self._images_run * self.ctx.world_size
            self._where = "in the final evaluation"
            self.logger.close()
            wall = time.perf_counter() - start
            metrics = self.final_metrics()
            metrics["train_wall_time_s"] = wall
            if images:
                metrics["train_images_per_s"] = images / wall
            if self.ctx.is_main:
                write_output("metrics", self.run_dir / METRICS_NAME, lambda path: write_json_atomic(metrics, path))
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
        dataset, augmentation, label_strategy = display_names(self.cfg, self.splits.train_set.name)
        metrics: dict[str, Any] = {"dataset": dataset, "split": "test", **test_stats.compute(),
                                   "per_class_accuracy": per_class.compute(),
                                   "brier_scale": "0..2", "val": val_stats.compute(), "epochs": self.cfg.train.epochs}
        if self.cfg.train.keep_best and self.best.model_state is not None:
            metrics["best_val"] = self._best_epoch_metrics()
        if self.ctx.is_main:
            title = f"{dataset} test ({augmentation} + {label_strategy})"
            try:
                reliability_diagram(test_stats.bins(), self.run_dir / "reliability.png", title=title)
            except OSError as exc:  # a plot is not worth losing the metrics for
                print(f"note: could not write {self.run_dir / 'reliability.png'}: {exc.strerror or exc}",
                      file=sys.stderr)
        return metrics
