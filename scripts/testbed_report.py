"""The test bed against the current small-CNN setting: one-hot calibration over seeds, per epoch and pooled.

    python scripts/testbed_report.py            # -> docs/results/testbed.table.md, testbed_epochs.png,
                                                #    testbed_reliability.png

Trains (unless finished) one-hot runs of both settings for every seed into ``--runs``:
``onehot-seed<s>`` = ``configs/testbed/onehot.yaml`` (5,000 training images, 30 epochs) and
``current_onehot-seed<s>`` = ``configs/fashion_mnist_onehot.yaml`` at 4 epochs on 55,000 images (the
setting every earlier table used).  Then it tabulates test metrics at the last and at the
best-validation epoch (mean ± std over seeds), draws validation ECE / OE and the training loss
against epoch, and the reliability diagrams of the test predictions pooled over seeds.
"""
from __future__ import annotations

import argparse
import csv
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: (run prefix, label, config, extra train overrides)
SETTINGS = [
    ("onehot", "test bed: 5k images, 30 epochs", ROOT / "configs/testbed/onehot.yaml", []),
    ("current_onehot", "earlier setting: 55k images, 4 epochs", ROOT / "configs/fashion_mnist_onehot.yaml",
     ["--train.epochs", "4"]),
]
KEYS = [("accuracy", "Acc %", 100), ("ece", "ECE %", 100), ("oe", "OE %", 100), ("rms_ce", "RMS-CE %", 100),
        ("nll", "NLL", 1), ("brier", "Brier", 1)]


def cell(values: list[float], scale: float = 100.0) -> str:
    from auglabel.reproduce.tables import mean_std_cell

    return mean_std_cell(values, scale)


def train_missing(runs: Path, seeds: list[int], threads: int) -> None:
    for prefix, _, config, extra in SETTINGS:
        for seed in seeds:
            run = runs / f"{prefix}-seed{seed}"
            if (run / "metrics.json").is_file():
                continue
            command = [sys.executable, "-m", "auglabel.cli", "train", str(config), *extra, "--run_dir", str(run),
                       "--overwrite", "--train.seed", str(seed), "--train.threads", str(threads)]
            print("$ " + " ".join(shlex.quote(c) for c in command), flush=True)
            if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
                sys.exit(f"training {run} failed")


def read_log(run: Path) -> list[dict[str, float]]:
    with (run / "log.csv").open(newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


def table(runs: Path, seeds: list[int]) -> str:
    lines = ["| setting | epoch | " + " | ".join(label for _, label, _ in KEYS) + " | final train loss | "
             "best-val epoch | train s/run |", "|---|---|" + "---|" * len(KEYS) + "---|---|---|"]
    for prefix, label, _, _ in SETTINGS:
        metrics = [json.loads((runs / f"{prefix}-seed{s}" / "metrics.json").read_text()) for s in seeds]
        logs = [read_log(runs / f"{prefix}-seed{s}") for s in seeds]
        loss = cell([log[-1]["train_loss"] for log in logs], 1.0)
        wall = statistics.mean(m["train_wall_time_s"] for m in metrics)
        best_epochs = "/".join(str(m["best_val"]["epoch"]) for m in metrics)
        for which, rows in (("last", metrics), ("best val", [m["best_val"] for m in metrics])):
            cells = [cell([r[key] for r in rows], scale) for key, _, scale in KEYS]
            lines.append(f"| {label} | {which} | " + " | ".join(cells) + f" | {loss} | {best_epochs} | {wall:.0f} |")
    return "\n".join(lines)


def plot_epochs(runs: Path, seeds: list[int], path: Path) -> None:
    """Validation ECE and OE (left axis) and training loss (right axis) against epoch, mean and min..max over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(SETTINGS), squeeze=False)[0]
    for ax, (prefix, label, _, _) in zip(axes, SETTINGS):
        logs = [read_log(runs / f"{prefix}-seed{s}") for s in seeds]
        epochs = [int(row["epoch"]) for row in logs[0]]
        for key, name, colour in (("val_ece", "val ECE", "#dd4444"), ("val_oe", "val OE", "#4c72b0")):
            values = [[100 * row[key] for row in log] for log in logs]
            ax.plot(epochs, [statistics.mean(v) for v in zip(*values)], color=colour, marker=".", label=name)
            ax.fill_between(epochs, [min(v) for v in zip(*values)], [max(v) for v in zip(*values)], color=colour, alpha=0.15)
        ax.set(xlabel="epoch", ylabel="% of the validation split", title=label, ylim=(0, None))
        loss_ax = ax.twinx()
        loss_ax.plot(epochs, [statistics.mean(v) for v in zip(*[[r["train_loss"] for r in log] for log in logs])],
                     color="0.4", linestyle="--", label="train loss")
        loss_ax.set(ylabel="training loss", ylim=(0, None))
        handles = ax.get_legend_handles_labels()
        extra = loss_ax.get_legend_handles_labels()
        ax.legend(handles[0] + extra[0], handles[1] + extra[1], frameon=False, loc="upper right")
    figure.suptitle(f"One-hot small CNN on Fashion-MNIST: calibration against epoch (mean, band min..max over seeds {seeds})")
    figure.savefig(path, dpi=110)


def pooled_bins(runs: Path, prefix: str, seeds: list[int]) -> dict:
    """Reliability bins of the test predictions of every seed's final model, pooled."""
    from auglabel.engine.evaluate import evaluate
    from auglabel.engine.runs import load_run
    from auglabel.data.loader import DeviceLoader
    from auglabel.metrics import CalibrationStats

    pooled = CalibrationStats()
    for seed in seeds:
        run = load_run(runs / f"{prefix}-seed{seed}")
        s = run.splits
        loader = DeviceLoader(s.test_set.images, s.test_set.labels, s.test_idx, s.test_set.num_classes, 1000, train=False)
        pooled.merge(evaluate(run.model, loader)[0])
    return pooled.bins()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default="runs/testbed")
    parser.add_argument("--out", default="docs/results")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from auglabel.report.plots import reliability_diagrams

    start = time.perf_counter()
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_missing(runs, args.seeds, args.threads)
    command = "python scripts/testbed_report.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = (f"Command: `{command.strip()}` (wall time of this invocation {time.perf_counter() - start:.0f} s; "
            f"seeds {args.seeds}; full 10,000-image test split; mean ± std over seeds)\n\n" + table(runs, args.seeds) + "\n")
    (out / "testbed.table.md").write_text(text)
    print(text)
    plot_epochs(runs, args.seeds, out / "testbed_epochs.png")
    reliability_diagrams({f"{label}\n(test, {len(args.seeds)} seeds pooled)": pooled_bins(runs, prefix, args.seeds)
                          for prefix, label, _, _ in SETTINGS}, out / "testbed_reliability.png")


if __name__ == "__main__":
    main()
