"""Tests of the -P perturbation sequences and flip probability (auglabel.robustness.perturbations).

Oracles: a literal port of the reference's ``flip_prob`` (cifar-p-eval.py), hand-worked videos,
PIL (rotate, affine zoom), Python's colorsys (brightness), SciPy (gaussian_filter,
map_coordinates for the tilt homography written out with NumPy), torch.roll (translate), noise
statistics, and properties (shapes, determinism, identity frames, sharded sums).
"""
from __future__ import annotations

import colorsys

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from PIL import Image

from auglabel.errors import ConfigError, DataError
from auglabel.robustness.perturbations import (BENCHMARK_PERTURBATIONS, EXTRA_PERTURBATIONS, NOISE_PERTURBATIONS,
                                               PERTURBATIONS, flip_counts, flip_probability, mean_flip_probability,
                                               num_frames, perturb, perturbation_flip_counts, perturbation_flip_rates,
                                               perturbation_generator, translation_range)

RANDOM = {"gaussian_noise", "shot_noise", "speckle_noise", "snow", "spatter"}
# the frame whose parameter is the identity (angle 0, shift 0, zoom 1, brightness + 0); not tilt:
# the reference's homography shrinks by f / (f + 1) even at 0 degrees
IDENTITY_FRAME = {"rotate": 15, "scale": 15, "brightness": 15, "zoom_blur": 0,
                  "gaussian_noise": 0, "shot_noise": 0, "speckle_noise": 0}


def smooth_images(n: int, channels: int, h: int, w: int | None = None, seed: int = 0) -> torch.Tensor:
    """Smooth random images with values over most of 0..255 (interpolation oracles agree best on them)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, channels, 4, 4, generator=g, dtype=torch.float64)
    image = F.interpolate(base, size=(h, w or h), mode="bicubic", align_corners=True).clamp(0, 1)
    return (image * 235 + 10).round().to(torch.uint8)


def reference_flip_prob(predictions: np.ndarray, noise: bool, difficulty: int = 1) -> float:
    """``flip_prob`` of hendrycks/robustness ImageNet-P/cifar-p-eval.py, ported line by line."""
    result = 0.0
    step_size = 1 if noise else difficulty
    for vid_preds in predictions:
        result_for_vid = []
        for i in range(step_size):
            prev_pred = vid_preds[i]
            for pred in vid_preds[i::step_size][1:]:
                result_for_vid.append(int(prev_pred != pred))
                if not noise:
                    prev_pred = pred
        result += np.mean(result_for_vid) / len(predictions)
    return result


# ---------------------------------------------------------------- flip probability
def test_flip_probability_hand_worked():
    assert flip_probability(torch.tensor([[0, 0, 1, 1]]), noise=False) == pytest.approx(1 / 3)
    assert flip_probability(torch.tensor([[0, 0, 1, 1]]), noise=True) == pytest.approx(2 / 3)
    videos = torch.tensor([[0, 1, 0, 1], [2, 2, 2, 2]])
    assert flip_counts(videos, noise=False) == (3, 6)
    assert flip_counts(videos, noise=True) == (2, 6)
    assert flip_counts(videos, noise=False, difficulty=2) == (0, 4)  # pairs (0, 2) and (1, 3)
    assert flip_probability(np.array([[5, 5, 5]]), noise=True) == 0.0


def test_flip_probability_matches_reference_port():
    rng = np.random.default_rng(0)
    for trial in range(6):
        predictions = rng.integers(0, 3, size=(7, 11))
        for noise in (False, True):
            for difficulty in (1, 2, 3):
                expected = reference_flip_prob(predictions, noise, difficulty)
                assert flip_probability(torch.from_numpy(predictions), noise, difficulty) == pytest.approx(expected)


def test_flip_counts_sum_over_shards():
    predictions = torch.randint(0, 4, (9, 6), generator=torch.Generator().manual_seed(1))
    for noise in (False, True):
        a, b = flip_counts(predictions[:4], noise), flip_counts(predictions[4:], noise)
        assert (a[0] + b[0], a[1] + b[1]) == flip_counts(predictions, noise)
    assert flip_counts(predictions[:0], noise=True) == (0, 0)


def test_mean_flip_probability():
    assert mean_flip_probability({"a": 0.1, "b": 0.3}) == pytest.approx(0.2)
    with pytest.raises(ConfigError):
        mean_flip_probability({})


def test_flip_bad_input():
    with pytest.raises(DataError):
        flip_counts(torch.rand(2, 5), noise=False)
    with pytest.raises(DataError):
        flip_counts(torch.zeros(5, dtype=torch.long), noise=False)
    with pytest.raises(DataError):
        flip_counts(torch.zeros(3, 1, dtype=torch.long), noise=False)
    with pytest.raises(ConfigError):
        flip_counts(torch.zeros(3, 4, dtype=torch.long), noise=False, difficulty=4)
    with pytest.raises(DataError):
        flip_probability(torch.zeros(0, 4, dtype=torch.long), noise=True)


# ---------------------------------------------------------------- sequences: shapes, determinism
@pytest.mark.parametrize("channels,h,w", [(1, 8, 8), (3, 8, 12), (1, 16, 20)])
def test_shapes_dtypes_and_identity_frames(channels, h, w):
    images = smooth_images(2, channels, h, w, seed=channels + h)
    assert set(BENCHMARK_PERTURBATIONS + EXTRA_PERTURBATIONS) == set(PERTURBATIONS)
    for name in PERTURBATIONS:
        frames = {"motion_blur": 21, "translate": len(translation_range(w))}.get(name, 31)
        assert num_frames(name, h, w) == frames
        sequence = perturb(images, name, seed=3)
        assert sequence.shape == (2, frames, channels, h, w) and sequence.dtype == torch.uint8, name
        if name in IDENTITY_FRAME:
            assert torch.equal(sequence[:, IDENTITY_FRAME[name]], images), name
        assert perturb(images[:0], name).shape == (0, frames, channels, h, w)


def test_translation_range_matches_reference_at_32px():
    assert list(translation_range(32)) == [i - 7 for i in range(16)]
    assert list(translation_range(8)) == [-2, -1, 0, 1, 2]


def test_determinism_and_per_sample_randomness():
    for name in PERTURBATIONS:
        size = 16 if name == "snow" else 8  # snow on 8 px often draws no flake at all
        twins = smooth_images(1, 3, size, seed=5).expand(2, -1, -1, -1).contiguous()
        first, again = perturb(twins, name, seed=11), perturb(twins, name, seed=11)
        assert torch.equal(first, again), name
        if name in RANDOM:
            assert not torch.equal(first, perturb(twins, name, seed=12)), name
            assert not torch.equal(first[0], first[1]), name  # same image, own draws
        else:
            assert torch.equal(first[0], first[1]), name
    twins = smooth_images(2, 1, 8, seed=5)
    generator = perturbation_generator(0, "gaussian_noise")
    a = PERTURBATIONS["gaussian_noise"](twins, generator)
    assert not torch.equal(a, PERTURBATIONS["gaussian_noise"](twins, generator))  # the generator advanced


def test_bad_images_and_names():
    good = smooth_images(1, 1, 8)
    with pytest.raises(ConfigError, match="translate"):
        perturb(good, "wobble")
    for bad in (good.float(), good[0], smooth_images(1, 2, 8), smooth_images(1, 1, 7), good.numpy()):
        with pytest.raises(DataError):
            perturb(bad, "rotate")
    with pytest.raises(ConfigError):
        perturb(good, "rotate", seed="1")
    with pytest.raises(ConfigError):
        PERTURBATIONS["rotate"](good, 0)


# ---------------------------------------------------------------- sequences against oracles
def test_translate_matches_roll():
    images = smooth_images(2, 3, 10, seed=2)
    sequence = perturb(images, "translate")
    for t, shift in enumerate(translation_range(10)):
        rolled = torch.roll(images, shift, dims=-1)
        inside = slice(max(shift, 0), 10 + min(shift, 0))
        assert torch.equal(sequence[:, t, ..., inside], rolled[..., inside])
        assert int(sequence[:, t].sum()) == int(rolled[..., inside].sum())  # vacated columns are 0


def test_rotate_matches_pil():
    images = smooth_images(2, 1, 32, seed=3)
    sequence = perturb(images, "rotate")
    for t in (0, 10, 30):
        for i in range(2):
            expected = np.asarray(Image.fromarray(images[i, 0].numpy()).rotate(t - 15, resample=Image.BILINEAR))
            diff = np.abs(sequence[i, t, 0].numpy().astype(int) - expected.astype(int))[6:-6, 6:-6]
            assert diff.max() <= 1, (t, diff.max())


def test_scale_and_zoom_blur_match_pil_affine():
    images = smooth_images(1, 3, 16, seed=4)
    pil = Image.fromarray(images[0].permute(1, 2, 0).numpy())

    def zoom(factor: float) -> np.ndarray:  # PIL maps output -> input, pixel centres at +0.5
        c = 16 / 2
        data = (1 / factor, 0, c - c / factor, 0, 1 / factor, c - c / factor)
        return np.asarray(pil.transform((16, 16), Image.AFFINE, data, resample=Image.BILINEAR)).astype(float)

    scaled = perturb(images, "scale")[0].permute(0, 2, 3, 1).numpy().astype(float)
    for t in (0, 25, 30):
        assert np.abs(scaled[t] - zoom((2 * t + 70) / 100))[3:-3, 3:-3].max() <= 1
    blurred = perturb(images, "zoom_blur")[0].permute(0, 2, 3, 1).numpy().astype(float)
    for t in (1, 6):
        mean = (np.asarray(pil).astype(float) + sum(zoom(1 + 0.004 * j) for j in range(1, t + 1))) / (t + 1)
        assert np.abs(blurred[t] - np.floor(mean))[2:-2, 2:-2].max() <= 1


def test_tilt_matches_numpy_homography():
    images = smooth_images(1, 1, 24, seed=6)
    sequence = perturb(images, "tilt")
    h = w = 24
    for t in (0, 22):
        phi = theta = np.deg2rad(0.75 * (t - 15))
        f = np.sqrt(w ** 2 + h ** 2)
        p1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
        rx = np.array([[1, 0, 0, 0], [0, np.cos(theta), -np.sin(theta), 0], [0, np.sin(theta), np.cos(theta), 0],
                       [0, 0, 0, 1]])
        ry = np.array([[np.cos(phi), 0, -np.sin(phi), 0], [0, 1, 0, 0], [np.sin(phi), 0, np.cos(phi), 0],
                       [0, 0, 0, 1]])
        tr = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
        p2 = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
        inverse = np.linalg.inv(p2 @ tr @ rx @ ry @ p1)
        rows, cols = np.mgrid[0:h, 0:w]
        src = inverse @ np.stack([cols.ravel(), rows.ravel(), np.ones(h * w)])
        coords = np.stack([src[1] / src[2], src[0] / src[2]])
        expected = ndi.map_coordinates(images[0, 0].numpy().astype(float), coords, order=1).reshape(h, w)
        diff = np.abs(sequence[0, t, 0].numpy() - np.floor(expected + 0.5))[4:-4, 4:-4]
        assert diff.max() <= 1


def test_brightness_matches_colorsys():
    images = smooth_images(1, 3, 8, seed=7)
    images[0, :, 0, 0] = 0  # a black pixel: hue and saturation 0, becomes grey
    sequence = perturb(images, "brightness")
    pixels = images[0].permute(1, 2, 0).reshape(-1, 3).numpy() / 255
    for t in (0, 7, 22, 30):
        shift = (t - 15) * 1.5 / 100
        expected = []
        for r, g, b in pixels:
            hue, sat, value = colorsys.rgb_to_hsv(r, g, b)
            expected.append(colorsys.hsv_to_rgb(hue, sat, min(max(value + shift, 0), 1)))
        expected = np.uint8(np.array(expected) * 255).reshape(8, 8, 3)
        got = sequence[0, t].permute(1, 2, 0).numpy()
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
        assert (got == expected).mean() > 0.9


def test_gaussian_blur_matches_scipy():
    images = smooth_images(1, 1, 32, seed=8)
    sequence = perturb(images, "gaussian_blur")
    for t in (0, 30):
        expected = ndi.gaussian_filter(images[0, 0].numpy() / 255.0, 0.3 + 0.015 * t, mode="nearest", truncate=7.0)
        assert np.abs(sequence[0, t, 0].numpy().astype(int) - np.uint8(expected * 255)).max() <= 1


@pytest.mark.parametrize("name,std", [("gaussian_noise", 0.02 * 255),
                                      ("shot_noise", 255 * np.sqrt(128 / 255 * 700) / 700),  # Poisson(700 x) / 700
                                      ("speckle_noise", 0.05 * 128)])
def test_noise_statistics(name, std):
    images = torch.full((4, 1, 16, 16), 128, dtype=torch.uint8)
    noise = perturb(images, name, seed=1)[:, 1:].double() - 128  # truncation lowers the mean by ~0.5
    assert noise.mean().item() == pytest.approx(-0.5, abs=0.15)
    assert noise.std().item() == pytest.approx(std, rel=0.04)
    first, second = noise[:, 0].flatten(), noise[:, 1].flatten()
    assert abs(torch.corrcoef(torch.stack([first, second]))[0, 1].item()) < 0.1  # independent frames


def test_blurs_keep_flat_images_and_weather_only_adds():
    flat = torch.full((1, 3, 12, 12), 90, dtype=torch.uint8)
    for name in ("motion_blur", "gaussian_blur", "zoom_blur"):
        assert (perturb(flat, name) == 90).all(), name
    images = smooth_images(3, 3, 12, seed=9)
    for name in ("snow", "spatter"):
        sequence = perturb(images, name, seed=4)
        assert (sequence >= images.unsqueeze(1)).all(), name
        assert (sequence != images.unsqueeze(1)).any(), name
    spatter = perturb(images, "spatter", seed=4)
    assert (spatter[:, 1:] != spatter[:, :-1]).any()  # the drops run down


# ---------------------------------------------------------------- flip rates of models
class ConstantModel(torch.nn.Module):
    def forward(self, x):
        return torch.zeros(len(x), 3).index_fill_(1, torch.tensor([1]), 1.0)


class BrightnessBucketModel(torch.nn.Module):
    """Class = which tenth of [0, 1] the mean pixel value falls in; checks its input is in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1 and not self.training
        bucket = (x.mean(dim=(1, 2, 3)) * 10).floor().long().clamp(0, 9)
        return F.one_hot(bucket, 10).float() + self.anchor


def test_constant_model_never_flips():
    images = smooth_images(2, 1, 8, seed=10)
    rates = perturbation_flip_rates(ConstantModel(), images, seed=0, batch_size=64)
    assert set(rates) == set(BENCHMARK_PERTURBATIONS) and all(r == 0.0 for r in rates.values())
    assert mean_flip_probability(rates) == 0.0


def test_brightness_model_flips_like_direct_computation():
    images = smooth_images(5, 3, 8, seed=11)
    model = BrightnessBucketModel().train()
    names = ["brightness", "gaussian_noise", "rotate"]
    rates = perturbation_flip_rates(model, images, names, seed=2, batch_size=40)
    assert model.training  # mode restored
    assert rates["brightness"] > 0.05
    direct = perturb(images, "brightness").float().mean(dim=(2, 3, 4)) / 255
    assert rates["brightness"] == pytest.approx(flip_probability((direct * 10).floor().long().clamp(0, 9), noise=False))
    for batch_size in (1, 7, 1000):  # deterministic types don't depend on batching
        again = perturbation_flip_rates(model, images, ["brightness", "rotate"], batch_size=batch_size)
        assert again == {k: rates[k] for k in again}
    counts = perturbation_flip_counts(model, images, ["rotate"], batch_size=31)["rotate"]
    first = perturbation_flip_counts(model, images[:2], ["rotate"], batch_size=31)["rotate"]
    rest = perturbation_flip_counts(model, images[2:], ["rotate"], batch_size=31)["rotate"]
    assert counts == (first[0] + rest[0], first[1] + rest[1]) and counts[1] == 5 * 30
    assert perturbation_flip_counts(model, images[:0], ["rotate"]) == {"rotate": (0, 0)}
    assert "gaussian_noise" in NOISE_PERTURBATIONS


def test_flip_rates_bad_input():
    images = smooth_images(1, 1, 8)
    model = ConstantModel()
    with pytest.raises(ConfigError, match="rotate"):
        perturbation_flip_rates(model, images, ["rotate", "wobble"])
    with pytest.raises(ConfigError):
        perturbation_flip_rates(model, images, [])
    with pytest.raises(ConfigError):
        perturbation_flip_rates(model, images, ["rotate"], batch_size=0)
    with pytest.raises(DataError):
        perturbation_flip_rates(model, images.float(), ["rotate"])
    with pytest.raises(DataError):
        perturbation_flip_rates(model, images[:0], ["rotate"])
