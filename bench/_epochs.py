"""Shared by the epoch-level cost benches (autolabel_overhead.py, autodo_overhead.py)."""
from __future__ import annotations

import statistics
import time


def bench_data(train: int):
    """A Fashion-MNIST subset of ``train`` images (validation 1/11 of it), or digits when it is absent."""
    from auglabel.data import load_dataset
    from auglabel.engine.config import DataConfig
    from auglabel.errors import DataError

    try:
        load_dataset("fashion_mnist", "test")
        return DataConfig(name="fashion_mnist", train_subset=train, val_size=train // 11)
    except DataError:
        return DataConfig(name="digits", val_size=1 / 11)


def median_epoch_times(trainers: dict, rounds: int) -> dict[str, float]:
    """Run ``rounds + 1`` epochs of every trainer, alternating; median seconds per epoch after epoch 1
    (which warms up allocators and kernels).  CUDA work is synchronised around each timed epoch."""
    import torch

    times: dict[str, list[float]] = {name: [] for name in trainers}
    for epoch in range(1, rounds + 2):
        for name, trainer in trainers.items():
            cuda = trainer.ctx.device.type == "cuda"
            if cuda:
                torch.cuda.synchronize()
            tic = time.perf_counter()
            trainer.run_epoch(epoch)
            if cuda:
                torch.cuda.synchronize()
            if epoch > 1:
                times[name].append(time.perf_counter() - tic)
    return {name: statistics.median(values) for name, values in times.items()}
