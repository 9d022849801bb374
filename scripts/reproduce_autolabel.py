"""Reproduce the AutoLabel paper's Tables 2-4 at small scale (Fashion-MNIST, small CNN, 3 seeds).

    python scripts/reproduce_autolabel.py            # the whole grid -> docs/results/autolabel.md

Trains every config of ``configs/autolabel/`` for every seed, evaluates each run on a stratified
subsample of Fashion-MNIST-C (the 15 benchmark corruptions x 5 severities, generated once and
cached) and, for the adversarial-training group, under PGD-50 with 3 restarts; then writes the
mean +- std table, a calibration-against-severity plot and the learned labels of the AutoLabel
runs.  Jobs run ``--jobs`` at a time, each with ``--threads`` torch threads.  A finished step
(metrics present in the run's metrics.json) is reused, so an interrupted grid continues where it
stopped; pass ``--fresh`` to retrain everything.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from run_grid import mean_std_cell  # scripts/ is on sys.path when this file runs as a script

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "autolabel"
#: (table title, paper reference, [(config stem, row label)])
GROUPS = [
    ("AugMix", "Table 2", [("augmix", "AugMix"), ("augmix_autolabel", "+ AutoLabel")]),
    ("AugMix-JSD", "Table 2, JSD variant", [("augmix_jsd", "AugMix + JSD"),
                                              ("augmix_jsd_autolabel", "+ AutoLabel")]),
    ("mixup", "Table 3", [("mixup_beta0.2", "mixup (β = 0.2)"), ("mixup_beta1", "mixup (β = 1)"),
                          ("mixup_beta1_autolabel", "+ AutoLabel (β = 1)")]),
    ("Adversarial training", "Table 4", [("at", "AT"), ("ccat", "CCAT"),
                                                  ("at_sampled_eps", "AT, ε ~ U(0, ε_max) (control)"),
                                                  ("at_autolabel", "AT + AutoLabel")]),
]
ADVERSARIAL_GROUP = "Adversarial training"
ADV_EPS = ("0.02", "0.03", "0.04")


def cli(*args: str, threads: int) -> list[str]:
    return [sys.executable, "-c", "import sys; from auglabel.cli import main; sys.exit(main(sys.argv[1:]))",
            *args, "--threads" if args[0] != "train" else "--train.threads", str(threads)]


def run_job(stem: str, seed: int, adversarial: bool, args: argparse.Namespace) -> dict:
    """Train (unless finished) and evaluate one (config, seed); return its metrics."""
    run = Path(args.runs) / f"{stem}-seed{seed}"
    log = Path(args.runs) / f"{stem}-seed{seed}.log"
    metrics_path = run / "metrics.json"

    def metrics() -> dict:
        return json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}

    def call(command: list[str]) -> None:
        with log.open("a") as handle:
            handle.write("$ " + " ".join(shlex.quote(c) for c in command) + "\n")
            handle.flush()
            if subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode != 0:
                raise SystemExit(f"{stem} seed {seed} failed; see {log}")

    if "accuracy" not in metrics():
        overrides = [item for pair in args.override for item in ("--" + pair.partition("=")[0], pair.partition("=")[2])]
        call(cli("train", str(CONFIGS / f"{stem}.yaml"), "--run_dir", str(run), "--overwrite",
                 "--train.seed", str(seed), *overrides, threads=args.threads))
    suites = ["corruptions"] + (["adversarial"] if adversarial else [])
    done = metrics()
    if "corruption.ece" not in done or done.get("corruption.count") != args.subsample:
        call(cli("evaluate", str(run), "--suite", "corruptions", "--subsample", str(args.subsample),
                 "--corruptions", ",".join(benchmark_corruptions()), threads=args.threads))
    if adversarial and any(f"adversarial.{eps}" not in metrics() for eps in ADV_EPS):
        call(cli("evaluate", str(run), "--suite", "adversarial", "--subsample", str(args.adv_subsample),
                 threads=args.threads))
    print(f"done: {stem} seed {seed}", flush=True)
    return metrics()


def benchmark_corruptions() -> list[str]:
    from auglabel.corruptions import BENCHMARK_CORRUPTIONS

    return list(BENCHMARK_CORRUPTIONS)


def table(results: dict[str, list[dict]], rows: list[tuple[str, str]], adversarial: bool) -> str:
    header = "| method | Acc % | ECE % | cAcc % | cECE % |"
    rule = "|---|---|---|---|---|"
    if adversarial:
        header += "".join(f" PGD-50 acc ε={eps} % |" for eps in ADV_EPS)
        rule += "---|" * len(ADV_EPS)
    header += " train s/run |"
    rule += "---|"
    lines = [header, rule]
    for stem, label in rows:
        runs = results[stem]
        cells = [mean_std_cell([m[k] for m in runs]) for k in ("accuracy", "ece", "corruption.acc", "corruption.ece")]
        if adversarial:
            cells += [mean_std_cell([m[f"adversarial.{eps}"] for m in runs]) for eps in ADV_EPS]
        wall = statistics.mean(m["train_wall_time_s"] for m in runs)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {wall:.0f} |")
    return "\n".join(lines)


def read_autolabel_csv(run: Path) -> list[dict]:
    import csv

    with (run / "autolabel.csv").open(newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def label_diagnostics(groups: list, args: argparse.Namespace) -> str:
    """Why the labels moved (or not): per AutoLabel config, mean +- std over seeds of the final
    bucket values and of how often the augmented validation split found the model over-confident."""
    lines = ["| config | final mean t | final min t | updates with Conf > Acc, epochs 2+ (%) | "
             "Conf - Acc, last 5 epochs (pp) |", "|---|---|---|---|---|"]
    for title, _, rows in groups:
        for stem, label in rows:
            if "autolabel" not in stem:
                continue
            stats = []
            for seed in args.seeds:
                table_rows = read_autolabel_csv(Path(args.runs) / f"{stem}-seed{seed}")
                last = max(r["epoch"] for r in table_rows)
                final = [r["t"] for r in table_rows if r["epoch"] == last]
                later = [r for r in table_rows if r["epoch"] >= 2]
                over = sum(r["val_confidence"] > r["val_accuracy"] for r in later) / len(later)
                gap = [r["val_confidence"] - r["val_accuracy"] for r in table_rows if r["epoch"] > last - 5]
                stats.append((statistics.mean(final), min(final), over, statistics.mean(gap)))
            cells = [mean_std_cell([s[i] for s in stats], scale) for i, scale in enumerate((1, 1, 100, 100))]
            lines.append(f"| {stem} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plot_severity(results: dict[str, list[dict]], groups: list, directory: Path) -> None:
    """Accuracy and ECE against corruption severity (0 = clean), mean +- std over seeds (paper Fig. 2),
    one figure per group: ``autolabel_severity_<group>.png``."""
    from auglabel.report.robustness_plots import plot_severity_comparison
    from auglabel.robustness.suite import severity_curves

    for title, paper, rows in groups:
        curves, spread = {}, {}
        for stem, label in rows:
            per_seed = [severity_curves(m) for m in results[stem]]
            curves[label] = {k: [statistics.mean(v) for v in zip(*(c[k] for c in per_seed))] for k in ("accuracy", "ece")}
            spread[label] = {k: [_mean_std(list(v))[1] for v in zip(*(c[k] for c in per_seed))] for k in ("accuracy", "ece")}
        name = title.split()[0].lower()
        plot_severity_comparison(curves, directory / f"autolabel_severity_{name}.png", spread=spread,
                                 title=f"{title} ({paper} setting): Fashion-MNIST-C subsample, mean ± std over seeds")


def plot_learned_labels(groups: list, args: argparse.Namespace, path: Path) -> None:
    """The final learned true-class value of every bucket against distance, one panel per AutoLabel config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stems = [(stem, label, title) for title, _, rows in groups for stem, label in rows if "autolabel" in stem]
    fig, axes = plt.subplots(1, len(stems), figsize=(4.2 * len(stems), 3.4), squeeze=False)
    for ax, (stem, label, title) in zip(axes[0], stems):
        curves: dict[int, list[list[float]]] = {}
        for seed in args.seeds:
            rows = read_autolabel_csv(Path(args.runs) / f"{stem}-seed{seed}")
            last = max(r["epoch"] for r in rows)
            for group in sorted({int(r["group"]) for r in rows}):
                final = [r for r in rows if r["epoch"] == last and r["group"] == group]
                curves.setdefault(group, []).append([r["t"] for r in sorted(final, key=lambda r: r["bucket"])])
        for group, per_seed in curves.items():
            n = len(per_seed[0])
            centres = [(b + 0.5) / n for b in range(n)]
            means = [statistics.mean(v) for v in zip(*per_seed)]
            ax.plot(centres, means, marker="o", label=f"depth {group}" if len(curves) > 1 else "mean")
            ax.fill_between(centres, [min(v) for v in zip(*per_seed)], [max(v) for v in zip(*per_seed)], alpha=0.15)
        ax.set_title(f"{title} {label}", fontsize=10)
        ax.set_xlabel("bucket distance")
        ax.set_ylabel("learned true-class value t")
        ax.legend(fontsize=8)
    fig.suptitle("Final AutoLabel values (mean over seeds; band: min..max)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default="runs/autolabel")
    parser.add_argument("--out", default="docs/results/autolabel.md")
    parser.add_argument("--subsample", type=int, default=1000, help="test images corrupted for the -C evaluation")
    parser.add_argument("--adv_subsample", type=int, default=200, help="test images attacked for PGD-50 accuracy")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at the same time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--groups", nargs="+", default=[g[0] for g in GROUPS], choices=[g[0] for g in GROUPS])
    parser.add_argument("--override", action="append", default=[], help="section.key=value for every run")
    parser.add_argument("--fresh", action="store_true", help="retrain and re-evaluate every run")
    args = parser.parse_args()
    start = time.perf_counter()
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for path in Path(args.runs).glob("*/metrics.json"):
            path.unlink()

    from auglabel.commands import corrupt_dataset

    print("generating the Fashion-MNIST-C subsample (cached after the first time)", flush=True)
    corrupt_dataset("fashion_mnist", corruptions=benchmark_corruptions(), subsample=args.subsample)
    groups = [g for g in GROUPS if g[0] in args.groups]
    jobs = [(stem, seed, title == ADVERSARIAL_GROUP) for title, _, rows in groups for stem, _ in rows
            for seed in args.seeds]
    # the slow adversarial runs first, so the pool stays busy to the end
    jobs.sort(key=lambda job: not job[2])
    with ThreadPoolExecutor(args.jobs) as pool:
        finished = list(pool.map(lambda job: run_job(*job, args), jobs))
    results: dict[str, list[dict]] = {}
    for (stem, _, _), metrics in zip(jobs, finished):
        results.setdefault(stem, []).append(metrics)
    wall = time.perf_counter() - start
    command = "python scripts/reproduce_autolabel.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    sections = [f"### {title} ({paper})\n\n{table(results, rows, title == ADVERSARIAL_GROUP)}"
                for title, paper, rows in groups]
    text = (f"Command: `{command.strip()}`  \nWall time of this invocation: {wall / 60:.1f} min "
            f"({args.jobs} jobs x {args.threads} thread(s)); seeds {args.seeds}; -C on {args.subsample} "
            f"test images x 15 corruptions x 5 severities; PGD-50 (3 restarts) on {args.adv_subsample}.\n\n"
            + "\n\n".join(sections) + "\n\n### AutoLabel diagnostics\n\n" + label_diagnostics(groups, args) + "\n")
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".table.md").write_text(text)
    plot_severity(results, groups, out.parent)
    plot_learned_labels(groups, args, out.parent / "autolabel_labels.png")


if __name__ == "__main__":
    main()
