"""Training throughput (forward + backward + SGD step) of each registered model on this CPU.

For every model: images per wall-clock second with ``--threads`` intra-op threads, and images
per CPU-second (process time, less sensitive to other jobs on a shared machine; with several
threads it also counts OpenMP spin-waiting, so it understates).  Best of ``--repeats`` timed runs
of ``--steps`` steps each, after two warm-up steps.  small_cnn runs on 1x28x28 images
(Fashion-MNIST), the others on 3x32x32 (CIFAR).  The last line is
``small_cnn_train_images_per_s: <wall figure>`` (goal >= ~1500 with 2 threads, batch 128).

Usage: python bench/model_speed.py [--threads 2] [--batch-size 128] [--steps 8] [--repeats 3]
       [--models small_cnn preact_resnet18 wide_resnet]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from auglabel.models import build_model

SETTINGS = {  # name -> (input shape, model params)
    "small_cnn": ((1, 28, 28), {}),
    "small_cnn_nonorm": ((1, 28, 28), {"norm": "none"}),
    "preact_resnet18": ((3, 32, 32), {}),
    "wide_resnet": ((3, 32, 32), {"depth": 16, "width": 4}),
}


def measure(key: str, batch_size: int, steps: int, repeats: int) -> tuple[int, float, float]:
    """(parameter count, best images/s wall, best images per CPU-second)."""
    shape, params = SETTINGS[key]
    name = "small_cnn" if key.startswith("small_cnn") else key
    torch.manual_seed(0)
    model = build_model(name, in_channels=shape[0], num_classes=10, mean=0.5, std=0.25, **params)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    x, y = torch.rand(batch_size, *shape), torch.randint(0, 10, (batch_size,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    best_wall = best_cpu = 0.0
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        images = steps * batch_size
        best_wall = max(best_wall, images / (time.perf_counter() - wall))
        best_cpu = max(best_cpu, images / (time.process_time() - cpu))
    return sum(p.numel() for p in model.parameters()), best_wall, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} batch={args.batch_size} steps={args.steps} repeats={args.repeats}")
    print(f"{'model':<18}{'params':>12}{'input':>12}{'img/s wall':>12}{'img/cpu-s':>12}")
    results = {}
    for key in args.models:
        n, wall, cpu = measure(key, args.batch_size, args.steps, args.repeats)
        results[key] = wall
        shape = "x".join(map(str, SETTINGS[key][0]))
        print(f"{key:<18}{n:>12,}{shape:>12}{wall:>12.0f}{cpu:>12.0f}", flush=True)
    if "small_cnn" in results:
        print(f"small_cnn_train_images_per_s: {results['small_cnn']:.0f}")


if __name__ == "__main__":
    main()
