"""Tests of the -C corruption suite (auglabel.corruptions).

Oracles: hand-worked formulas, Python's colorsys, SciPy (gaussian_filter, zoom, correlate), PIL
(BOX resize), literal ports of the reference's loops, and properties (shape, determinism,
severity ordering).
"""
from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from auglabel.corruptions import (
    BENCHMARK_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    corrupt,
    corruption_names,
)
from auglabel.corruptions._filters import fold_index, sample_bilinear
from auglabel.corruptions._frost_texture import frost_textures
from auglabel.corruptions._motion import magick_motion_blur
from auglabel.corruptions._opencv import canny, chamfer_distance, equalize_hist
from auglabel.corruptions._registry import RandomSource
from auglabel.corruptions.blur import _local_shuffle, reference_disk_kernel
from auglabel.corruptions.elastic import warp_affine_reflect101
from auglabel.corruptions.weather import plasma_fractal
from auglabel.errors import ConfigError, DataError

ALL = corruption_names()
RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur",
          "snow", "frost", "fog", "elastic_transform", "spatter"}
# distance to the clean image grows strictly with severity (checked offline on 20 image sets)
STRICTLY_MONOTONE = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur",
                     "zoom_blur", "gaussian_blur", "snow", "fog", "brightness", "contrast", "pixelate",
                     "jpeg_compression"]


def synthetic_images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth shapes plus fine texture, values spread over 0..255: a stand-in for photos."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.rand(n, channels, 5, 5, generator=g), size=(size, size), mode="bicubic",
                         align_corners=True)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    cy, cx, r = torch.rand(3, n, 1, 1, 1, generator=g) * torch.tensor([size, size, size / 3]).reshape(3, 1, 1, 1, 1)
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 < (r + size / 8) ** 2
    shade = torch.rand(n, channels, 1, 1, generator=g)
    texture = torch.rand(n, channels, size, size, generator=g) * 0.15
    image = (0.6 * base + 0.4 * torch.where(disk, shade, 1 - shade) + texture - 0.07).clamp(0, 1)
    return (image * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def grey28() -> torch.Tensor:
    return synthetic_images(4, 1, 28, seed=1)


@pytest.fixture(scope="module")
def rgb32() -> torch.Tensor:
    return synthetic_images(4, 3, 32, seed=2)


def distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().mean().item()


# ---------------------------------------------------------------- names, shapes, errors

def test_names_follow_the_benchmark() -> None:
    assert BENCHMARK_CORRUPTIONS == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
        "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
    assert EXTRA_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert corruption_names(extra=False) == list(BENCHMARK_CORRUPTIONS)
    assert corruption_names() == list(BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)
    assert sorted(CORRUPTIONS) == sorted(ALL)


@pytest.mark.parametrize("name", ALL)
def test_every_severity_gives_uint8_of_the_same_shape(name: str, grey28, rgb32) -> None:
    tiny_grey, tiny_rgb = synthetic_images(2, 1, 8, seed=3), synthetic_images(2, 3, 8, seed=4)
    wide = synthetic_images(1, 3, 20, seed=5)[..., :12]  # 20 x 12, not square
    for severity in range(1, 6):
        for images in (grey28, rgb32, tiny_grey, tiny_rgb, wide):
            out = corrupt(images, name, severity, seed=0)
            assert out.dtype == torch.uint8 and out.shape == images.shape and out.device == images.device
        changed = [not torch.equal(corrupt(images, name, severity, seed=0), images) for images in (grey28, rgb32)]
        if name == "saturate" and severity <= 3:
            assert changed == [False, True]  # grey has no saturation to scale (documented)
        else:
            assert all(changed), (name, severity)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_result_and_seed_matters_only_when_random(name: str, rgb32) -> None:
    first = corrupt(rgb32, name, 3, seed=7)
    assert torch.equal(first, corrupt(rgb32.clone(), name, 3, seed=7))
    assert torch.equal(first, corrupt(rgb32, name, 3, seed=np.int64(7)))
    assert torch.equal(first, corrupt(rgb32, name, 3, seed=8)) == (name not in RANDOM)


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_each_image_gets_its_own_draws(name: str, rgb32) -> None:
    copies = rgb32[:1].repeat(4, 1, 1, 1)
    out = corrupt(copies, name, 3, seed=0)
    assert all(not torch.equal(out[i], out[j]) for i in range(4) for j in range(i + 1, 4))


def test_bad_input_raises_clear_errors(rgb32) -> None:
    with pytest.raises(ConfigError, match="unknown corruption 'fogg'"):
        corrupt(rgb32, "fogg", 1, 0)
    for severity in (0, 6, 2.5, True, "3", None):
        with pytest.raises(ConfigError, match="severity"):
            corrupt(rgb32, "fog", severity, 0)
    for seed in (1.5, "0", None, False):
        with pytest.raises(ConfigError, match="seed"):
            corrupt(rgb32, "fog", 1, seed)
    bad_images = [rgb32.float(), rgb32[0], rgb32.numpy(), torch.zeros(2, 2, 16, 16, dtype=torch.uint8),
                  torch.zeros(2, 3, 7, 16, dtype=torch.uint8)]
    for images in bad_images:
        with pytest.raises(DataError):
            corrupt(images, "fog", 1, 0)
    assert corrupt(rgb32[:0], "fog", 1, 0).shape == (0, 3, 32, 32)


# ---------------------------------------------------------------- severity ordering

@pytest.mark.parametrize("name", STRICTLY_MONOTONE)
def test_distance_grows_strictly_with_severity(name: str) -> None:
    for images in (synthetic_images(12, 1, 28, seed=11), synthetic_images(6, 3, 32, seed=12)):
        d = [distance(corrupt(images, name, s, seed=3), images) for s in range(1, 6)]
        assert all(later > earlier for earlier, later in zip(d, d[1:])), (name, d)


def test_severity_order_where_the_reference_constants_are_not_monotone() -> None:
    """Documented exceptions (CIFAR-10-C's own constants): motion blur's severities 3 and 4
    (radius 6 vs 8, same sigma 2) give identical kernels; glass blur's sigma goes up and down
    while the number of shuffles doubles at 4; frost and spatter switch regime (image weight,
    water -> mud); saturate first desaturates then saturates; elastic_transform's affine jitter
    shrinks faster than its elastic field grows, so it moves pixels less as severity rises."""
    for images in (synthetic_images(12, 1, 28, seed=11), synthetic_images(6, 3, 32, seed=12)):
        def d(name: str) -> list[float]:
            return [distance(corrupt(images, name, s, seed=3), images) for s in range(1, 6)]

        m = d("motion_blur")
        assert m[0] < m[1] < m[2] == m[3] < m[4]
        g = d("glass_blur")
        assert min(g[3:]) > max(g[:3])
        f = d("frost")
        assert f[0] < f[1]
        s = d("spatter")
        assert s[0] < s[1] < s[2] and s[3] < s[4]
        e = d("elastic_transform")
        assert all(later < earlier for earlier, later in zip(e, e[1:]))
        sat = d("saturate")
        assert sat[3] < sat[4]
        if images.shape[1] == 3:
            assert sat[0] < sat[1] and sat[2] < sat[3]


# ---------------------------------------------------------------- hand computations

def test_contrast_follows_the_reference_formula(rgb32) -> None:
    x = rgb32.double().numpy() / 255
    for severity, c in enumerate([0.75, 0.5, 0.4, 0.3, 0.15], start=1):
        means = x.mean(axis=(2, 3), keepdims=True)
        expected = np.floor(np.clip((x - means) * c + means, 0, 1) * 255)
        got = corrupt(rgb32, "contrast", severity, 0).numpy()
        assert np.abs(got - expected).max() <= 1 and np.mean(got == expected) > 0.99


def test_brightness_scales_rgb_by_the_new_value_over_the_old(rgb32, grey28) -> None:
    # HSV with V -> min(V + c, 1) at fixed H, S scales every channel by V'/V (V = max channel)
    x = rgb32.double().numpy() / 255
    v = x.max(axis=1, keepdims=True)
    for severity, c in enumerate([0.05, 0.1, 0.15, 0.2, 0.3], start=1):
        v_new = np.minimum(v + c, 1)
        expected = np.where(v > 0, x * v_new / np.where(v > 0, v, 1), v_new)
        expected = np.floor(np.clip(expected, 0, 1) * 255)
        got = corrupt(rgb32, "brightness", severity, 0).numpy()
        # the two routes round differently in the last bit, which flips a few truncations
        assert np.abs(got - expected).max() <= 1 and np.mean(got == expected) > 0.97
        grey = np.floor(np.clip(grey28.double().numpy() / 255 + c, 0, 1) * 255)
        assert np.abs(corrupt(grey28, "brightness", severity, 0).numpy() - grey).max() <= 1


def test_saturate_matches_colorsys(rgb32) -> None:
    pixels = rgb32.permute(0, 2, 3, 1).reshape(-1, 3).double().numpy() / 255
    for severity, (a, b) in enumerate([(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)], start=1):
        expected = []
        for r, g, bl in pixels:
            h, s, v = colorsys.rgb_to_hsv(r, g, bl)
            expected.append(colorsys.hsv_to_rgb(h, min(max(s * a + b, 0.0), 1.0), v))
        expected = np.floor(np.clip(np.array(expected), 0, 1) * 255)
        got = corrupt(rgb32, "saturate", severity, 0).permute(0, 2, 3, 1).reshape(-1, 3).numpy()
        # colorsys rounds differently in the last bit, which flips a few truncations
        assert np.abs(got - expected).max() <= 1 and np.mean(got == expected) > 0.97


def test_grey_saturate_at_high_severity_is_the_luma_of_reddened_grey() -> None:
    grey = torch.full((1, 1, 8, 8), 200, dtype=torch.uint8)
    # S = 0.2, H = 0 (red): RGB = (v, 0.8 v, 0.8 v); luma = v (0.299 + 0.701 * 0.8)
    expected = math.floor(200 / 255 * (0.299 + 0.701 * 0.8) * 255)
    assert corrupt(grey, "saturate", 5, 0).unique().tolist() == [expected]


def test_noise_statistics_match_their_definitions() -> None:
    grey = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)  # far from the clipping bounds
    x = 128 / 255
    noise = corrupt(grey, "gaussian_noise", 5, 0).double() / 255 - x  # std 0.10, floor bias -0.5/255
    assert abs(noise.mean().item() + 0.5 / 255) < 0.005 and abs(noise.std().item() - 0.10) < 0.005
    shot = corrupt(grey, "shot_noise", 5, 0).double() / 255  # Poisson(50 x) / 50
    assert abs(shot.mean().item() - x) < 0.01 and abs(shot.var().item() - x / 50) < 0.1 * x / 50
    speckle = corrupt(grey, "speckle_noise", 5, 0).double() / 255 - x  # x N(0, 0.2^2)
    assert abs(speckle.std().item() - 0.2 * x) < 0.01
    impulse = corrupt(grey, "impulse_noise", 5, 0)  # 7% of values replaced, half by 0, half by 255
    salt, pepper = (impulse == 255).double().mean().item(), (impulse == 0).double().mean().item()
    assert abs(salt + pepper - 0.07) < 0.01 and abs(salt - pepper) < 0.01
    assert ((impulse == 255) | (impulse == 0) | (impulse == 128)).all()


def test_gaussian_blur_matches_scipy_with_the_scaled_sigma(grey28, rgb32) -> None:
    for images in (grey28, rgb32):
        scale = images.shape[-1] / 32
        for severity, sigma in enumerate([0.4, 0.6, 0.7, 0.8, 1], start=1):
            x = images.double().numpy() / 255
            expected = ndi.gaussian_filter(x, sigma=(0, 0, sigma * scale, sigma * scale), mode="nearest", truncate=4.0)
            expected = np.floor(np.clip(expected, 0, 1) * 255)
            got = corrupt(images, "gaussian_blur", severity, 0).numpy()
            assert np.abs(got - expected).max() <= 1 and np.mean(got == expected) > 0.98


def test_defocus_blur_at_32px_is_the_reference_disk_filter(rgb32) -> None:
    grid = np.arange(-8, 9)
    for severity, (radius, alias) in enumerate([(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)], start=1):
        disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius ** 2).astype(float)
        disk /= disk.sum()
        taps = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * alias ** 2))
        taps /= taps.sum()
        kernel = ndi.correlate(ndi.correlate(disk, taps[None, :], mode="mirror"), taps[:, None], mode="mirror")
        assert np.allclose(reference_disk_kernel(radius, alias).numpy(), kernel)
        x = rgb32.double().numpy() / 255
        expected = np.stack([[ndi.correlate(ch, kernel, mode="mirror") for ch in im] for im in x])
        expected = np.floor(np.clip(expected, 0, 1) * 255)
        got = corrupt(rgb32, "defocus_blur", severity, 0).numpy()
        assert np.abs(got - expected).max() <= 1 and np.mean(got == expected) > 0.95


def test_zoom_blur_averages_scipy_zooms_of_the_centre(grey28) -> None:
    x = grey28.double().numpy()[:, 0] / 255
    factors = np.arange(1, 1.11, 0.01)  # severity 2; 12 factors because of float rounding
    assert len(factors) == 12
    total = x.copy()
    for z in factors:
        crop = int(np.ceil(28 / z))
        top = (28 - crop) // 2
        zoomed = ndi.zoom(x[:, top:top + crop, top:top + crop], (1, z, z), order=1)
        trim = (zoomed.shape[1] - 28) // 2
        total += zoomed[:, trim:trim + 28, trim:trim + 28]
    expected = np.floor(np.clip(total / (len(factors) + 1), 0, 1) * 255)
    got = corrupt(grey28, "zoom_blur", 2, 0).numpy()[:, 0]
    assert np.abs(got - expected).max() <= 1 and np.mean(got == expected) > 0.98


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (8, 3), (13, 1)])
def test_pixelate_is_pil_box_resize_down_and_up(size: int, channels: int) -> None:
    from PIL import Image

    images = synthetic_images(3, channels, size, seed=size)
    for severity, c in enumerate([0.95, 0.9, 0.85, 0.75, 0.65], start=1):
        expected = []
        for image in images.permute(0, 2, 3, 1).numpy():
            pil = Image.fromarray(image[..., 0] if channels == 1 else image)
            small = pil.resize((int(size * c), int(size * c)), Image.BOX)
            expected.append(np.asarray(small.resize((size, size), Image.BOX)).reshape(size, size, channels))
        got = corrupt(images, "pixelate", severity, 0).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(got, np.stack(expected)), severity


def test_fog_spans_the_formula_range_on_a_flat_image() -> None:
    flat = torch.full((3, 1, 32, 32), 100, dtype=torch.uint8)
    x = 100 / 255
    for severity, (c, _) in enumerate([(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)], start=1):
        out = corrupt(flat, "fog", severity, 0).reshape(3, -1)
        # (x + c * plasma) * max / (max + c) with plasma spanning exactly [0, 1] on the 32 px map
        low, high = x * x / (x + c) * 255, min((x + c) * x / (x + c), 1) * 255
        assert (out.min(1).values - math.floor(low)).abs().max() <= 1
        assert (out.max(1).values - math.floor(high)).abs().max() <= 1


def test_frost_is_image_plus_frost_texture() -> None:
    black = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    white = torch.full((4, 1, 32, 32), 255, dtype=torch.uint8)
    textures = frost_textures(32, 32, torch.device("cpu"), torch.float64)
    assert textures.shape == (5, 3, 160, 160) and textures.min() >= 0 and textures.max() <= 255
    assert torch.equal(textures, frost_textures(32, 32, torch.device("cpu"), torch.float64))
    assert 0.35 < textures.mean().item() / 255 < 0.55
    for severity, (a, b) in enumerate([(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)], start=1):
        assert corrupt(black, "frost", severity, 0).max() <= math.floor(b * 255)
        assert corrupt(black, "frost", severity, 0).float().mean() > 0.3 * b * 255
        if a == 1:
            assert (corrupt(white, "frost", severity, 0) == 255).all()


def test_snow_only_brightens_the_blended_image(rgb32) -> None:
    x = rgb32.double() / 255
    gray = 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:]
    for severity, weight in enumerate([0.95, 0.9, 0.9, 0.85, 0.8], start=1):
        blend = weight * x + (1 - weight) * torch.maximum(x, gray * 1.5 + 0.5)
        out = corrupt(rgb32, "snow", severity, 0).double()
        expected = torch.floor(blend.clamp(0, 1) * 255)
        assert (out >= expected - 1).all()
        assert (out > expected + 1).any()  # some flakes
        assert (out == expected).double().mean() > 0.2  # and pixels without any


# ---------------------------------------------------------------- building blocks

def test_motion_blur_kernel_follows_imagemagick() -> None:
    image = torch.zeros(1, 1, 9, 12, dtype=torch.float64)
    image[0, 0, 4, 6] = 255
    out = magick_motion_blur(image, 3.0, 1.0, torch.tensor([0.0]))
    # width 2 * ceil(3) + 1 = 7 taps, weights exp(-i^2 / 2) normalised; tap i reads x + i,
    # so the bright pixel is smeared to its left: out[4, 6 - i] = weight_i * 255, quantised
    weights = np.exp(-np.arange(7) ** 2 / 2.0)
    weights /= weights.sum()
    expected = np.zeros((9, 12))
    for i, w in enumerate(weights):
        expected[4, 6 - i] = np.floor(np.round(w * 255 * 257) / 257)
    assert np.array_equal(out[0, 0].numpy(), expected)
    # 90 degrees: reads y + i (downwards), so the smear goes up; the edge pixel is repeated
    column = magick_motion_blur(image, 3.0, 1.0, torch.tensor([90.0]))[0, 0]
    assert column[:5, 6].tolist() == expected[4, 2:7].tolist() and column[5:, 6].sum() == 0


def test_glass_blur_shuffle_equals_the_reference_loop() -> None:
    """The reference swaps ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on an RGB array, where
    both sides are views: it copies x[h', w'] into x[h, w].  Here a literal port of that loop."""
    image = synthetic_images(2, 3, 10, seed=9).double()
    shuffled = _local_shuffle(image, 1, RandomSource(5, "glass_blur", image.device, image.dtype))
    replay = RandomSource(5, "glass_blur", image.device, image.dtype)
    dx = replay.integers(-1, 1, (2, 8, 8))
    dy = replay.integers(-1, 1, (2, 8, 8))
    expected = image.permute(0, 2, 3, 1).numpy().copy()
    for n in range(2):
        x = expected[n]
        for h in range(10 - 1, 1, -1):
            for w in range(10 - 1, 1, -1):
                ddx, ddy = int(dx[n, h - 2, w - 2]), int(dy[n, h - 2, w - 2])
                x[h, w], x[h + ddy, w + ddx] = x[h + ddy, w + ddx], x[h, w]
    assert np.array_equal(shuffled.permute(0, 2, 3, 1).numpy(), expected)


def test_plasma_fractal_is_normalised_and_per_image() -> None:
    maps = plasma_fractal(3, 16, 2.0, RandomSource(0, "fog", torch.device("cpu"), torch.float64))
    assert maps.shape == (3, 16, 16)
    assert torch.equal(maps.amin(dim=(1, 2)), torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(maps.amax(dim=(1, 2)), torch.ones(3, dtype=torch.float64))
    assert not torch.equal(maps[0], maps[1])


def test_chamfer_distance_by_hand() -> None:
    features = torch.zeros(1, 1, 7, 7, dtype=torch.bool)
    features[0, 0, 3, 3] = True
    d = chamfer_distance(features)[0, 0]
    # OpenCV's 5x5 L2 mask: 1 (axial), 1.4 (diagonal), 2.1969 (knight), summed along a path
    expected = {(3, 3): 0.0, (3, 4): 1.0, (4, 4): 1.4, (4, 5): 2.1969, (5, 5): 2.8, (3, 6): 3.0, (6, 6): 4.2,
                (0, 5): 2.1969 + 1.4, (6, 0): 4.2}
    for (r, c), value in expected.items():
        assert d[r, c].item() == pytest.approx(value, abs=1e-5)
    assert (chamfer_distance(torch.zeros(1, 1, 4, 4, dtype=torch.bool)) == 8192).all()


def test_equalize_hist_by_hand() -> None:
    image = torch.tensor([[3.0, 3.0, 5.0, 9.0]]).reshape(1, 1, 2, 2)
    # first value 3 -> 0; counts above it: 5 -> 1, 9 -> 2 of 2 remaining -> 127.5 -> 128 (half even), 255
    assert equalize_hist(image).flatten().tolist() == [0.0, 0.0, 128.0, 255.0]
    flat = torch.full((1, 1, 3, 3), 7.0)
    assert torch.equal(equalize_hist(flat), flat)


def test_canny_finds_a_vertical_step() -> None:
    image = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    image[..., 4:] = 200
    edges = canny(image, 50, 150)[0, 0]
    # Sobel |dx| = 800 on columns 3 and 4; non-maximum suppression keeps the left one (m > left,
    # m >= right), on every row
    assert edges[:, 3].all() and edges.sum() == 8


def test_canny_thins_horizontal_and_diagonal_steps() -> None:
    image = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    image[..., 4:, :] = 200
    edges = canny(image, 50, 150)[0, 0]
    # vertical gradient: keep m > row above and m >= row below -> the upper of the two rows
    assert edges[3].all() and edges.sum() == 8
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    diagonal = torch.where(rows + cols >= 8, 200.0, 0.0).double().reshape(1, 1, 8, 8)
    # cv2.Canny (OpenCV 4.10) on this image: a staircase along the step
    expected = torch.zeros(8, 8, dtype=torch.bool)
    for r, c in [(1, 6), (1, 7), (2, 5), (2, 6), (3, 4), (3, 5), (4, 3), (4, 4), (5, 2), (5, 3), (6, 1), (6, 2),
                 (7, 1)]:
        expected[r, c] = True
    assert torch.equal(canny(diagonal, 50, 150)[0, 0], expected)


def test_warp_affine_identity_and_integer_shift() -> None:
    image = synthetic_images(1, 1, 9, seed=4).double()
    identity = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], dtype=torch.float64)
    assert torch.equal(warp_affine_reflect101(image, identity), image)
    shift = torch.tensor([[[1.0, 0, 2], [0, 1.0, -1]]], dtype=torch.float64)  # out(x, y) = in(x + 2, y - 1)
    rows = fold_index(torch.arange(9) - 1, 9, "reflect101")
    cols = fold_index(torch.arange(9) + 2, 9, "reflect101")
    assert torch.equal(warp_affine_reflect101(image, shift), image[..., rows, :][..., cols])


def test_bilinear_sampling_matches_scipy_map_coordinates() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1, 6, 7, generator=g, dtype=torch.float64)
    rows = torch.rand(1, 5, 5, generator=g, dtype=torch.float64) * 10 - 2
    cols = torch.rand(1, 5, 5, generator=g, dtype=torch.float64) * 11 - 2
    for mode, scipy_mode in (("reflect", "reflect"), ("reflect101", "mirror"), ("nearest", "nearest")):
        got = sample_bilinear(image, rows, cols, mode)[0, 0].numpy()
        coordinates = [rows[0].numpy(), cols[0].numpy()]
        expected = ndi.map_coordinates(image[0, 0].numpy(), coordinates, order=1, mode=scipy_mode)
        assert np.allclose(got, expected), mode


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_result(rgb32) -> None:
    for name in ALL:
        cpu = corrupt(rgb32, name, 3, seed=0)
        cuda = corrupt(rgb32.cuda(), name, 3, seed=0)
        assert cuda.device.type == "cuda"
        assert (cuda.cpu().int() - cpu.int()).abs().max() <= 1, name
