"""Faults: mid-epoch checkpoints and exact resume, SIGTERM (exit 143), a dead or hung torchrun peer, a full disk,
a non-finite loss mid-epoch, and checkpoints from another version or configuration.

Fast (digits, 2 epochs of 17 steps); the slow end-to-end version that kills real processes at random moments
is scripts/fault_drill.py.
"""
import csv
import errno
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

import auglabel.report.io as report_io
import fault_helper
from auglabel import __version__
from auglabel.cli import main
from auglabel.engine.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME, load_checkpoint
from auglabel.engine.config import ExperimentConfig, TrainConfig
from auglabel.engine.preemption import StepMonitor, StopRequest
from auglabel.engine.step import TrainingStep
from auglabel.engine.trainer import Trainer
from auglabel.errors import PREEMPTED_EXIT_STATUS, CheckpointError, ConfigError, OutputError

HELPER = str(Path(__file__).with_name("fault_helper.py"))
TIMING = ("train_wall_time_s", "train_images_per_s")
RAW = {
    "data": {"name": "digits", "val_size": 0.2},
    "model": {"name": "small_cnn", "params": {"norm": "none"}},
    "augment": {"name": "mixup"},
    "labels": {"name": "autolabel"},  # learned per-bucket state, updated from the validation split each epoch
    "optim": {"lr": 0.05, "warmup_epochs": 0.5},
    "train": {"epochs": 2, "batch_size": 64, "eval_batch_size": 256, "seed": 0, "device": "cpu", "threads": 1,
              "checkpoint_every_steps": 5},
}


def _cfg(augment=None, labels=None, **train) -> ExperimentConfig:
    raw = json.loads(json.dumps(RAW))
    raw["train"].update(train)
    raw["augment"] = augment or raw["augment"]
    raw["labels"] = labels or raw["labels"]
    return ExperimentConfig.from_dict(raw)


def _same(a: dict, b: dict) -> bool:
    """Equal metrics, timings aside (compared as JSON text: NaN equals NaN, 0.1 + 1e-17 does not equal 0.1)."""
    def strip(m):
        return json.dumps({k: v for k, v in m.items() if k not in TIMING}, sort_keys=True, default=str)
    return strip(a) == strip(b)


class _Killed(BaseException):
    """Stands for SIGKILL in-process: nothing catches it, nothing is written after it."""


@pytest.fixture
def fault_at(monkeypatch):
    """``fault_at(step, action)``: run ``action(loss)`` (raise, or return a replacement loss) at training step
    ``step`` (1-based, counted like ``TrainingStep.steps_done``)."""
    original = TrainingStep.forward

    def install(step, action):
        def forward(self, batch, generator):
            loss, logits, augmented = original(self, batch, generator)
            if self.training and self.steps_done == step:
                loss = action(loss)
            return loss, logits, augmented
        monkeypatch.setattr(TrainingStep, "forward", forward)
        return lambda: monkeypatch.setattr(TrainingStep, "forward", original)

    return install


def _kill(loss):
    raise _Killed


# ---- mid-epoch checkpoints resume exactly ----

@pytest.mark.parametrize("augment,labels", [
    ({"name": "mixup"}, {"name": "autolabel"}),  # augmentation RNG + learned label table
    ({"name": "standard"}, {"name": "pls"}),  # crop/flip RNG + PLS step counter and head
])
def test_a_kill_mid_epoch_resumes_from_the_step_checkpoint_bit_identically(tmp_path, fault_at, augment, labels):
    straight = Trainer(_cfg(augment, labels), tmp_path / "straight", progress=False)
    expected = straight.fit()
    restore = fault_at(28, _kill)  # epoch 2, step 11 of 17: the step checkpoint at step 25 (epoch 2, step 8) is kept
    with pytest.raises(_Killed):
        Trainer(_cfg(augment, labels), tmp_path / "killed", progress=False).fit()
    restore()
    state = load_checkpoint(tmp_path / "killed" / CHECKPOINT_NAME)
    assert state["epoch"] == 1 and state["progress"]["epoch"] == 2 and state["progress"]["batches_done"] == 8
    assert int(state["step"]["step_count"]) == 25
    resumed = Trainer(_cfg(augment, labels), tmp_path / "killed", resume=True, progress=False)
    assert resumed.start_epoch == 2 and resumed.step.steps_done == 25
    assert _same(resumed.fit(), expected)
    for key, value in straight.step.state_dict().items():
        other = resumed.step.state_dict()[key]
        assert torch.equal(other, value) if torch.is_tensor(value) else other == value, key
    assert _log(tmp_path / "killed") == _log(tmp_path / "straight")  # the resumed epoch's train loss too


def _log(run):
    """log.csv without its timing columns (``*_s``): one row per epoch, none repeated."""
    with open(run / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    return [{k: v for k, v in row.items() if not k.endswith("_s")} for row in rows]


def test_time_based_checkpoints_follow_the_clock():
    now = [0.0]
    monitor = StepMonitor(TrainConfig(checkpoint_every_minutes=1.0), torch.device("cpu"), StopRequest(),
                          clock=lambda: now[0])
    assert not monitor.after_step(epoch=1, batch=1, num_batches=9, global_step=1).checkpoint
    now[0] = 61.0
    assert monitor.after_step(epoch=1, batch=2, num_batches=9, global_step=2).checkpoint
    monitor.saved()
    assert not monitor.after_step(epoch=1, batch=3, num_batches=9, global_step=3).checkpoint
    now[0] = 200.0  # the last step of an epoch is left to the epoch checkpoint
    assert not monitor.after_step(epoch=1, batch=9, num_batches=9, global_step=9).checkpoint


# ---- SIGTERM ----

def test_sigterm_checkpoints_at_the_next_step_and_exits_143(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(json.dumps(RAW))
    assert main(["train", str(config), "--run_dir", str(tmp_path / "straight")]) == 0
    run = tmp_path / "stopped"
    result = subprocess.run([sys.executable, HELPER, "sigterm", "23", "0", "--", str(config), "--run_dir", str(run)],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == PREEMPTED_EXIT_STATUS == 143, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("auglabel: stopped by SIGTERM at epoch 2, step 6 of 17;") and "--resume" in last, last
    state = load_checkpoint(run / CHECKPOINT_NAME)
    assert state["progress"]["batches_done"] == 6 and int(state["step"]["step_count"]) == 23
    capsys.readouterr()
    assert main(["train", "--run_dir", str(run), "--resume"]) == 0
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert _same(json.loads((run / "metrics.json").read_text()), straight)


# ---- torchrun: one process dies or hangs ----

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, port, kind, step, argv, log):
    """One process of a 2-process gloo job, forked from the test (no second import of torch: fast)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    with open(log, "w") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        sys.stdout, sys.stderr = os.fdopen(1, "w", closefd=False), os.fdopen(2, "w", closefd=False)
        code = 1
        try:
            fault_helper.inject(kind, step, 1)
            code = main(["train", *argv])
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)  # never back into pytest


def _two_processes(tmp_path, argv, kind="none", step=0):
    port, fork = _free_port(), multiprocessing.get_context("fork")
    procs = [fork.Process(target=_rank, args=(rank, port, kind, step, argv, tmp_path / f"rank{rank}.log"))
             for rank in (0, 1)]
    for proc in procs:
        proc.start()
    return procs


@pytest.mark.parametrize("kind", ["exit", pytest.param("hang", marks=pytest.mark.slow)])
def test_when_one_process_dies_or_hangs_the_other_stops_with_one_line_and_the_job_resumes(tmp_path, kind):
    config = tmp_path / "exp.yaml"
    config.write_text(json.dumps({**RAW, "train": {**RAW["train"], "collective_timeout_s": 4}}))
    run = tmp_path / "ddp"
    tic = time.monotonic()
    rank0, rank1 = _two_processes(tmp_path, [str(config), "--run_dir", str(run)], kind, 8)  # rank 1 fails in step 8
    rank0.join(timeout=120)
    waited = time.monotonic() - tic
    rank1.kill()
    rank1.join()
    err = (tmp_path / "rank0.log").read_text()
    assert rank0.exitcode == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("auglabel: error: process 0 of 2: another process died or stopped answering at epoch 1, "
                           "step 8 of 17") and "--resume" in last, last
    assert waited < 60  # not PyTorch's default 30-minute wait
    state = load_checkpoint(run / CHECKPOINT_NAME)  # the step-5 checkpoint, with both processes' RNG states
    assert state["progress"]["batches_done"] == 5 and len(state["progress"]["ranks"]) == 2
    if kind == "exit":  # the job resumes from the mid-epoch checkpoint on both processes
        for proc in _two_processes(tmp_path, ["--run_dir", str(run), "--resume"]):
            proc.join(timeout=300)
            assert proc.exitcode == 0, (tmp_path / "rank0.log").read_text()[-2000:]
        assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
        assert "progress" not in load_checkpoint(run / CHECKPOINT_NAME)


# ---- a full disk ----

class _FullDisk:
    """A file whose disk fills up half-way through the first write."""

    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()

    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.handle, name)


@pytest.fixture
def disk_full(monkeypatch):
    """``disk_full(name)``: from now on the atomic writer's temporary file for ``name`` fills the disk half-way."""
    def install(name):
        def fdopen(fd, *args, **kwargs):
            handle = os.fdopen(fd, *args, **kwargs)
            target = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
            return _FullDisk(handle) if target.startswith(f".{name}.") else handle
        monkeypatch.setattr(report_io, "os", types.SimpleNamespace(**{**vars(os), "fdopen": fdopen}))
    return install


@pytest.mark.parametrize("name", [CHECKPOINT_NAME, "log.csv"])
def test_a_full_disk_mid_training_keeps_the_previous_file_and_says_so_in_one_line(tmp_path, disk_full, name):
    trainer = Trainer(_cfg(), tmp_path / "run", progress=False)
    trainer.run_epoch(1)
    before = (tmp_path / "run" / name).read_bytes()
    disk_full(name)
    with pytest.raises(OutputError) as caught:
        trainer.run_epoch(2)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"cannot write {'checkpoint' if name == CHECKPOINT_NAME else 'log'} ")
    assert f"No space left on device [ENOSPC]; the previous {name} is intact" in message
    assert (tmp_path / "run" / name).read_bytes() == before
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)["epoch"] == 1


def test_a_full_disk_writing_metrics_keeps_the_previous_metrics_and_exits_2(tmp_path, disk_full, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(json.dumps({**RAW, "train": {**RAW["train"], "epochs": 1}}))
    run = tmp_path / "run"
    assert main(["train", str(config), "--run_dir", str(run)]) == 0
    before = (run / "metrics.json").read_bytes()
    capsys.readouterr()
    disk_full("metrics.json")
    assert main(["train", "--run_dir", str(run), "--resume"]) == 2  # re-evaluates the finished run, then writes
    err = capsys.readouterr().err.strip()
    assert err == (f"auglabel: error: cannot write metrics {run / 'metrics.json'}: No space left on device [ENOSPC]; "
                   "the previous metrics.json is intact")
    assert (run / "metrics.json").read_bytes() == before


# ---- a non-finite loss mid-epoch ----

@pytest.mark.parametrize("value,check_every,stops_at", [
    (float("nan"), 0, 13),  # CPU: the flag is read every step, the run stops in the bad step
    (float("inf"), 4, 15),  # accelerator-like cadence: stops at the next check (the step-15 checkpoint forces one)
])
def test_a_non_finite_loss_stops_with_its_step_and_keeps_the_last_good_checkpoint(tmp_path, fault_at, value,
                                                                                   check_every, stops_at):
    fault_at(13, lambda loss: loss * value)
    trainer = Trainer(_cfg(check_every_steps=check_every), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError) as caught:
        trainer.fit()
    assert "non-finite loss at epoch 1, step 13 of 17 (training step 13)" in str(caught.value)
    assert "last good checkpoint is kept" in str(caught.value)
    assert trainer.step.steps_done == stops_at
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert state["progress"]["batches_done"] == 10
    assert all(torch.isfinite(v).all() for v in state["step"].values() if torch.is_tensor(v) and v.is_floating_point())


# ---- checkpoints from another version or configuration ----

def _finished_run(tmp_path) -> Path:
    Trainer(_cfg(epochs=1), tmp_path / "run", progress=False).fit()
    return tmp_path / "run"


def test_a_checkpoint_of_another_version_or_configuration_is_refused_by_name(tmp_path):
    run = _finished_run(tmp_path)
    with pytest.raises(CheckpointError, match=r"another configuration \(optim\.lr 0\.05 -> 0\.1; train\.seed 0 -> 1\)"):
        cfg = _cfg(epochs=1, seed=1)
        cfg.optim.lr = 0.1
        Trainer(cfg, run, resume=True, progress=False)
    Trainer(_cfg(epochs=2, checkpoint_every_steps=3), run, resume=True, progress=False)  # these may change
    path = run / CHECKPOINT_NAME
    state = load_checkpoint(path)
    torch.save({**state, "auglabel_version": "0.0.9"}, path)
    with pytest.raises(CheckpointError, match=f"written by auglabel 0.0.9, this is auglabel {__version__}"):
        Trainer(_cfg(epochs=1), run, resume=True, progress=False)
    torch.save({**state, "version": 99}, path)
    with pytest.raises(CheckpointError, match="format version 99"):
        Trainer(_cfg(epochs=1), run, resume=True, progress=False)
    torch.save({**state, "progress": {"epoch": 1, "batches_done": 3, "world_size": 2, "ranks": [{}, {}]}}, path)
    with pytest.raises(CheckpointError, match="middle of epoch 1 by 2 processes; resume it with 2"):
        Trainer(_cfg(epochs=1), run, resume=True, progress=False)


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    run = _finished_run(tmp_path)
    previous = load_checkpoint(run / PREVIOUS_NAME)
    assert previous["progress"]["batches_done"] == 15  # the step checkpoint before the epoch's end
    (run / CHECKPOINT_NAME).write_bytes((run / CHECKPOINT_NAME).read_bytes()[:100])
    resumed = Trainer(_cfg(epochs=1), run, resume=True, progress=False)
    assert "resuming from checkpoint.prev.pt" in capsys.readouterr().err
    assert resumed.start_epoch == 1 and resumed.step.steps_done == 15
    (run / PREVIOUS_NAME).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        Trainer(_cfg(epochs=1), run, resume=True, progress=False)
