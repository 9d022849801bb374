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
import tempfile

import torch
from _epochs import bench_data, median_epoch_times  # bench/ is on sys.path when a bench runs as a script

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

    from auglabel.engine.config import ComponentConfig, ExperimentConfig, TrainConfig
    from auglabel.engine.trainer import Trainer

    data = bench_data(args.train)
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
        medians = median_epoch_times(trainers, args.rounds)
    print(f"dataset {data.name}, base augmentation {args.base}, {args.rounds} timed epochs each")
    for name, value in medians.items():
        print(f"{name:>10}: median epoch {value:.2f}s")
    print(f"autolabel_overhead: {medians['autolabel'] / medians['base']:.3f}")


if __name__ == "__main__":
    main()
