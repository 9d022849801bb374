"""CCAT targets (Stutz et al. 2020): power transition from one-hot to uniform."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auglabel.augment import AUGMENTATIONS
from auglabel.batch import Batch
from auglabel.errors import ConfigError
from auglabel.labels import LABEL_STRATEGIES
from auglabel.labels.ccat import ccat_lambda


def adversarial_batch(delta, eps, labels=None, num_classes: int = 4) -> Batch:
    delta = torch.as_tensor(delta, dtype=torch.float32)
    n = delta.shape[0]
    labels = torch.zeros(n, dtype=torch.int64) if labels is None else torch.as_tensor(labels)
    return Batch(torch.zeros(n, 1, 2, 2), labels, torch.arange(n), num_classes,
                 info={"delta_linf": delta, "eps": torch.as_tensor(eps, dtype=torch.float32).expand(n)})


def test_lambda_endpoints_and_hand_worked_values():
    eps = 0.04
    delta = torch.tensor([0.0, 0.01, 0.02, 0.04, 0.08])
    lam = ccat_lambda(delta, eps, rho=10)
    expected = torch.tensor([0.0, 1 - 0.75**10, 1 - 0.5**10, 1.0, 1.0])  # 1 - 0.75^10 = 0.943686...
    torch.testing.assert_close(lam, expected)
    assert abs(lam[1].item() - 0.9436864853) < 1e-6 and abs(lam[2].item() - 1023 / 1024) < 1e-6


def test_lambda_is_monotone_in_the_perturbation():
    lam = ccat_lambda(torch.linspace(0, 0.06, 200), 0.03, rho=10)
    assert bool((lam[1:] >= lam[:-1]).all()) and lam[0] == 0 and lam[-1] == 1


def test_zero_budget_means_clean_one_hot():
    assert ccat_lambda(torch.zeros(3), torch.zeros(3), rho=10).tolist() == [0.0, 0.0, 0.0]


def test_targets_go_from_one_hot_to_uniform():
    strategy = LABEL_STRATEGIES.build("ccat")
    batch = adversarial_batch([0.0, 0.02, 0.04], 0.04, labels=[2, 1, 0])
    targets = strategy.targets(torch.zeros(3, 4), batch)
    lam = 1 - 0.5**10
    expected = torch.tensor([
        [0.0, 0.0, 1.0, 0.0],
        [lam / 4, 1 - lam + lam / 4, lam / 4, lam / 4],
        [0.25, 0.25, 0.25, 0.25],
    ])
    torch.testing.assert_close(targets, expected)
    torch.testing.assert_close(targets.sum(1), torch.ones(3))


def test_fixed_reference_eps_overrides_the_per_sample_budget():
    strategy = LABEL_STRATEGIES.build("ccat", rho=2.0, eps=0.04)
    assert strategy.requires_info == ("delta_linf",)
    batch = adversarial_batch([0.01], 0.01)  # per-sample budget 0.01 would give lam = 1
    torch.testing.assert_close(strategy.smoothing(batch), torch.tensor([1 - 0.75**2]))


def test_loss_is_soft_cross_entropy_to_the_ccat_target():
    strategy = LABEL_STRATEGIES.build("ccat", rho=10)
    batch = adversarial_batch([0.0, 0.03], 0.04, labels=[3, 1])
    logits = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    lam = torch.tensor([0.0, 1 - 0.25**10])
    expected = (1 - lam) * F.cross_entropy(logits, batch.labels, reduction="none") \
        + lam * (-F.log_softmax(logits, 1).mean(1))
    torch.testing.assert_close(strategy.loss(logits, batch), expected.mean())


def test_ccat_on_pgd_batches_gives_near_uniform_labels_at_the_budget():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.rand(5, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    batch = Batch(x, torch.tensor([0, 1, 2, 0, 1]), torch.arange(5), 3)
    out = AUGMENTATIONS.build("pgd", eps=0.03, steps=4)(batch, generator=torch.Generator().manual_seed(2), model=model)
    targets = LABEL_STRATEGIES.build("ccat").targets(torch.zeros(5, 3), out)
    torch.testing.assert_close(targets, torch.full((5, 3), 1 / 3), atol=1e-4, rtol=0)


def test_missing_info_and_bad_parameters_raise():
    with pytest.raises(ConfigError, match="delta_linf"):
        LABEL_STRATEGIES.build("ccat").targets(torch.zeros(1, 4), Batch(torch.zeros(1, 1, 2, 2),
                                                                         torch.zeros(1, dtype=torch.int64),
                                                                         torch.arange(1), 4))
    for params in [dict(rho=0), dict(rho=-1.0), dict(rho=float("inf")), dict(eps=0.0), dict(eps=-0.1)]:
        with pytest.raises(ConfigError):
            LABEL_STRATEGIES.build("ccat", **params)
