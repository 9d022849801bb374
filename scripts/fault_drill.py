"""Fault drill: kill a real training process at random moments, resume it each time, compare with an unbroken run.

    python scripts/fault_drill.py [--kills 6] [--seed 0] [--no_ddp] [--workdir DIR]

A tiny run (small CNN, 2,000 Fashion-MNIST images, or scikit-learn's digits without Fashion-MNIST; mixup +
AutoLabel, so augmentation RNG and learned label state are both in play; a checkpoint every 4 steps; 1 thread)
is trained once without interruption, then again while the drill interrupts it ``--kills`` times, alternating
SIGKILL and SIGTERM, at a random moment mid-step or while a checkpoint is being written (checkpoint writes are
slowed to 0.3 s in those attempts, by a wrapper around ``os.fsync`` in the child, so that the window can be hit),
resuming with ``--resume`` after each.  It checks that every SIGTERM ends with exit status 143 and a checkpoint,
that the checkpoint left behind always loads, and that the final metrics.json (timings aside) and weights equal
the unbroken run's.  Then the same under ``torchrun --nproc_per_node 2`` (gloo): one worker is SIGKILLed
mid-training (the job must stop, not hang), the job is resumed and then SIGTERMed as a whole (both workers must
checkpoint at the same step boundary and exit 143), and a last ``--resume`` must finish it identically.

Last line: ``fault_drill: identical`` or ``fault_drill: DIFFERENT ...`` (exit status 1).  Slow (minutes), so not
part of the test suite (tests/test_faults.py is the fast version).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMING = ("train_wall_time_s", "train_images_per_s")
SLOW_WRITES = "AUGLABEL_DRILL_SLOW_WRITES"


def child(argv: list[str]) -> int:
    """The training process: ``auglabel`` with checkpoint writes slowed down when the drill asks for it."""
    import torch

    torch.set_num_threads(1)
    if os.environ.get(SLOW_WRITES):
        real_fsync = os.fsync

        def slow_fsync(fd: int) -> None:
            if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".checkpoint.pt."):
                time.sleep(0.3)  # the temporary file is written, not yet renamed into place
            real_fsync(fd)
        os.fsync = slow_fsync
    from auglabel.cli import main

    return main(argv)


def config(dataset: str) -> dict:
    data = ({"name": "fashion_mnist", "val_size": 500, "train_subset": 2500, "test_subset": 1000}
            if dataset == "fashion_mnist" else {"name": "digits", "val_size": 0.2})
    return {"data": data, "model": {"name": "small_cnn", "params": {"norm": "none"}}, "augment": {"name": "mixup"},
            "labels": {"name": "autolabel"}, "optim": {"lr": 0.05, "warmup_epochs": 0.5},
            "train": {"epochs": 4, "batch_size": 64, "eval_batch_size": 500, "seed": 0, "device": "cpu",
                      "threads": 1, "checkpoint_every_steps": 4, "collective_timeout_s": 20}}


def pick_dataset() -> str:
    from auglabel.data import load_dataset

    try:
        load_dataset("fashion_mnist", "test")
        return "fashion_mnist"
    except Exception:  # noqa: BLE001 - any reason: fall back
        return "digits"


def launch(run: Path, cfg_path: Path, extra_env: dict | None = None, torchrun: bool = False) -> subprocess.Popen:
    from auglabel.engine.checkpoint import has_checkpoint

    head = ["--run_dir", str(run), "--resume"] if has_checkpoint(run) else [str(cfg_path), "--run_dir", str(run),
                                                                             "--overwrite"]
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               __file__, "--child", "train", *head]
    else:
        cmd = [sys.executable, __file__, "--child", "train", *head]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(extra_env or {})}
    log = open(run.parent / f"{run.name}.log", "a")  # noqa: SIM115 - the child owns it until it exits
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300, poll: float = 0.002) -> bool:
    """True once ``predicate()`` holds; False if ``proc`` ended first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    raise TimeoutError("the training process made no progress")


def checkpoint_written_since(run: Path, since: float):
    path = run / "checkpoint.pt"
    return lambda: path.is_file() and path.stat().st_mtime > since


def writing_checkpoint(run: Path):
    return lambda: any(run.glob(".checkpoint.pt.*.tmp"))


def last_line(run: Path) -> str:
    lines = [line for line in (run.parent / f"{run.name}.log").read_text().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def position(run: Path) -> str:
    from auglabel.engine.checkpoint import load_checkpoint

    state = load_checkpoint(run / "checkpoint.pt")  # must load: writes are atomic
    progress = state.get("progress")
    where = (f"epoch {progress['epoch']}, step {progress['batches_done']}" if progress
             else f"end of epoch {state['epoch']}")
    return f"checkpoint at {where} (training step {int(state['step']['step_count'])})"


def interrupted_run(run: Path, cfg_path: Path, kills: int, rng: random.Random) -> list[str]:
    problems, done = [], 0
    plan = [(sig, moment) for _ in range(kills) for sig, moment in [(signal.SIGKILL, "a random moment"),
            (signal.SIGTERM, "a random moment"), (signal.SIGKILL, "a checkpoint write"),
            (signal.SIGTERM, "a checkpoint write")]]
    plan = plan[:kills]
    rng.shuffle(plan)
    while done < len(plan):
        sig, moment = plan[done]
        since = time.time()
        proc = launch(run, cfg_path, {SLOW_WRITES: "1"} if moment == "a checkpoint write" else None)
        started = wait_for(checkpoint_written_since(run, since), proc)  # training is under way
        if started and moment == "a random moment":
            time.sleep(rng.uniform(0.0, 1.0))
        elif started:
            started = wait_for(writing_checkpoint(run), proc)
        if not started or proc.poll() is not None:
            proc.wait()
            print(f"  attempt ended before the {sig.name} (rc {proc.returncode}); the run has finished", flush=True)
            break
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=120)
        if rc == 0:  # a SIGTERM in the final evaluation lets the run finish
            print(f"  the run finished despite the {sig.name} (it came during the final evaluation)", flush=True)
            break
        done += 1
        line = last_line(run)
        torn = "; a half-written temporary file was left behind" if any(run.glob(".checkpoint.pt.*.tmp")) else ""
        print(f"  {done}. {sig.name} at {moment}: exit {rc}; {position(run)}{torn}", flush=True)
        if sig == signal.SIGTERM:
            print(f"     {line}", flush=True)
            if rc != 143 or "stopped by SIGTERM" not in line:
                problems.append(f"SIGTERM {done} ended with exit {rc}: {line}")
        elif rc != -signal.SIGKILL:
            problems.append(f"SIGKILL {done}: exit {rc}")
    if not (run / "metrics.json").is_file() and launch(run, cfg_path).wait() != 0:
        problems.append(f"the final resume failed: {last_line(run)}")
    if done < 5:
        problems.append(f"only {done} interruptions landed (need 5)")
    return problems


def ddp_drill(root: Path, cfg_path: Path, rng: random.Random) -> list[str]:
    """torchrun, 2 workers: SIGKILL one worker, resume, SIGTERM the whole job (the agent), resume to the end."""
    problems = []
    reference, run = root / "ddp_reference", root / "ddp_interrupted"
    if launch(reference, cfg_path, torchrun=True).wait() != 0:
        return [f"the uninterrupted torchrun run failed: {last_line(reference)}"]
    log = root / f"{run.name}.log"
    for target in ("worker 1", "the agent"):
        since, seen = time.time(), log.stat().st_size if log.is_file() else 0
        agent = launch(run, cfg_path, torchrun=True)
        if not wait_for(checkpoint_written_since(run, since), agent):
            return problems + [f"the torchrun run ended before {target} could be signalled"]
        time.sleep(rng.uniform(0.0, 1.0))
        sig = signal.SIGKILL if target == "worker 1" else signal.SIGTERM
        os.kill(worker_with_rank(agent.pid, 1) if target == "worker 1" else agent.pid, sig)
        tic = time.monotonic()
        rc = agent.wait(timeout=300)
        print(f"  torchrun: {sig.name} to {target} -> job stopped {time.monotonic() - tic:.1f}s later (exit {rc}); "
              f"{position(run)}", flush=True)
        lines = [line for line in log.read_text()[seen:].splitlines() if line.startswith("auglabel: ")]
        for line in lines:
            print(f"     {line}", flush=True)
        if rc == 0:
            problems.append(f"the torchrun job exited 0 although {target} got {sig.name}")
        if target == "the agent" and sum("stopped by SIGTERM" in line for line in lines) != 2:
            problems.append("SIGTERM to torchrun: not both workers stopped at a step boundary with a checkpoint")
    if launch(run, cfg_path, torchrun=True).wait() != 0:
        problems.append(f"the torchrun resume failed: {last_line(run)}")
    return problems + compare(reference, run, "torchrun")


def worker_with_rank(agent_pid: int, rank: int) -> int:
    """The pid of the torchrun worker whose RANK is ``rank`` (a child of the agent)."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        for child in Path(f"/proc/{agent_pid}/task/{agent_pid}/children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ:
                return int(child)
        time.sleep(0.05)
    raise RuntimeError(f"no torchrun worker with RANK={rank}")


def compare(reference: Path, run: Path, label: str) -> list[str]:
    import torch

    from auglabel.engine.checkpoint import load_checkpoint

    def metrics(path: Path) -> dict:
        raw = json.loads((path / "metrics.json").read_text())
        return {k: v for k, v in raw.items() if k not in TIMING}

    a, b = metrics(reference), metrics(run)
    problems = [f"{label}: metrics.json {key}: {a.get(key)!r} (unbroken) vs {b.get(key)!r} (interrupted)"
                for key in sorted(set(a) | set(b)) if json.dumps(a.get(key)) != json.dumps(b.get(key))]
    sa, sb = load_checkpoint(reference / "checkpoint.pt")["step"], load_checkpoint(run / "checkpoint.pt")["step"]
    for key in sa:
        same = torch.equal(sa[key], sb[key]) if torch.is_tensor(sa[key]) else sa[key] == sb.get(key)
        if not same:
            problems.append(f"{label}: weights {key} differ")
    return problems


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=6, help="interruptions of the single-process run (>= 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--no_ddp", action="store_true", help="skip the torchrun part")
    parser.add_argument("--workdir", type=str, default=None, help="default: a temporary directory")
    args = parser.parse_args()
    tic, rng = time.monotonic(), random.Random(args.seed)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="fault_drill-"))
    root.mkdir(parents=True, exist_ok=True)
    dataset = pick_dataset()
    cfg_path = root / "drill.yaml"
    cfg_path.write_text(json.dumps(config(dataset), indent=1))
    print(f"fault drill in {root} ({dataset}, {args.kills} interruptions, seed {args.seed})", flush=True)
    reference, run = root / "reference", root / "interrupted"
    if launch(reference, cfg_path).wait() != 0:
        print(f"fault_drill: the uninterrupted run failed: {last_line(reference)}")
        return 1
    print(f"  uninterrupted run done ({time.monotonic() - tic:.0f}s)", flush=True)
    problems = interrupted_run(run, cfg_path, args.kills, rng)
    problems += compare(reference, run, "single process")
    if not args.no_ddp:
        problems += ddp_drill(root, cfg_path, rng)
    print(f"  ({time.monotonic() - tic:.0f}s)")
    if problems:
        print("fault_drill: DIFFERENT\n  " + "\n  ".join(problems))
        return 1
    print("fault_drill: identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
