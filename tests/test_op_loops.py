"""Vectorised replacements of Python loops (GPU readiness audit, docs/results/gpu_readiness.md)
against the loop implementations they replaced, which are kept here as references."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from auglabel.corruptions._filters import gaussian_filter, gaussian_filter_bank, size_scale
from auglabel.functional.augmix import augmix, check_images
from auglabel.robustness.perturbations import (NOISE_PERTURBATIONS, PERTURBATIONS, _GUARD, _MAX_FRAMES, flip_counts,
                                               perturb, perturbation_flip_counts, perturbation_generator)


def _images(n: int, channels: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, h, w), generator=g, dtype=torch.uint8)


# ---------------------------------------------------------------- -P gaussian_blur: frame loop -> filter bank
def reference_gaussian_blur_frames(x: torch.Tensor) -> torch.Tensor:
    """The replaced perturbation body: one gaussian_filter call per frame."""
    s = size_scale(x)
    return torch.stack([gaussian_filter(x, (0.3 + 0.015 * i) * s, truncate=7.0) for i in range(_MAX_FRAMES)], dim=1)


@pytest.mark.parametrize("channels,h,w", [(3, 32, 32), (1, 28, 28), (1, 8, 8), (3, 9, 13), (3, 64, 48)])
def test_gaussian_blur_bank_equals_frame_loop(channels, h, w):
    images = _images(6, channels, h, w, seed=h * w + channels)
    x = images.double()
    reference = reference_gaussian_blur_frames(x)
    sigmas = [(0.3 + 0.015 * i) * size_scale(x) for i in range(_MAX_FRAMES)]
    bank = gaussian_filter_bank(x, sigmas, truncate=7.0)
    assert bank.shape == reference.shape and bank.is_contiguous()
    assert (bank - reference).abs().max() < 1e-9  # same sums, conv2d accumulation order aside
    expected = (reference + _GUARD).clamp(0, 255).floor().to(torch.uint8)
    assert torch.equal(perturb(images, "gaussian_blur"), expected)


@pytest.mark.parametrize("mode,truncate", [("nearest", 4.0), ("reflect", 3.0), ("reflect101", 4.0)])
def test_gaussian_filter_bank_matches_gaussian_filter(mode, truncate):
    x = torch.rand(3, 2, 11, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigmas = [0.2, 0.7, 1.5, 3.0]  # radii 1..12 (wider than the 11 px image at truncate 4)
    bank = gaussian_filter_bank(x, sigmas, mode, truncate)
    for t, sigma in enumerate(sigmas):
        assert torch.allclose(bank[:, t], gaussian_filter(x, sigma, mode, truncate), atol=1e-12, rtol=0)


# ---------------------------------------------------------------- -P flip counts: per-chunk int() -> one sync
class _Buckets(torch.nn.Module):
    """Class = which eighth of [0, 1] the mean of the first channel's top rows falls in."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        bucket = (x[:, 0, :3].mean(dim=(1, 2)) * 8).floor().long().clamp(0, 7)
        return F.one_hot(bucket, 8).float() + self.anchor


def reference_flip_counts(model, images, name, seed, batch_size, difficulty):
    """The replaced loop: flip_counts (a host sync) per chunk of batch_size // 31 videos."""
    generator = perturbation_generator(seed, name)
    flips = comparisons = 0
    chunk = max(1, batch_size // _MAX_FRAMES)
    with torch.no_grad():
        for start in range(0, len(images), chunk):
            sequences = PERTURBATIONS[name](images[start:start + chunk], generator)
            predictions = model(sequences.flatten(0, 1).float() / 255).argmax(dim=1)
            f, c = flip_counts(predictions.reshape(sequences.shape[:2]), name in NOISE_PERTURBATIONS, difficulty)
            flips, comparisons = flips + f, comparisons + c
    return flips, comparisons


@pytest.mark.parametrize("difficulty", [1, 2])
def test_flip_counts_equal_per_chunk_loop(difficulty):
    images = _images(7, 3, 8, 8, seed=3)
    model = _Buckets().eval()
    names = ["gaussian_noise", "brightness", "rotate", "spatter"]
    got = perturbation_flip_counts(model, images, names, seed=5, batch_size=64, difficulty=difficulty)
    for name in names:
        expected = reference_flip_counts(model, images, name, 5, 64, difficulty)
        assert got[name] == expected and all(type(v) is int for v in got[name])
    assert perturbation_flip_counts(model, images[:0], ["rotate"]) == {"rotate": (0, 0)}


# ---------------------------------------------------------------- AugMix input check: two syncs -> one
def reference_check_range(images: torch.Tensor) -> bool:
    """The replaced test: ``images.min() < 0 or images.max() > 1`` (two reductions, two syncs)."""
    return bool(images.numel() and (images.min() < 0 or images.max() > 1))


@pytest.mark.parametrize("values", [[0.0, 1.0], [0.5], [-1e-7, 0.5], [0.5, 1.0 + 1e-6], [-2.0, 3.0],
                                    [float("nan"), 0.5], [float("nan"), 2.0], []])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_augmix_range_check_unchanged(values, dtype):
    images = torch.tensor(values, dtype=dtype).reshape(-1, 1, 1, 1)
    if reference_check_range(images):
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            check_images(images)
    else:
        check_images(images)


def test_augmix_range_check_draws_nothing():
    """The check consumes no random numbers, so AugMix's stream per seed is unchanged."""
    images = _images(4, 3, 8, 8, seed=9).float() / 255
    generator = torch.Generator().manual_seed(0)
    state = generator.get_state()
    check_images(images)
    assert torch.equal(generator.get_state(), state)
    first, info = augmix(images, torch.Generator().manual_seed(0))
    again, info_again = augmix(images, torch.Generator().manual_seed(0))
    assert torch.equal(first, again) and all(torch.equal(info[k], info_again[k]) for k in info)
