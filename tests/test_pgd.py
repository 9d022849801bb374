"""PGD / FGSM attacks and the "pgd" / "fgsm" augmentations."""
from __future__ import annotations

import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from auglabel.augment import AUGMENTATIONS
from auglabel.batch import Batch
from auglabel.errors import ConfigError
from auglabel.functional.pgd import fgsm_attack, pgd_attack

SHAPE = (3, 4, 4)


class LinearNet(nn.Module):
    """logits = W x + b: the L-inf-optimal attack on it is known in closed form."""

    def __init__(self, num_classes: int = 2, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(48, num_classes)

    def forward(self, x, return_features=False):
        features = x.flatten(1)
        logits = self.fc(features)
        return (logits, features) if return_features else logits


class BNNet(nn.Module):
    def __init__(self, num_classes: int = 3):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x, return_features=False):
        features = F.relu(self.bn(self.conv(x))).mean(dim=(2, 3))
        logits = self.fc(features)
        return (logits, features) if return_features else logits


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def data(n: int = 6, num_classes: int = 2, seed: int = 0):
    g = gen(seed)
    return torch.rand(n, *SHAPE, generator=g), torch.randint(0, num_classes, (n,), generator=g)


def linear_optimum(model: LinearNet, images, labels, eps):
    """Two classes: the CE gradient w.r.t. x has the sign of w_other - w_true everywhere."""
    w = model.fc.weight.detach()
    direction = (w[1 - labels] - w[labels]).sign().view_as(images)
    eps = torch.as_tensor(eps).view(-1, 1, 1, 1) if torch.as_tensor(eps).dim() else eps
    return (images + eps * direction).clamp(0, 1)


def per_sample_loss(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


# --- the attack ------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.1, torch.tensor([0.0, 0.02, 0.05, 0.1, 0.3, 0.6])])
def test_pgd_reaches_the_closed_form_optimum_of_a_linear_model(eps):
    model = LinearNet()
    x, y = data()
    x_adv = pgd_attack(model, x, y, eps, steps=10, generator=gen(1))
    torch.testing.assert_close(x_adv, linear_optimum(model, x, y, eps), rtol=0, atol=1e-6)


def test_fgsm_without_random_start_is_classic_fgsm():
    model = LinearNet()
    x, y = data()
    x_adv = fgsm_attack(model, x, y, 0.05, step_size=0.05, random_start=False, generator=None)
    torch.testing.assert_close(x_adv, linear_optimum(model, x, y, 0.05), rtol=0, atol=1e-6)


def test_fgsm_random_start_follows_wong_et_al():
    model, eps = LinearNet(), 0.05
    x, y = data()
    x_adv = fgsm_attack(model, x, y, eps, generator=gen(4))
    start = x + (2 * torch.rand(x.shape, generator=gen(4)) - 1) * eps  # uniform in [-eps, eps]
    direction = linear_optimum(model, x, y, 1.0).sub(x).sign()  # sign(w_other - w_true)
    delta = (start.clamp(0, 1) + 1.25 * eps * direction - x).clamp(-eps, eps)
    torch.testing.assert_close(x_adv, (x + delta).clamp(0, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_pgd_stays_in_per_sample_ball_and_box_and_raises_loss(bn_mode):
    model = BNNet().eval()
    x, y = data(8, num_classes=3)
    eps = torch.tensor([0.0, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5])
    x_adv = pgd_attack(model, x, y, eps, steps=5, generator=gen(2), bn_mode=bn_mode)
    assert x_adv.dtype == x.dtype and not x_adv.requires_grad
    assert bool(((x_adv >= 0) & (x_adv <= 1)).all())
    assert bool(((x_adv - x).abs().flatten(1).amax(1) <= eps + 1e-6).all())
    assert torch.equal(x_adv[0], x[0])
    clean, adv = per_sample_loss(model, x, y), per_sample_loss(model, x_adv, y)
    assert bool((adv[1:] > clean[1:]).all())


def test_pgd_never_touches_parameter_grads_even_under_no_grad():
    model = BNNet()
    x, y = data(4, num_classes=3)
    with torch.no_grad():
        pgd_attack(model, x, y, 0.03, steps=2, generator=gen(0))
    assert all(p.grad is None for p in model.parameters())


def test_attack_mode_is_set_during_and_restored_after():
    model = BNNet()
    seen = []
    model.bn.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    x, y = data(4, num_classes=3)
    model.train()
    pgd_attack(model, x, y, 0.03, steps=2, generator=gen(0), bn_mode="eval")
    assert seen and not any(seen) and model.training and model.bn.training
    seen.clear()
    model.eval()
    pgd_attack(model, x, y, 0.03, steps=2, generator=gen(0), bn_mode="train")
    assert seen and all(seen) and not model.training and not model.bn.training
    model.train()
    model.bn.eval()  # mixed modes (frozen BN) come back exactly
    pgd_attack(model, x, y, 0.03, steps=2, generator=gen(0), bn_mode="train")
    assert model.training and model.conv.training and not model.bn.training


def test_bn_mode_train_updates_running_stats_and_eval_does_not():
    x, y = data(4, num_classes=3)
    model = BNNet()
    before = model.bn.running_mean.clone()
    pgd_attack(model, x, y, 0.03, steps=2, generator=gen(0), bn_mode="eval")
    assert torch.equal(model.bn.running_mean, before)
    pgd_attack(model, x, y, 0.03, steps=2, generator=gen(0), bn_mode="train")
    assert not torch.equal(model.bn.running_mean, before)


def test_pgd_is_deterministic_under_a_seed():
    model = BNNet().eval()
    x, y = data(4, num_classes=3)
    a, b, c = (pgd_attack(model, x, y, 0.1, steps=1, step_size=0.01, generator=gen(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_restarts_keep_first_fooling_else_highest_loss_example():
    model = BNNet().eval()
    x, y = data(16, num_classes=3, seed=3)
    kwargs = dict(steps=2, step_size=0.02)
    g = gen(9)
    candidates = [pgd_attack(model, x, y, 0.08, generator=g, **kwargs) for _ in range(3)]
    combined = pgd_attack(model, x, y, 0.08, restarts=3, generator=gen(9), **kwargs)
    losses = torch.stack([per_sample_loss(model, c, y) for c in candidates])
    with torch.no_grad():
        fooled = torch.stack([model(c).argmax(1) != y for c in candidates])
    chosen = []
    for i in range(16):
        first_fooled = [r for r in range(3) if fooled[r, i]]
        chosen.append(first_fooled[0] if first_fooled else int(losses[:, i].argmax()))
        assert torch.equal(combined[i], candidates[chosen[-1]][i])
    assert len(set(chosen)) > 1  # the selection was exercised, not always restart 0
    assert fooled.any(0).any() and not fooled.any(0).all()


def test_bad_attack_settings_raise():
    model = LinearNet()
    x, y = data(3)
    for kwargs in [dict(eps=-0.1), dict(eps=torch.tensor([0.1, 0.1])), dict(eps=0.1, steps=0),
                   dict(eps=0.1, restarts=0), dict(eps=0.1, bn_mode="frozen"), dict(eps=float("nan"))]:
        with pytest.raises(ConfigError):
            pgd_attack(model, x, y, generator=gen(0), **kwargs)
    with pytest.raises(ValueError, match="Generator"):
        pgd_attack(model, x, y, 0.1, generator=None)


# --- DistributedDataParallel -----------------------------------------------------------------------

def test_attack_on_ddp_model_bypasses_the_wrapper_and_training_continues():
    with tempfile.NamedTemporaryFile() as store_file:
        dist.init_process_group("gloo", store=dist.FileStore(store_file.name, 1), rank=0, world_size=1)
        try:
            model = BNNet()
            ddp = nn.parallel.DistributedDataParallel(model)
            wrapper_calls = []
            ddp.register_forward_pre_hook(lambda module, args: wrapper_calls.append(1))
            optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
            augment = AUGMENTATIONS.build("pgd", eps=0.03, steps=2)
            x, y = data(4, num_classes=3)
            for step in range(2):
                batch = augment(Batch(x, y, torch.arange(4), 3), generator=gen(step), model=ddp)
                assert len(wrapper_calls) == step  # the attack never ran through DDP
                if step == 0:
                    assert all(p.grad is None for p in model.parameters())
                optimizer.zero_grad()
                F.cross_entropy(ddp(batch.inputs), y).backward()
                optimizer.step()
                assert all(p.grad is not None for p in model.parameters())
            assert ddp.training and model.bn.training
        finally:
            dist.destroy_process_group()


# --- augmentations ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["pgd", "fgsm"])
def test_adversarial_augmentation_reports_eps_delta_and_distance(name):
    x, y = data(16, num_classes=3)
    batch = Batch(x, y, torch.arange(16), 3)
    model = BNNet().train()
    aug = AUGMENTATIONS.build(name, eps=0.05, sample_eps=True)
    out = aug(batch, generator=gen(0), model=model)
    eps, delta = out.info["eps"], out.info["delta_linf"]
    assert eps.shape == delta.shape == out.info["distance"].shape == (16,)
    assert bool(((eps >= 0) & (eps <= 0.05)).all()) and eps.unique().numel() == 16
    torch.testing.assert_close(delta, (out.inputs - x).abs().flatten(1).amax(1))
    assert bool((delta <= eps + 1e-6).all())
    torch.testing.assert_close(out.info["distance"], eps / 0.05)
    assert model.training
    again = aug(batch, generator=gen(0), model=model)
    assert torch.equal(again.inputs, out.inputs)


def test_fixed_eps_is_reached_and_distance_is_one():
    x, y = data(4)
    out = AUGMENTATIONS.build("pgd", eps=0.04)(Batch(x, y, torch.arange(4), 2), generator=gen(0), model=LinearNet())
    assert torch.equal(out.info["eps"], torch.full((4,), 0.04))
    torch.testing.assert_close(out.info["delta_linf"], torch.full((4,), 0.04))
    torch.testing.assert_close(out.info["distance"], torch.ones(4))


@pytest.mark.parametrize("name", ["pgd", "fgsm"])
def test_adversarial_augmentation_needs_a_model(name):
    x, y = data(2)
    with pytest.raises(ValueError, match="model"):
        AUGMENTATIONS.build(name)(Batch(x, y, torch.arange(2), 2), generator=gen(0))


@pytest.mark.parametrize("name, params", [
    ("pgd", dict(eps=-0.01)), ("pgd", dict(steps=0)), ("pgd", dict(restarts=0)), ("pgd", dict(step_size=0.0)),
    ("pgd", dict(bn_mode="batch")), ("fgsm", dict(eps=-1.0)), ("fgsm", dict(step_ratio=0)),
    ("pgd", dict(clean_fraction=1.0)), ("fgsm", dict(clean_fraction=-0.1)),
])
def test_adversarial_augmentation_rejects_bad_parameters(name, params):
    with pytest.raises(ConfigError):
        AUGMENTATIONS.build(name, **params)


@pytest.mark.parametrize("name", ["pgd", "fgsm"])
def test_clean_fraction_leaves_that_share_of_random_rows_untouched_and_reports_them(name):
    x, y = data(16, num_classes=3)
    batch = Batch(x, y, torch.arange(16), 3)
    aug = AUGMENTATIONS.build(name, eps=0.05, clean_fraction=0.5)
    out = aug(batch, generator=gen(0), model=BNNet().train())
    clean = out.info["view"] == 0
    assert int(clean.sum()) == 8
    assert torch.equal(out.inputs[clean], x[clean])
    assert bool((out.info["eps"][clean] == 0).all()) and bool((out.info["distance"][clean] == 0).all())
    torch.testing.assert_close(out.info["eps"][~clean], torch.full((8,), 0.05))
    torch.testing.assert_close(out.info["delta_linf"], (out.inputs - x).abs().flatten(1).amax(1))
    assert bool((out.info["delta_linf"][~clean] > 0).all())
    other = aug(batch, generator=gen(1), model=BNNet().train())
    assert not torch.equal(other.info["view"], out.info["view"])  # a fresh random half per draw
