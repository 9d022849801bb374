"""What the CLI's evaluate, calibrate and demo commands do, as plain functions (usable from Python)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .calibrate import fit_temperature
from .data.loader import DeviceLoader
from .engine.evaluate import evaluate
from .engine.runs import LoadedRun, load_run
from .errors import ConfigError
from .metrics import CalibrationStats
from .report.plots import reliability_diagram


def _loader(run: LoadedRun, split: str, device: torch.device | str) -> DeviceLoader:
    s = run.splits
    dataset, indices = (s.test_set, s.test_idx) if split == "test" else (s.train_set, s.val_idx)
    return DeviceLoader(dataset.images, dataset.labels, indices, dataset.num_classes,
                        run.cfg.train.eval_batch_size, train=False, device=device)


def evaluate_run(run_dir: str | Path, device: str = "cpu", **suite: Any) -> dict[str, Any]:
    """Evaluate a run's checkpoint; update metrics.json, robustness.md and the plots.

    Without options: the clean test split (headline metrics and reliability.png, as before).
    ``suite`` takes the fields of :class:`auglabel.robustness.suite.SuiteRequest` (suites,
    subsample, corruptions, c_dir, baseline, ood_dataset, seed, ...).
    """
    from .robustness.suite import SuiteRequest, evaluate_suite

    return evaluate_suite(run_dir, SuiteRequest(**suite), _device(device))


def corrupt_dataset(dataset: str, root: str | None = None, out: str | None = None,
                    corruptions: str | list[str] | None = None, subsample: int | None = None,
                    seed: int = 0) -> Path:
    """Write the -C set of a dataset's test split (default: into the cache ``evaluate`` reads)."""
    from .data import load_dataset, subsample_indices
    from .robustness.corruption_data import check_corruption_names, corrupted_cache_dir, generate_corrupted_set
    from .robustness.suite import parse_list

    names = check_corruption_names(parse_list(corruptions))
    test = load_dataset(dataset, "test", root=root)
    indices = torch.arange(len(test))
    if subsample is not None:
        if subsample > len(test):
            raise ConfigError(f"--subsample {subsample} exceeds the {len(test)} test images of {dataset}")
        indices = subsample_indices(test.labels, subsample, seed)
    images, labels = test.images[indices], test.labels[indices]
    target = Path(out) if out else corrupted_cache_dir(test.name, indices, seed, images)
    return generate_corrupted_set(images, labels, target, names, seed)


def compare(run_dirs: list[str], out: str | None = None, csv: str | None = None) -> str:
    """The Markdown comparison table of ``run_dirs`` (also written to ``out`` / ``csv`` when given)."""
    from .compare import compare_runs, write_comparison

    comparison = compare_runs(run_dirs)
    write_comparison(comparison, out, csv)
    return comparison.markdown()


def calibrate_run(run_dir: str | Path, device: str = "cpu") -> dict[str, Any]:
    """Temperature scaling: fit T on the clean validation split, report test metrics before/after."""
    dev = _device(device)
    run = load_run(run_dir, dev)
    _, val_logits, val_labels = evaluate(run.model, _loader(run, "val", dev), keep_logits=True)
    temperature = fit_temperature(val_logits, val_labels)
    _, test_logits, test_labels = evaluate(run.model, _loader(run, "test", dev), keep_logits=True)
    before, after = CalibrationStats(), CalibrationStats()
    before.update(test_logits, test_labels)
    after.update(test_logits / temperature, test_labels)
    reliability_diagram(after.bins(), run.run_dir / "reliability_calibrated.png",
                        title=f"{run.cfg.data.name} test, temperature {temperature:.3f}")
    result = {"temperature": temperature, "fitted_on": "validation", "before": before.compute(),
              "after": after.compute()}
    run.update_metrics({"temperature_scaling": result})
    return result


def _device(name: str) -> torch.device:
    from .distributed import resolve_device

    return resolve_device(name)
