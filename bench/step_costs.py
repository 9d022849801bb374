"""Cost of method steps relative to a plain training step, measured side by side in one run.

Prints three figures, timing whole optimiser steps of the small CNN on Fashion-MNIST batches of 128
(digits when Fashion-MNIST is absent); each variant is timed in interleaved rounds and the median
per-step time is used:
  augmix_jsd_step_ratio   AugMix+JSD step / plain step            (goal <= 3.3: 3 forward passes)
  pgd_step_ratio          PGD-k step / ((k+1) x plain step)       (goal <= 1.05)
  augmix_jsd_vs_3b_plain  AugMix+JSD step / plain step on a 3x larger batch: the same model rows,
                          so this isolates augmentation + JSD overhead from the CPU's worse
                          per-image cost on larger conv batches
  augmix_data_stall_share share of an AugMix+JSD step spent waiting for the next batch from the
                          loader (gather + transfer + /255)       (goal <= 5%)
The last line is `data_stall_share: <fraction>`.

Usage: python bench/step_costs.py [--steps 20] [--rounds 3] [--threads 2] [--pgd-steps 10]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def _triple_batch():
    """A no-op augmentation that repeats the batch 3 times (the row count of AugMix+JSD)."""
    from auglabel.augment import Augmentation

    class TripleBatch(Augmentation):
        def forward(self, batch, *, generator, model=None):
            repeat = lambda t: t.repeat(3, *([1] * (t.dim() - 1)))  # noqa: E731
            return batch.replace(inputs=repeat(batch.inputs), labels=repeat(batch.labels), index=repeat(batch.index))

    return TripleBatch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from auglabel.augment import AUGMENTATIONS
    from auglabel.data import load_dataset
    from auglabel.data.loader import DeviceLoader
    from auglabel.engine.step import TrainingStep
    from auglabel.errors import DataError
    from auglabel.labels import LABEL_STRATEGIES
    from auglabel.models import build_model

    try:
        data = load_dataset("fashion_mnist", "train")
    except DataError:
        data = load_dataset("digits", "train")
    n_rows = min(len(data), args.batch_size * args.steps * 2)
    loader = DeviceLoader(data.images, data.labels, torch.arange(n_rows), data.num_classes, args.batch_size,
                          train=True, seed=0)
    variants = {
        "plain": AUGMENTATIONS.build("none"),
        "plain_3b": _triple_batch(),
        "augmix_jsd": AUGMENTATIONS.build("augmix", jsd=True),
        "pgd": AUGMENTATIONS.build("pgd", eps=0.03, steps=args.pgd_steps),
    }
    steps = {}
    for name, augment in variants.items():
        torch.manual_seed(0)
        model = build_model("small_cnn", in_channels=data.images.shape[1], num_classes=data.num_classes)
        step = TrainingStep(model, augment, LABEL_STRATEGIES.build("onehot"))
        optimizer = torch.optim.SGD(step.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        steps[name] = (step, optimizer)
    generator = torch.Generator().manual_seed(0)

    def timed_epoch(name: str) -> tuple[float, float, int]:
        step, optimizer = steps[name]
        total = waiting = 0.0
        count = 0
        iterator = iter(loader)
        tic = time.perf_counter()
        for _ in range(args.steps):
            fetch = time.perf_counter()
            batch = next(iterator)
            waiting += time.perf_counter() - fetch
            loss, _, _ = step(batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            count += 1
        total = time.perf_counter() - tic
        return total / count, waiting / count, count

    for name in steps:  # warm-up
        timed_epoch(name)
    per_step = {name: [] for name in steps}
    stall = []
    for r in range(args.rounds):
        loader.set_epoch(r + 1)
        for name in steps:
            seconds, waiting, _ = timed_epoch(name)
            per_step[name].append(seconds)
            if name == "augmix_jsd":
                stall.append(waiting / seconds)
    median = {name: statistics.median(times) for name, times in per_step.items()}
    for name, value in median.items():
        print(f"{name:>12}: {value * 1000:8.1f} ms/step ({args.batch_size / value:7.0f} img/s)")
    print(f"augmix_jsd_step_ratio: {median['augmix_jsd'] / median['plain']:.3f}")
    print(f"augmix_jsd_vs_3b_plain: {median['augmix_jsd'] / median['plain_3b']:.3f}")
    print(f"pgd_step_ratio: {median['pgd'] / ((args.pgd_steps + 1) * median['plain']):.3f}")
    print(f"data_stall_share: {statistics.median(stall):.4f}")


if __name__ == "__main__":
    main()
