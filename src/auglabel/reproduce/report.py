"""Write a reproduction's results folder: ``table.md``, ``results.json`` and the figures.

``runs[stem]`` is the list of per-seed metrics (with the ``derived.*`` keys of
:func:`auglabel.reproduce.tables.add_derived`); every file is written atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ..report.io import write_bytes_atomic, write_json_atomic
from .papers import Group, Paper
from .plan import Settings
from . import plots, tables


def ood_dataset(paper: Paper) -> str | None:
    """The OOD dataset ``--suite ood`` uses by default for the paper's dataset (a table column)."""
    from ..robustness.suite import DEFAULT_OOD_DATASETS

    return DEFAULT_OOD_DATASETS.get(paper.dataset)


def autolabel_rows(groups: Sequence[Group]) -> list[tuple[str, str]]:
    """The (stem, label) rows of AutoLabel configs (stem contains ``autolabel``), each stem once."""
    seen, rows = set(), []
    for group in groups:
        for stem, label in group.rows:
            if "autolabel" in stem and stem not in seen:
                seen.add(stem)
                rows.append((stem, f"{group.title}: {label}"))
    return rows


def _unique_rows(groups: Sequence[Group]) -> list[tuple[str, str]]:
    """Every stem of ``groups`` once, with the label of its first row, in order."""
    return list({stem: (stem, label) for group in groups for stem, label in reversed(group.rows)}.values())[::-1]


def header(paper: Paper, settings: Settings, command: str, wall_s: float, groups: Sequence[Group] = ()) -> str:
    """The provenance lines at the top of ``table.md`` (subsample sizes of the suites ``groups`` use)."""
    s = settings
    used = {suite for group in groups for suite in group.suites}
    sizes = [f"-C {s.subsample} images x {len(s.corruptions)} corruptions x 5 severities"]
    sizes += [f"PGD-50 (3 restarts) {s.adv_subsample}"] if "adversarial" in used else []
    sizes += [f"OOD {s.ood_subsample}"] if "ood" in used else []
    sizes += [f"-P {s.p_subsample}"] if "perturbations" in used else []
    scale = ("small (test bed: configs/testbed/<stem>.yaml)" if s.scale == "small"
             else f"{s.scale} (configs/testbed/<stem>.yaml + configs/testbed/scale/{s.scale}.yaml)")
    if s.overrides:
        scale += "; overrides: " + ", ".join(f"`{o}`" for o in s.overrides)
    return (f"# {paper.title}: reproduction\n\n"
            f"Command: `{command}`  \n"
            f"Wall time of this invocation: {wall_s / 60:.1f} min ({s.jobs} jobs x {s.threads} thread(s)); "
            f"seeds {list(s.seeds)}; scale {scale}.  \n"
            f"Subsamples of the test split: {'; '.join(sizes)}.  \n"
            "Cells: mean ± sample std over seeds. Acc to ECE after TS: the full test split (temperature fitted "
            "on the clean validation split); cAcc / cECE: the -C subsample; best-val: test metrics of the "
            "epoch with the best clean validation accuracy.\n")


def table_markdown(paper: Paper, groups: Sequence[Group], runs: Mapping[str, Sequence[Mapping[str, Any]]],
                   run_dirs: Mapping[str, Sequence[Path]], settings: Settings, command: str, wall_s: float) -> str:
    """The whole ``table.md``: header, a table per group, the OOD table and the AutoLabel diagnostics."""
    ood_name = ood_dataset(paper)
    sections = [header(paper, settings, command, wall_s, groups)]
    for group in groups:
        sections.append(f"## {group.title} ({group.reference})\n\n{tables.group_table(group, runs, ood_name)}")
    for group in groups:
        if "ood" in group.suites:
            sections.append(f"## OOD detection: {group.title} (max-softmax AUROC, test images against Gaussian noise "
                            f"with the training statistics and {ood_name or 'no other dataset'})\n\n"
                            + tables.ood_table(group, runs, paper.ood_reference, ood_name))
    labelled = autolabel_rows(groups)
    if labelled:
        sections.append("## AutoLabel diagnostics\n\n"
                        + tables.label_diagnostics([stem for stem, _ in labelled], run_dirs))
    return "\n\n".join(sections) + "\n"


def write_report(paper: Paper, groups: Sequence[Group], runs: Mapping[str, Sequence[Mapping[str, Any]]],
                 run_dirs: Mapping[str, Sequence[Path]], seeds: Mapping[str, Sequence[int]], settings: Settings,
                 command: str, wall_s: float, out: Path) -> list[Path]:
    """Write everything into ``out``; returns the paths written."""
    out = Path(out)
    text = table_markdown(paper, groups, runs, run_dirs, settings, command, wall_s)
    studied = [(stem, label) for stem, label in _unique_rows(groups) if stem in paper.confidence_study]
    figures: list[Path] = []
    if studied:
        from .confidence import confidence_study

        study, figures = confidence_study(studied, runs, run_dirs, out)
        text += "\n" + study
    written = [write_bytes_atomic(text.encode("utf-8"), out / "table.md"), *figures]
    results = {
        "paper": paper.name, "title": paper.title, "command": command, "wall_time_s": wall_s,
        "settings": {"seeds": list(settings.seeds), "scale": settings.scale, "overrides": list(settings.overrides),
                     "subsample": settings.subsample, "adv_subsample": settings.adv_subsample,
                     "ood_subsample": settings.ood_subsample, "p_subsample": settings.p_subsample,
                     "corruptions": list(settings.corruptions), "runs": str(settings.runs)},
        "groups": [{"title": g.title, "reference": g.reference, "rows": [list(r) for r in g.rows],
                    "suites": list(g.suites), "baseline": g.baseline} for g in groups],
        "runs": {stem: [{"seed": seed, "run": str(run), "metrics": metrics}
                        for seed, run, metrics in zip(seeds[stem], run_dirs[stem], per_seed)]
                 for stem, per_seed in runs.items()},
    }
    written.append(write_json_atomic(results, out / "results.json"))
    for group in groups:
        path = plots.plot_group_severity(group, runs, out / f"severity_{group.slug}.png",
                                         f"{group.title} ({group.reference}): -C subsample, mean ± std over seeds")
        written += [path] if path else []
    labelled = autolabel_rows(groups)
    if labelled:
        path = plots.plot_learned_labels(labelled, run_dirs, out / "learned_labels.png")
        written += [path] if path else []
    if paper.calibration_plot:
        rows = _unique_rows(groups)
        path = plots.plot_calibration_bars(rows, runs, out / "calibration.png",
                                           f"{paper.title}: ECE and OE on the test split (mean ± std over seeds)")
        written += [path] if path else []
    return written


__all__ = ["autolabel_rows", "header", "ood_dataset", "table_markdown", "write_report"]
