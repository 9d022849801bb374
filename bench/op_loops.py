"""Per-sample / per-frame loops of the AugMix, -C and -P ops: old (loop) against new (batched), CPU.

    OMP_NUM_THREADS=1 python bench/op_loops.py [--n 256] [--repeats 3] [--no-per-image] [--only NAME ...]

Two kinds of rows, both timed on a batch of ``--n`` random uint8 images of 32x32x3 and 28x28x1
(side by side, one run; best of ``--repeats``):

* ``replaced``: a loop this audit vectorised; "old" is the replaced loop (the references kept in
  tests/test_op_loops.py), "new" the code in src/.  Results are identical (tested).
* ``per-image``: an op that was already batched (no loop to replace); "old" calls the same op
  once per image, i.e. what a per-sample implementation would at least cost, "new" is one call
  for the batch.  Random ops draw different numbers image by image, so only the time compares.

Ratio = old / new (> 1: the batched code is faster).  CPU only: the GPU effect (kernel launches,
host syncs) is larger and is NOT measured here.  See docs/results/gpu_readiness.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the reference loops live there

from auglabel.corruptions import corrupt, corruption_names  # noqa: E402
from auglabel.corruptions._filters import gaussian_filter_bank, size_scale  # noqa: E402
from auglabel.functional.augmix import augmix, check_images  # noqa: E402
from auglabel.robustness.perturbations import PERTURBATIONS, _MAX_FRAMES, perturb, perturbation_flip_counts  # noqa: E402
from test_op_loops import (_Buckets, reference_check_range, reference_flip_counts,  # noqa: E402
                           reference_gaussian_blur_frames)

SHAPES = ((3, 32, 32), (1, 28, 28))
Case = Callable[[torch.Tensor], tuple[Callable[[], object], Callable[[], object]]]


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def per_image(fn: Callable[[torch.Tensor], object], images: torch.Tensor) -> Callable[[], object]:
    return lambda: [fn(images[i:i + 1]) for i in range(len(images))]


# ---------------------------------------------------------------- replaced loops: (old, new) thunks
def p_gaussian_blur(images: torch.Tensor):
    x = images.double()
    sigmas = [(0.3 + 0.015 * i) * size_scale(x) for i in range(_MAX_FRAMES)]
    return lambda: reference_gaussian_blur_frames(x), lambda: gaussian_filter_bank(x, sigmas, truncate=7.0)


def p_flip_counts(images: torch.Tensor):
    model = _Buckets().eval()
    old = lambda: reference_flip_counts(model, images, "rotate", 0, 256, 1)  # noqa: E731
    new = lambda: perturbation_flip_counts(model, images, ["rotate"], seed=0, batch_size=256)  # noqa: E731
    return old, new


def augmix_range_check(images: torch.Tensor):
    x = images.float() / 255
    return lambda: reference_check_range(x), lambda: check_images(x)


REPLACED: dict[str, Case] = {
    "P gaussian_blur (31-frame loop)": p_gaussian_blur,
    "P flip counts (sync per chunk)": p_flip_counts,
    "augmix [0,1] check (2 syncs)": augmix_range_check,
}


# ---------------------------------------------------------------- already batched: per-image vs batch
def augmix_case(images: torch.Tensor):
    x = images.float() / 255
    generator = torch.Generator().manual_seed(0)
    run = lambda batch: augmix(batch, generator)  # noqa: E731
    return per_image(run, x), lambda: run(x)


def corruption_case(name: str) -> Case:
    def case(images: torch.Tensor):
        run = lambda batch: corrupt(batch, name, 3, seed=0)  # noqa: E731
        return per_image(run, images), lambda: run(images)
    return case


def perturbation_case(name: str) -> Case:
    def case(images: torch.Tensor):
        run = lambda batch: perturb(batch, name, seed=0)  # noqa: E731
        return per_image(run, images), lambda: run(images)
    return case


def batched_cases() -> dict[str, Case]:
    cases: dict[str, Case] = {"augmix (width 3, depth -1)": augmix_case}
    cases.update({f"C {name}": corruption_case(name) for name in corruption_names()})
    cases.update({f"P {name}": perturbation_case(name) for name in sorted(PERTURBATIONS)})
    return cases


def images_of(n: int, shape: tuple[int, int, int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)


def run_rows(kind: str, cases: dict[str, Case], batches: list[torch.Tensor], repeats: int,
             only: list[str] | None) -> list[tuple]:
    rows = []
    for label, case in cases.items():
        if only and not any(word in label for word in only):
            continue
        cells = []
        for images in batches:
            old, new = case(images)
            case(images[:2])[1]()  # warm-up: caches (frost textures), lazy imports
            old_s, new_s = best(old, repeats), best(new, repeats)
            cells.append((old_s, new_s))
        rows.append((kind, label, cells))
        print(format_row(kind, label, cells), flush=True)
    return rows


def format_row(kind: str, label: str, cells: list[tuple[float, float]]) -> str:
    parts = [f"{kind:9s} {label:32s}"]
    for old_s, new_s in cells:
        parts.append(f"{old_s:8.4f} {new_s:8.4f} {old_s / new_s:7.2f}x")
    return " | ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-per-image", action="store_true", help="only the replaced loops")
    parser.add_argument("--only", nargs="*", help="rows whose label contains one of these words")
    args = parser.parse_args()
    batches = [images_of(args.n, shape) for shape in SHAPES]
    header = " | ".join([f"{'kind':9s} {'op':32s}"] + [f"{'x'.join(map(str, s[::-1])):>8s}: old      new   ratio"
                                                        for s in SHAPES])
    print(f"{args.n} images per batch, torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU only; "
          f"times in s, best of {args.repeats} (per-image rows: {max(1, args.repeats - 2)})")
    print(header)
    run_rows("replaced", REPLACED, batches, args.repeats, args.only)
    if not args.no_per_image:
        run_rows("per-image", batched_cases(), batches, max(1, args.repeats - 2), args.only)


if __name__ == "__main__":
    main()
