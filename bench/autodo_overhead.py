"""Cost of AutoDO: an AutoDO epoch with its hyper pass over a plain epoch, side by side.

Trainers on the same Fashion-MNIST subset (digits when it is absent), small CNN: ``plain`` (no augmentation,
one-hot labels), ``autodo`` (``augment: autodo`` + ``labels: autodo``, A+W+S, hyper pass after every epoch:
``hyper_start 0``) and ``autodo_before_E`` (the same before E: learned augmentation and soft-label loss, no
hyper pass).  Whole epochs (``Trainer.run_epoch``: training, the clean validation pass, hooks - AutoDO's hyper
pass over all training batches with T = 5 Neumann steps -, logging and checkpoint) are timed alternately after
one warm-up epoch each; the medians' ratio is printed last as ``autodo_overhead: <ratio>`` (goal <= 2.0; the
paper's estimate for its schedule is 3.5x).  Also printed: the epoch before E, and the run average with
E = epochs / 2.

Usage: python bench/autodo_overhead.py [--train 11000] [--rounds 3] [--threads 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import tempfile

import torch
from _epochs import bench_data, median_epoch_times  # bench/ is on sys.path when a bench runs as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=11000, help="training-pool size (validation = 1/11)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from auglabel.engine.config import ComponentConfig, ExperimentConfig, TrainConfig
    from auglabel.engine.trainer import Trainer

    data = bench_data(args.train)
    epochs = args.rounds + 2  # the hyper pass follows epochs E < e < epochs: never the last one

    def config(augment: str, labels: ComponentConfig) -> ExperimentConfig:
        return ExperimentConfig(data=data, augment=ComponentConfig(augment), labels=labels,
                                train=TrainConfig(epochs=epochs, device=args.device, threads=args.threads))

    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            "plain": Trainer(config("none", ComponentConfig("onehot")), f"{tmp}/plain", progress=False),
            "autodo": Trainer(config("autodo", ComponentConfig("autodo", {"hyper_start": 0, "plots": False})),
                              f"{tmp}/autodo", progress=False),
            "autodo_before_E": Trainer(config("autodo", ComponentConfig("autodo", {"hyper_start": epochs,
                                                                                   "plots": False})),
                                       f"{tmp}/before", progress=False),
        }
        medians = median_epoch_times(trainers, args.rounds)
    print(f"dataset {data.name}, {args.rounds} timed epochs each, device {args.device}, {args.threads} threads")
    for name, value in medians.items():
        print(f"{name:>16}: median epoch {value:.2f}s")
    before, after = medians["autodo_before_E"] / medians["plain"], medians["autodo"] / medians["plain"]
    print(f"epoch before E / plain: {before:.3f}; run average with E = epochs / 2: {(before + after) / 2:.3f}")
    print(f"autodo_overhead: {after:.3f}")


if __name__ == "__main__":
    main()
