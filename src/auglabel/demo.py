"""``auglabel demo``: a one-hot baseline against AugMix + AutoLabel, on clean and corrupted data.

Both runs train the small CNN with the same schedule; AugMix follows the AutoLabel paper's setting
(one chain, clean weight lam ~ U(0, 1), cross-entropy on the augmented view) and AutoLabel learns a
true-class value per (chain depth, ceil(lam N)) bucket.  Each run is then temperature-scaled and
evaluated on a stratified test subsample corrupted with the 15 benchmark corruptions x 5
severities.  Outputs (under the demo directory): ``baseline/`` and ``augmix_autolabel/`` (each a
full run with reliability diagrams), ``comparison.md``, ``severity.png`` (accuracy and ECE against
severity) and ``augmix_autolabel/autolabel.png`` (the learned labels).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .commands import calibrate_run, evaluate_run
from .engine.config import ComponentConfig, DataConfig, ExperimentConfig, TrainConfig
from .engine.trainer import Trainer
from .errors import DataError
from .report.io import write_bytes_atomic

#: the demo's two methods: (directory, label, augmentation, label strategy)
METHODS = (
    ("baseline", "one-hot baseline", ComponentConfig("none"), ComponentConfig("onehot")),
    ("augmix_autolabel", "AugMix + AutoLabel",
     ComponentConfig("augmix", {"severity": 3, "width": 1, "jsd": False, "mix": "uniform"}),
     ComponentConfig("autolabel", {"num_buckets": 10, "alpha": 1.0})),
)
DEFAULT_EPOCHS = {"fashion_mnist": 4, "digits": 30}


def demo_config(data_name: str, epochs: int | None, data_root: str | None, device: str,
                threads: int | None, augment: ComponentConfig, labels: ComponentConfig) -> ExperimentConfig:
    """Small CNN, SGD + Nesterov with cosine decay; digits gets a fractional split and smaller batches."""
    epochs = DEFAULT_EPOCHS[data_name] if epochs is None else epochs
    if data_name == "digits":
        data = DataConfig(name="digits", val_size=0.1)
        train = TrainConfig(epochs=epochs, batch_size=64, device=device, threads=threads)
    else:
        data = DataConfig(name=data_name, root=data_root, val_size=5000)
        train = TrainConfig(epochs=epochs, batch_size=128, device=device, threads=threads)
    return ExperimentConfig(data=data, augment=augment, labels=labels, train=train)


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
    for index, (name, label, augment, labels) in enumerate(METHODS, 1):
        cfg = demo_config(data_name, epochs, data_root, device, threads, augment, labels)
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
    plot_severity_comparison({label: severity_curves(results[name]) for name, label, *_ in METHODS},
                             root / "severity.png", title=f"{data_name}: clean and corrupted test images")
    write_bytes_atomic(comparison_markdown(results).encode("utf-8"), root / "comparison.md")
    return results, root


def comparison_markdown(results: dict[str, dict[str, Any]]) -> str:
    """One row per method: full-test accuracy / ECE, and accuracy / ECE on the corrupted subsample."""
    lines = ["| method | Acc % | ECE % | ECE % after T-scaling | cAcc % | cECE % |", "|---|---|---|---|---|---|"]
    for name, label, *_ in METHODS:
        m = results[name]
        scaled = m["temperature_scaling"]["after"]["ece"]
        lines.append(f"| {label} | {100 * m['accuracy']:.2f} | {100 * m['ece']:.2f} | {100 * scaled:.2f} | "
                     f"{100 * m['corruption.acc']:.2f} | {100 * m['corruption.ece']:.2f} |")
    count = results[METHODS[0][0]]["corruption.count"]
    return ("\n".join(lines) + f"\n\nAcc / ECE: the full test split. cAcc / cECE: {count} test images x "
            "15 corruptions x 5 severities, mean over the 75 cells.\n")
