"""OOD detection (robustness/ood.py): AUROC, AUPR-in/out and FPR at 95% TPR vs scikit-learn and by hand,
the four scores, noise moments, format adapter."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn

from auglabel.errors import ConfigError, DataError
from auglabel.robustness.ood import (
    OOD_SCORES, auroc, average_precision, detection_metrics, detection_report, fpr_at_tpr, gaussian_noise_like,
    match_format, max_softmax_scores, ood_auroc, ood_detection, ood_logits, ood_scores,
)


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


# ---- every score and metric (METHODS.md sec. 9) ------------------------------------------------

def sklearn_detection(inside, outside):
    """Oracle: scikit-learn's AUROC, average precision (in and out as positives) and ROC curve."""
    from sklearn.metrics import average_precision_score, roc_curve

    inside, outside = np.asarray(inside, float), np.asarray(outside, float)
    truth = np.concatenate([np.ones(len(inside)), np.zeros(len(outside))])
    scores = np.concatenate([inside, outside])
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    return {"auroc": roc_auc_score(truth, scores), "aupr_in": average_precision_score(truth, scores),
            "aupr_out": average_precision_score(1 - truth, -scores),
            "fpr_at_95_tpr": fpr[np.argmax(tpr >= 0.95 - 1e-12)]}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_detection_metrics_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    inside = rng.integers(0, 7, size=int(rng.integers(5, 80))).astype(float)  # few distinct values: many ties
    outside = rng.integers(0, 5, size=int(rng.integers(5, 80))).astype(float)
    got = detection_metrics(torch.tensor(inside), outside)
    assert got == pytest.approx(sklearn_detection(inside, outside), abs=1e-12)
    continuous_in, continuous_out = rng.normal(0.5, 1, 300), rng.normal(0, 1, 200)
    assert detection_metrics(continuous_in, continuous_out) == pytest.approx(
        sklearn_detection(continuous_in, continuous_out), abs=1e-12)


def test_average_precision_hand_worked():
    # thresholds 3, 2, 1: (TP, FP) = (1, 0), (2, 1), (2, 2); AP = 1/2 * 1 + 1/2 * 2/3
    assert average_precision([3.0, 2.0], [2.0, 1.0]) == pytest.approx(0.5 + 1 / 3, abs=1e-15)
    assert average_precision([5.0, 4.0], [1.0, 0.0]) == 1.0
    assert average_precision([1.0, 1.0], [1.0, 1.0]) == 0.5  # one tie group: precision 1/2 at recall 1


def test_fpr_at_95_tpr_hand_worked_with_ties():
    inside = np.arange(1.0, 21.0)  # 20 in-distribution scores 1..20: 95% TPR = 19 accepted, threshold 2
    assert fpr_at_tpr(inside, [0.5, 1.0, 2.0, 2.0, 3.0, 25.0]) == 4 / 6  # 2, 2, 3, 25 are >= 2 (ties accepted)
    assert fpr_at_tpr(inside, [0.5, 1.9]) == 0.0
    assert fpr_at_tpr(inside, [0.5, 1.9], tpr=1.0) == 0.5  # threshold 1: 1.9 accepted
    # all in-distribution scores tied: the one threshold accepts all of them and every tied OOD image
    assert fpr_at_tpr([5.0] * 20, [5.0, 4.0, 6.0]) == 2 / 3
    # 10 in-distribution scores: ceil(9.5) = 10 must be accepted, so the threshold is the smallest, 1
    assert fpr_at_tpr(np.arange(1.0, 11.0), [0.9, 1.0, 1.1]) == 2 / 3
    with pytest.raises(ConfigError, match="tpr"):
        fpr_at_tpr(inside, [1.0], tpr=0.0)


def test_scores_by_hand_and_orientation():
    logits = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 3.0, float("-inf")]])
    scores = ood_scores(logits)
    assert list(scores) == list(OOD_SCORES) == ["max_softmax", "max_logit", "energy", "entropy"]
    lse = [math.log(math.exp(2) + 2), math.log(3) + 1, math.log(1 + math.exp(3))]
    p0 = math.exp(2) / (math.exp(2) + 2)
    q = 1 / (1 + math.exp(3))  # row 3: two live classes, 0 log 0 = 0 for the -inf one
    torch.testing.assert_close(scores["max_softmax"], torch.tensor([p0, 1 / 3, 1 - q]))
    assert scores["max_logit"].tolist() == [2.0, 1.0, 3.0]
    torch.testing.assert_close(scores["energy"], torch.tensor(lse, dtype=torch.float64))
    entropy = [p0 * math.log(p0) + 2 * (1 - p0) / 2 * math.log((1 - p0) / 2), -math.log(3),
               q * math.log(q) + (1 - q) * math.log(1 - q)]
    torch.testing.assert_close(scores["entropy"], torch.tensor(entropy, dtype=torch.float64))
    # confident in-distribution logits against flat OOD logits: perfect detection by every score
    g = torch.Generator().manual_seed(0)
    confident = torch.randn(40, 5, generator=g) + 8 * torch.nn.functional.one_hot(torch.arange(40) % 5, 5)
    flat = torch.randn(30, 5, generator=g) * 0.1
    for score, values in detection_report(confident, flat).items():
        assert values == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr_at_95_tpr": 0.0}, score
    with pytest.raises(DataError, match="5 and 4 classes"):
        detection_report(confident, flat[:, :4])
    with pytest.raises(DataError, match="non-empty"):
        ood_scores(torch.zeros(0, 3))


def test_ood_detection_keeps_the_max_softmax_auroc():
    net = BrightnessNet()
    g = torch.Generator().manual_seed(1)
    inside = torch.randint(0, 256, (25, 1, 12, 12), generator=g, dtype=torch.int64).to(torch.uint8)
    outside = torch.randint(90, 166, (18, 3, 6, 6), generator=g, dtype=torch.int64).to(torch.uint8)
    report = ood_detection(net, inside, outside, batch_size=8)
    assert report["max_softmax"]["auroc"] == ood_auroc(net, inside, outside)
    in_logits = ood_logits(net, inside)
    assert ood_detection(net, inside, outside, in_logits=in_logits) == report
    out_logits = ood_logits(net, match_format(outside, 1, 12))
    energy_in, energy_out = torch.logsumexp(in_logits.double(), 1), torch.logsumexp(out_logits.double(), 1)
    assert report["energy"] == pytest.approx(sklearn_detection(energy_in.numpy(), energy_out.numpy()), abs=1e-12)
