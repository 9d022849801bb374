"""Streaming image-folder loader against the in-memory loader on the same generated JPEGs.

Writes ``--images`` random 32x32 JPEGs (10 classes) into a temporary ``DIR/train/<class>/`` folder, then for
the in-memory loader (``imagefolder`` read whole, :class:`DeviceLoader`) and the streaming loader
(``image_folder_stream``, :class:`StreamingLoader`, ``--workers`` decoding processes, random-resized crops):

* loader images/s: one full training epoch iterated with nothing else to do (the streaming loader's second
  epoch, so persistent worker start-up is excluded; the first epoch's rate, start-up included, is printed too);
* data-stall share of a small-CNN training step: time spent waiting for the next batch / total step time,
  over one epoch of forward + backward + SGD step on the CPU.

Usage: python bench/streaming_loader.py [--images 4000] [--workers 2] [--batch-size 128] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def write_jpegs(root: Path, count: int, size: int = 32, classes: int = 10) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / "train" / f"c{c}").mkdir(parents=True)
        (root / "test" / f"c{c}").mkdir(parents=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "train" / f"c{i % classes}" / f"{i:06d}.jpg", quality=90)
    for c in range(classes):  # a test split must exist for the folder layout; unused here
        Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(root / "test" / f"c{c}" / "0.jpg")


def epoch_rate(loader, epoch: int) -> float:
    loader.set_epoch(epoch)
    tic, seen = time.perf_counter(), 0
    for batch in loader:
        seen += len(batch)
    return seen / (time.perf_counter() - tic)


def stall_share(loader, epoch: int, classes: int) -> tuple[float, float]:
    """(waiting / total step time, images/s) over one training epoch of the small CNN."""
    from auglabel.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=3, num_classes=classes, mean=[0.5] * 3, std=[0.25] * 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loader.set_epoch(epoch)
    iterator = iter(loader)
    wait = compute = 0.0
    seen = 0
    while True:
        tic = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            break
        toc = time.perf_counter()
        loss = F.cross_entropy(model(batch.inputs), batch.labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        wait += toc - tic
        compute += time.perf_counter() - toc
        seen += len(batch)
    return wait / (wait + compute), seen / (wait + compute)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the training process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from auglabel.data import StreamingLoader, load_dataset
    from auglabel.data.loader import DeviceLoader

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tic = time.perf_counter()
        write_jpegs(root, args.images)
        print(f"wrote {args.images} 32x32 JPEGs in {time.perf_counter() - tic:.1f}s; cores: {os.cpu_count()}, "
              f"load average {os.getloadavg()[0]:.2f}")
        tic = time.perf_counter()
        memory = load_dataset("imagefolder", "train", root=root)
        read_s = time.perf_counter() - tic
        streamed = load_dataset("image_folder_stream", "train", root=root, image_size=32)
        indices = torch.arange(len(memory))
        in_memory = DeviceLoader(memory.images, memory.labels, indices, 10, args.batch_size, train=True, seed=0)
        stream = StreamingLoader(streamed, indices, 10, args.batch_size, train=True, seed=0,
                                 num_workers=args.workers)
        print(f"in-memory read of the folder: {read_s:.1f}s ({len(memory) / read_s:.0f} images/s, once)")

        mem_rate = epoch_rate(in_memory, 0)
        first = epoch_rate(stream, 0)
        steady = epoch_rate(stream, 1)
        mem_stall, mem_train = stall_share(in_memory, 2, 10)
        stream_stall, stream_train = stall_share(stream, 2, 10)
        stream.close()

    print(f"\n{'':34}{'in-memory':>12}{'streaming':>12}{'ratio s/m':>11}")
    print(f"{'loader images/s (epoch)':34}{mem_rate:12.0f}{steady:12.0f}{steady / mem_rate:11.3f}")
    print(f"{'  streaming 1st epoch (start-up)':34}{'':12}{first:12.0f}")
    print(f"{'train images/s (small CNN)':34}{mem_train:12.0f}{stream_train:12.0f}{stream_train / mem_train:11.3f}")
    print(f"{'data-stall share of a step':34}{mem_stall:12.1%}{stream_stall:12.1%}")
    print(f"streaming: {args.workers} workers, random-resized crop to 32; training process {args.threads} thread(s)")


if __name__ == "__main__":
    main()
