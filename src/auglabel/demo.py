"""``auglabel demo``: one-hot, AugMix and AugMix + AutoLabel in the test bed, clean and corrupted.

The three runs are the test bed's configs (``configs/testbed/{onehot,augmix,augmix_autolabel}.yaml``):
the small CNN on 5,000 Fashion-MNIST training images for 30 epochs, where one-hot training fits
the training set and is over-confident, so AugMix and AutoLabel each have something to show.
AugMix follows the AutoLabel paper's setting (one chain, clean weight lam ~ U(0, 1), cross-entropy
on the augmented view) and AutoLabel learns a true-class value per (chain depth, ceil(lam N))
bucket.  Each run is then temperature-scaled and evaluated on a stratified test subsample
corrupted with the 15 benchmark corruptions x 5 severities.  Outputs (under the demo directory):
one run directory per method (each with reliability diagrams), ``comparison.md``, ``severity.png``
(accuracy and ECE against severity) and ``augmix_autolabel/autolabel.png`` (the learned labels).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from .commands import calibrate_run, evaluate_run
from .engine.config import ExperimentConfig
from .engine.trainer import Trainer
from .errors import DataError
from .report.io import write_bytes_atomic

#: the demo's methods: (test-bed config stem = run directory, label)
METHODS = (("onehot", "one-hot"), ("augmix", "AugMix"), ("augmix_autolabel", "AugMix + AutoLabel"))
DEFAULT_EPOCHS = {"fashion_mnist": 30, "digits": 30}


def testbed_config(stem: str) -> ExperimentConfig:
    """A test-bed config shipped with the package, by stem (``onehot``, ``augmix_autolabel``...)."""
    from .reproduce.papers import testbed_dir

    return ExperimentConfig.from_dict(yaml.safe_load((testbed_dir() / f"{stem}.yaml").read_text()))


def demo_config(data_name: str, epochs: int | None, data_root: str | None, device: str,
                threads: int | None, stem: str) -> ExperimentConfig:
    """The test-bed config ``stem``; the digits fallback gets its whole (small) training set and smaller batches."""
    cfg = testbed_config(stem)
    cfg.train.epochs = DEFAULT_EPOCHS[data_name] if epochs is None else epochs
    cfg.train.device, cfg.train.threads = device, threads
    if data_name == "digits":
        cfg.data.name, cfg.data.val_size, cfg.data.train_subset = "digits", 0.1, None
        cfg.train.batch_size = 64
    else:
        cfg.data.name, cfg.data.root = data_name, data_root
    return cfg


def available_dataset(data_root: str | None) -> str:
    """Fashion-MNIST when it is installed, else scikit-learn's digits (with a note saying so)."""
    from .data import load_dataset

    try:
        load_dataset("fashion_mnist", "test", root=data_root)
        return "fashion_mnist"
    except DataError as exc:
        print(f"Fashion-MNIST is not available ({exc}).\n"
              "Falling back to scikit-learn's 8x8 digits; install Debian's dataset-fashion-mnist "
              "(apt-get install dataset-fashion-mnist) for the real demo.", flush=True)
        return "digits"


def run_demo(epochs: int | None = None, run_dir: str | None = None, data_root: str | None = None,
             device: str = "auto", threads: int | None = None, subsample: int = 1000,
             dataset: str | None = None) -> tuple[dict[str, dict[str, Any]], Path]:
    """Train, calibrate and evaluate both methods; return ``{directory: metrics}`` and the demo directory."""
    from .corruptions import BENCHMARK_CORRUPTIONS
    from .report.robustness_plots import plot_severity_comparison
    from .robustness.suite import severity_curves

    data_name = dataset or available_dataset(data_root)
    root = Path(run_dir or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    results: dict[str, dict[str, Any]] = {}
    for index, (name, label) in enumerate(METHODS, 1):
        cfg = demo_config(data_name, epochs, data_root, device, threads, name)
        cfg.run_dir = str(root / name)
        print(f"[{index}/{len(METHODS)}] {label}: small_cnn on {data_name}, {cfg.train.epochs} epochs "
              f"-> {cfg.run_dir}", flush=True)
        test_count = int(Trainer(cfg, cfg.run_dir).fit()["count"])
        calibration = calibrate_run(cfg.run_dir, device="cpu")
        print(f"    temperature scaling: T = {calibration['temperature']:.3f}, test ECE "
              f"{calibration['before']['ece']:.4f} -> {calibration['after']['ece']:.4f}", flush=True)
        metrics = evaluate_run(cfg.run_dir, device=device, suites="corruptions",
                               subsample=min(subsample, test_count), corruptions=list(BENCHMARK_CORRUPTIONS))
        results[name] = metrics
    plot_severity_comparison({label: severity_curves(results[name]) for name, label in METHODS},
                             root / "severity.png", title=f"{data_name}: clean and corrupted test images")
    write_bytes_atomic(comparison_markdown(results).encode("utf-8"), root / "comparison.md")
    return results, root


def comparison_markdown(results: dict[str, dict[str, Any]]) -> str:
    """One row per method: full-test accuracy / ECE, and accuracy / ECE on the corrupted subsample."""
    lines = ["| method | Acc % | ECE % | OE % | ECE % after T-scaling | cAcc % | cECE % |",
             "|---|---|---|---|---|---|---|"]
    for name, label in METHODS:
        m = results[name]
        scaled = m["temperature_scaling"]["after"]["ece"]
        lines.append(f"| {label} | {100 * m['accuracy']:.2f} | {100 * m['ece']:.2f} | {100 * m['oe']:.2f} | "
                     f"{100 * scaled:.2f} | {100 * m['corruption.acc']:.2f} | {100 * m['corruption.ece']:.2f} |")
    count = results[METHODS[0][0]]["corruption.count"]
    return ("\n".join(lines) + f"\n\nAcc / ECE: the full test split. cAcc / cECE: {count} test images x "
            "15 corruptions x 5 severities, mean over the 75 cells.\n")
