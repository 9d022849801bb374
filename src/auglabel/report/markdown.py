"""Markdown tables and the robustness report ``robustness.md`` of a run (issue 4).

The report is rebuilt from the run's merged ``metrics.json``, so suites evaluated in separate
calls end up in one report.  Accuracy and calibration errors are printed in %.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from .keys import lookup
from .io import write_bytes_atomic

CLEAN_ROWS = (("accuracy", "accuracy (%)", True), ("ece", "ECE (%)", True), ("rms_ce", "RMS cal. error (%)", True),
              ("oe", "overconfidence error (%)", True), ("brier", "Brier (0..2)", False), ("nll", "NLL", False),
              ("ece_adaptive", "adaptive ECE, equal-mass bins (%)", True),
              ("ece_classwise", "class-wise ECE (%)", True),
              ("ece_debiased", "debiased L2 cal. error, Kumar et al. 2019 (%)", True),
              ("mce", "maximum cal. error (%)", True),
              ("calibration_gap", "signed gap conf - acc (%, > 0 over-confident)", True),
              ("aurc", "AURC (%, selective risk)", True), ("augrc", "AUGRC (%, Traub et al. 2024)", True))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align_first_left: bool = True) -> str:
    """A GitHub-flavoured Markdown table; cells are converted with ``str``; ``|`` is escaped."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    rule = [":---" if i == 0 and align_first_left else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def percent(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


#: ``auglabel calibrate --method vector|isotonic`` results in metrics.json: (top-level key, column label).
CALIBRATOR_COLUMNS = (("vector_scaling", "after vector scaling"), ("isotonic_calibration", "after isotonic"))
_SHORT = {"before": "no calibration", "after vector scaling": "vector scaling", "after isotonic": "isotonic"}
#: The OOD metrics of ``ood.<set>.<score>.<metric>``: (metric, column label).
OOD_COLUMNS = (("auroc", "AUROC (%)"), ("aupr_in", "AUPR-in (%)"), ("aupr_out", "AUPR-out (%)"),
               ("fpr_at_95_tpr", "FPR@95TPR (%)"))


def _calibrator_results(m: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any], Mapping[str, Any]]]:
    """``(key, label, before, after)`` of each post-hoc calibrator result present in the metrics."""
    found = []
    for key, label in CALIBRATOR_COLUMNS:
        after, before = lookup(m, f"{key}.after"), lookup(m, f"{key}.before")
        if isinstance(after, Mapping):
            found.append((key, label, before if isinstance(before, Mapping) else {}, after))
    return found


def _metric_rows(columns: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One row per :data:`CLEAN_ROWS` metric, one cell per column's metrics dict."""
    rows = []
    for key, label, is_percent in CLEAN_ROWS:
        show = percent if is_percent else number
        rows.append([label] + [show(column.get(key)) for column in columns])
    return rows


def _best_line(names: Sequence[str], columns: Sequence[Mapping[str, Any]]) -> str:
    """Which column has the lowest ECE and the lowest NLL (the calibrator that helps most)."""
    parts = []
    for key, label, show in (("ece", "ECE", lambda v: f"{percent(v)}%"), ("nll", "NLL", number)):
        values = [(column.get(key), name) for name, column in zip(names, columns)
                  if isinstance(column.get(key), (int, float))]
        if values:
            value, name = min(values, key=lambda item: item[0])
            name = "temperature scaling" if name.startswith("after temperature") else _SHORT.get(name, name)
            parts.append(f"lowest {label}: {name} ({show(value)})")
        else:
            parts.append(f"lowest {label}: n/a")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def _clean_section(m: Mapping[str, Any]) -> list[str]:
    if "clean.accuracy" not in m:
        return []
    count = m.get("clean.count")
    t = m.get("temperature.value")
    clean = {key: m.get(f"clean.{key}") for key, _, _ in CLEAN_ROWS}
    scaled = {key: m.get(f"temperature.{key}") for key, _, _ in CLEAN_ROWS}
    names, columns = ["before", f"after temperature scaling (T = {number(t, 3)})"], [clean, scaled]
    # calibrate's results are on the whole test split: columns here when that is also these images
    calibrators = _calibrator_results(m)
    same = [c for c in calibrators if count is not None and c[3].get("count") == count]
    separate = [c for c in calibrators if c not in same]
    for _, label, _, after in same:
        names.append(label)
        columns.append(after)
    lines = [f"## Clean test images ({count})", "", markdown_table(["metric"] + names, _metric_rows(columns)), ""]
    if same:
        lines += [_best_line(names, columns), ""]
    lines += ["T is fitted on the run's clean validation split (NLL, Guo et al. 2017); it never changes the "
              "predicted class, so accuracy is the same before and after.", "",
              "Binned metrics use 15 bins (equal-width unless named equal-mass); the debiased calibration error "
              "estimates the L2 (root-mean-square) binned error without the plug-in estimator's small-sample bias; "
              "AURC / AUGRC rank the predictions by max-softmax (lower is better).", ""]
    for _, label, before, after in separate:
        names = ["before", label]
        lines += [f"Post-hoc calibration by `auglabel calibrate` ({after.get('count', '?')} test images, not the "
                  f"{count} above):", "", markdown_table(["metric"] + names, _metric_rows([before, after])), "",
                  _best_line(names, [before, after]), ""]
    if calibrators:
        lines += ["Vector scaling and isotonic regression are fitted on the clean validation split by "
                  "`auglabel calibrate RUN --method vector|isotonic`; unlike T they can change the predicted "
                  "class, hence the accuracy.", ""]
    if "reliability.bins" in m:
        scheme = str(m["reliability.bins"]).replace("_", "-")
        lines += [f"Plots of the whole test split: `reliability.png` (reliability diagram, 15 {scheme} bins, "
                  "per-bin counts under it) and `risk_coverage.png` (selective risk and generalized risk against "
                  "coverage, AURC / AUGRC in the legend).", ""]
    return lines


def _corruption_section(m: Mapping[str, Any]) -> list[str]:
    if "corruption.per_type_severity" not in m:
        return []
    if m.get("corruption.mce_normalized"):
        mce_note = (f"mCE is normalised per type by the baseline run {m.get('corruption.mce_baseline')} "
                    "(Hendrycks & Dietterich 2019): 100 = as good as the baseline.")
        mce = percent(m["corruption.mce"], 1)
    else:
        mce_note = ("mCE is **not normalised** (no --baseline run): it is the mean over types of the error rate "
                    "summed over the 5 severities (0..5); pass --baseline RUN for Hendrycks' normalised mCE.")
        mce = number(m["corruption.mce"], 3)
    mce_label = "mCE (%, baseline = 100)" if m.get("corruption.mce_normalized") else "mCE (unnormalised, 0..5)"
    summary = [["cAcc (%)", percent(m["corruption.acc"]), percent(m.get("temperature.corruption.acc"))],
               ["cECE (%)", percent(m["corruption.ece"]), percent(m.get("temperature.corruption.ece"))],
               ["cRMS (%)", percent(m["corruption.rms_ce"]), percent(m.get("temperature.corruption.rms_ce"))],
               [mce_label, mce, ""]]
    lines = ["## Common corruptions (-C)", "",
             f"{len(m['corruption.per_type_severity'])} corruption types x 5 severities of the same "
             f"{m.get('corruption.count', '')} test images "
             f"(set {m.get('corruption.directory')}). cAcc / cECE / cRMS are means over types and severities.", "",
             markdown_table(["metric", "before", "after temperature scaling"], summary), "", mce_note, "",
             "Accuracy / ECE (%) per corruption and severity:", ""]
    rows = []
    for name, cells in m["corruption.per_type_severity"].items():
        typed = m["corruption.per_type"][name]
        rows.append([name] + [f"{percent(c['accuracy'], 1)} / {percent(c['ece'], 1)}" for c in cells]
                    + [f"{percent(typed['acc'], 1)} / {percent(typed['ece'], 1)}", number(typed["ce"], 3)])
    levels = m["corruption.per_severity"]
    rows.append(["**mean**"] + [f"{percent(levels[str(s)]['acc'], 1)} / {percent(levels[str(s)]['ece'], 1)}"
                                for s in range(1, 6)]
                + [f"{percent(m['corruption.acc'], 1)} / {percent(m['corruption.ece'], 1)}", number(m["corruption.mce"], 3)])
    headers = ["corruption"] + [f"severity {s}" for s in range(1, 6)] + ["mean", "CE"]
    lines += [markdown_table(headers, rows), "",
              "Plots: `corruption_severity.png` (accuracy and ECE against severity), `corruption_types.png`, "
              "`reliability_corrupted.png` (all corrupted predictions).", ""]
    return lines


def _perturbation_section(m: Mapping[str, Any]) -> list[str]:
    if "perturbation.flip_probability" not in m:
        return []
    rows = [[name, percent(rate, 3)] for name, rate in m.get("perturbation.per_type", {}).items()]
    rows.append(["**mean (mFP)**", percent(m["perturbation.flip_probability"], 3)])
    return ["## Perturbation stability (-P)", "", markdown_table(["perturbation", "flip probability (%)"], rows),
            "", f"Sequences of {m.get('perturbation.count', '?')} test images; noise sequences compare every frame "
            "with the first, the others consecutive frames.", ""]


def _adversarial_section(m: Mapping[str, Any]) -> list[str]:
    keys = sorted((k for k in m if k.startswith("adversarial.") and k != "adversarial.settings"),
                  key=lambda k: float(k.split(".", 1)[1]))
    if not keys:
        return []
    rows = [[k.split(".", 1)[1], percent(m[k])] for k in keys]
    return ["## Adversarial robustness", "", markdown_table(["eps (L-inf, [0, 1] images)", "accuracy (%)"], rows),
            "", f"{m.get('adversarial.settings', 'PGD')}; a sample counts as robust only if no restart fools it.", ""]


def _ood_section(m: Mapping[str, Any]) -> list[str]:
    sets = [name for name in m.get("ood.sets") or []
            if any(f"ood.{name}.{score}.auroc" in m for score in m.get("ood.scores") or [])]
    legacy = sorted(k for k in m if k.startswith("ood.auroc_") and k[len("ood.auroc_"):] not in sets)
    if not sets and not legacy:
        return []
    lines = ["## Out-of-distribution detection", ""]
    for name in sets:
        rows = [[score] + [percent(m.get(f"ood.{name}.{score}.{metric}")) for metric, _ in OOD_COLUMNS]
                for score in m.get("ood.scores") or [] if f"ood.{name}.{score}.auroc" in m]
        headers = ["score"] + [label for _, label in OOD_COLUMNS]
        lines += [f"### OOD set `{name}`", "", markdown_table(headers, rows), ""]
    if sets:
        lines += [f"{m.get('ood.count', '?')} in-distribution test images (the positives) against as many OOD "
                  "images; every score is higher for more in-distribution inputs (energy = logsumexp of the logits, "
                  "entropy negated). AUPR-out takes the OOD images as positives; FPR@95TPR is the share of OOD "
                  "images accepted at the threshold that keeps 95% of the test images. Higher AUROC / AUPR and "
                  "lower FPR@95TPR are better. `noise` = Gaussian noise with the training set's per-channel mean "
                  "and variance.", ""]
    if legacy:
        rows = [[k[len("ood.auroc_"):], percent(m[k])] for k in legacy]
        if sets:
            lines += ["Sets of an earlier evaluation (max-softmax AUROC only):", ""]
        lines += [markdown_table(["OOD set", "AUROC (%)"], rows), "",
                  f"Max-softmax score of {m.get('ood.count', '?')} test images against as many OOD images; `noise` = "
                  "Gaussian noise with the training set's per-channel mean and variance.", ""]
    return lines


def robustness_report(metrics: Mapping[str, Any], title: str = "") -> str:
    """The Markdown text of the robustness report of one run's merged metrics."""
    m = metrics
    lines = [f"# Robustness report{': ' + title if title else ''}", ""]
    count, subsample = m.get("robustness.count"), m.get("robustness.subsample")
    if count is not None:
        chosen = f"a stratified subsample (seed {m.get('robustness.seed')})" if subsample else "the whole test split"
        lines += [f"Dataset {m.get('dataset', '?')}. Last evaluation: suites {', '.join(m.get('robustness.suites', []))} "
                  f"on {count} test images, {chosen}; each section names its own image count.", ""]
    for section in (_clean_section, _corruption_section, _perturbation_section, _adversarial_section, _ood_section):
        lines += section(m)
    notes = m.get("robustness.notes") or []
    seconds = m.get("robustness.seconds") or {}
    if notes or seconds:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes]
        lines += [f"- time of the last evaluation, {part}: {value:.1f} s" for part, value in seconds.items()]
        lines.append("")
    return "\n".join(lines)


def write_robustness_report(metrics: Mapping[str, Any], path: str | os.PathLike, title: str = "") -> Path:
    return write_bytes_atomic(robustness_report(metrics, title).encode("utf-8"), path)


__all__ = ["markdown_table", "percent", "number", "lookup", "robustness_report", "write_robustness_report"]
