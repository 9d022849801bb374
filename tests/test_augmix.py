"""Batched AugMix: distributions, determinism, reported facts, PIL replay and the AugMix module."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from scipy import stats

from auglabel.augment import AUGMENTATIONS
from auglabel.augment.augmix import AugMix
from auglabel.batch import Batch
from auglabel.errors import ConfigError
from auglabel.functional import augmix_ops as ops
from auglabel.functional.augmix import augmix, sample_beta, sample_dirichlet, sample_gamma
from auglabel.functional.jsd import jensen_shannon
from auglabel.labels.basic import OneHot
from test_augmix_ops import _fashion_mnist, _rgb_images, to_tensor

P_MIN = 1e-3  # fixed seeds: a correct sampler passes these with certainty, a wrong one fails


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def grey_batch(n: int = 8, size: int = 12, seed: int = 0) -> torch.Tensor:
    g = gen(seed)
    return (torch.randint(0, 256, (n, 1, size, size), generator=g).float() / 255.0)


# ---- sampled quantities ----

def test_info_shapes_dtypes_and_padding():
    x = to_tensor(_rgb_images(6))
    mixed, info = augmix(x, gen(), width=4, depth=-1)
    assert mixed.shape == x.shape and mixed.dtype == x.dtype
    assert 0.0 <= mixed.min() and mixed.max() <= 1.0
    assert info["ops"].shape == info["levels"].shape == info["signs"].shape == (6, 4, 3)
    assert info["depths"].shape == info["chain_weights"].shape == (6, 4)
    for key in ("skip_weight", "mix_weight", "depth", "distance"):
        assert info[key].shape == (6,)
    assert info["ops"].dtype == info["depths"].dtype == info["signs"].dtype == torch.long
    active = torch.arange(3) < info["depths"].unsqueeze(-1)
    assert ((info["ops"] >= 0) == active).all() and ((info["levels"] > 0) == active).all()
    assert (info["signs"].abs() == active.long()).all()
    torch.testing.assert_close(info["chain_weights"].sum(1), torch.ones(6))
    assert torch.equal(info["depth"], info["depths"].amax(1))
    torch.testing.assert_close(info["distance"], 1 - info["skip_weight"])
    assert torch.equal(info["mix_weight"], info["skip_weight"])


def test_fixed_depth():
    _, info = augmix(grey_batch(), gen(), width=2, depth=5)
    assert info["ops"].shape == (8, 2, 5) and (info["depths"] == 5).all() and (info["ops"] >= 0).all()


def test_same_seed_same_result_and_other_seed_differs():
    x = to_tensor(_rgb_images(5))
    a, info_a = augmix(x, gen(7))
    b, info_b = augmix(x, gen(7))
    c, _ = augmix(x, gen(8))
    assert torch.equal(a, b) and all(torch.equal(info_a[k], info_b[k]) for k in info_a)
    assert not torch.equal(a, c)


def test_every_sample_gets_its_own_draws():
    x = grey_batch(1).expand(64, -1, -1, -1).contiguous()  # one image, 64 times
    mixed, info = augmix(x, gen(1))
    assert len({tuple(row) for row in info["ops"].reshape(64, -1).tolist()}) > 60
    assert info["skip_weight"].unique().numel() == 64
    assert len({m.numpy().tobytes() for m in mixed}) == 64


def test_levels_ops_depths_uniform():
    _, info = augmix(grey_batch(800, size=3), gen(2), severity=4)
    active = info["ops"] >= 0
    levels = info["levels"][active].double().numpy()
    assert stats.kstest(levels, "uniform", args=(0.1, 3.9)).pvalue > P_MIN
    op_counts = np.bincount(info["ops"][active].numpy(), minlength=9)
    assert stats.chisquare(op_counts).pvalue > P_MIN
    assert stats.chisquare(np.bincount(info["depths"].flatten().numpy())[1:]).pvalue > P_MIN
    signs = info["signs"][active].numpy()
    assert stats.binomtest(int((signs > 0).sum()), signs.size).pvalue > P_MIN


def test_restricted_op_set():
    _, info = augmix(grey_batch(50), gen(), ops=["equalize", "rotate"])
    used = set(info["ops"][info["ops"] >= 0].tolist())
    assert used == {ops.OP_INDEX["equalize"], ops.OP_INDEX["rotate"]}


@pytest.mark.parametrize("alpha", [0.3, 1.0, 2.5])
def test_gamma_sampler_matches_scipy(alpha):
    samples = sample_gamma(alpha, (4000,), gen(3), torch.device("cpu")).double().numpy()
    assert stats.kstest(samples, "gamma", args=(alpha,)).pvalue > P_MIN


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_dirichlet_and_beta_moments(alpha):
    k, n = 3, 8000
    w = sample_dirichlet(alpha, n, k, gen(4), torch.device("cpu")).double()
    torch.testing.assert_close(w.sum(1), torch.ones(n, dtype=torch.float64))
    # Dirichlet(alpha * 1_k): mean 1/k, var (k - 1) / (k^2 (k alpha + 1)); marginal Beta(alpha, (k-1) alpha).
    assert w.mean(0).numpy() == pytest.approx([1 / k] * k, abs=0.01)
    assert w.var(0).numpy() == pytest.approx([(k - 1) / (k * k * (k * alpha + 1))] * k, rel=0.06)
    assert stats.kstest(w[:4000, 0].numpy(), "beta", args=(alpha, (k - 1) * alpha)).pvalue > P_MIN
    m = sample_beta(alpha, 4000, gen(5), torch.device("cpu")).double().numpy()
    assert stats.kstest(m, "beta", args=(alpha, alpha)).pvalue > P_MIN


def test_skip_weight_distribution_beta_or_uniform():
    _, beta_info = augmix(grey_batch(1500, size=2), gen(6), alpha=0.5, depth=1)
    assert stats.kstest(beta_info["skip_weight"].double().numpy(), "beta", args=(0.5, 0.5)).pvalue > P_MIN
    _, uniform_info = augmix(grey_batch(1500, size=2), gen(6), alpha=0.5, width=1, depth=1, mix="uniform")
    assert stats.kstest(uniform_info["mix_weight"].double().numpy(), "uniform").pvalue > P_MIN


def test_single_chain_uniform_mode_reports_autolabel_facts():
    _, info = augmix(grey_batch(40), gen(9), width=1, mix="uniform")
    assert torch.equal(info["depth"], info["depths"][:, 0])
    assert set(info["depth"].tolist()) == {1, 2, 3}
    torch.testing.assert_close(info["distance"], 1 - info["mix_weight"])
    assert (info["distance"] >= 0).all() and (info["distance"] <= 1).all()


# ---- the output is exactly the reported mix ----

def _chain_from_info(x: torch.Tensor, info: dict, i: int, j: int) -> torch.Tensor:
    """Replay chain j of image i op by op through the single-image [0, 1] path."""
    y = x[i:i + 1]
    for t in range(info["ops"].shape[2]):
        op = info["ops"][i:i + 1, j, t]
        if op.item() >= 0:
            y = ops.apply_ops(y, op, info["levels"][i:i + 1, j, t], info["signs"][i:i + 1, j, t])
    return y[0]


def test_output_equals_reported_mix():
    x = to_tensor(_rgb_images(6, seed=8))
    mixed, info = augmix(x, gen(10))
    for i in range(6):
        chains = sum(info["chain_weights"][i, j] * _chain_from_info(x, info, i, j) for j in range(3))
        m = info["skip_weight"][i]
        torch.testing.assert_close(mixed[i], (m * x[i] + (1 - m) * chains).clamp(0, 1), atol=2e-6, rtol=0)


def _pil_op(image: Image.Image, name: str, amount: float) -> Image.Image:
    size = image.size[0]
    if name in ("autocontrast", "equalize"):
        return getattr(ImageOps, name)(image)
    if name in ("posterize", "solarize"):
        return getattr(ImageOps, name)(image, int(amount))
    if name == "rotate":
        return image.rotate(amount, resample=Image.BILINEAR)
    coefficients = {"shear_x": (1, amount, 0, 0, 1, 0), "shear_y": (1, 0, 0, amount, 1, 0),
                    "translate_x": (1, 0, amount, 0, 1, 0), "translate_y": (1, 0, 0, 0, 1, amount)}[name]
    return image.transform((size, size), Image.AFFINE, coefficients[:6], resample=Image.BILINEAR)


@pytest.mark.parametrize("images", [lambda: _fashion_mnist(10), lambda: _rgb_images(10, seed=12)],
                         ids=["fashion_mnist", "rgb32"])
def test_chains_replay_the_reference_pil_pipeline(images):
    """Replaying the reported ops with PIL on the uint8 images (the reference aug()) gives our mix."""
    uint8 = images()
    x = to_tensor(uint8)
    mixed, info = augmix(x, gen(13), severity=6)
    n, width, depth = info["ops"].shape
    amounts = ops.op_amount(info["ops"].flatten(), info["levels"].flatten(), info["signs"].flatten(),
                            x.shape[2], x.shape[3]).reshape(n, width, depth)
    expected = []
    for i in range(n):
        chains = np.zeros(x.shape[1:])
        for j in range(width):
            image = Image.fromarray(uint8[i])
            for t in range(int(info["depths"][i, j])):
                image = _pil_op(image, ops.OP_NAMES[info["ops"][i, j, t]], amounts[i, j, t].item())
            arr = np.asarray(image, np.float64) / 255.0
            chains += info["chain_weights"][i, j].item() * (arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        m = info["skip_weight"][i].item()
        expected.append(m * x[i].double().numpy() + (1 - m) * chains)
    difference = np.abs(np.stack(expected) - mixed.double().numpy()) * 255
    assert difference.mean() < 0.02, difference.mean()  # float32 vs Pillow's float64 truncation
    assert (difference < 0.01).mean() > 0.99


# ---- input and parameter errors ----

@pytest.mark.parametrize("params", [
    {"severity": 0}, {"severity": 11}, {"width": 0}, {"width": 1.5}, {"depth": 0}, {"depth": 11},
    {"depth": -2}, {"alpha": 0}, {"alpha": -1.0}, {"mix": "dirichlet"}, {"ops": ["color"]}, {"ops": []},
])
def test_bad_parameters_raise_config_error(params):
    with pytest.raises(ConfigError, match="augmix"):
        augmix(grey_batch(2), gen(), **params)


@pytest.mark.parametrize("images,match", [
    (torch.zeros(2, 1, 4, 4, dtype=torch.uint8), "floating"),
    (torch.full((2, 1, 4, 4), 1.5), r"\[0, 1\]"),
    (torch.full((2, 1, 4, 4), -0.1), r"\[0, 1\]"),
    (torch.zeros(1, 4, 4), "shape"),
])
def test_bad_images_raise_value_error(images, match):
    with pytest.raises(ValueError, match=match):
        augmix(images, gen())


# ---- the AugMix augmentation module ----

def make_batch(n: int = 4, info: dict | None = None) -> Batch:
    x = grey_batch(n, seed=3)
    return Batch(inputs=x, labels=torch.arange(n) % 3, index=torch.arange(100, 100 + n), num_classes=3,
                 info=info or {})


def test_registered_and_validated():
    assert isinstance(AUGMENTATIONS.build("augmix", severity=2, width=1, mix="uniform"), AugMix)
    for bad in ({"severity": 12}, {"width": 0}, {"depth": 4.5}, {"alpha": 0.0}, {"mix": "x"},
                {"jsd_weight": -1.0}, {"jsd": False, "augmented_targets": True}):
        with pytest.raises(ConfigError):
            AUGMENTATIONS.build("augmix", **bad)


def test_jsd_batch_is_view_major_with_clean_only_weights():
    batch = make_batch(4, info={"crop_offset": torch.arange(8).reshape(4, 2)})
    out = AugMix()(batch, generator=gen(1))
    assert out.num_views == 3 and len(out) == 12
    assert torch.equal(out.inputs[:4], batch.inputs)
    assert not torch.equal(out.inputs[4:8], out.inputs[8:])  # two independent augmentations
    assert torch.equal(out.labels, batch.labels.repeat(3)) and torch.equal(out.index, batch.index.repeat(3))
    assert torch.equal(out.info["view"], torch.tensor([0] * 4 + [1] * 4 + [2] * 4))
    assert torch.equal(out.info["crop_offset"], batch.info["crop_offset"].repeat(3, 1))
    assert (out.info["ops"][:4] == -1).all() and (out.info["depth"][:4] == 0).all()
    assert (out.info["distance"][:4] == 0).all() and (out.info["mix_weight"][:4] == 1).all()
    assert (out.info["depth"][4:] >= 1).all()
    assert torch.equal(out.weights, torch.tensor([3.0] * 4 + [0.0] * 8))


def test_jsd_label_loss_is_clean_cross_entropy_and_extra_loss_is_12_js():
    augmentation = AugMix()
    out = augmentation(make_batch(4), generator=gen(2))
    logits = torch.randn(12, 3, generator=gen(3))
    label_loss = OneHot().loss(logits, out)
    torch.testing.assert_close(label_loss, F.cross_entropy(logits[:4], out.labels[:4]))
    expected = 12.0 * jensen_shannon(logits[:4], logits[4:8], logits[8:])
    torch.testing.assert_close(augmentation.extra_loss(logits, out), expected)
    with pytest.raises(ValueError, match="3-view"):
        augmentation.extra_loss(logits[:4], make_batch(4))


def test_augmented_targets_weights_every_view():
    augmentation = AugMix(augmented_targets=True, jsd_weight=5.0)
    base = make_batch(4)
    base.weights = torch.tensor([1.0, 2.0, 0.0, 1.0])
    out = augmentation(base, generator=gen(4))
    assert torch.equal(out.weights, base.weights.repeat(3))
    logits = torch.randn(12, 3, generator=gen(5))
    expected = (F.cross_entropy(logits, out.labels, reduction="none") * out.weights).mean()
    torch.testing.assert_close(OneHot().loss(logits, out), expected)


def test_without_jsd_one_augmented_view_and_no_extra_loss():
    augmentation = AugMix(jsd=False, width=1, mix="uniform")
    batch = make_batch(6)
    out = augmentation(batch, generator=gen(6))
    assert len(out) == 6 and out.num_views == 1 and out.weights is None
    assert augmentation.reports_distance and out.info["distance"].shape == (6,)
    assert augmentation.extra_loss(torch.randn(6, 3), out) is None
    again = augmentation(batch, generator=gen(6))
    assert torch.equal(out.inputs, again.inputs)


def test_module_rejects_bad_images():
    batch = make_batch(2)
    batch.inputs = batch.inputs * 2 + 0.5
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        AugMix()(batch, generator=gen())
