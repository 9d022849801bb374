"""What a reproduction has to do: the (stem, seed) jobs and, per job, the steps not yet done.

Each step is skipped when its result is already in the run's ``metrics.json``, so an interrupted
reproduction continues where it stopped, and runs trained by hand (``auglabel train
configs/testbed/<stem>.yaml --run_dir <runs>/<stem>-seed<seed> --train.seed <seed>``) are reused
as they are.  Everything here is pure or reads files only.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..report.keys import lookup
from .papers import Group, Paper, stem_suites

#: every step of a job, in the order it runs
STEPS = ("train", "calibrate", "corruptions", "adversarial", "ood", "perturbations")
ADV_EPS = ("0.02", "0.03", "0.04")


def benchmark_corruptions() -> tuple[str, ...]:
    from ..corruptions import BENCHMARK_CORRUPTIONS

    return tuple(BENCHMARK_CORRUPTIONS)


@dataclass
class Settings:
    """The options of ``auglabel reproduce`` (see its ``--help``)."""

    runs: Path
    out: Path
    seeds: Sequence[int] = (0, 1, 2)
    jobs: int = 2
    threads: int = 1
    scale: str = "small"
    overrides: Sequence[str] = ()
    subsample: int = 1000
    adv_subsample: int = 200
    ood_subsample: int = 1000
    p_subsample: int = 300
    corruptions: Sequence[str] = field(default_factory=benchmark_corruptions)
    groups: Sequence[str] | None = None
    fresh: bool = False
    dry_run: bool = False
    report_only: bool = False

    def validate(self) -> "Settings":
        from .papers import scale_overlay

        scale_overlay(self.scale)  # a one-line error naming the scales
        for name in ("jobs", "threads", "subsample", "adv_subsample", "ood_subsample", "p_subsample"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name} must be an integer >= 1, got {value!r}")
        if not self.seeds:
            raise ConfigError("--seeds needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds repeats a seed: {list(self.seeds)}")
        if not self.corruptions:
            raise ConfigError("--corruptions needs at least one corruption")
        from ..robustness.corruption_data import check_corruption_names

        self.corruptions = tuple(check_corruption_names(list(self.corruptions)))
        override_arguments(self.overrides)  # a malformed override fails before anything runs
        return self


def override_arguments(overrides: Sequence[str]) -> list[str]:
    """``["train.epochs=3"]`` -> ``["--train.epochs", "3"]`` (the ``auglabel train`` form)."""
    arguments = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key or key.startswith("-") or not key.split(".")[0]:
            raise ConfigError(f"--override wants section.key=value, got {item!r}")
        arguments += [f"--{key}", value]
    return arguments


def read_metrics(run: Path) -> dict[str, Any]:
    """The run's metrics.json, or ``{}`` when there is none yet."""
    path = run / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def step_done(step: str, metrics: Mapping[str, Any], settings: Settings) -> bool:
    """Whether ``metrics`` already hold ``step``'s result for these settings.

    -C, OOD and -P results count only when evaluated on the requested number of images (and, for
    -C, on exactly the requested corruptions), so a changed ``--subsample`` re-evaluates.
    """
    if step == "train":
        return "accuracy" in metrics
    if step == "calibrate":
        return lookup(metrics, "temperature_scaling.after.ece") is not None
    if step == "corruptions":
        return (metrics.get("corruption.count") == settings.subsample
                and list(metrics.get("corruption.names") or []) == list(settings.corruptions)
                and "corruption.per_severity" in metrics)
    if step == "adversarial":
        return all(f"adversarial.{eps}" in metrics for eps in ADV_EPS)
    if step == "ood":
        return "ood.auroc_noise" in metrics and metrics.get("ood.count") == settings.ood_subsample
    if step == "perturbations":
        return ("perturbation.flip_probability" in metrics
                and metrics.get("perturbation.count", settings.p_subsample) == settings.p_subsample)
    raise ValueError(f"unknown step {step!r}")


def planned_steps(metrics: Mapping[str, Any], suites: Sequence[str], settings: Settings) -> list[str]:
    """The steps still to run for a run with ``metrics`` that needs the extra ``suites``.

    An untrained run needs everything (training starts from a clean run directory).
    """
    wanted = ["train", "calibrate", "corruptions", *suites]
    if settings.fresh or not step_done("train", metrics, settings):
        return wanted
    return [step for step in wanted if not step_done(step, metrics, settings)]


@dataclass
class Job:
    """One (stem, seed): its config, run directory, log file, extra suites and the variant's overrides."""

    stem: str
    seed: int
    config: Path
    run: Path
    log: Path
    suites: tuple[str, ...]
    overrides: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.stem} seed {self.seed}"

    def steps(self, settings: Settings) -> list[str]:
        return planned_steps(read_metrics(self.run), self.suites, settings)

    def can_resume(self) -> bool:
        """A checkpoint without final metrics: an interrupted training, continued with ``--resume``."""
        return (self.run / "checkpoint.pt").is_file() and (self.run / "config.yaml").is_file()


def plan_jobs(paper: Paper, groups: Sequence[Group], settings: Settings) -> list[Job]:
    """One job per (stem, seed) of ``groups``; a stem shared by several groups trains once.

    Slow jobs first (adversarial evaluation, then the other extra suites), so the pool stays busy
    to the end.
    """
    jobs = []
    for stem, suites in stem_suites(list(groups)).items():
        config, overrides = paper.config(stem), paper.overrides(stem)
        if not config.is_file():
            raise ConfigError(f"paper {paper.name!r}: no config {config}")
        override_arguments(overrides)
        for seed in settings.seeds:
            run = Path(settings.runs) / f"{stem}-seed{seed}"
            jobs.append(Job(stem, seed, config, run, Path(settings.runs) / f"{stem}-seed{seed}.log", suites,
                            overrides))
    jobs.sort(key=lambda job: ("adversarial" not in job.suites, -len(job.suites)))
    return jobs


def busy_elsewhere(run: Path, own_pid: int | None = None) -> tuple[int, str] | None:
    """A live ``auglabel`` process (not this one) working on ``run``: ``(pid, command line)``.

    Finds runs trained or evaluated by hand, or by another ``reproduce``, from ``/proc`` (Linux;
    elsewhere nothing is found).  A process counts when its command line mentions auglabel and one
    of its arguments (or ``--run_dir=...``) is ``run``, relative to the process's working directory.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    target = os.path.realpath(run)
    own = {os.getpid(), own_pid}
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if not any("auglabel" in arg for arg in args):
                continue
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        for arg in args:
            value = arg.split("=", 1)[1] if arg.startswith("--run_dir=") else arg
            if value and not value.startswith("-") and os.path.realpath(os.path.join(cwd, value)) == target:
                return int(entry.name), " ".join(a for a in args if a)
    return None


def describe_job(job: Job, settings: Settings) -> str:
    """One plan line: the job, its run directory and what is left (or ``done``)."""
    steps = job.steps(settings)
    if steps and steps[0] == "train" and not settings.fresh and job.can_resume():
        steps = ["train (resume)"] + steps[1:]
    text = ", ".join(steps) if steps else "done"
    busy = busy_elsewhere(job.run)
    if busy is not None:
        text += f"  [busy: pid {busy[0]} is working on it; will wait for it]"
    return f"  {job.name:<42} {job.run}: {text}"


__all__ = ["ADV_EPS", "STEPS", "Job", "Settings", "benchmark_corruptions", "busy_elsewhere", "describe_job",
           "lookup", "override_arguments", "plan_jobs", "planned_steps", "read_metrics", "step_done"]
