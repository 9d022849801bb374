"""CutMix: boxes, exact kept-area gamma, pasted pixels, and the mixup label on CutMix batches."""
from __future__ import annotations

import pytest
import torch

from auglabel.augment import AUGMENTATIONS
from auglabel.batch import Batch
from auglabel.errors import ConfigError
from auglabel.functional.mixup import cutmix_boxes
from auglabel.labels import LABEL_STRATEGIES


def make_batch(n: int, size: int = 8, num_classes: int = 4, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    # continuous random pixels: a pasted pixel differs from the own pixel with probability 1
    return Batch(
        inputs=torch.rand(n, 3, size, size + 2, generator=g),
        labels=torch.randint(0, num_classes, (n,), generator=g),
        index=torch.arange(n),
        num_classes=num_classes,
    )


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n", [2, 5, 16])
def test_pasted_area_fraction_equals_one_minus_gamma_exactly(n):
    batch = make_batch(n)
    out = AUGMENTATIONS.build("cutmix", beta=1.0)(batch, generator=gen(n))
    changed = (out.inputs != batch.inputs).any(dim=1)  # observed pasted pixels, (N, H, W)
    pixels = changed[0].numel()
    pasted = changed.flatten(1).sum(1)
    gamma = out.info["gamma"]
    assert torch.equal(torch.round((1 - gamma.double()) * pixels).long(), pasted)
    torch.testing.assert_close(gamma.double(), 1 - pasted.double() / pixels, rtol=0, atol=1e-7)
    torch.testing.assert_close(out.info["distance"], 1 - gamma)


def test_pasted_region_is_the_reported_box_filled_from_the_partner():
    batch = make_batch(6)
    out = AUGMENTATIONS.build("cutmix")(batch, generator=gen(3))
    partner = out.info["partner"]
    assert torch.equal(out.info["partner_label"], batch.labels[partner])
    for i, (top, bottom, left, right) in enumerate(out.info["box"].tolist()):
        j = int(partner[i])
        assert j != i
        expected = batch.inputs[i].clone()
        expected[:, top:bottom, left:right] = batch.inputs[j, :, top:bottom, left:right]
        assert torch.equal(out.inputs[i], expected)


def test_unclipped_boxes_follow_yun_et_al_side_lengths():
    # H = W = 10, area gamma 0.5: side ratio sqrt(0.5) = 0.707 -> cut floor(7.07) = 7 -> half 3 -> side 6
    area_gamma = torch.full((400,), 0.5)
    top, bottom, left, right = cutmix_boxes(area_gamma, 10, 10, generator=gen(0))
    inside = (top > 0) & (bottom < 10) & (left > 0) & (right < 10)
    assert inside.any() and (~inside).any()
    assert bool(((bottom - top)[inside] == 6).all()) and bool(((right - left)[inside] == 6).all())
    assert bool(((bottom - top) <= 6).all()) and bool(((right - left) <= 6).all())


def test_gammas_differ_per_sample_and_runs_are_deterministic():
    batch = make_batch(12, size=16)
    aug = AUGMENTATIONS.build("cutmix", beta=1.0)
    a, b, c = (aug(batch, generator=gen(s)) for s in (5, 5, 6))
    assert a.info["gamma"].unique().numel() > 6
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.info["box"], b.info["box"])
    assert not torch.equal(a.info["box"], c.info["box"])


@pytest.mark.parametrize("n", [1, 3])
def test_odd_and_single_sample_batches(n):
    batch = make_batch(n)
    out = AUGMENTATIONS.build("cutmix")(batch, generator=gen(1))
    assert out.inputs.shape == batch.inputs.shape
    if n == 1:  # pairs with itself: pixels unchanged
        assert torch.equal(out.inputs, batch.inputs)
        assert out.info["partner"].tolist() == [0]


def test_mixup_label_strategy_gives_area_proportional_cutmix_targets():
    batch = make_batch(8)
    out = AUGMENTATIONS.build("cutmix")(batch, generator=gen(2))
    targets = LABEL_STRATEGIES.build("mixup").targets(torch.zeros(8, 4), out)
    torch.testing.assert_close(targets.sum(1), torch.ones(8))
    gamma = out.info["gamma"]
    for i in range(8):
        expected = torch.zeros(4)
        expected[out.labels[i]] += gamma[i]
        expected[out.info["partner_label"][i]] += 1 - gamma[i]
        torch.testing.assert_close(targets[i], expected)


@pytest.mark.parametrize("beta", [0.0, -2.0, float("nan")])
def test_cutmix_rejects_bad_beta(beta):
    with pytest.raises(ConfigError, match="beta"):
        AUGMENTATIONS.build("cutmix", beta=beta)
