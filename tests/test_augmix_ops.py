"""The batched AugMix ops against Pillow (the reference implementation's library) on real images."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from auglabel.functional import augmix_ops as ops

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def _fashion_mnist(count: int) -> np.ndarray:
    if not FASHION_MNIST.exists():
        pytest.skip("Fashion-MNIST test images not available")
    with gzip.open(FASHION_MNIST) as f:
        raw = f.read(16 + count * 28 * 28)
    return np.frombuffer(raw, np.uint8, offset=16).reshape(count, 28, 28).copy()


def _rgb_images(count: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random RGB images whose channels each span a different sub-range of 0..255."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (count, size // 4, size // 4, 3))
    smooth = np.kron(coarse, np.ones((1, 4, 4, 1))) + rng.uniform(0, 0.2, (count, size, size, 3))
    smooth = (smooth - smooth.min(axis=(1, 2), keepdims=True)) / np.ptp(smooth, axis=(1, 2), keepdims=True)
    lo = rng.integers(0, 100, (count, 1, 1, 3))
    hi = rng.integers(150, 256, (count, 1, 1, 3))
    return np.round(lo + smooth * (hi - lo)).astype(np.uint8)


IMAGE_SETS = {"fashion_mnist": lambda: _fashion_mnist(12), "rgb32": lambda: _rgb_images(12)}


@pytest.fixture(params=sorted(IMAGE_SETS))
def images(request) -> np.ndarray:
    """uint8 images, (N, H, W) grey or (N, H, W, 3) RGB."""
    return IMAGE_SETS[request.param]()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(images).float() / 255.0
    return t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2)


def to_uint8_like_pil(x: torch.Tensor, truncate: bool) -> np.ndarray:
    """Back to PIL's layout; geometric outputs are truncated like PIL's bilinear filter does
    (the 1e-3 absorbs float32 error on values that are exact integers in PIL's float64)."""
    scaled = x * 255.0
    levels = (scaled + 1e-3).floor() if truncate else scaled.round()
    levels = levels.clamp(0, 255).to(torch.uint8)
    return levels[:, 0].numpy() if x.shape[1] == 1 else levels.permute(0, 2, 3, 1).numpy()


def pil_map(images: np.ndarray, fn, params=None) -> np.ndarray:
    params = [None] * len(images) if params is None else params
    return np.stack([np.asarray(fn(Image.fromarray(img), p)) for img, p in zip(images, params)])


# ---- pixel ops: bit-exact ----

def test_autocontrast_equals_pil(images):
    out = to_uint8_like_pil(ops.autocontrast(to_tensor(images)), truncate=False)
    np.testing.assert_array_equal(out, pil_map(images, lambda im, _: ImageOps.autocontrast(im)))


def test_autocontrast_keeps_constant_channels():
    images = np.full((2, 8, 8, 3), 77, np.uint8)
    images[1, ..., 0] = np.arange(64).reshape(8, 8)  # one channel varies, two are constant
    out = to_uint8_like_pil(ops.autocontrast(to_tensor(images)), truncate=False)
    np.testing.assert_array_equal(out, pil_map(images, lambda im, _: ImageOps.autocontrast(im)))
    assert (out[0] == 77).all() and out[1, ..., 0].max() == 255 and (out[1, ..., 1:] == 77).all()


def test_equalize_equals_pil(images):
    out = to_uint8_like_pil(ops.equalize(to_tensor(images)), truncate=False)
    np.testing.assert_array_equal(out, pil_map(images, lambda im, _: ImageOps.equalize(im)))


def test_equalize_degenerate_histograms_equal_pil():
    rng = np.random.default_rng(3)
    constant = np.full((6, 6), 40, np.uint8)
    two_levels = np.where(rng.random((6, 6)) < 0.5, 10, 200).astype(np.uint8)
    tiny_step = np.zeros((6, 6), np.uint8)  # 36 pixels: step = (36 - count(max)) // 255 = 0
    tiny_step[0, :3] = [5, 9, 250]
    images = np.stack([constant, two_levels, tiny_step])
    out = to_uint8_like_pil(ops.equalize(to_tensor(images)), truncate=False)
    np.testing.assert_array_equal(out, pil_map(images, lambda im, _: ImageOps.equalize(im)))


def test_posterize_per_sample_bits_equal_pil(images):
    bits = 1 + torch.arange(len(images)) % 8  # 1..8 bits, a different value per image
    out = to_uint8_like_pil(ops.posterize(to_tensor(images), bits), truncate=False)
    expected = pil_map(images, lambda im, b: ImageOps.posterize(im, b), bits.tolist())
    np.testing.assert_array_equal(out, expected)


def test_posterize_to_zero_bits_is_black():
    # Pillow >= 10 refuses bits=0; the older Pillow of the reference code (mask ~255) gave black.
    out = ops.posterize(to_tensor(_rgb_images(2)), torch.tensor([0, 8]))
    assert (out[0] == 0).all() and torch.equal(out[1], to_tensor(_rgb_images(2))[1])


def test_solarize_per_sample_threshold_equals_pil(images):
    thresholds = torch.linspace(0, 256, len(images)).round().long()
    out = to_uint8_like_pil(ops.solarize(to_tensor(images), thresholds), truncate=False)
    expected = pil_map(images, lambda im, t: ImageOps.solarize(im, t), thresholds.tolist())
    np.testing.assert_array_equal(out, expected)


# ---- geometric ops: PIL's bilinear affine up to float32 vs float64 ----

def _pil_affine(op: str, amount: float, size: int):
    coefficients = {
        "shear_x": (1, amount, 0, 0, 1, 0), "shear_y": (1, 0, 0, amount, 1, 0),
        "translate_x": (1, 0, amount, 0, 1, 0), "translate_y": (1, 0, 0, 0, 1, amount),
    }
    if op == "rotate":
        return lambda im: im.rotate(amount, resample=Image.BILINEAR)
    return lambda im: im.transform((size, size), Image.AFFINE, coefficients[op], resample=Image.BILINEAR)


@pytest.mark.parametrize("op,low,high,integer", [
    ("rotate", -30, 30, True), ("shear_x", -0.3, 0.3, False), ("shear_y", -0.3, 0.3, False),
    ("translate_x", -10, 10, True), ("translate_y", -10, 10, True),
])
def test_geometric_ops_match_pil(images, op, low, high, integer):
    n, size = len(images), images.shape[1]
    amounts = torch.linspace(low, high, n, dtype=torch.float64)
    amounts = amounts.round() if integer else amounts
    codes = torch.full((n,), ops.OP_INDEX[op])
    out = ops.affine(to_tensor(images), ops.geometric_matrix(codes, amounts, size, size))
    ours = to_uint8_like_pil(out, truncate=True).astype(int)
    theirs = np.stack([np.asarray(_pil_affine(op, a, size)(Image.fromarray(img)))
                       for img, a in zip(images, amounts.tolist())]).astype(int)
    difference = np.abs(ours - theirs)
    if op.startswith("translate"):
        np.testing.assert_array_equal(ours, theirs)  # integer shifts: exact
    assert (difference == 0).mean() > 0.97, (difference == 0).mean()
    assert difference.mean() < 1.0, difference.mean()


def test_rotation_is_about_the_image_centre():
    image = np.zeros((1, 9, 9), np.uint8)
    image[0, 4, 4] = 255  # the centre pixel of an odd image stays put under any rotation
    image[0, 4, 7] = 255  # 3 px right of the centre: rotate(+90) (anticlockwise) moves it 3 px up
    codes = torch.full((1,), ops.OP_INDEX["rotate"])
    out = to_uint8_like_pil(ops.affine(to_tensor(image), ops.geometric_matrix(
        codes, torch.tensor([90.0]), 9, 9)), truncate=False)[0]
    assert out[4, 4] == 255 and out[1, 4] == 255 and out.sum() == 2 * 255


def test_geometric_fill_is_zero():
    image = np.full((1, 8, 8), 200, np.uint8)
    codes = torch.full((1,), ops.OP_INDEX["translate_x"])
    out = to_uint8_like_pil(ops.affine(to_tensor(image), ops.geometric_matrix(
        codes, torch.tensor([3.0]), 8, 8)), truncate=False)[0]
    assert (out[:, :5] == 200).all() and (out[:, 5:] == 0).all()


# ---- level -> parameter mapping and per-sample dispatch ----

def _reference_amount(op: str, level: float, sign: int, size: int) -> float:
    """The reference augmentations.py formulas, in plain Python."""
    int_parameter = lambda lv, maxval: int(lv * maxval / 10)  # noqa: E731
    return {
        "autocontrast": 0, "equalize": 0,
        "posterize": 4 - int_parameter(level, 4),
        "solarize": 256 - int_parameter(level, 256),
        "rotate": sign * int_parameter(level, 30),
        "shear_x": sign * float(level) * 0.3 / 10, "shear_y": sign * float(level) * 0.3 / 10,
        "translate_x": sign * int_parameter(level, size / 3), "translate_y": sign * int_parameter(level, size / 3),
    }[op]


def test_op_amount_matches_reference_formulas():
    gen = torch.Generator().manual_seed(5)
    n = 400
    op = torch.randint(0, len(ops.OP_NAMES), (n,), generator=gen)
    level = 0.1 + 9.9 * torch.rand(n, generator=gen, dtype=torch.float64)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1, 1)
    got = ops.op_amount(op, level, sign, 32, 32)
    expected = [_reference_amount(ops.OP_NAMES[o], lv, s, 32) for o, lv, s in zip(op.tolist(), level.tolist(), sign.tolist())]
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)
    # A hand-worked level: l = 2.5 on 32 px.
    hand = {"rotate": 7, "shear_x": 0.075, "translate_x": 2, "posterize": 3, "solarize": 192}
    for name, value in hand.items():
        one = ops.op_amount(torch.tensor([ops.OP_INDEX[name]]), torch.tensor([2.5]), torch.tensor([1]), 32, 32)
        assert one.item() == pytest.approx(value)


def test_apply_ops_gives_each_image_its_own_op():
    images = to_tensor(_rgb_images(20, seed=4))
    gen = torch.Generator().manual_seed(11)
    op = torch.randint(-1, len(ops.OP_NAMES), (20,), generator=gen)
    op[:10] = torch.arange(-1, 9)  # every op, identity included, at least once
    level = 0.1 + 2.9 * torch.rand(20, generator=gen)
    sign = torch.where(torch.rand(20, generator=gen) < 0.5, -1, 1)
    out = ops.apply_ops(images, op, level, sign)
    single = {
        "autocontrast": lambda x, a: ops.autocontrast(x), "equalize": lambda x, a: ops.equalize(x),
        "posterize": ops.posterize, "solarize": ops.solarize,
    }
    for i in range(20):
        x, code = images[i:i + 1], op[i].item()
        amount = ops.op_amount(op[i:i + 1], level[i:i + 1], sign[i:i + 1], 32, 32)
        if code == -1:
            expected = x
        elif ops.OP_NAMES[code] in single:
            expected = single[ops.OP_NAMES[code]](x, amount)
        else:  # bilinear, then truncated to a level like PIL's uint8 output
            moved = ops.affine(x * 255, ops.geometric_matrix(op[i:i + 1], amount, 32, 32))
            expected = (moved + 1e-3).floor() / 255
        torch.testing.assert_close(out[i:i + 1], expected, atol=1e-6, rtol=0)
    assert not torch.equal(out, images)


def test_apply_ops_keeps_its_input_and_the_levels_variant_works_in_place():
    images = to_tensor(_rgb_images(4, seed=2))
    before = images.clone()
    op, level, sign = torch.tensor([0, 3, 4, -1]), torch.full((4,), 2.0), torch.ones(4, dtype=torch.long)
    out = ops.apply_ops(images, op, level, sign)
    assert torch.equal(images, before)
    levels = ops.quantise(images)
    assert ops.apply_ops_to_levels_(levels, op, level, sign) is levels
    torch.testing.assert_close(levels / 255, out, atol=1e-7, rtol=0)
    assert torch.equal(levels, levels.round())  # integer levels throughout


def test_quantisation_rounds_to_nearest_level():
    x = torch.tensor([0.0, 0.3 / 255, 0.6 / 255, 1.0, 254.49 / 255, 254.51 / 255]).reshape(1, 1, 1, 6)
    assert ops.to_levels(x).flatten().tolist() == [0, 0, 1, 255, 254, 255]
    assert ops.quantise(x).flatten().tolist() == [0.0, 0.0, 1.0, 255.0, 254.0, 255.0]
