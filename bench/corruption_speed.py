"""Time every corruption on N grey 28 x 28 images (Fashion-MNIST-sized) at one severity.

    python bench/corruption_speed.py [--n 10000] [--severity 3] [--size 28] [--channels 1]

Uses the real Fashion-MNIST test images when /usr/share/datasets/fashion-mnist is there,
otherwise random smooth images.  Prints seconds per corruption and the projected time of a full
-C set (19 corruptions x 5 severities).
"""
from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from auglabel.corruptions import corrupt, corruption_names

FASHION_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def load_images(n: int, size: int, channels: int) -> torch.Tensor:
    if FASHION_TEST.exists():
        with gzip.open(FASHION_TEST) as f:
            pixels = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
        images = torch.from_numpy(pixels.copy()).repeat(-(-n // len(pixels)), 1, 1, 1)[:n]
    else:
        g = torch.Generator().manual_seed(0)
        images = (F.avg_pool2d(torch.rand(n, 1, 28, 28, generator=g), 3, 1, 1) * 255).to(torch.uint8)
    if size != 28:
        images = F.interpolate(images.float(), size=(size, size), mode="bilinear").round().to(torch.uint8)
    return images.expand(-1, channels, -1, -1).contiguous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--severity", type=int, default=3)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--names", nargs="*", default=corruption_names())
    args = parser.parse_args()
    images = load_images(args.n, args.size, args.channels)
    print(f"{args.n} images {tuple(images.shape[1:])}, severity {args.severity}, "
          f"torch threads {torch.get_num_threads()}")
    total = 0.0
    for name in args.names:
        start = time.perf_counter()
        corrupt(images, name, args.severity, seed=0)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{name:18s} {seconds:7.2f} s")
    print(f"{'total':18s} {total:7.2f} s; a full set of 5 severities takes about {5 * total / 60:.1f} min")


if __name__ == "__main__":
    main()
