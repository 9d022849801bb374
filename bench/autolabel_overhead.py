"""Cost of AutoLabel: an AutoLabel epoch over its base augmentation's epoch, side by side.

Two trainers on the same Fashion-MNIST subset (digits when it is absent) and the same base
augmentation (AugMix single chain, the paper's setting; or mixup / pgd with --base): one with
one-hot labels, one with AutoLabel.  Whole epochs (`Trainer.run_epoch`: training, the clean
validation pass, hooks - AutoLabel's augmented-validation update - logging and checkpoint) are timed
alternately; the ratio of the median epoch times is printed last as ``autolabel_overhead: <ratio>``
(goal <= 1.05).  The validation split keeps the default 1:11 ratio to training (5,000 of 60,000).

Usage: python bench/autolabel_overhead.py [--train 11000] [--rounds 3] [--base augmix|mixup|pgd]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

BASES = {
    "augmix": {"name": "augmix", "params": {"width": 1, "jsd": False, "mix": "uniform"}},
    "mixup": {"name": "mixup", "params": {"beta": 1.0}},
    "pgd": {"name": "pgd", "params": {"eps": 0.03, "sample_eps": True, "steps": 3}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=11000, help="training-pool size (validation = 1/11)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--base", choices=sorted(BASES), default="augmix")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from auglabel.data import load_dataset
    from auglabel.engine.config import ComponentConfig, DataConfig, ExperimentConfig, TrainConfig
    from auglabel.engine.trainer import Trainer
    from auglabel.errors import DataError

    try:
        load_dataset("fashion_mnist", "test")
        data = DataConfig(name="fashion_mnist", train_subset=args.train, val_size=args.train // 11)
    except DataError:
        data = DataConfig(name="digits", val_size=1 / 11)
    base = BASES[args.base]

    def config(labels: ComponentConfig) -> ExperimentConfig:
        return ExperimentConfig(data=data, augment=ComponentConfig(base["name"], dict(base["params"])),
                                labels=labels, train=TrainConfig(epochs=args.rounds + 1, device="cpu",
                                                                 threads=args.threads))

    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            "base": Trainer(config(ComponentConfig("onehot")), f"{tmp}/base", progress=False),
            "autolabel": Trainer(config(ComponentConfig("autolabel")), f"{tmp}/autolabel", progress=False),
        }
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for epoch in range(1, args.rounds + 2):
            for name, trainer in trainers.items():
                tic = time.perf_counter()
                trainer.run_epoch(epoch)
                if epoch > 1:  # epoch 1 warms up allocators and kernels
                    times[name].append(time.perf_counter() - tic)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"dataset {data.name}, base augmentation {args.base}, {args.rounds} timed epochs each")
    for name, value in medians.items():
        print(f"{name:>10}: median epoch {value:.2f}s")
    print(f"autolabel_overhead: {medians['autolabel'] / medians['base']:.3f}")


if __name__ == "__main__":
    main()
