"""AugMix's Jensen-Shannon consistency loss against numpy and closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from auglabel.functional.jsd import jensen_shannon


def numpy_js(*logits: np.ndarray) -> float:
    """1/3 sum_i mean_b sum_k p_i (log p_i - log M), M = clip(mean_i p_i, 1e-7, 1), 0 log 0 = 0."""
    probs = []
    for z in logits:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        probs.append(e / e.sum(axis=1, keepdims=True))
    mixture = np.clip(sum(probs) / len(probs), 1e-7, 1.0)
    total = 0.0
    for p in probs:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * (np.log(p) - np.log(mixture)), 0.0)
        total += terms.sum(axis=1).mean()
    return total / len(probs)


def test_matches_numpy_hand_computation():
    rng = np.random.default_rng(0)
    logits = [rng.normal(0, 2, (7, 5)) for _ in range(3)]
    got = jensen_shannon(*(torch.from_numpy(z) for z in logits))
    assert got.item() == pytest.approx(numpy_js(*logits), rel=1e-10)


def test_clamp_of_the_mixture_matters_for_extreme_logits():
    # Classes with probability ~exp(-200) in every view: M is clamped to 1e-7 there.
    z = np.array([[0.0, 1.0, -200.0], [3.0, 0.0, -200.0]])
    logits = [z, z[:, [1, 0, 2]], z + np.array([[0.0, 2.0, 0.0]])]
    got = jensen_shannon(*(torch.from_numpy(v) for v in logits))
    assert got.item() == pytest.approx(numpy_js(*logits), rel=1e-10)


def test_zero_for_identical_views():
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    assert jensen_shannon(z, z.clone(), z + 5.0).item() == pytest.approx(0.0, abs=1e-7)  # softmax shift-invariant


def test_three_confident_disjoint_views_give_log3():
    # p_i = e_i  ->  M = (1/3, 1/3, 1/3), KL(e_i || M) = log 3 for each view.
    z = torch.eye(3, dtype=torch.float64) * 100.0
    got = jensen_shannon(z[[0]], z[[1]], z[[2]])
    assert got.item() == pytest.approx(math.log(3.0), rel=1e-9)


def test_symmetric_nonnegative_bounded_and_differentiable():
    gen = torch.Generator().manual_seed(2)
    a, b, c = (torch.randn(5, 10, generator=gen, requires_grad=True) for _ in range(3))
    js = jensen_shannon(a, b, c)
    assert js.item() == pytest.approx(jensen_shannon(c, a, b).item(), rel=1e-6)
    assert 0.0 < js.item() <= math.log(3.0)
    js.backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (a, b, c))


@pytest.mark.parametrize("shapes", [((4, 3), (4, 3), (5, 3)), ((4, 3), (4, 2), (4, 3)), ((4,), (4,), (4,))])
def test_bad_shapes_raise(shapes):
    with pytest.raises(ValueError, match="jensen_shannon"):
        jensen_shannon(*(torch.zeros(s) for s in shapes))
