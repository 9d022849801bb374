"""mixup augmentation, Beta sampling, and the "mixup" / "feature_mixup" label strategies."""
from __future__ import annotations


import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from auglabel.augment import AUGMENTATIONS
from auglabel.batch import Batch
from auglabel.errors import ConfigError
from auglabel.functional.mixup import random_partners, sample_beta
from auglabel.labels import LABEL_STRATEGIES


def make_batch(n: int = 8, num_classes: int = 5, seed: int = 0, size: int = 4) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        inputs=torch.rand(n, 3, size, size, generator=g),
        labels=torch.randint(0, num_classes, (n,), generator=g),
        index=torch.arange(n),
        num_classes=num_classes,
    )


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- Beta sampling --------------------------------------------------------------------------

@pytest.mark.parametrize("a, b", [(0.2, 0.2), (0.5, 0.5), (1.0, 1.0), (2.0, 2.0), (0.5, 3.0), (4.0, 0.7)])
def test_sample_beta_matches_scipy_beta_by_ks_test(a, b):
    # float64 so that values within 1e-8 of 1 are not rounded to 1.0 (a KS artefact, not a bias)
    samples = sample_beta(a, b, 20000, generator=gen(1), dtype=torch.float64)
    assert samples.dtype == torch.float64 and samples.shape == (20000,)
    assert bool(((samples >= 0) & (samples <= 1)).all())
    assert scipy.stats.kstest(samples.numpy(), scipy.stats.beta(a, b).cdf).pvalue > 0.01


def test_ks_test_has_power_against_a_slightly_wrong_beta():
    samples = sample_beta(1.0, 1.0, 20000, generator=gen(1), dtype=torch.float64)
    assert scipy.stats.kstest(samples.numpy(), scipy.stats.beta(1.2, 1.2).cdf).pvalue < 1e-4


def test_sample_beta_small_concentration_stays_finite():
    samples = sample_beta(0.05, 0.05, 5000, generator=gen(2))
    assert bool(torch.isfinite(samples).all())
    # Beta(0.05, 0.05) puts most mass near the ends; the mean is 1/2 by symmetry.
    assert abs(samples.mean().item() - 0.5) < 0.03
    assert ((samples < 0.01) | (samples > 0.99)).float().mean() > 0.6


def test_sample_beta_is_deterministic_under_a_seed():
    assert torch.equal(sample_beta(0.4, 0.4, 100, generator=gen(3)), sample_beta(0.4, 0.4, 100, generator=gen(3)))
    assert not torch.equal(sample_beta(0.4, 0.4, 100, generator=gen(3)), sample_beta(0.4, 0.4, 100, generator=gen(4)))


@pytest.mark.parametrize("a, b", [(0.0, 1.0), (1.0, -1.0)])
def test_sample_beta_rejects_nonpositive_concentrations(a, b):
    with pytest.raises(ValueError):
        sample_beta(a, b, 3, generator=gen(0))


# --- partners ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 7, 10])
def test_partners_form_a_permutation_without_fixed_points(n):
    partner = random_partners(n, generator=gen(n), device=torch.device("cpu"))
    assert partner.dtype == torch.int64
    assert sorted(partner.tolist()) == list(range(n))
    assert bool((partner != torch.arange(n)).all())


def test_partner_is_uniform_over_the_other_rows():
    n, draws = 4, 3000
    g = gen(5)
    counts = np.zeros((n, n))
    for _ in range(draws):
        counts[np.arange(n), random_partners(n, generator=g, device=torch.device("cpu")).numpy()] += 1
    assert np.all(np.diag(counts) == 0)
    off_diagonal = counts[~np.eye(n, dtype=bool)].reshape(n, n - 1)
    for row in off_diagonal:  # each row: uniform over the n - 1 other samples
        assert scipy.stats.chisquare(row).pvalue > 0.001


def test_single_sample_is_its_own_partner():
    assert random_partners(1, generator=gen(0), device=torch.device("cpu")).tolist() == [0]


# --- mixup augmentation -----------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 7, 8])
def test_mixed_inputs_equal_the_reported_convex_combination(n):
    batch = make_batch(n)
    out = AUGMENTATIONS.build("mixup", beta=1.0)(batch, generator=gen(11))
    gamma, partner = out.info["gamma"], out.info["partner"]
    assert gamma.shape == (n,) and partner.shape == (n,) and partner.dtype == torch.int64
    for i in range(n):  # independent per-sample recomputation
        j = int(partner[i])
        expected = gamma[i] * batch.inputs[i] + (1 - gamma[i]) * batch.inputs[j]
        torch.testing.assert_close(out.inputs[i], expected)
    assert torch.equal(out.info["partner_label"], batch.labels[partner])
    torch.testing.assert_close(out.info["distance"], 2 * torch.minimum(gamma, 1 - gamma))
    assert bool(((out.info["distance"] >= 0) & (out.info["distance"] <= 1)).all())
    assert torch.equal(out.labels, batch.labels) and torch.equal(out.index, batch.index)


def test_single_sample_batch_is_unchanged_but_reported():
    batch = make_batch(1)
    out = AUGMENTATIONS.build("mixup")(batch, generator=gen(0))
    torch.testing.assert_close(out.inputs, batch.inputs)
    assert out.info["partner"].tolist() == [0]


def test_gammas_differ_per_sample_or_are_shared_per_batch():
    batch = make_batch(16)
    per_sample = AUGMENTATIONS.build("mixup", beta=1.0)(batch, generator=gen(1)).info["gamma"]
    assert per_sample.unique().numel() == 16
    shared = AUGMENTATIONS.build("mixup", beta=1.0, per_sample=False)(batch, generator=gen(1)).info["gamma"]
    assert shared.shape == (16,) and shared.unique().numel() == 1


def test_augmentation_gamma_follows_beta_distribution():
    batch = make_batch(4000, size=1)
    gamma = AUGMENTATIONS.build("mixup", beta=2.0)(batch, generator=gen(7)).info["gamma"]
    assert scipy.stats.kstest(gamma.double().numpy(), scipy.stats.beta(2.0, 2.0).cdf).pvalue > 0.01


def test_mixup_is_deterministic_under_a_seed():
    batch = make_batch(9)
    aug = AUGMENTATIONS.build("mixup", beta=0.5)
    a, b, c = (aug(batch, generator=gen(s)) for s in (3, 3, 4))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.info["partner"], b.info["partner"])
    assert not torch.equal(a.info["gamma"], c.info["gamma"])


@pytest.mark.parametrize("beta", [0, -1.0, float("nan"), float("inf"), "1"])
def test_mixup_rejects_bad_beta(beta):
    with pytest.raises(ConfigError, match="beta"):
        AUGMENTATIONS.build("mixup", beta=beta)


def test_unknown_parameter_is_a_config_error():
    with pytest.raises(ConfigError):
        AUGMENTATIONS.build("mixup", alpha=1.0)


# --- label strategies ----------------------------------------------------------------------------

def hand_batch() -> Batch:
    return Batch(
        inputs=torch.zeros(3, 1, 2, 2),
        labels=torch.tensor([0, 1, 2]),
        index=torch.arange(3),
        num_classes=3,
        info={"gamma": torch.tensor([0.7, 0.4, 0.5]), "partner_label": torch.tensor([1, 1, 0])},
    )


def test_mixup_targets_match_hand_computation():
    targets = LABEL_STRATEGIES.build("mixup").targets(torch.zeros(3, 3), hand_batch())
    expected = torch.tensor([[0.7, 0.3, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    torch.testing.assert_close(targets, expected)


def test_feature_mixup_takes_the_dominant_hard_label_and_own_label_on_ties():
    targets = LABEL_STRATEGIES.build("feature_mixup").targets(torch.zeros(3, 3), hand_batch())
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.equal(targets, expected)


def test_mixup_loss_is_the_gamma_weighted_cross_entropy_of_both_labels():
    batch = make_batch(7, num_classes=4)
    out = AUGMENTATIONS.build("mixup")(batch, generator=gen(2))
    logits = torch.randn(7, 4, generator=gen(3))
    strategy = LABEL_STRATEGIES.build("mixup")
    targets = strategy.targets(logits, out)
    torch.testing.assert_close(targets.sum(1), torch.ones(7))
    gamma = out.info["gamma"]
    expected = (gamma * F.cross_entropy(logits, out.labels, reduction="none")
                + (1 - gamma) * F.cross_entropy(logits, out.info["partner_label"], reduction="none")).mean()
    torch.testing.assert_close(strategy.loss(logits, out), expected)


@pytest.mark.parametrize("name", ["mixup", "feature_mixup"])
def test_label_strategies_declare_and_check_required_info(name):
    strategy = LABEL_STRATEGIES.build(name)
    assert set(strategy.requires_info) == {"gamma", "partner_label"}
    with pytest.raises(ConfigError, match="gamma"):
        strategy.targets(torch.zeros(4, 5), make_batch(4))
