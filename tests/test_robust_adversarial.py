"""Adversarial accuracy (robustness/adversarial.py) against closed-form attacks on tiny models."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import auglabel.robustness.adversarial as adversarial_module
from auglabel.errors import ConfigError, DataError
from auglabel.robustness.adversarial import (EvalMode, accuracy_from_counts, adversarial_accuracy,
                                             adversarial_counts, as_unit_images, eps_key)

D = 12  # pixels of the (1, 3, 4) test images


class MarginNet(nn.Module):
    """Two classes, ``logit_1 - logit_0 = v . (x - 1/2)``.

    Within the L-inf ball the worst case lowers the true class's margin by exactly
    ``eps * ||v||_1`` (move every pixel by eps against sign(v)), so a correctly classified sample
    with margin ``|v . (x - 1/2)|`` is robust iff ``eps < margin / ||v||_1`` (pixels stay inside
    [0, 1] here, so clipping never binds).
    """

    def __init__(self):
        super().__init__()
        self.v = nn.Parameter(torch.linspace(-1.0, 1.5, D))
        self.v.data[5] = 0.0  # a zero weight: sign(grad) = 0 there, must not matter

    def forward(self, x, return_features=False):
        features = x.flatten(1)
        diff = (features - 0.5) @ self.v
        logits = torch.stack([torch.zeros_like(diff), diff], dim=1)
        return (logits, features) if return_features else logits


def margin_data(ratios: list[float], labels: list[int]):
    """Images ``1/2 + s * sign(v) * (+-1)`` whose margin / ||v||_1 is ``|s|``, signed by the label."""
    net = MarginNet()
    direction = net.v.detach().sign()
    images, label_t = [], torch.tensor(labels, dtype=torch.int64)
    for ratio, label in zip(ratios, labels):
        sign = 1.0 if label == 1 else -1.0
        images.append(0.5 + sign * ratio * direction)
    return net, torch.stack(images).view(-1, 1, 3, 4), label_t


class ThresholdNet(nn.Module):
    """Zero input gradient, so PGD never moves off its random start: a sample (clean pixel 0.5,
    class 0) is misclassified iff its start lies above ``0.5 + 0.75 eps``; with a uniform start in
    the eps-ball that has probability 1/8 per restart, independently per sample and restart."""

    def __init__(self, eps: float):
        super().__init__()
        self.threshold = 0.5 + 0.75 * eps

    def forward(self, x, return_features=False):
        fooled = (x.flatten(1)[:, 0] > self.threshold).float()
        logits = torch.stack([1.0 - fooled, fooled], dim=1) + 0.0 * x.sum()
        return (logits, x.flatten(1)) if return_features else logits


class BNDropoutNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 3)
        self.modes_seen: list[bool] = []

    def forward(self, x, return_features=False):
        self.modes_seen.append(self.bn.training or self.drop.training)
        features = self.drop(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))
        logits = self.fc(features)
        return (logits, features) if return_features else logits


def test_linear_margin_accuracy_matches_closed_form():
    ratios = [0.01, 0.025, 0.035, 0.05, 0.015, 0.045, 0.03 - 0.002, 0.03 + 0.002]
    labels = [1, 0, 1, 0, 1, 1, 0, 1]
    net, images, y = margin_data(ratios, labels)
    assert (net(images).argmax(1) == y).all()
    eps_list = (0.02, 0.03, 0.04)
    acc = adversarial_accuracy(net, images, y, eps_list, steps=8, restarts=2, batch_size=3, seed=0)
    assert acc["0"] == 1.0
    for eps in eps_list:
        expected = sum(ratio > eps for ratio in ratios) / len(ratios)
        assert acc[eps_key(eps)] == pytest.approx(expected), eps


def test_misclassified_clean_samples_are_never_robust():
    # the second and fourth samples are wrong when clean (sign of the label flipped)
    net, images, y = margin_data([0.05, 0.05, 0.05, 0.05], [1, 1, 0, 0])
    y_wrong = y.clone()
    y_wrong[[1, 3]] = 1 - y_wrong[[1, 3]]
    counts = adversarial_counts(net, images, y_wrong, (0.01,), steps=8, restarts=1, seed=0)
    assert counts == {"0": (2, 4), "0.01": (2, 4)}


class NeedleNet(nn.Module):
    """Wrong (class 1) only at exactly x = 1/2, right everywhere else, zero input gradient: an
    attack's random start "repairs" the clean mistake, which must still count as broken."""

    def forward(self, x, return_features=False):
        at_needle = (x.flatten(1)[:, 0] == 0.5).float()
        logits = torch.stack([1.0 - at_needle, at_needle], dim=1) + 0.0 * x.sum()
        return (logits, x.flatten(1)) if return_features else logits


def test_clean_mistake_counts_as_broken_even_if_attack_lands_right():
    images = torch.tensor([0.5, 0.5, 0.25, 0.75]).view(4, 1, 1, 1)
    labels = torch.zeros(4, dtype=torch.int64)
    counts = adversarial_counts(NeedleNet(), images, labels, (0.03,), steps=2, restarts=1, seed=0)
    assert counts == {"0": (2, 4), "0.03": (2, 4)}


def test_no_progress_output_without_a_terminal(capsys):
    net, images, y = margin_data([0.1, 0.1], [1, 0])
    adversarial_counts(net, images, y, (0.01,), steps=1, restarts=1, batch_size=1)
    assert capsys.readouterr().err == ""


def test_uint8_images_are_scaled_by_255():
    net, images, y = margin_data([0.1, 0.3], [1, 0])
    as_bytes = (images * 255).round().to(torch.uint8)
    margins = ((as_bytes.float() / 255).flatten(1) - 0.5) @ net.v.detach()
    ratios = margins.abs() / net.v.detach().abs().sum()
    acc = adversarial_accuracy(net, as_bytes, y, (0.2,), steps=8, restarts=1, seed=0)
    assert acc["0.2"] == pytest.approx(float((ratios > 0.2).float().mean()))
    assert 0 < acc["0.2"] < 1


@pytest.mark.parametrize("restarts", [1, 3])
def test_a_sample_is_broken_if_any_restart_fools_it(restarts):
    eps, n = 0.04, 3000
    net = ThresholdNet(eps)
    images = torch.full((n, 1, 1, 1), 0.5)
    labels = torch.zeros(n, dtype=torch.int64)
    acc = adversarial_accuracy(net, images, labels, (eps,), steps=2, restarts=restarts, seed=0)
    # each restart independently fools with probability 1/8; survivors of all: (7/8)^R
    expected = (7 / 8) ** restarts
    assert acc["0"] == 1.0
    assert acc[eps_key(eps)] == pytest.approx(expected, abs=0.035)


def test_pgd_attack_own_restart_selection_also_keeps_any_fooling_restart():
    """The check the brief asks for: pgd_attack(restarts=3) keeps, per sample, a fooling restart."""
    eps, n = 0.04, 3000
    net = ThresholdNet(eps)
    images = torch.full((n, 1, 1, 1), 0.5)
    labels = torch.zeros(n, dtype=torch.int64)
    x_adv = adversarial_module.pgd_attack(net, images, labels, eps, steps=2, step_size=eps / 4, restarts=3,
                                          generator=torch.Generator().manual_seed(0))
    survived = (net(x_adv).argmax(1) == labels).float().mean().item()
    assert survived == pytest.approx((7 / 8) ** 3, abs=0.035)


def test_keys_order_and_counts_sum_exactly():
    net, images, y = margin_data([0.01, 0.05, 0.03], [1, 0, 1])
    counts = adversarial_counts(net, images, y, (0.04, 0.02), steps=8, restarts=1, seed=0)
    assert list(counts) == ["0", "0.04", "0.02"]
    assert all(total == 3 for _, total in counts.values())
    assert counts["0.02"] == (2, 3) and counts["0.04"] == (1, 3)
    # per-shard counts of two "ranks" sum to the whole set's counts (what an all-reduce does)
    shard_a = adversarial_counts(net, images[:1], y[:1], (0.04, 0.02), steps=8, restarts=1, seed=0)
    shard_b = adversarial_counts(net, images[1:], y[1:], (0.04, 0.02), steps=8, restarts=1, seed=0)
    summed = {k: (shard_a[k][0] + shard_b[k][0], shard_a[k][1] + shard_b[k][1]) for k in counts}
    assert summed == counts
    assert accuracy_from_counts(counts) == {"0": 1.0, "0.04": 1 / 3, "0.02": 2 / 3}
    assert eps_key(0.03) == "0.03" and eps_key(8 / 255) == "0.0313725"


def test_paper_defaults_reach_pgd(monkeypatch):
    calls = []
    real = adversarial_module.pgd_attack

    def spy(*args, **kwargs):
        calls.append((args[3], kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(adversarial_module, "pgd_attack", spy)
    net, images, y = margin_data([0.2, 0.2], [1, 0])  # never broken: every restart runs
    adversarial_counts(net, images, y, steps=2, seed=0)
    eps_seen = [eps for eps, _ in calls]
    assert eps_seen == [0.02] * 3 + [0.03] * 3 + [0.04] * 3
    for eps, kwargs in calls:
        assert kwargs["step_size"] == pytest.approx(eps / 4)
        assert kwargs["random_start"] and kwargs["bn_mode"] == "eval"


def test_eval_mode_during_attack_and_modes_restored():
    net = BNDropoutNet()
    net.train()
    net.bn.eval()  # a mixed state (frozen BN) must survive
    before = {name: m.training for name, m in net.named_modules()}
    running_mean = net.bn.running_mean.clone()
    g = torch.Generator().manual_seed(0)
    images, labels = torch.rand(5, 1, 4, 4, generator=g), torch.randint(0, 3, (5,), generator=g)
    adversarial_counts(net, images, labels, (0.03,), steps=3, restarts=2, seed=0)
    assert net.modes_seen and not any(net.modes_seen)
    assert {name: m.training for name, m in net.named_modules()} == before
    assert torch.equal(net.bn.running_mean, running_mean)
    assert all(p.grad is None for p in net.parameters())


def test_deterministic_under_seed_and_seed_matters():
    eps, n = 0.04, 400
    net = ThresholdNet(eps)
    images, labels = torch.full((n, 1, 1, 1), 0.5), torch.zeros(n, dtype=torch.int64)
    run = lambda seed: adversarial_counts(net, images, labels, (eps,), steps=1, restarts=2, seed=seed)
    assert run(3) == run(3)
    assert len({run(seed)[eps_key(eps)] for seed in range(4)}) > 1


def test_eval_mode_context_restores_on_error():
    net = BNDropoutNet()
    net.train()
    with pytest.raises(RuntimeError):
        with EvalMode(net):
            assert not net.bn.training
            raise RuntimeError("boom")
    assert net.bn.training and net.drop.training


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(eps_list=()), ConfigError, "empty"),
    (dict(eps_list=(0.0,)), ConfigError, r"\(0, 1\]"),
    (dict(eps_list=(-0.1,)), ConfigError, r"\(0, 1\]"),
    (dict(eps_list=(float("nan"),)), ConfigError, r"\(0, 1\]"),
    (dict(eps_list=(0.02, 0.020000001)), ConfigError, "distinct"),
    (dict(eps_list="abc"), ConfigError, "numbers"),
    (dict(steps=0), ConfigError, "steps"),
    (dict(restarts=1.5), ConfigError, "restarts"),
    (dict(batch_size=0), ConfigError, "batch_size"),
    (dict(step_size=-1.0), ConfigError, "step_size"),
])
def test_bad_settings(kwargs, error, match):
    net, images, y = margin_data([0.1], [1])
    with pytest.raises(error, match=match):
        adversarial_counts(net, images, y, **kwargs)


def test_bad_data():
    net, images, y = margin_data([0.1, 0.1], [1, 0])
    with pytest.raises(DataError, match="no images"):
        adversarial_counts(net, images[:0], y[:0])
    with pytest.raises(DataError, match="int64"):
        adversarial_counts(net, images, y[:1])
    with pytest.raises(DataError, match="int64"):
        adversarial_counts(net, images, y.float())
    with pytest.raises(DataError, match=r"0\.\.1"):
        adversarial_counts(net, images, torch.tensor([1, 2]))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        adversarial_counts(net, images * 2, y)
    with pytest.raises(DataError, match="4-D"):
        adversarial_counts(net, images[0], y)
    with pytest.raises(DataError, match="uint8 or floating"):
        as_unit_images(torch.zeros(1, 1, 2, 2, dtype=torch.int32))
