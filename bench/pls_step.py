"""Cost of a Pairwise Label Smoothing step relative to a plain one-hot step, side by side in one run.

Both variants train the small CNN (same init) with SGD + Nesterov on the same Fashion-MNIST batch of 128
(digits when Fashion-MNIST is absent), through auglabel's TrainingStep: one-hot labels vs PLS (features
from the same forward, the W_t head, and every other step an averaged-pair batch).  Rounds of
``--steps`` optimiser steps (an even number: as many original as pair batches) alternate between the
two so machine noise hits both alike; per-step medians are compared.  Last line:
``pls_step_ratio: <PLS step / one-hot step>`` (goal <= 1.10).

Usage: python bench/pls_step.py [--steps 20] [--rounds 7] [--threads 2] [--batch-size 128]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    if args.steps % 2:
        parser.error("--steps must be even (original and pair batches alternate)")
    torch.set_num_threads(args.threads)

    from auglabel.augment import AUGMENTATIONS
    from auglabel.data import load_dataset
    from auglabel.data.loader import DeviceLoader
    from auglabel.engine.step import ComponentSpec, TrainingStep
    from auglabel.errors import DataError
    from auglabel.labels import LABEL_STRATEGIES
    from auglabel.models import build_model

    try:
        data, name = load_dataset("fashion_mnist", "train"), "fashion_mnist"
    except DataError:
        data, name = load_dataset("digits", "train"), "digits"
    loader = DeviceLoader(data.images, data.labels, torch.arange(args.batch_size), data.num_classes,
                          args.batch_size, train=True, seed=0)
    batch = next(iter(loader))
    steps = {}
    for label_name in ("onehot", "pls"):
        torch.manual_seed(0)
        model = build_model("small_cnn", in_channels=data.images.shape[1], num_classes=data.num_classes)
        step = TrainingStep(model, AUGMENTATIONS.build("none"), LABEL_STRATEGIES.build(label_name))
        step.setup(ComponentSpec(num_classes=data.num_classes, feature_dim=model.feature_dim,
                                 input_shape=tuple(data.images.shape[1:]), dataset_size=len(data),
                                 train_size=len(data)))
        optimizer = torch.optim.SGD(step.param_groups(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
        steps[label_name] = (step, optimizer)
    generator = torch.Generator().manual_seed(0)

    def timed_round(label_name: str) -> float:
        step, optimizer = steps[label_name]
        tic = time.perf_counter()
        for _ in range(args.steps):
            loss, _, _ = step(batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - tic) / args.steps

    for label_name in steps:  # warm-up
        timed_round(label_name)
    per_step: dict[str, list[float]] = {label_name: [] for label_name in steps}
    for r in range(args.rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))  # neither always goes first
        for label_name in order:
            per_step[label_name].append(timed_round(label_name))
    median = {label_name: statistics.median(times) for label_name, times in per_step.items()}
    print(f"dataset {name}, batch {args.batch_size}, {args.steps} steps x {args.rounds} rounds, {args.threads} threads")
    for label_name, value in median.items():
        print(f"{label_name:>7}: {value * 1000:8.2f} ms/step ({args.batch_size / value:7.0f} img/s)")
    print(f"pls_step_ratio: {median['pls'] / median['onehot']:.3f}")


if __name__ == "__main__":
    main()
