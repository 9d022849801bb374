"""Train a list of configs (x seeds) with shared overrides and tabulate their test metrics.

    python scripts/run_grid.py configs/fashion_mnist_*.yaml --seeds 0 1 2 \
        --override train.epochs=3 --override data.train_subset=10000 \
        --runs runs/grid --out docs/results/methods.md

Each run goes to ``<runs>/<config stem>-seed<seed>`` through the same code path as
``auglabel train``; an existing finished run (metrics.json present) is reused, so an interrupted
grid continues where it stopped.  The table (Markdown) holds mean +- std over seeds, the wall time
of each run and the exact command line.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

from auglabel.reproduce.tables import mean_std_cell

KEYS = ("accuracy", "ece", "rms_ce", "oe", "brier", "nll")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--override", action="append", default=[], help="section.key=value (repeatable)")
    parser.add_argument("--runs", default="runs/grid")
    parser.add_argument("--out", default=None, help="write the Markdown table here too")
    args = parser.parse_args()

    from auglabel.cli import main as cli

    overrides = []
    for item in args.override:
        key, _, value = item.partition("=")
        overrides += [f"--{key}", value]
    rows = []
    for config in args.configs:
        stem = Path(config).stem
        results = []
        for seed in args.seeds:
            run = Path(args.runs) / f"{stem}-seed{seed}"
            if not (run / "metrics.json").is_file():
                code = cli(["train", config, "--run_dir", str(run), "--overwrite", "--train.seed", str(seed), *overrides])
                if code != 0:
                    sys.exit(f"{config} seed {seed} failed")
            results.append(json.loads((run / "metrics.json").read_text()))
        walls = [m.get("train_wall_time_s", float("nan")) for m in results]
        cells = [mean_std_cell([m[k] for m in results], 100.0 if k in ("accuracy", "ece", "rms_ce", "oe") else 1.0) for k in KEYS]
        rows.append(f"| {stem} | " + " | ".join(cells) + f" | {statistics.mean(walls):.0f} |")
    header = ("| config | accuracy % | ECE % | RMS CE % | OE % | Brier (0..2) | NLL | train s/run |\n"
              "|---|---|---|---|---|---|---|---|")
    command = "python scripts/run_grid.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = (f"Seeds: {args.seeds}; test metrics (mean ± std over seeds when more than one).\n\n"
            f"Command:\n\n```\n{command}\n```\n\n{header}\n" + "\n".join(rows) + "\n")
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
