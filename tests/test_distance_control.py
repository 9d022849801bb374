"""mixup, CutMix, PGD and FGSM applied at a GIVEN distance (AutoLabel's validation sets Q(S_n),
METHODS.md sec. 5), checked against independent recomputations, then end to end with AutoLabel."""
from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auglabel.augment import AUGMENTATIONS
from auglabel.batch import Batch

DISTANCES = torch.tensor([0.0, 0.05, 0.2, 0.35, 0.5, 0.5001, 0.7, 0.9, 0.999, 1.0])


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_batch(n: int = len(DISTANCES), shape=(3, 7, 10), num_classes: int = 5, seed: int = 0) -> Batch:
    g = gen(seed)
    # continuous random pixels: a pasted pixel differs from the own pixel with probability 1
    return Batch(torch.rand(n, *shape, generator=g), torch.randint(0, num_classes, (n,), generator=g),
                 torch.arange(n), num_classes)


class LinearNet(nn.Module):
    """Two-class linear model: the L-inf-optimal attack is ``x + eps * sign(w_other - w_true)``."""

    def __init__(self, in_features: int = 3 * 7 * 10):
        super().__init__()
        self.fc = nn.Linear(in_features, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(2, in_features, generator=gen(1)))

    def forward(self, x, return_features=False):
        logits = self.fc(x.flatten(1))
        return (logits, x.flatten(1)) if return_features else logits


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def apply(name: str, batch: Batch, distance: torch.Tensor, seed: int = 0, model=None, **params) -> Batch:
    return AUGMENTATIONS.build(name, **params).apply_at_distance(batch, distance, generator=gen(seed), model=model)


@pytest.mark.parametrize("name", ["mixup", "cutmix", "pgd", "fgsm"])
def test_distance_control_is_supported(name):
    augment = AUGMENTATIONS.build(name)
    assert augment.supports_distance_control() and augment.reports_distance


# --- mixup ------------------------------------------------------------------------------------

def test_mixup_at_distance_is_partner_dominated_blend_with_partner_labels():
    batch = make_batch()
    out = apply("mixup", batch, DISTANCES)
    partner = out.info["partner"]
    assert torch.equal(out.info["distance"], DISTANCES)
    assert sorted(partner.tolist()) == list(range(len(batch))) and bool((partner != torch.arange(len(batch))).all())
    for i, d in enumerate(DISTANCES.tolist()):  # per-sample recomputation with gamma' = d / 2
        own_weight = d / 2
        expected = own_weight * batch.inputs[i] + (1 - own_weight) * batch.inputs[int(partner[i])]
        torch.testing.assert_close(out.inputs[i], expected)
    torch.testing.assert_close(out.info["gamma"], DISTANCES / 2)
    assert bool((out.info["gamma"] <= 0.5).all())
    assert torch.equal(out.labels, batch.labels[partner]) and torch.equal(out.info["partner_label"], out.labels)
    assert torch.equal(out.info["own_label"], batch.labels) and torch.equal(out.index, batch.index)


def test_mixup_forward_still_reports_its_own_sampled_distance():
    batch = make_batch(16)
    out = AUGMENTATIONS.build("mixup")(batch, generator=gen(0))
    gamma = out.info["gamma"]
    torch.testing.assert_close(out.info["distance"], 2 * torch.minimum(gamma, 1 - gamma))
    assert torch.equal(out.labels, batch.labels)  # training batches keep the own labels


# --- CutMix -----------------------------------------------------------------------------------

def best_box_error(target_pixels: float, height: int, width: int) -> float:
    """Brute force over every integer box: the smallest achievable |area - target| in pixels."""
    return min(abs(h * w - target_pixels) for h in range(height + 1) for w in range(width + 1))


@pytest.mark.parametrize("shape", [(3, 7, 10), (1, 8, 8), (3, 32, 32)])
def test_cutmix_pastes_the_requested_area_from_the_partner(shape):
    distance = torch.cat([DISTANCES, torch.rand(22, generator=gen(9))])
    batch = make_batch(len(distance), shape=shape)
    out = apply("cutmix", batch, distance)
    _, height, width = shape
    pixels = height * width
    changed = (out.inputs != batch.inputs).any(dim=1).flatten(1).sum(1)  # observed pasted pixels
    achieved = out.info["distance"].double()
    torch.testing.assert_close(achieved, changed.double() / pixels, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.info["gamma"], 1 - out.info["distance"])
    partner = out.info["partner"]
    for i, (top, bottom, left, right) in enumerate(out.info["box"].tolist()):
        assert 0 <= top <= bottom <= height and 0 <= left <= right <= width  # inside: never clipped
        expected = batch.inputs[i].clone()
        expected[:, top:bottom, left:right] = batch.inputs[int(partner[i]), :, top:bottom, left:right]
        assert torch.equal(out.inputs[i], expected)
        target = float(distance[i]) * pixels
        error = abs(float(changed[i]) - target)
        assert error <= max(bottom - top, right - left) / 2 + 1e-6  # within half a box row/column
        assert error == pytest.approx(best_box_error(target, height, width), abs=1e-6)  # and optimal
    dominant = torch.where(changed * 2 > pixels, batch.labels[partner], batch.labels)
    assert torch.equal(out.labels, dominant) and torch.equal(out.info["own_label"], batch.labels)


def test_cutmix_extremes_and_boxes_of_near_square_shape():
    batch = make_batch(3, shape=(3, 8, 8))
    out = apply("cutmix", batch, torch.tensor([0.0, 1.0, 0.25]))
    partner = out.info["partner"]
    assert torch.equal(out.inputs[0], batch.inputs[0]) and out.labels[0] == batch.labels[0]
    assert torch.equal(out.inputs[1], batch.inputs[partner[1]]) and out.labels[1] == batch.labels[partner[1]]
    top, bottom, left, right = out.info["box"][2].tolist()
    assert (bottom - top, right - left) == (4, 4)  # 16 pixels: the square, not 2 x 8


def test_cutmix_box_positions_vary_per_sample():
    out = apply("cutmix", make_batch(40, shape=(3, 16, 16)), torch.full((40,), 0.25))
    assert torch.equal(out.info["distance"], torch.full((40,), 0.25))
    assert out.info["box"][:, [0, 2]].unique(dim=0).shape[0] > 20


# --- PGD / FGSM -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["pgd", "fgsm"])
def test_adversarial_budget_scales_with_distance(name):
    batch = make_batch(num_classes=2)
    eps_max = 0.1
    params = {"steps": 3} if name == "pgd" else {}
    out = apply(name, batch, DISTANCES, model=LinearNet(), eps=eps_max, **params)
    assert torch.equal(out.info["distance"], DISTANCES) and torch.equal(out.labels, batch.labels)
    torch.testing.assert_close(out.info["eps"], DISTANCES * eps_max)
    delta = (out.inputs - batch.inputs).abs().flatten(1).amax(1)
    torch.testing.assert_close(out.info["delta_linf"], delta)
    assert bool((delta <= DISTANCES * eps_max + 1e-6).all())
    assert delta[0].item() <= 1e-7  # distance 0: the clean image
    assert bool((delta[1:] > 0).all())


def test_pgd_at_distance_reaches_the_linear_optimum_with_eps_scaled_by_distance():
    batch = make_batch(num_classes=2)
    model, eps_max = LinearNet(), 0.08
    out = apply("pgd", batch, DISTANCES, model=model, eps=eps_max, steps=10)
    w, y = model.fc.weight.detach(), batch.labels
    direction = (w[1 - y] - w[y]).sign().view_as(batch.inputs)
    expected = (batch.inputs + (DISTANCES * eps_max).view(-1, 1, 1, 1) * direction).clamp(0, 1)
    torch.testing.assert_close(out.inputs, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["pgd", "fgsm"])
def test_validation_attack_never_touches_batchnorm_statistics(name):
    model = BNNet().train()
    before = model.bn.running_mean.clone()
    batch = make_batch(8, num_classes=2)
    apply(name, batch, torch.full((8,), 0.5), model=model, eps=0.05, bn_mode="train")
    assert torch.equal(model.bn.running_mean, before) and model.training and model.bn.training


@pytest.mark.parametrize("name", ["pgd", "fgsm"])
def test_adversarial_at_distance_needs_a_model(name):
    with pytest.raises(ValueError, match="model"):
        apply(name, make_batch(), DISTANCES)


# --- all four: determinism and bad input ---------------------------------------------------------

@pytest.mark.parametrize("name", ["mixup", "cutmix", "pgd", "fgsm"])
def test_deterministic_under_a_seed(name):
    batch = make_batch(num_classes=2)
    model = LinearNet() if name in ("pgd", "fgsm") else None
    # a short step keeps PGD's random start visible (long steps all reach the linear optimum)
    params = {"steps": 1, "step_size": 0.002} if name == "pgd" else {}
    a, b, c = (apply(name, batch, DISTANCES, seed=s, model=model, **params) for s in (3, 3, 4))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.inputs, c.inputs)


@pytest.mark.parametrize("name", ["mixup", "cutmix", "pgd", "fgsm"])
@pytest.mark.parametrize("distance", [torch.full((4,), 1.5), torch.tensor([0.1, -0.1, 0.2, 0.3]),
                                      torch.tensor([0.1, float("nan"), 0.2, 0.3]), torch.full((3,), 0.5), 0.5])
def test_bad_distance_is_rejected(name, distance):
    with pytest.raises(ValueError, match="distance"):
        apply(name, make_batch(4, num_classes=2), distance, model=LinearNet())


# --- end to end with AutoLabel ------------------------------------------------------------------

def rows_of_epoch(rows: list[dict], epoch: int) -> dict[str, torch.Tensor]:
    chosen = [r for r in rows if int(r["epoch"]) == epoch]
    return {key: torch.tensor([float(r[key]) for r in chosen], dtype=torch.float64)
            for key in ("t", "val_count", "val_accuracy", "val_confidence", "val_ece")}


# beta = 0.2 trains on near-clean images and eps = 0.3 is a large budget on digits, so the model
# is over-confident on the far buckets of Q(S_n) after 2 epochs (checked for seeds 0, 1, 2).
@pytest.mark.parametrize("augment", [("mixup", {"beta": 0.2}), ("pgd", {"eps": 0.3, "sample_eps": True, "steps": 2})])
def test_autolabel_learns_values_from_distance_controlled_validation_sets(digits_config, tmp_path, augment):
    from auglabel.engine.config import ComponentConfig
    from auglabel.engine.trainer import Trainer

    cfg = digits_config(epochs=2, batch_size=32, threads=1)  # tiny convs: a second thread only contends
    cfg.model = ComponentConfig("small_cnn", {"width": 16})
    cfg.optim.lr, cfg.optim.warmup_epochs = 0.2, 0.0
    cfg.augment = ComponentConfig(*augment)
    cfg.labels = ComponentConfig("autolabel", {"num_buckets": 4, "alpha": 1.0})
    threads = torch.get_num_threads()
    try:
        trainer = Trainer(cfg, tmp_path / "run", progress=False)
        trainer.fit()
    finally:
        torch.set_num_threads(threads)  # the trainer sets it process-wide
    with (tmp_path / "run" / "autolabel.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1] * 4 + [2] * 4
    first, second = rows_of_epoch(rows, 1), rows_of_epoch(rows, 2)
    assert bool((second["val_count"] > 0).all())
    # the logged statistics drive the logged values: t <- clip(t - ECE * sign(Conf - Acc), Acc, 1)
    expected = (first["t"] - second["val_ece"] * torch.sign(second["val_confidence"] - second["val_accuracy"]))
    expected = torch.minimum(torch.maximum(expected, second["val_accuracy"]), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(second["t"], expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(second["t"].float(), trainer.step.labels.values.flatten())
    assert second["t"].min() < 1.0
    # nearest bucket: mixup's counted class is the partner (weight >= 0.875), PGD's the true one;
    # counting the own class under mixup would give about 1/10 accuracy here
    assert second["val_accuracy"][0] > 0.7
    assert second["val_accuracy"][0] > second["val_accuracy"][-1]
