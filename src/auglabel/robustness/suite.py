"""``auglabel evaluate RUN --suite ...``: the robustness evaluation of a trained run (METHODS.md sec. 1).

Suites: ``clean`` (accuracy, ECE, RMS, OE, Brier, NLL), ``corruptions`` (-C: cAcc, cECE, mCE per
type and severity), ``perturbations`` (-P flip probability), ``adversarial`` (PGD accuracy per
eps), ``ood`` (max-softmax, max-logit, energy and entropy scores: AUROC, AUPR-in, AUPR-out, FPR at
95% TPR against Gaussian noise and another dataset).  Temperature
scaling is fitted on the run's clean validation split and the clean and corruption calibration
metrics are reported after scaling too.  Everything that can be wrong with the request (names,
subsample size, -C directory, baseline run, OOD dataset) is checked before anything is computed
or written.  Results are merged into ``metrics.json``; ``robustness.md`` and the plots are redrawn
from the merged metrics.  The clean suite on the whole test split also draws ``reliability.png``
(equal-width or, with ``reliability_bins="equal_mass"``, equal-mass bins; so is
``reliability_corrupted.png``) and ``risk_coverage.png`` (selective risk against coverage, AURC and
AUGRC in the legend).  Runs trained on a streamed image folder are evaluated too (:mod:`.sources`): the
clean suite streams its splits, the others decode the test selection (evaluation transform) into memory.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..calibrate import fit_temperature
from ..data import load_dataset, subsample_indices
from ..engine.runs import LoadedRun, load_run
from ..errors import ConfigError, DataError
from ..metrics import CalibrationStats
from ..report.markdown import write_robustness_report
from ..report.plots import reliability_diagram, risk_coverage_plot
from ..report.robustness_plots import plot_corruption_severity, plot_corruption_types
from .adversarial import PAPER_EPS, CLEAN_KEY, adversarial_accuracy, show_progress
from .corruption_data import (FORMAT_VERSION, CorruptedSet, check_corruption_names, corrupted_cache_dir,
                              generate_corrupted_set, images_digest)
from .ood import OOD_SCORES, gaussian_noise_like, ood_detection, ood_logits
from .perturbations import mean_flip_probability, perturbation_flip_rates
from .sources import is_streamed, noise_reference, predict_logits, selection_images, split_logits

SUITES = ("clean", "corruptions", "perturbations", "adversarial", "ood")
#: The OOD dataset used when none is named (skipped with a note when it is not installed).
DEFAULT_OOD_DATASETS = {"fashion_mnist": "digits", "mnist": "fashion_mnist", "digits": "fashion_mnist",
                        "cifar10": "svhn", "cifar100": "svhn", "svhn": "cifar10"}
CELL_KEYS = ("accuracy", "ece", "rms_ce", "oe", "brier", "nll")
#: The suites that work on a tensor of the test images (decoded into memory for a streamed dataset).
IMAGE_SUITES = ("corruptions", "perturbations", "adversarial", "ood")
#: ``--reliability_bins``: the bins of the reliability diagrams ``evaluate`` draws.
RELIABILITY_BINS = ("equal_width", "equal_mass")


def parse_list(value: str | Sequence[str] | None) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``; None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


def check_reliability_bins(value: Any) -> bool:
    """``--reliability_bins`` -> whether the diagrams use equal-mass bins; a one-line error otherwise."""
    if value not in RELIABILITY_BINS:
        raise ConfigError(f"unknown --reliability_bins {value!r}; choose from: {', '.join(RELIABILITY_BINS)}")
    return value == "equal_mass"


def parse_suites(value: str | Sequence[str] | None) -> list[str]:
    names = parse_list(value) or ["clean"]
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        raise ConfigError(f"unknown suite {unknown[0]!r}; choose from: {', '.join(SUITES)}")
    return [name for name in SUITES if name in names]


@dataclass
class SuiteRequest:
    """What to evaluate; see ``auglabel evaluate --help``."""

    suites: Sequence[str] | str = ("clean",)
    subsample: int | None = None
    corruptions: Sequence[str] | str | None = None
    c_dir: str | None = None
    baseline: str | None = None
    ood_dataset: str | None = None  # None: DEFAULT_OOD_DATASETS; "none": only the noise set
    seed: int = 0
    eps: Sequence[float] = PAPER_EPS
    progress: bool | None = None
    reliability_bins: str = "equal_width"  # or "equal_mass": the bins of reliability*.png
    notes: list[str] = field(default_factory=list)


# ---- pure aggregation (tested on hand-built numbers) ----

def mean_corruption_error(errors: Mapping[str, Sequence[float]],
                          baseline: Mapping[str, Sequence[float]] | None = None) -> tuple[float, dict[str, float]]:
    """mCE = mean over types c of ``CE_c = sum_s E_{c,s}`` (METHODS.md sec. 1).

    With a baseline (Hendrycks & Dietterich 2019, sec. 4): ``CE_c = sum_s E_{c,s} / sum_s E^base_{c,s}``.
    Returns ``(mCE, {type: CE_c})``.
    """
    if not errors:
        raise DataError("mCE needs at least one corruption type")
    per_type = {}
    for name, values in errors.items():
        total = float(sum(values))
        if baseline is not None:
            if name not in baseline:
                raise DataError(f"the baseline has no errors for corruption {name!r}")
            reference = float(sum(baseline[name]))
            if reference <= 0:
                raise DataError(f"the baseline makes no error on {name!r}: cannot normalise the mCE by it")
            total /= reference
        per_type[name] = total
    return sum(per_type.values()) / len(per_type), per_type


def corruption_summary(cells: Mapping[str, Sequence[Mapping[str, float]]],
                       baseline: Mapping[str, Sequence[float]] | None = None) -> dict[str, Any]:
    """cAcc / cECE / cRMS = means over types and the 5 severities; mCE; per type and per severity.

    ``cells[type][s - 1]`` holds that cell's metrics (``accuracy``, ``ece``, ``rms_ce``...).
    """
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    all_cells = [cell for severities in cells.values() for cell in severities]
    errors = {name: [1.0 - cell["accuracy"] for cell in severities] for name, severities in cells.items()}
    mce, ce = mean_corruption_error(errors, baseline)
    per_type = {name: {"acc": mean([c["accuracy"] for c in sev]), "ece": mean([c["ece"] for c in sev]),
                       "rms_ce": mean([c["rms_ce"] for c in sev]), "error_sum": sum(errors[name]),
                       "ce": ce[name]} for name, sev in cells.items()}
    levels = len(next(iter(cells.values())))
    per_severity = {str(s + 1): {key: mean([sev[s][metric] for sev in cells.values()])
                                 for key, metric in (("acc", "accuracy"), ("ece", "ece"), ("rms_ce", "rms_ce"))}
                    for s in range(levels)}
    return {"acc": mean([c["accuracy"] for c in all_cells]), "ece": mean([c["ece"] for c in all_cells]),
            "rms_ce": mean([c["rms_ce"] for c in all_cells]), "mce": mce, "mce_normalized": baseline is not None,
            "per_type": per_type, "per_severity": per_severity,
            "per_type_severity": {name: [dict(cell) for cell in sev] for name, sev in cells.items()}}


def _prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{key}": value for key, value in values.items()}


# ---- evaluation ----

def _stats(logits: Tensor, labels: Tensor) -> CalibrationStats:
    stats = CalibrationStats()
    stats.update(logits, labels)
    return stats


class _Plan:
    """The validated request against one loaded run: which images, which -C source, which OOD set."""

    def __init__(self, run: LoadedRun, request: SuiteRequest):
        self.run, self.request = run, request
        self.suites = parse_suites(request.suites)
        if isinstance(request.seed, bool) or not isinstance(request.seed, int):
            raise ConfigError(f"--seed must be an integer, got {request.seed!r}")
        splits = run.splits
        test_idx = splits.test_idx
        if request.subsample is not None:
            if isinstance(request.subsample, bool) or not isinstance(request.subsample, int) or request.subsample < 1:
                raise ConfigError(f"--subsample must be a positive integer, got {request.subsample!r}")
            if request.subsample > len(test_idx):
                raise ConfigError(f"--subsample {request.subsample} exceeds the {len(test_idx)} test images of {run.run_dir}")
            test_idx = test_idx[subsample_indices(splits.test_set.labels[test_idx], request.subsample, request.seed)]
        self.test_idx, self.num_workers = test_idx, run.cfg.data.num_workers
        self.labels = splits.test_set.labels[test_idx]
        image_suites = [name for name in self.suites if name in IMAGE_SUITES]
        # uint8 test images; None: a streamed test set that only the clean suite reads (batch by batch)
        self.images = None
        if image_suites or not is_streamed(splits.test_set):
            self.images = selection_images(splits.test_set, test_idx, num_workers=self.num_workers,
                                           purpose=f"--suite {','.join(image_suites)}")
        self.corrupted = self.baseline = self.ood_images = None
        self.corruption_names = check_corruption_names(parse_list(request.corruptions))
        if "corruptions" in self.suites:
            self._plan_corruptions()
        if "ood" in self.suites:
            self._plan_ood()

    def _plan_corruptions(self) -> None:
        request, clean_digest = self.request, images_digest(self.images)
        if request.c_dir is not None:
            c_dir = Path(request.c_dir).expanduser().resolve()
            self.corrupted = CorruptedSet(c_dir, parse_list(request.corruptions), tuple(self.images.shape[1:]))
            self.corruption_names = self.corrupted.names
            full = len(self.run.splits.test_set)
            if self.corrupted.num_images == full:  # a set of the whole test split (e.g. CIFAR-10-C)
                self.rows = self.test_idx
            elif self.corrupted.num_images == len(self.images):
                self.rows = torch.arange(len(self.images))
            else:
                raise DataError(f"{c_dir} holds {self.corrupted.num_images} images per severity; the run's test "
                                f"set has {full} and this evaluation uses {len(self.images)}")
            if not torch.equal(self.corrupted.labels[self.rows], self.labels):
                raise DataError(f"the labels in {c_dir} do not match the run's test set")
            self.set_id = hashlib.sha256(f"{clean_digest}/dir:{c_dir}".encode()).hexdigest()[:16]
        else:
            dataset = self.run.splits.test_set.name
            self.c_dir = corrupted_cache_dir(dataset, self.test_idx, self.request.seed, self.images)
            self.set_id = hashlib.sha256(f"{clean_digest}/seed:{request.seed}/v{FORMAT_VERSION}".encode()).hexdigest()[:16]
        if request.baseline is not None:
            self.baseline = self._baseline_errors(Path(request.baseline))

    def _baseline_errors(self, run_dir: Path) -> dict[str, list[float]]:
        path = run_dir / "metrics.json"
        if not path.is_file():
            raise DataError(f"baseline {run_dir} has no metrics.json; evaluate it with --suite corruptions first")
        metrics = json.loads(path.read_text())
        if metrics.get("corruption.set_id") != self.set_id:
            raise DataError(f"baseline {run_dir} was not evaluated on this -C set; evaluate it with the same "
                            f"--subsample, --seed and --c_dir first")
        cells = metrics.get("corruption.per_type_severity", {})
        missing = [name for name in self.corruption_names if name not in cells]
        if missing:
            raise DataError(f"baseline {run_dir} has no results for corruption {missing[0]!r}")
        return {name: [1.0 - cell["accuracy"] for cell in cells[name]] for name in self.corruption_names}

    def _plan_ood(self) -> None:
        request, dataset = self.request, self.run.cfg.data.name
        name = request.ood_dataset if request.ood_dataset is not None else DEFAULT_OOD_DATASETS.get(dataset)
        self.ood_name = None if name in (None, "none") else name
        if self.ood_name is None:
            return
        try:
            ood = load_dataset(self.ood_name, "test")
        except DataError as exc:
            if request.ood_dataset is not None:
                raise
            request.notes.append(f"default OOD dataset {self.ood_name!r} skipped: {exc}")
            self.ood_name = None
            return
        count = min(len(ood), len(self.test_idx))
        keep = subsample_indices(ood.labels, count, request.seed) if count < len(ood) else torch.arange(len(ood))
        self.ood_images = ood.images[keep]


def evaluate_suite(run_dir: str | Path, request: SuiteRequest | None = None,
                   device: torch.device | str = "cpu") -> dict[str, Any]:
    """Run the requested suites on a run directory; returns the merged metrics.json content."""
    request = request or SuiteRequest()
    parse_suites(request.suites)  # a bad name fails before the run is loaded
    equal_mass = check_reliability_bins(request.reliability_bins)
    check_corruption_names(parse_list(request.corruptions))
    device = torch.device(device)
    run = load_run(run_dir, device)
    plan = _Plan(run, request)
    model, batch = run.model.eval(), run.cfg.train.eval_batch_size
    show = show_progress() if request.progress is None else request.progress
    seconds: dict[str, float] = {}
    updates: dict[str, Any] = {"robustness.suites": plan.suites, "robustness.count": len(plan.test_idx),
                               "robustness.subsample": request.subsample, "robustness.seed": request.seed}
    temperature = None
    if {"clean", "corruptions"} & set(plan.suites):
        start = time.perf_counter()
        splits = run.splits
        val_logits = split_logits(model, splits.train_set, splits.val_idx, batch, device, num_workers=plan.num_workers)
        temperature = fit_temperature(val_logits, splits.train_set.labels[splits.val_idx])
        logits = (predict_logits(model, plan.images, batch, device) if plan.images is not None else
                  split_logits(model, splits.test_set, plan.test_idx, batch, device, num_workers=plan.num_workers))
        clean, scaled = _stats(logits, plan.labels), _stats(logits / temperature, plan.labels)
        updates.update(_prefixed("clean", clean.compute()))
        updates.update({"temperature.value": temperature, "temperature.fitted_on": "validation",
                        **_prefixed("temperature", scaled.compute())})
        if request.subsample is None and "clean" in plan.suites:  # the full test split: refresh the headline keys
            updates.update({"dataset": run.cfg.data.name, "split": "test", **clean.compute(),
                            "brier_scale": "0..2", "evaluated_epoch": run.epoch})
            updates["reliability.bins"] = request.reliability_bins
            reliability_diagram(clean.bins(equal_mass=equal_mass), run.run_dir / "reliability.png",
                                title=f"{run.cfg.data.name} test")
            risk_coverage_plot({f"{run.cfg.data.name} test, max softmax": clean.risk_coverage()},
                               run.run_dir / "risk_coverage.png", title=f"{run.cfg.data.name} test: risk-coverage")
        seconds["clean"] = time.perf_counter() - start
    if "corruptions" in plan.suites:
        updates.update(_evaluate_corruptions(plan, model, batch, device, temperature, show, seconds, equal_mass))
    if "perturbations" in plan.suites:
        start = time.perf_counter()
        rates = perturbation_flip_rates(model, plan.images, seed=request.seed, batch_size=batch, device=device)
        updates.update({"perturbation.flip_probability": mean_flip_probability(rates),
                        "perturbation.per_type": rates, "perturbation.count": len(plan.images)})
        seconds["perturbations"] = time.perf_counter() - start
    if "adversarial" in plan.suites:
        start = time.perf_counter()
        accuracy = adversarial_accuracy(model, plan.images, plan.labels, request.eps, batch_size=min(batch, 256),
                                        device=device, seed=request.seed, progress=show)
        updates.update({f"adversarial.{key}": value for key, value in accuracy.items() if key != CLEAN_KEY})
        updates["adversarial.settings"] = f"L-inf PGD, 50 steps, 3 restarts, step eps/4, {len(plan.images)} images"
        seconds["adversarial"] = time.perf_counter() - start
    if "ood" in plan.suites:
        start = time.perf_counter()
        updates.update(_evaluate_ood(plan, model, batch, device))
        seconds["ood"] = time.perf_counter() - start
    updates["robustness.seconds"] = seconds
    updates["robustness.notes"] = list(request.notes)
    metrics = run.update_metrics(updates)
    _draw(run.run_dir, metrics)
    write_robustness_report(metrics, run.run_dir / "robustness.md", title=str(run.run_dir))
    return metrics


#: What ``ood.settings`` says about the ``ood.<set>.<score>.<metric>`` keys.
OOD_CONVENTION = ("in-distribution test images = positives; every score higher = more in-distribution "
                  "(max_softmax, max_logit, energy = logsumexp(z) with T = 1, entropy = -H(p)); aupr_out "
                  "takes the OOD set as positives; fpr_at_95_tpr = fraction of OOD images accepted at the highest "
                  "threshold accepting >= 95% of the in-distribution images (ties accepted together)")


def _evaluate_ood(plan: _Plan, model: nn.Module, batch: int, device: torch.device) -> dict[str, Any]:
    """Every OOD score and metric against Gaussian noise and the OOD dataset.

    ``ood.<set>.<score>.<metric>`` for set ``noise`` / the dataset's name, score in
    :data:`~auglabel.robustness.ood.OOD_SCORES`, metric in auroc, aupr_in, aupr_out, fpr_at_95_tpr;
    ``ood.auroc_<set>`` keeps the max-softmax AUROC under its original key.
    """
    splits = plan.run.splits
    noise = gaussian_noise_like(noise_reference(splits.train_set, splits.train_idx, num_workers=plan.num_workers),
                                len(plan.images), plan.request.seed)
    sets = {"noise": noise}
    if plan.ood_name is not None:
        sets[plan.ood_name] = plan.ood_images
    in_logits = ood_logits(model, plan.images, batch_size=batch, device=device)
    updates: dict[str, Any] = {"ood.count": len(plan.images), "ood.scores": list(OOD_SCORES),
                               "ood.sets": list(sets), "ood.settings": OOD_CONVENTION}
    for name, images in sets.items():
        report = ood_detection(model, plan.images, images, batch_size=batch, device=device, in_logits=in_logits)
        updates[f"ood.auroc_{name}"] = report["max_softmax"]["auroc"]
        for score, values in report.items():
            updates.update({f"ood.{name}.{score}.{metric}": value for metric, value in values.items()})
    return updates


def _evaluate_corruptions(plan: _Plan, model: nn.Module, batch: int, device: torch.device,
                          temperature: float, show: bool, seconds: dict[str, float],
                          equal_mass: bool = False) -> dict[str, Any]:
    request = plan.request
    if plan.corrupted is None:
        start = time.perf_counter()
        generate_corrupted_set(plan.images, plan.labels, plan.c_dir, plan.corruption_names, request.seed, show)
        seconds["corruption_generation"] = time.perf_counter() - start
        plan.corrupted, plan.rows = CorruptedSet(plan.c_dir, plan.corruption_names), None
    start = time.perf_counter()
    cells, scaled_cells = {}, {}
    pooled, pooled_scaled = CalibrationStats(), CalibrationStats()
    bar = tqdm(total=len(plan.corruption_names) * 5, desc="-C evaluation", leave=False, disable=not show)
    for name in plan.corruption_names:
        stacked = plan.corrupted.images(name, plan.rows)  # uint8 (5, N, C, H, W)
        cells[name], scaled_cells[name] = [], []
        for severity_images in stacked:
            logits = predict_logits(model, severity_images, batch, device)
            raw, scaled = _stats(logits, plan.labels), _stats(logits / temperature, plan.labels)
            raw_metrics, scaled_metrics = raw.compute(), scaled.compute()
            cells[name].append({key: raw_metrics[key] for key in CELL_KEYS})
            scaled_cells[name].append({key: scaled_metrics[key] for key in CELL_KEYS})
            pooled.merge(raw)
            pooled_scaled.merge(scaled)
            bar.update(1)
    bar.close()
    seconds["corruptions"] = time.perf_counter() - start
    summary = corruption_summary(cells, plan.baseline)
    after = corruption_summary(scaled_cells)
    source = str(plan.corrupted.directory)
    updates = _prefixed("corruption", summary)
    updates.update({"corruption.mce_baseline": request.baseline, "corruption.count": len(plan.labels), "corruption.set_id": plan.set_id,
                    "corruption.directory": source, "corruption.names": plan.corruption_names,
                    "corruption.pooled": pooled.compute(), "corruption.pooled_bins": pooled.bins(equal_mass=equal_mass),
                    "temperature.corruption.acc": after["acc"], "temperature.corruption.ece": after["ece"],
                    "temperature.corruption.rms_ce": after["rms_ce"],
                    "temperature.corruption.per_severity": after["per_severity"],
                    "temperature.corruption.pooled": pooled_scaled.compute()})
    return updates


def severity_curves(metrics: Mapping[str, Any]) -> dict[str, list[float]]:
    """Accuracy and ECE at severity 0 (clean) to 5 (mean over types), from merged metrics."""
    levels = [metrics["corruption.per_severity"][str(s)] for s in range(1, 6)]
    curves = {"accuracy": [metrics["clean.accuracy"]] + [level["acc"] for level in levels],
              "ece": [metrics["clean.ece"]] + [level["ece"] for level in levels]}
    if "temperature.corruption.per_severity" in metrics:
        scaled = metrics["temperature.corruption.per_severity"]
        curves["ece_scaled"] = [metrics["temperature.ece"]] + [scaled[str(s)]["ece"] for s in range(1, 6)]
    return curves


def _draw(run_dir: Path, metrics: Mapping[str, Any]) -> None:
    if "corruption.per_severity" not in metrics:
        return
    plot_corruption_severity(severity_curves(metrics), run_dir / "corruption_severity.png")
    plot_corruption_types(metrics["corruption.per_type"], run_dir / "corruption_types.png")
    reliability_diagram(metrics["corruption.pooled_bins"], run_dir / "reliability_corrupted.png",
                        title="all corrupted test images")


__all__ = ["SUITES", "RELIABILITY_BINS", "SuiteRequest", "check_reliability_bins", "evaluate_suite",
           "corruption_summary", "mean_corruption_error",
           "parse_suites", "parse_list", "predict_logits", "DEFAULT_OOD_DATASETS", "IMAGE_SUITES"]
