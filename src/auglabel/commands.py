"""What the CLI's evaluate, calibrate and demo commands do, as plain functions (usable from Python)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .calibrate import fit_temperature
from .data.loader import DeviceLoader
from .engine.config import DataConfig, ExperimentConfig, TrainConfig
from .engine.evaluate import evaluate
from .engine.runs import LoadedRun, load_run
from .engine.trainer import Trainer
from .errors import ConfigError, DataError
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


def demo_config(epochs: int, data_name: str, data_root: str | None, device: str,
                threads: int | None = None) -> ExperimentConfig:
    """The demo: small CNN, clean one-hot training, a few epochs; digits needs more epochs and a fraction split."""
    if data_name == "digits":
        data = DataConfig(name="digits", val_size=0.1)
        train = TrainConfig(epochs=max(epochs, 30), batch_size=64, device=device, threads=threads)
    else:
        data = DataConfig(name=data_name, root=data_root, val_size=5000)
        train = TrainConfig(epochs=epochs, batch_size=128, device=device, threads=threads)
    return ExperimentConfig(data=data, train=train)


def run_demo(epochs: int = 5, run_dir: str | None = None, data_root: str | None = None,
             device: str = "auto", threads: int | None = None) -> tuple[dict[str, Any], Path]:
    """Train the small CNN on Fashion-MNIST (digits when it is absent), evaluate, calibrate."""
    from .data import load_dataset

    data_name = "fashion_mnist"
    try:
        load_dataset("fashion_mnist", "test", root=data_root)
    except DataError as exc:
        print(f"Fashion-MNIST is not available ({exc}).\n"
              "Falling back to scikit-learn's 8x8 digits; install Debian's dataset-fashion-mnist "
              "(apt-get install dataset-fashion-mnist) for the real demo.", flush=True)
        data_name = "digits"
    cfg = demo_config(epochs, data_name, data_root, device, threads)
    run_path = Path(run_dir or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    cfg.run_dir = str(run_path)
    print(f"training small_cnn on {data_name} for {cfg.train.epochs} epochs -> {run_path}", flush=True)
    metrics = Trainer(cfg, run_path).fit()
    calibration = calibrate_run(run_path, device="cpu")
    metrics["temperature_scaling"] = calibration
    print(f"temperature scaling: T = {calibration['temperature']:.3f}, "
          f"test ECE {calibration['before']['ece']:.4f} -> {calibration['after']['ece']:.4f}")
    return metrics, run_path
