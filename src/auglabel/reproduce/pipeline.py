"""``reproduce(paper, settings)``: plan, train and evaluate every (stem, seed), then write the results.

The order: print the plan (jobs, how many already done); with ``--dry_run`` stop there.  Generate
the -C subsample once in this process (cached, so parallel jobs never race to write it); run the
jobs (:mod:`auglabel.reproduce.runner`); compute the temperature-scaled OOD AUROCs of the
paper's reference runs; write ``table.md``, ``results.json`` and the figures.
"""
from __future__ import annotations

import csv
import dataclasses
import sys
import time
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from .papers import Paper, get_paper
from .plan import Job, Settings, describe_job, plan_jobs, read_metrics
from .report import write_report
from .runner import JobResult, Runner, eta_seconds, run_device


def _say(text: str) -> None:
    print(text, flush=True)


def _fresh(jobs: list[Job]) -> None:
    """``--fresh``: forget the planned runs' results and checkpoints up front, so an interrupted fresh
    reproduction resumes (without ``--fresh``) from what it retrained, never from the old runs."""
    from .plan import busy_elsewhere

    for job in jobs:
        if busy_elsewhere(job.run) is None:
            for name in ("metrics.json", "checkpoint.pt"):
                (job.run / name).unlink(missing_ok=True)


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.0f} min"


def reproduce(paper: Paper | str, settings: Settings, command: str = "", say: Callable[[str], None] = _say,
              poll_s: float = 15.0) -> Path | None:
    """Reproduce ``paper``'s tables with ``settings``; returns the results folder (None for a dry run).

    Raises :class:`auglabel.reproduce.runner.JobFailed` (one line) when a step fails.
    """
    start = time.perf_counter()
    paper, settings = get_paper(paper), settings.validate()
    groups = paper.select(list(settings.groups) if settings.groups else None)
    jobs = plan_jobs(paper, groups, settings)
    command = command or f"auglabel reproduce {paper.name}"
    steps = {id(job): job.steps(settings) for job in jobs}
    todo = [job for job in jobs if steps[id(job)]]
    stems = len({job.stem for job in jobs})
    say(f"{command}: {stems} configs x {len(settings.seeds)} seeds = {len(jobs)} jobs in {settings.runs} "
        f"({settings.scale} scale); {len(jobs) - len(todo)} already done, {len(todo)} to run, "
        f"{settings.jobs} at a time x {settings.threads} thread(s); results -> {settings.out}")
    reference_runs = _ood_reference_jobs(paper, groups, jobs)
    if settings.dry_run:
        for job in jobs:
            say(describe_job(job, settings))
        if reference_runs:
            say(f"then: the OOD AUROC after temperature scaling of {paper.ood_reference} "
                f"({len(reference_runs)} runs), computed here")
        say(f"then: table.md, results.json and plots in {settings.out}\nnothing was run (--dry_run)")
        return None
    if settings.report_only:
        finished_jobs = [job for job in jobs if not steps[id(job)]]
        if not finished_jobs:
            raise ConfigError(f"--report_only: no run of {paper.name} is finished in {settings.runs}")
        missing = sorted({job.stem for job in jobs} - {job.stem for job in finished_jobs})
        if missing:
            say(f"not finished, left out of the tables: {', '.join(missing)}")
        for job in reference_runs:
            if job in finished_jobs:
                _temperature_scaled_ood(job, settings, say)
        done = {job.stem for job in finished_jobs}
        groups = [dataclasses.replace(g, rows=tuple(r for r in g.rows if r[0] in done),
                                      baseline=g.baseline if g.baseline in done else None)
                  for g in groups if set(g.stems) & done]  # every other field (columns, suites) kept
        return _write(paper, groups, finished_jobs, settings, command, time.perf_counter() - start, say)
    if settings.fresh:
        _fresh(jobs)
    if any("corruptions" in steps[id(job)] for job in todo):
        _generate_corruptions(paper, settings, say)

    runner = Runner(settings, say, poll_s=poll_s)
    finished: list[JobResult] = []
    trains = {id(job): "train" in steps[id(job)] for job in todo}

    def on_done(result: JobResult) -> None:
        finished.append(result)
        done = {id(r.job) for r in finished}
        remaining = [(job.stem, trains[id(job)]) for job in todo if id(job) not in done]
        parts = ([f"waited {result.wait_s:.0f} s"] if result.wait_s >= 1 else []) + \
                ([f"trained {result.train_s:.0f} s"] if result.trained else []) + \
                ([f"evaluated {result.eval_s:.0f} s"] if set(result.steps) - {"train"} else [])
        say(f"[{len(finished)}/{len(todo)}] {result.job.name}: {', '.join(parts) or 'already done'} · "
            f"elapsed {(time.perf_counter() - start) / 60:.1f} min · "
            f"ETA {_minutes(eta_seconds(finished, remaining, settings.jobs))}")

    try:
        runner.run_all(todo, on_done)
    except KeyboardInterrupt:
        resume = command.replace(" --fresh", "")
        print(f"interrupted: finished steps are kept in {settings.runs}; run `{resume}` again to resume",
              file=sys.stderr, flush=True)
        raise
    for job in reference_runs:
        _temperature_scaled_ood(job, settings, say)
    return _write(paper, groups, jobs, settings, command, time.perf_counter() - start, say)


def _ood_reference_jobs(paper: Paper, groups, jobs: list[Job]) -> list[Job]:
    if paper.ood_reference is None:
        return []
    in_ood = {stem for group in groups if "ood" in group.suites for stem in group.stems}
    return [job for job in jobs if job.stem == paper.ood_reference and job.stem in in_ood]


def _generate_corruptions(paper: Paper, settings: Settings, say: Callable[[str], None]) -> None:
    import torch

    from ..commands import corrupt_dataset

    say(f"generating the {paper.dataset}-C subsample ({settings.subsample} images; cached after the first time)")
    torch.set_num_threads(settings.jobs * settings.threads)
    corrupt_dataset(paper.dataset, corruptions=list(settings.corruptions), subsample=settings.subsample)


def _temperature_scaled_ood(job: Job, settings: Settings, say: Callable[[str], None]) -> None:
    import torch

    from .ood import ensure_temperature_scaled_ood

    torch.set_num_threads(settings.jobs * settings.threads)
    tic = time.perf_counter()
    cached = read_metrics(job.run).get("ood_temperature_scaled")
    result = ensure_temperature_scaled_ood(job.run, settings.ood_subsample, device=run_device(job.run))
    if result is not None and result != cached:  # computed now, not read from metrics.json
        say(f"  · {job.name}: OOD AUROC after temperature scaling (T = {result['temperature']:.3f}) "
            f"in {time.perf_counter() - tic:.0f} s")


def final_log_row(run: Path) -> dict[str, float]:
    """The last row of the run's ``log.csv`` as numbers (what strategies log per epoch); ``{}`` without one."""
    path = Path(run) / "log.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = {}
    for key, value in (rows[-1] if rows else {}).items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _write(paper: Paper, groups, jobs: list[Job], settings: Settings, command: str, wall_s: float,
           say: Callable[[str], None]) -> Path:
    from .tables import add_derived

    by_stem: dict[str, dict[int, dict]] = {}
    dirs: dict[str, dict[int, Path]] = {}
    for job in sorted(jobs, key=lambda j: (j.stem, j.seed)):
        by_stem.setdefault(job.stem, {})[job.seed] = metrics = read_metrics(job.run)
        if metrics:
            metrics["final_log"] = final_log_row(job.run)
        dirs.setdefault(job.stem, {})[job.seed] = job.run
    add_derived(by_stem, groups)
    runs = {stem: list(per_seed.values()) for stem, per_seed in by_stem.items()}
    run_dirs = {stem: list(per_seed.values()) for stem, per_seed in dirs.items()}
    seeds = {stem: list(per_seed) for stem, per_seed in dirs.items()}
    written = write_report(paper, groups, runs, run_dirs, seeds, settings, command, wall_s, Path(settings.out))
    say(f"wrote {', '.join(p.name for p in written)} to {settings.out} ({wall_s / 60:.1f} min)")
    return Path(settings.out)


__all__ = ["reproduce"]
