"""Training speed of PreAct ResNet-18 on 32x32 inputs: plain, AugMix + JSD, and AutoLabel's overhead.

Meant for a GPU (``--device cuda``), where it records what the CPU benches cannot: images/s of
``Trainer.train_epoch`` (loader, augmentation on the device, forward, loss, backward, SGD step) for

* ``standard``: crop + flip, one-hot labels;
* ``augmix_jsd``: crop + flip, then AugMix (3 chains, severity 3) with the Jensen-Shannon loss (three forward
  passes per image: clean and two AugMix views);
* ``augmix`` and ``augmix_autolabel``: single-chain AugMix with one-hot labels or AutoLabel; their ratio of
  whole-epoch medians (``Trainer.run_epoch``: training, validation pass, AutoLabel's augmented-validation
  update) is AutoLabel's overhead (goal <= 1.05),

each under every ``--precision`` setting (``fp32``; ``bf16``: bf16 autocast + channels_last; ``bf16_compile``:
the same and ``train.compile``).  The data are random 32x32 RGB images in memory (CIFAR's shape; the numbers
measure the pipeline, not accuracy).  Runs alternate epoch by epoch so machine noise hits all alike; medians of
``--rounds`` epochs after one warm-up epoch (which also pays torch.compile's compilation).  With ``--out`` the
table is written as Markdown with the command and the machine.

Usage: python bench/gpu_speed.py --device cuda [--train 20000] [--rounds 3] [--batch-size 128]
       [--precision fp32 bf16 bf16_compile] [--out docs/results/gpu_speed.md]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

AUGMENTS = {
    "standard": ({"name": "standard"}, "onehot"),
    "augmix_jsd": (["standard", {"name": "augmix", "params": {"jsd": True}}], "onehot"),
    "augmix": (["standard", {"name": "augmix", "params": {"width": 1, "jsd": False, "mix": "uniform"}}], "onehot"),
    "augmix_autolabel": (["standard", {"name": "augmix", "params": {"width": 1, "jsd": False, "mix": "uniform"}}],
                         "autolabel"),
}
PRECISIONS = {"fp32": {}, "bf16": {"precision": "bf16", "channels_last": True},
              "bf16_compile": {"precision": "bf16", "channels_last": True, "compile": True}}


def synthetic(n: int, seed: int):
    from auglabel.data import ImageDataset

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.randint(0, 10, (n,), generator=g), [str(c) for c in range(10)], "random32")


def make_trainer(name: str, precision: str, args: argparse.Namespace, tmp: str):
    from auglabel.engine.config import ExperimentConfig
    from auglabel.engine.trainer import Trainer

    augment, labels = AUGMENTS[name]
    cfg = ExperimentConfig.from_dict({
        "data": {"val_size": max(args.train // 11, 10)},
        "model": {"name": args.model},
        "augment": augment, "labels": {"name": labels},
        "train": {"epochs": args.rounds + 1, "batch_size": args.batch_size, "device": args.device,
                  "threads": args.threads, "keep_best": False, **PRECISIONS[precision]},
    })
    return Trainer(cfg, f"{tmp}/{name}-{precision}", progress=False, overwrite=True,
                   train_data=synthetic(args.train, 0), test_data=synthetic(max(args.train // 10, 10), 1))


def _timed(trainer, fn, epoch: int) -> float:
    cuda = trainer.ctx.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    tic = time.perf_counter()
    fn(epoch)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - tic


def measure(args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precision:
            trainers = {name: make_trainer(name, precision, args, tmp) for name in AUGMENTS}
            train_s: dict[str, list[float]] = {name: [] for name in trainers}
            epoch_s: dict[str, list[float]] = {name: [] for name in trainers}
            for epoch in range(1, args.rounds + 2):
                for name, trainer in trainers.items():
                    seconds = _timed(trainer, trainer.train_epoch, epoch)
                    if epoch > 1:
                        train_s[name].append(seconds)
            for epoch in range(args.rounds + 2, 2 * args.rounds + 3):  # whole epochs for AutoLabel's overhead
                for name in ("augmix", "augmix_autolabel"):
                    seconds = _timed(trainers[name], trainers[name].run_epoch, epoch - args.rounds - 1)
                    if epoch > args.rounds + 2:
                        epoch_s[name].append(seconds)
            images = {name: len(t.train_loader) * args.batch_size for name, t in trainers.items()}
            for name in trainers:
                rows.append({"precision": precision, "augment": name,
                             "images_per_s": images[name] / statistics.median(train_s[name])})
            overhead = statistics.median(epoch_s["augmix_autolabel"]) / statistics.median(epoch_s["augmix"])
            rows.append({"precision": precision, "augment": "autolabel_overhead", "ratio": overhead})
    return rows


def table(rows: list[dict], args: argparse.Namespace) -> str:
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    lines = [f"Command: `python {' '.join(sys.argv)}`", "",
             f"Device: {device}; torch {torch.__version__}; model {args.model}, batch {args.batch_size}, "
             f"{args.train} random 32x32 images, median of {args.rounds} epochs after one warm-up.", "",
             "| precision | standard img/s | AugMix+JSD img/s | AugMix img/s | AugMix+AutoLabel img/s | "
             "AutoLabel overhead (epoch ratio) |", "|---|---|---|---|---|---|"]
    for precision in args.precision:
        mine = {r["augment"]: r for r in rows if r["precision"] == precision}
        cells = [f"{mine[name]['images_per_s']:.0f}" for name in AUGMENTS]
        lines.append(f"| {precision} | " + " | ".join(cells) + f" | {mine['autolabel_overhead']['ratio']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="preact_resnet18")
    parser.add_argument("--train", type=int, default=20000, help="training images (validation: 1/11 more)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", nargs="+", choices=sorted(PRECISIONS), default=list(PRECISIONS))
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu_speed: no CUDA device here; run it on a GPU machine or pass --device cpu")
    rows = measure(args)
    text = table(rows, args)
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    for row in rows:
        if row["augment"] == "autolabel_overhead":
            print(f"autolabel_overhead[{row['precision']}]: {row['ratio']:.3f}")


if __name__ == "__main__":
    main()
