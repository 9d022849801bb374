"""The differentiable warp against independent oracles: torch.rot90 / flip / a shifted copy at exact pixel
positions (both align_corners settings), a hand-written numpy bilinear sampler for composed random maps, an
analytic inverse, gradcheck; the relaxed Bernoulli's rate, determinism and straight-through gradient."""
import math

import numpy as np
import pytest
import torch

from auglabel.functional.warp import OPS, compose, op_matrix, relaxed_bernoulli, warp


def _image(h, w, seed=0, c=2):
    return torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _single(name, *values, h=5, w=5):
    return op_matrix(name, torch.tensor([values], dtype=torch.float64), h, w)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [4, 5])
def test_rotation_by_90_degrees_is_rot90_counter_clockwise(align_corners, size):
    x = _image(size, size)
    out = warp(x, _single("rotate", 90.0, h=size, w=size), align_corners=align_corners)
    torch.testing.assert_close(out, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-6, rtol=0)
    back = warp(x, _single("rotate", -90.0, h=size, w=size), align_corners=align_corners)
    torch.testing.assert_close(back, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-6, rtol=0)


@pytest.mark.parametrize("align_corners", [False, True])
def test_rotation_by_180_on_a_non_square_image_is_a_double_flip(align_corners):
    x = _image(5, 7)
    out = warp(x, _single("rotate", 180.0, h=5, w=7), align_corners=align_corners)
    torch.testing.assert_close(out, x.flip(-1, -2), atol=1e-6, rtol=0)


def test_translation_by_whole_pixels_shifts_with_zero_fill():
    x = _image(6, 8)
    out = warp(x, _single("translate", 2 / 8, -1 / 6, h=6, w=8))  # 2 px right, 1 px up
    expected = torch.zeros_like(x)
    expected[..., :-1, 2:] = x[..., 1:, :-2]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_identity_parameters_leave_the_image_unchanged():
    x = _image(5, 6)
    ops = ("rotate", "translate", "shear", "scale", "scale_x", "shear_y")
    params = torch.zeros(1, sum(len(OPS[o][0]) for o in ops), dtype=torch.float64)
    torch.testing.assert_close(warp(x, compose(ops, params, 5, 6)), x, atol=1e-12, rtol=0)


def _numpy_oracle(image, forward, align_corners):
    """Bilinear sampling by hand: output pixel (i, j) at centred (x, y) reads the input at forward^-1 (x, y);
    neighbours outside the image read 0 (and, with align_corners, the image ends at the border centres)."""
    c, h, w = image.shape
    inverse = np.linalg.inv(forward)
    out = np.zeros_like(image)
    for i in range(h):
        for j in range(w):
            x, y = j - (w - 1) / 2, i - (h - 1) / 2
            sx, sy, _ = inverse @ np.array([x, y, 1.0])
            col, row = sx + (w - 1) / 2, sy + (h - 1) / 2
            c0, r0 = math.floor(col), math.floor(row)
            for rr, cc in ((r0, c0), (r0, c0 + 1), (r0 + 1, c0), (r0 + 1, c0 + 1)):
                weight = (1 - abs(col - cc)) * (1 - abs(row - rr))
                if 0 <= rr < h and 0 <= cc < w:
                    out[:, i, j] += weight * image[:, rr, cc]
    return out


def test_composed_random_maps_match_a_hand_written_bilinear_sampler():
    """The ops, their composition order (op 1 first) and the pixel<->normalised conversion, on 6 x 9 images."""
    g = torch.Generator().manual_seed(3)
    ops = ("rotate", "translate", "shear", "scale")
    params = torch.stack([torch.empty(4).uniform_(-30, 30, generator=g), torch.empty(4).uniform_(-0.2, 0.2, generator=g),
                          torch.empty(4).uniform_(-0.2, 0.2, generator=g), torch.empty(4).uniform_(-0.3, 0.3, generator=g),
                          torch.empty(4).uniform_(-0.3, 0.3, generator=g), torch.empty(4).uniform_(-0.4, 0.4, generator=g)],
                         1).double()
    images = torch.rand(4, 2, 6, 9, generator=g, dtype=torch.float64)
    matrices = compose(ops, params, 6, 9)
    out = warp(images, matrices)
    for b in range(4):
        a, tx, ty, sx, sy, s = params[b].tolist()
        r = math.radians(a)
        rotate = np.array([[math.cos(r), math.sin(r), 0], [-math.sin(r), math.cos(r), 0], [0, 0, 1]])
        translate = np.array([[1, 0, tx * 9], [0, 1, ty * 6], [0, 0, 1]])
        shear = np.array([[1, 0, 0], [sy, 1, 0], [0, 0, 1]]) @ np.array([[1, sx, 0], [0, 1, 0], [0, 0, 1]])
        scale = np.diag([1 + s, 1 + s, 1])
        forward = scale @ shear @ translate @ rotate
        np.testing.assert_allclose(matrices[b].numpy(), forward, atol=1e-12)
        np.testing.assert_allclose(out[b].numpy(), _numpy_oracle(images[b].numpy(), forward, False), atol=1e-9)


def test_rotation_direction_moves_the_top_right_corner_to_the_top_left():
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 0, 4] = 1.0
    out = warp(x, _single("rotate", 90.0))
    assert out[0, 0, 0, 0] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)


def test_warp_is_differentiable_in_the_parameters():
    x = _image(5, 5, c=1)
    params = torch.tensor([[10.0, 0.1, -0.05, 0.1, 0.05, 0.1]], dtype=torch.float64, requires_grad=True)
    ops = ("rotate", "translate", "shear", "scale")
    assert torch.autograd.gradcheck(lambda p: warp(x, compose(ops, p, 5, 5)), (params,), eps=1e-6, atol=1e-5)


def test_relaxed_bernoulli_rate_determinism_and_gradient():
    logits = torch.full((20000,), math.log(0.25 / 0.75), requires_grad=True)
    draw = relaxed_bernoulli(logits, torch.Generator().manual_seed(0))
    assert set(draw.detach().unique().tolist()) <= {0.0, 1.0}
    assert float(draw.detach().mean()) == pytest.approx(0.25, abs=0.01)  # Bernoulli(sigmoid(logit)): 25 % at init
    again = relaxed_bernoulli(logits, torch.Generator().manual_seed(0))
    assert torch.equal(draw, again)
    other = relaxed_bernoulli(logits, torch.Generator().manual_seed(1))
    assert not torch.equal(draw, other)
    assert 0.2 < float((draw != other).float().mean()) < 0.5  # independent per sample
    draw.sum().backward()  # straight-through: the relaxed sample's gradient, sigmoid'((l + noise) / tau) / tau
    u = torch.rand(20000, generator=torch.Generator().manual_seed(0)).clamp(1e-6, 1 - 1e-6)
    soft = torch.sigmoid(logits.detach() + torch.log(u) - torch.log1p(-u))
    torch.testing.assert_close(logits.grad, soft * (1 - soft))
    soft_only = relaxed_bernoulli(logits.detach(), torch.Generator().manual_seed(0), hard=False, temperature=0.5)
    assert ((soft_only >= 0) & (soft_only <= 1)).all() and float(((soft_only > 0.01) & (soft_only < 0.99)).float().mean()) > 0.5
