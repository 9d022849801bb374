"""Overhead of auglabel's training step over a hand-written PyTorch loop.

Both loops train the same small CNN (same init, same optimiser and schedule) on the same
Fashion-MNIST subset (digits when Fashion-MNIST is absent) with one-hot labels and no
augmentation.  auglabel's side is ``Trainer.train_epoch`` (loader, Batch, TrainingStep, label
strategy, scheduler, loss/accuracy accounting); the hand loop indexes tensors and calls
``F.cross_entropy``.  Rounds alternate between the two so machine noise hits both alike; the
ratio of medians is printed last as ``step_overhead: <ratio>`` (goal <= 1.05).

Usage: python bench/step_overhead.py [--samples 8192] [--rounds 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from auglabel.data import load_dataset
    from auglabel.engine.config import DataConfig, ExperimentConfig, TrainConfig
    from auglabel.engine.trainer import Trainer
    from auglabel.errors import DataError

    try:
        load_dataset("fashion_mnist", "test")
        data = DataConfig(name="fashion_mnist", train_subset=args.samples + 1000, val_size=1000)
    except DataError:
        data = DataConfig(name="digits", val_size=0.1)
    epochs = 2 * args.rounds + 1
    cfg = ExperimentConfig(data=data, train=TrainConfig(epochs=epochs, batch_size=args.batch_size, device="cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, progress=False)
        loader = trainer.train_loader
        images, labels, indices = loader.images, loader.labels, loader.indices
        model = copy.deepcopy(trainer.model)
        o = cfg.optim
        optimizer = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                                    weight_decay=o.weight_decay)
        steps = len(loader)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps * epochs)
        bs = args.batch_size

        def hand_epoch(epoch: int) -> None:
            model.train()
            order = indices[torch.randperm(len(indices), generator=torch.Generator().manual_seed(epoch))]
            for step in range(steps):
                rows = order[step * bs:(step + 1) * bs]
                x = images[rows].float().div_(255.0)
                y = labels[rows]
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()

        hand_epoch(0)  # warm-up both paths (allocator, kernels)
        trainer.train_epoch(1)
        ours, hand = [], []
        for r in range(args.rounds):
            tic = time.perf_counter()
            trainer.train_epoch(r + 2)
            ours.append(time.perf_counter() - tic)
            tic = time.perf_counter()
            hand_epoch(r + 1)
            hand.append(time.perf_counter() - tic)
    n = steps * bs
    print(f"dataset {data.name}, {steps} steps of {bs} images, {args.threads} threads, {args.rounds} rounds")
    print(f"auglabel train_epoch: median {statistics.median(ours):.3f}s ({n / statistics.median(ours):.0f} img/s)")
    print(f"hand-written loop:    median {statistics.median(hand):.3f}s ({n / statistics.median(hand):.0f} img/s)")
    print(f"step_overhead: {statistics.median(ours) / statistics.median(hand):.3f}")


if __name__ == "__main__":
    main()
