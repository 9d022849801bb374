"""Run the jobs of a reproduction: each step an ``auglabel`` subprocess, ``--jobs`` at a time.

Every (stem, seed) runs its remaining steps in order (train, calibrate, corruptions, then the
group's extra suites) with the output of each appended to ``<runs>/<stem>-seed<seed>.log``.  A
failed step stops the scheduling of new jobs; the running ones finish, then the failure is
reported in one line.  Ctrl-C terminates the running steps; finished steps are kept.
"""
from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import yaml

from ..errors import AuglabelError
from .papers import scale_overlay
from .plan import Job, Settings, override_arguments

try:
    import fcntl
except ImportError:  # not POSIX: no cross-invocation lock, /proc detection only
    fcntl = None

#: ``python -c ...`` that runs ``auglabel`` with this interpreter (no console script needed)
LAUNCHER = (sys.executable, "-c", "import sys; from auglabel.cli import main; sys.exit(main(sys.argv[1:]))")


class JobFailed(AuglabelError):
    """A step's subprocess exited non-zero."""

    def __init__(self, job: Job):
        super().__init__(f"{job.name} failed; see {job.log}")
        self.job = job


class Interrupted(Exception):
    """The reproduction was interrupted (Ctrl-C) while this job ran."""


@dataclass
class JobResult:
    """What one job did and how long it took (seconds)."""

    job: Job
    steps: list[str] = field(default_factory=list)
    train_s: float = 0.0
    eval_s: float = 0.0
    wait_s: float = 0.0

    @property
    def wall_s(self) -> float:
        return self.train_s + self.eval_s

    @property
    def trained(self) -> bool:
        return "train" in self.steps


def family(stem: str) -> str:
    """The method family of a stem for the ETA (``"mixup_alpha1_autolabel"`` -> ``"mixup"``)."""
    return stem.split("_")[0]


def eta_seconds(finished: Sequence[JobResult], remaining: Sequence[tuple[str, bool]], jobs: int) -> float | None:
    """Remaining wall time: per remaining ``(stem, trains)``, the mean wall time of the finished jobs of
    the same family that did (not) train too, else of all that did (not) train, else of all; summed,
    divided by the number of parallel jobs.  None before anything has finished."""
    done = [r for r in finished if r.steps]
    if not done:
        return None if remaining else 0.0
    overall = statistics.mean(r.wall_s for r in done)
    total = 0.0
    for stem, trains in remaining:
        same = [r.wall_s for r in done if r.trained == trains and family(r.job.stem) == family(stem)]
        kind = [r.wall_s for r in done if r.trained == trains]
        total += statistics.mean(same) if same else statistics.mean(kind) if kind else overall
    return total / max(1, jobs)


def run_device(run: Path) -> str:
    """The device a run was trained on (its config's ``train.device``), used to evaluate it."""
    try:
        raw = yaml.safe_load((run / "config.yaml").read_text())
        return str(raw.get("train", {}).get("device") or "auto")
    except (OSError, yaml.YAMLError, AttributeError):
        return "auto"


class Runner:
    """Executes :class:`Job` s with ``settings`` and reports each finished step through ``say``."""

    def __init__(self, settings: Settings, say: Callable[[str], None], poll_s: float = 15.0):
        self.settings, self.say, self.poll_s = settings, say, poll_s
        self.interrupted = threading.Event()
        self.failed = threading.Event()
        self._processes: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    # ---- commands ----

    def command(self, job: Job, step: str, resume: bool = False) -> list[str]:
        """The ``auglabel`` command line of one step."""
        s = self.settings
        if step == "train":
            overlay = scale_overlay(s.scale)
            scale = [] if overlay is None else ["--config", str(overlay)]
            head = ["--run_dir", str(job.run), "--resume"] if resume else \
                [str(job.config), *scale, "--run_dir", str(job.run), "--overwrite"]
            variant = [] if resume else override_arguments(job.overrides)  # a resumed run has its config
            return [*LAUNCHER, "train", *head, "--train.seed", str(job.seed), "--train.threads", str(s.threads),
                    *variant, *override_arguments(s.overrides)]
        device = ["--device", run_device(job.run)]
        if step == "calibrate":
            return [*LAUNCHER, "calibrate", str(job.run), *device]
        subsample = {"corruptions": s.subsample, "adversarial": s.adv_subsample, "ood": s.ood_subsample,
                     "perturbations": s.p_subsample}[step]
        extra = ["--corruptions", ",".join(s.corruptions)] if step == "corruptions" else []
        return [*LAUNCHER, "evaluate", str(job.run), "--suite", step, "--subsample", str(subsample), *extra,
                "--threads", str(s.threads), *device]

    def _call(self, job: Job, command: list[str], log) -> None:
        log.write("$ " + shlex.join(command) + "\n")
        log.flush()
        env = dict(os.environ, OMP_NUM_THREADS=str(self.settings.threads), MKL_NUM_THREADS=str(self.settings.threads),
                   PYTHONUNBUFFERED="1")
        if self.interrupted.is_set():
            raise Interrupted(job.name)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        with self._lock:
            self._processes.add(process)
        try:
            code = process.wait()
        finally:
            with self._lock:
                self._processes.discard(process)
        if self.interrupted.is_set():
            raise Interrupted(job.name)
        if code != 0:
            raise JobFailed(job)

    # ---- one job ----

    def _wait_until_free(self, job: Job, log) -> float:
        """Hold ``job.log``'s lock (another ``reproduce`` on this run waits) and wait while a process
        started elsewhere (e.g. a training by hand) works on the run; returns the seconds waited."""
        from .plan import busy_elsewhere

        start, told = time.perf_counter(), False
        while True:
            locked = fcntl is None
            if fcntl is not None:
                try:
                    fcntl.flock(log.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    locked = True
                except BlockingIOError:
                    pass
            busy = None if not locked else busy_elsewhere(job.run)
            if locked and busy is None:
                return time.perf_counter() - start
            if locked and fcntl is not None:
                fcntl.flock(log.fileno(), fcntl.LOCK_UN)
            if not told:
                who = f"pid {busy[0]} ({busy[1][:120]})" if busy else "another 'auglabel reproduce'"
                self.say(f"  · {job.name}: waiting for {who}, which is working on {job.run}")
                told = True
            if self.interrupted.wait(self.poll_s):
                raise Interrupted(job.name)

    def run_job(self, job: Job) -> JobResult:
        """Run the job's remaining steps (re-planned once the run is free); return what was done."""
        result = JobResult(job)
        job.log.parent.mkdir(parents=True, exist_ok=True)
        with job.log.open("a") as log:
            result.wait_s = self._wait_until_free(job, log)
            settings = self.settings
            steps = job.steps(settings)  # planned now: a run finished elsewhere while we waited is reused
            for step in steps:
                resume = step == "train" and not settings.fresh and job.can_resume()
                tic = time.perf_counter()
                self._call(job, self.command(job, step, resume), log)
                seconds = time.perf_counter() - tic
                if step == "train":
                    result.train_s += seconds
                else:
                    result.eval_s += seconds
                result.steps.append(step)
                what = "trained (resumed)" if resume else "trained" if step == "train" else \
                    "calibrated" if step == "calibrate" else f"evaluated {step}"
                self.say(f"  · {job.name}: {what} in {seconds:.0f} s")
        return result

    # ---- the pool ----

    def run_all(self, jobs: Sequence[Job], on_done: Callable[[JobResult], None]) -> list[JobResult]:
        """Run ``jobs`` ``settings.jobs`` at a time; ``on_done`` after each.  Raises the first
        :class:`JobFailed` once the running jobs have finished; on Ctrl-C terminates them and re-raises."""
        queue, results, failures = list(jobs), [], []
        running: set[Future] = set()
        with ThreadPoolExecutor(max(1, self.settings.jobs)) as pool:
            try:
                while queue or running:
                    while queue and len(running) < self.settings.jobs and not self.failed.is_set():
                        running.add(pool.submit(self.run_job, queue.pop(0)))
                    if not running:
                        break
                    finished, running = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                    for future in finished:
                        try:
                            result = future.result()
                        except JobFailed as exc:
                            failures.append(exc)
                            self.failed.set()
                            continue
                        results.append(result)
                        on_done(result)
            except KeyboardInterrupt:
                self.interrupt()
                raise
        if failures:
            more = f" (and {len(failures) - 1} more failed)" if len(failures) > 1 else ""
            raise JobFailed(failures[0].job) if not more else AuglabelError(str(failures[0]) + more)
        return results

    def interrupt(self) -> None:
        """Stop everything: no new steps, running subprocesses terminated."""
        self.interrupted.set()
        with self._lock:
            for process in self._processes:
                if process.poll() is None:
                    process.terminate()


__all__ = ["LAUNCHER", "Interrupted", "JobFailed", "JobResult", "Runner", "eta_seconds", "family", "run_device"]
