"""Throughput of batched AugMix against per-image implementations, on one CPU thread.

Compares, for 3x32x32 and 1x28x28 images (severity 3, width 3, random depth 1..3, alpha 1):

* ``auglabel``: :func:`auglabel.functional.augmix.augmix` on float batches of ``--batch-size``;
* ``torchvision``: ``torchvision.transforms.AugMix(all_ops=False)`` called per uint8 image
  tensor (skipped, with a note, when torchvision is not installed);
* ``pil_reference``: the original per-image numpy/PIL code of Hendrycks et al.
  (``augmentations.py`` + ``aug()`` of ``cifar.py``), restated below.

Each figure is images per CPU-second (process time, robust to other jobs on a shared machine),
best of ``--repeats`` timed runs.  The last line is
``augmix_speedup_vs_torchvision: <ratio>``, the smaller of the two shapes' auglabel/torchvision
throughput ratios (``augmix_speedup_vs_pil_reference`` when torchvision is missing).

Run: ``python bench/augmix_throughput.py`` (torchvision lives in the separate ``.venv-bench``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image, ImageOps

from auglabel.functional.augmix import augmix

SEVERITY, WIDTH, DEPTH, ALPHA = 3, 3, -1, 1.0
SHAPES = ((3, 32, 32), (1, 28, 28))


# ---- the reference per-image implementation (augmentations.py of the AugMix authors) ----
def _int_parameter(level: float, maxval: float) -> int:
    return int(level * maxval / 10)


def _float_parameter(level: float, maxval: float) -> float:
    return float(level) * maxval / 10.0


def _sample_level(rng: np.random.Generator, n: float) -> float:
    return rng.uniform(low=0.1, high=n)


def _reference_ops(size: int):
    def autocontrast(img, _level, _rng):
        return ImageOps.autocontrast(img)

    def equalize(img, _level, _rng):
        return ImageOps.equalize(img)

    def posterize(img, level, rng):
        return ImageOps.posterize(img, 4 - _int_parameter(_sample_level(rng, level), 4))

    def rotate(img, level, rng):
        degrees = _int_parameter(_sample_level(rng, level), 30)
        if rng.uniform() > 0.5:
            degrees = -degrees
        return img.rotate(degrees, resample=Image.BILINEAR)

    def solarize(img, level, rng):
        return ImageOps.solarize(img, 256 - _int_parameter(_sample_level(rng, level), 256))

    def affine(img, level, rng, coefficients):
        return img.transform((size, size), Image.AFFINE, coefficients(level, rng), resample=Image.BILINEAR)

    def signed(value, rng):
        return -value if rng.uniform() > 0.5 else value

    def shear_x(img, level, rng):
        s = signed(_float_parameter(_sample_level(rng, level), 0.3), rng)
        return affine(img, level, rng, lambda *_: (1, s, 0, 0, 1, 0))

    def shear_y(img, level, rng):
        s = signed(_float_parameter(_sample_level(rng, level), 0.3), rng)
        return affine(img, level, rng, lambda *_: (1, 0, 0, s, 1, 0))

    def translate_x(img, level, rng):
        t = signed(_int_parameter(_sample_level(rng, level), size / 3), rng)
        return affine(img, level, rng, lambda *_: (1, 0, t, 0, 1, 0))

    def translate_y(img, level, rng):
        t = signed(_int_parameter(_sample_level(rng, level), size / 3), rng)
        return affine(img, level, rng, lambda *_: (1, 0, 0, 0, 1, t))

    return [autocontrast, equalize, posterize, rotate, solarize, shear_x, shear_y, translate_x, translate_y]


def reference_augmix(img: Image.Image, rng: np.random.Generator, ops) -> np.ndarray:
    """``aug()`` of the reference cifar.py, with ToTensor-like preprocessing to float in [0, 1]."""
    def preprocess(image):
        return np.asarray(image, dtype=np.float32) / 255.0

    ws = np.float32(rng.dirichlet([ALPHA] * WIDTH))
    m = np.float32(rng.beta(ALPHA, ALPHA))
    mix = np.zeros_like(preprocess(img))
    for i in range(WIDTH):
        image_aug = img.copy()
        depth = DEPTH if DEPTH > 0 else rng.integers(1, 4)
        for _ in range(depth):
            image_aug = ops[rng.integers(len(ops))](image_aug, SEVERITY, rng)
        mix += ws[i] * preprocess(image_aug)
    return (1 - m) * preprocess(img) + m * mix


# ---- timing ----
def best_rate(run, count: int, repeats: int) -> float:
    """Images per CPU-second of the fastest of ``repeats`` calls of ``run`` (each handles ``count``).

    Process CPU time, not wall time: on a shared machine other jobs stretch wall time unevenly
    between the methods; everything here runs on one thread, so CPU time is the work done.
    """
    run()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return count / best


def bench_shape(shape, args, torchvision_augmix) -> dict[str, float]:
    c, h, w = shape
    gen = torch.Generator().manual_seed(args.seed)
    uint8 = torch.randint(0, 256, (args.batch_size * args.batches, c, h, w), generator=gen, dtype=torch.uint8)
    floats = uint8.float() / 255.0
    batches = floats.split(args.batch_size)
    aug_gen = torch.Generator().manual_seed(args.seed)

    def run_auglabel():
        for batch in batches:
            augmix(batch, aug_gen, severity=SEVERITY, width=WIDTH, depth=DEPTH, alpha=ALPHA)

    rates = {"auglabel": best_rate(run_auglabel, len(floats), args.repeats)}

    few = uint8[: args.per_image]
    if torchvision_augmix is not None:
        transform = torchvision_augmix(severity=SEVERITY, mixture_width=WIDTH, chain_depth=DEPTH,
                                       alpha=ALPHA, all_ops=False)

        def run_torchvision():
            for image in few:
                transform(image)

        rates["torchvision"] = best_rate(run_torchvision, len(few), args.repeats)

    mode = "L" if c == 1 else "RGB"
    pil_images = [Image.fromarray(img.permute(1, 2, 0).squeeze(-1).numpy(), mode) for img in few]
    ops = _reference_ops(h)
    rng = np.random.default_rng(args.seed)

    def run_pil():
        for image in pil_images:
            reference_augmix(image, rng, ops)

    rates["pil_reference"] = best_rate(run_pil, len(pil_images), args.repeats)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=4, help="auglabel batches per timed run")
    parser.add_argument("--per-image", type=int, default=128, help="images per timed run of per-image baselines")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        from torchvision.transforms import AugMix as torchvision_augmix
    except ImportError:
        torchvision_augmix = None
        print("torchvision is not installed: comparing with the PIL reference only")

    speedups_tv, speedups_pil = [], []
    for shape in SHAPES:
        rates = bench_shape(shape, args, torchvision_augmix)
        name = "x".join(map(str, shape))
        print(f"{name}: " + ", ".join(f"{k} {v:,.0f} img/s" for k, v in rates.items()))
        speedups_pil.append(rates["auglabel"] / rates["pil_reference"])
        if "torchvision" in rates:
            speedups_tv.append(rates["auglabel"] / rates["torchvision"])
            print(f"{name}: speedup vs torchvision {speedups_tv[-1]:.1f}x")
        print(f"{name}: speedup vs pil_reference {speedups_pil[-1]:.1f}x")
    print(f"augmix_speedup_vs_pil_reference: {min(speedups_pil):.2f}")
    if speedups_tv:
        print(f"augmix_speedup_vs_torchvision: {min(speedups_tv):.2f}")


if __name__ == "__main__":
    main()
