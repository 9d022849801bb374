"""Stopping cleanly: SIGTERM at the next step boundary, non-finite losses at once, step and time checkpoints.

:class:`StopRequest` turns SIGTERM into a flag while :meth:`Trainer.fit` runs; the loop writes a checkpoint
at the next step boundary and raises :class:`~auglabel.errors.TrainingStopped`, which the CLI turns into exit
status :data:`~auglabel.errors.PREEMPTED_EXIT_STATUS` (143).

:class:`StepMonitor` decides, after every optimiser step, whether to checkpoint or stop.  The non-finite-loss
check is cheap: each step adds one tiny on-device ``torch.where`` that records the first bad step's number
(no host sync); the flag is read with one ``.item()`` only at a *check*: every step on a CPU (where a read
costs nothing, so a NaN stops the run at the very step it appears), every ``train.check_every_steps`` (default
50) steps on an accelerator, and always before any checkpoint is written, so a checkpoint never holds the
weights of a diverged step.  Under torchrun the check is also where the processes agree (one all-reduce of
three numbers) on stopping (any of them got SIGTERM), on a time-based checkpoint and on a non-finite loss,
so they all stop, or save, at the same step.
"""
from __future__ import annotations

import errno
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable

import torch

from .. import distributed
from ..errors import ConfigError, OutputError
from .config import TrainConfig

ACCELERATOR_CHECK_EVERY = 50


class StopRequest:
    """Context manager: while active, SIGTERM sets :attr:`requested` instead of killing the process.

    Installed only from the main thread (Python delivers signals there); the previous handler comes back
    on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:  # noqa: ANN001, ARG002
        self.requested = True

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


@dataclass
class Decision:
    checkpoint: bool = False
    stop: bool = False


class StepMonitor:
    """Per-step bookkeeping of one training process (see the module docstring)."""

    def __init__(self, cfg: TrainConfig, device: torch.device, stop: StopRequest, *,
                 clock: Callable[[], float] = time.monotonic):
        self.every_steps = cfg.checkpoint_every_steps
        self.every_s = cfg.checkpoint_every_minutes * 60.0
        self.check_every = cfg.check_every_steps or (1 if device.type == "cpu" else ACCELERATOR_CHECK_EVERY)
        self.device, self.stop, self.clock = device, stop, clock
        self.distributed = distributed.is_distributed()
        self.last_save = clock()
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    def saved(self) -> None:
        self.last_save = self.clock()

    def observe(self, loss: torch.Tensor, batch: int) -> None:
        """Record ``batch`` (1-based, in this epoch) as the first bad one if ``loss`` is not finite; no sync."""
        bad = torch.logical_not(torch.isfinite(loss.detach())) & (self.first_bad < 0)
        self.first_bad = torch.where(bad, batch, self.first_bad)

    def after_step(self, *, epoch: int, batch: int, num_batches: int, global_step: int) -> Decision:
        """After the optimiser step of ``batch``: checkpoint now? stop now?  Raises ConfigError on a
        non-finite loss seen by this process (or, under torchrun, by another)."""
        step_due = self.every_steps > 0 and global_step % self.every_steps == 0 and batch < num_batches
        if not self.distributed:  # stop and time are host-side here: free to look at every step
            stop = self.stop.requested
            time_due = self.every_s > 0 and self.clock() - self.last_save >= self.every_s and batch < num_batches
            if step_due or stop or time_due or global_step % self.check_every == 0:
                self.check_finite(epoch=epoch, batch=batch, num_batches=num_batches, global_step=global_step)
            return Decision(checkpoint=step_due or stop or time_due, stop=stop)
        if not (step_due or global_step % self.check_every == 0):
            return Decision()
        stop, time_due = self._agree(epoch=epoch, batch=batch, num_batches=num_batches, global_step=global_step)
        return Decision(checkpoint=step_due or stop or (time_due and batch < num_batches), stop=stop)

    def check_finite(self, *, epoch: int, batch: int, num_batches: int, global_step: int) -> None:
        """Read the flag (one sync); under torchrun all processes agree.  Raises ConfigError if any was bad."""
        if self.distributed:
            self._agree(epoch=epoch, batch=batch, num_batches=num_batches, global_step=global_step)
            return
        self._raise_if_bad(int(self.first_bad.item()), False, epoch, batch, num_batches, global_step)

    def stop_agreed(self) -> bool:
        """Whether any process has been asked to stop (one all-reduce under torchrun)."""
        if not self.distributed:
            return self.stop.requested
        flags = torch.tensor([float(self.stop.requested)], dtype=torch.float64)
        return bool(distributed.all_reduce_sum(flags).item() > 0)

    def _agree(self, *, epoch: int, batch: int, num_batches: int, global_step: int) -> tuple[bool, bool]:
        local_bad = self.first_bad.to("cpu", torch.float64)
        time_due = self.every_s > 0 and self.clock() - self.last_save >= self.every_s
        flags = torch.stack([torch.tensor(float(self.stop.requested), dtype=torch.float64),
                             torch.tensor(float(time_due), dtype=torch.float64), (local_bad >= 0).double()])
        stop, due, bad = (distributed.all_reduce_sum(flags) > 0).tolist()
        if bad:
            self._raise_if_bad(int(local_bad.item()), True, epoch, batch, num_batches, global_step)
        return stop, due

    @staticmethod
    def _raise_if_bad(bad_batch: int, elsewhere: bool, epoch: int, batch: int, num_batches: int,
                      global_step: int) -> None:
        if bad_batch < 0 and not elsewhere:
            return
        keep = "the last good checkpoint is kept; lower optim.lr (or check the data) and start again"
        if bad_batch < 0:
            raise ConfigError(f"training diverged: another process saw a non-finite loss by epoch {epoch}, step "
                              f"{batch} of {num_batches} (training step {global_step}); {keep}")
        raise ConfigError(f"training diverged: non-finite loss at epoch {epoch}, step {bad_batch} of {num_batches} "
                          f"(training step {global_step - (batch - bad_batch)}); {keep}")


def explain_failure(exc: BaseException, ctx: distributed.DistContext, where: str) -> BaseException:
    """The one-line error for a failure that escaped the training loop, or ``exc`` itself: a collective whose
    peer died or hung (torchrun), or a write that hit a full disk in a component's own file."""
    if isinstance(exc, RuntimeError) and ctx.enabled and distributed.is_communication_error(exc):
        return distributed.lost_peer_error(exc, ctx.rank, ctx.world_size, where)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        code = errno.errorcode.get(exc.errno or 0, "")
        return OutputError(f"cannot write {exc.filename or 'a file'} {where}: {exc.strerror} [{code}]; "
                           "the last checkpoint is intact")
    return exc
