"""OOD detection (robustness/ood.py): AUROC vs scikit-learn, noise moments, format adapter."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn

from auglabel.errors import ConfigError, DataError
from auglabel.robustness.ood import auroc, gaussian_noise_like, match_format, max_softmax_scores, ood_auroc


def sklearn_auroc(inside, outside) -> float:
    scores = np.concatenate([np.asarray(inside, float), np.asarray(outside, float)])
    truth = np.concatenate([np.ones(len(inside)), np.zeros(len(outside))])
    return roc_auc_score(truth, scores)


class BrightnessNet(nn.Module):
    """Two classes, logits (0, 20 * (mean pixel - 1/2)): confident on bright or dark images,
    unsure (max-softmax 1/2) on mid-grey ones.  Has BatchNorm to check the eval mode."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(1)
        self.modes_seen: list[bool] = []

    def forward(self, x, return_features=False):
        self.modes_seen.append(self.bn.training)
        features = self.bn(x.mean(dim=(1, 2, 3)).unsqueeze(1) - 0.5)
        logits = torch.cat([torch.zeros_like(features), 20.0 * features], dim=1)
        return (logits, features) if return_features else logits


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    inside = rng.integers(0, 6, size=57).astype(float)  # few distinct values: many ties
    outside = rng.integers(0, 5, size=43).astype(float)
    assert auroc(torch.tensor(inside), torch.tensor(outside)) == pytest.approx(sklearn_auroc(inside, outside), abs=1e-12)
    continuous_in, continuous_out = rng.normal(0.3, 1, 200), rng.normal(0, 1, 150)
    assert auroc(continuous_in, continuous_out) == pytest.approx(sklearn_auroc(continuous_in, continuous_out), abs=1e-12)


def test_auroc_hand_worked_and_extremes():
    # pairs (in, out): 3>1, 3>2, 2>1, 2=2 -> (3 + 1/2) / 4
    assert auroc([3.0, 2.0], [1.0, 2.0]) == 3.5 / 4
    assert auroc([0.9, 0.8, 0.95], [0.1, 0.2]) == 1.0
    assert auroc([0.1, 0.2], [0.9, 0.8, 0.95]) == 0.0
    assert auroc([0.5, 0.5], [0.5]) == 0.5


def test_auroc_bad_input():
    with pytest.raises(DataError, match="non-empty"):
        auroc([], [0.1])
    with pytest.raises(DataError, match="non-empty"):
        auroc([0.1], torch.zeros(2, 2))
    with pytest.raises(DataError, match="NaN"):
        auroc([0.1, float("nan")], [0.2])


def test_gaussian_noise_has_the_training_moments_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    # three channels with different moments, each >= 3.4 std away from 0 and 255 (clipping negligible)
    train = torch.stack([torch.randint(40, 121, (50, 6, 6), generator=g),
                         torch.randint(100, 201, (50, 6, 6), generator=g),
                         torch.randint(0, 41, (50, 6, 6), generator=g) + 100], dim=1).to(torch.uint8)
    train_np = train.numpy().astype(np.float64)
    mean, std = train_np.mean(axis=(0, 2, 3)), train_np.std(axis=(0, 2, 3))
    noise = gaussian_noise_like(train, 2000, seed=5)
    assert noise.dtype == torch.uint8 and noise.shape == (2000, 3, 6, 6)
    noise_np = noise.numpy().astype(np.float64)
    # 72000 draws per channel: sample mean within ~0.4% of std of the truth, sample std within ~0.3%
    np.testing.assert_allclose(noise_np.mean(axis=(0, 2, 3)), mean, atol=0.03 * std.max())
    np.testing.assert_allclose(noise_np.std(axis=(0, 2, 3)), std, rtol=0.03)
    # pixels independent: neighbouring pixels uncorrelated
    flat = noise_np[:, 0].reshape(2000, -1)
    assert abs(np.corrcoef(flat[:, 0], flat[:, 1])[0, 1]) < 0.1
    assert torch.equal(noise, gaussian_noise_like(train, 2000, seed=5))
    assert not torch.equal(noise, gaussian_noise_like(train, 2000, seed=6))


def test_gaussian_noise_is_clipped_to_byte_range():
    train = torch.tensor([0, 255], dtype=torch.uint8).repeat(8).view(16, 1, 1, 1)  # mean 127.5, std 127.5
    noise = gaussian_noise_like(train, 500, seed=0).numpy()
    assert noise.min() == 0 and noise.max() == 255  # ~16% of draws below 0, clipped


def test_gaussian_noise_bad_input():
    with pytest.raises(DataError, match="uint8"):
        gaussian_noise_like(torch.rand(4, 1, 2, 2), 3)
    with pytest.raises(DataError, match="empty"):
        gaussian_noise_like(torch.zeros(0, 1, 2, 2, dtype=torch.uint8), 3)
    with pytest.raises(ConfigError, match="n must"):
        gaussian_noise_like(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), 0)


def pil_bilinear(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize(size[::-1], Image.BILINEAR))


@pytest.mark.parametrize("size", [(28, 28), (5, 7)])
def test_match_format_resizes_like_pil_bilinear(size):
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    resized = match_format(images, 1, size)
    expected = np.stack([pil_bilinear(images[i, 0].numpy(), size) for i in range(3)])
    assert resized.shape == (3, 1) + size
    np.testing.assert_allclose(resized[:, 0].numpy(), expected, atol=1e-5)


def test_match_format_channels_and_dtype():
    grey = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    rgb = match_format(grey, 3, 8)
    assert rgb.dtype == torch.uint8 and torch.equal(rgb, grey.expand(-1, 3, -1, -1))
    colour = torch.tensor([[10, 20, 61]], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.equal(match_format(colour, 1, 2), torch.full((1, 1, 2, 2), 30, dtype=torch.uint8))  # 91/3 rounded
    upsized = match_format(grey, 1, 28)
    expected = np.stack([pil_bilinear(grey[i, 0].numpy(), (28, 28)) for i in range(2)])
    assert upsized.dtype == torch.uint8
    assert np.abs(upsized[:, 0].numpy().astype(float) - expected).max() <= 0.5 + 1e-3
    assert match_format(grey, 1, (8, 8)) is grey


def test_match_format_bad_input():
    with pytest.raises(DataError, match="2-channel"):
        match_format(torch.rand(1, 2, 4, 4), 3, 4)
    with pytest.raises(DataError, match="4-D"):
        match_format(torch.rand(4, 4), 1, 4)
    with pytest.raises(DataError, match="uint8 or floating"):
        match_format(torch.zeros(1, 1, 4, 4, dtype=torch.int64), 1, 8)
    with pytest.raises(ConfigError, match="size"):
        match_format(torch.rand(1, 1, 4, 4), 1, (0, 4))


def test_max_softmax_scores_eval_mode_batches_and_uint8():
    net = BrightnessNet()
    net.train()
    levels = torch.tensor([0, 64, 128, 191, 255], dtype=torch.uint8)
    images = levels.view(5, 1, 1, 1).expand(5, 1, 3, 3).contiguous()
    scores = max_softmax_scores(net, images, batch_size=2)
    logit = 20.0 * (levels.double() / 255 - 0.5)  # BN in eval with fresh stats: identity (eps aside)
    expected = torch.sigmoid(logit.abs())
    torch.testing.assert_close(scores.double(), expected, atol=1e-4, rtol=0)
    assert scores.dtype == torch.float32 and scores.device.type == "cpu"
    assert net.modes_seen and not any(net.modes_seen) and net.training and net.bn.training
    torch.testing.assert_close(max_softmax_scores(net, images.float() / 255, batch_size=5), scores)


def test_ood_auroc_separates_noise_and_adapts_digits_format():
    net = BrightnessNet()
    g = torch.Generator().manual_seed(0)
    # in-distribution: bright 1-channel 12x12; OOD: mid-grey 3-channel 6x6 (needs adaptation)
    inside = torch.randint(200, 256, (20, 1, 12, 12), generator=g, dtype=torch.int64).to(torch.uint8)
    outside = torch.randint(100, 156, (15, 3, 6, 6), generator=g, dtype=torch.int64).to(torch.uint8)
    assert ood_auroc(net, inside, outside, batch_size=7) == 1.0
    assert ood_auroc(net, outside, inside) == 0.0  # roles swapped: the in-set is less confident
    in_scores = max_softmax_scores(net, inside)
    out_scores = max_softmax_scores(net, match_format(outside, 1, 12))
    mixed = torch.cat([inside[:10], match_format(outside, 1, 12)[:5]])
    got = ood_auroc(net, mixed, outside)
    expected = sklearn_auroc(torch.cat([in_scores[:10], out_scores[:5]]).numpy(), out_scores.numpy())
    assert got == pytest.approx(expected, abs=1e-12)


def test_ood_auroc_bad_input():
    net = BrightnessNet()
    images = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(DataError, match="OOD images"):
        ood_auroc(net, images, images[:0])
    with pytest.raises(DataError, match="in-distribution"):
        ood_auroc(net, images[:0], images)
    with pytest.raises(DataError, match="channel"):
        ood_auroc(net, torch.zeros(3, 3, 4, 4), torch.zeros(3, 2, 4, 4))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        ood_auroc(net, images, torch.full((2, 1, 4, 4), 3.0))
    with pytest.raises(ConfigError, match="batch_size"):
        max_softmax_scores(net, images, batch_size=0)
