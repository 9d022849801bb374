"""Implicit hypergradients against exact solves (float64, tiny problems): the Neumann series against explicit
matrix powers and ``torch.linalg.solve``; eq. 5 against an explicit Hessian (``torch.autograd.functional.hessian``)
and against finite differences of the validation loss after the inner problem is solved to convergence; the path
through the warp and the body against finite differences of ``dL/dtheta . p``."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auglabel.augment.autodo import AutoDOAugment
from auglabel.batch import Batch
from auglabel.engine.step import ComponentSpec
from auglabel.functional.hypergradient import implicit_hypergradient, neumann_inverse_hvp
from auglabel.labels.autodo import loss_weights, symmetric_kl


@pytest.fixture(autouse=True)
def float64():
    """Every test here computes in float64 (restored afterwards)."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def _spd(n, generator, low=0.5, high=3.0):
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator))
    eig = torch.linspace(low, high, n)
    return q @ torch.diag(eig) @ q.T


def test_neumann_series_equals_explicit_matrix_powers_and_converges_to_the_solve():
    g = torch.Generator().manual_seed(0)
    a = _spd(10, g)
    w = torch.randn(2, 3, generator=g, requires_grad=True)
    b = torch.randn(4, generator=g, requires_grad=True)
    c = torch.randn(10, generator=g)
    theta = torch.cat([w.reshape(-1), b])
    loss = 0.5 * theta @ a @ theta + c @ theta
    grads = torch.autograd.grad(loss, [w, b], create_graph=True)
    v = torch.randn(10, generator=g)
    vector = [v[:6].view(2, 3), v[6:]]
    alpha, steps = 0.2, 5
    p, growth = neumann_inverse_hvp(grads, [w, b], vector, steps=steps, alpha=alpha)
    m = torch.eye(10) - alpha * a
    expected = alpha * sum(torch.linalg.matrix_power(m, j) @ v for j in range(steps + 1))
    torch.testing.assert_close(torch.cat([p[0].reshape(-1), p[1]]), expected, rtol=1e-10, atol=1e-12)
    assert float(growth) == pytest.approx(float((torch.linalg.matrix_power(m, steps) @ v).norm() / v.norm()))
    assert growth < 1
    p_long, _ = neumann_inverse_hvp(grads, [w, b], vector, steps=400, alpha=1 / 3.0)
    torch.testing.assert_close(torch.cat([p_long[0].reshape(-1), p_long[1]]), torch.linalg.solve(a, v),
                               rtol=1e-8, atol=1e-10)
    _, diverging = neumann_inverse_hvp(grads, [w, b], vector, steps=5, alpha=1.0)  # alpha * 3 > 2
    assert diverging > 1


def _problem(seed=0, n=12, d=3, k=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = torch.randint(0, k, (n,), generator=g)
    xv = torch.randn(8, d, generator=g)
    yv = torch.randint(0, k, (8,), generator=g)
    lam_w = (0.3 * torch.randn(n, 1, generator=g)).requires_grad_()
    lam_s = (2.0 * F.one_hot(y, k) + 0.3 * torch.randn(n, k, generator=g)).requires_grad_()
    return x, y, xv, yv, lam_w, lam_s


def _train_loss(theta_flat, x, lam_w, lam_s, symmetric, mu=0.1, k=3):
    d = x.shape[1]
    w, b = theta_flat[:k * d].view(k, d), theta_flat[k * d:]
    logits = x @ w.T + b
    per = symmetric_kl(logits, lam_s, symmetric)
    return (loss_weights(lam_w) * per).mean() + 0.5 * mu * theta_flat.pow(2).sum()


def _val_loss(theta_flat, xv, yv, k=3):
    d = xv.shape[1]
    return F.cross_entropy(xv @ theta_flat[:k * d].view(k, d).T + theta_flat[k * d:], yv)


def _ours(theta_flat, x, xv, yv, lam_w, lam_s, symmetric, steps, alpha, k=3):
    d = x.shape[1]
    w = theta_flat[:k * d].view(k, d).clone().requires_grad_()
    b = theta_flat[k * d:].clone().requires_grad_()
    flat = torch.cat([w.reshape(-1), b])
    v = torch.autograd.grad(_val_loss(flat, xv, yv), [w, b])
    loss = _train_loss(flat, x, lam_w, lam_s, symmetric)
    grads, _ = implicit_hypergradient(loss, [w, b], v, [lam_w, lam_s], steps=steps, alpha=alpha)
    return grads


@pytest.mark.parametrize("symmetric", [True, False])
def test_hypergradient_equals_the_explicit_hessian_formula(symmetric):
    """eq. 5 with H from torch.autograd.functional.hessian and the mixed derivative from its jacobian."""
    x, y, xv, yv, lam_w, lam_s = _problem()
    theta = torch.randn(12, generator=torch.Generator().manual_seed(1)) * 0.3
    hess = torch.autograd.functional.hessian(lambda t: _train_loss(t, x, lam_w.detach(), lam_s.detach(), symmetric), theta)
    assert torch.linalg.eigvalsh(hess).min() > 0
    v = torch.autograd.functional.jacobian(lambda t: _val_loss(t, xv, yv), theta)

    def grad_theta(lw, ls):
        return torch.autograd.functional.jacobian(lambda t: _train_loss(t, x, lw, ls, symmetric), theta, create_graph=True)

    mixed_w, mixed_s = torch.autograd.functional.jacobian(grad_theta, (lam_w.detach(), lam_s.detach()))
    exact_p = torch.linalg.solve(hess, v)
    exact_w = -torch.einsum("t,t...->...", exact_p, mixed_w)
    exact_s = -torch.einsum("t,t...->...", exact_p, mixed_s)
    alpha = 1.0 / float(torch.linalg.eigvalsh(hess).max())
    got_w, got_s = _ours(theta, x, xv, yv, lam_w, lam_s, symmetric, steps=3000, alpha=alpha)
    torch.testing.assert_close(got_w, exact_w, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(got_s, exact_s, rtol=1e-6, atol=1e-9)
    # T = 5: the truncated series alpha * sum_j (I - alpha H)^j v, applied to the same mixed derivative
    m = torch.eye(12) - alpha * hess
    p5 = alpha * sum(torch.linalg.matrix_power(m, j) @ v for j in range(6))
    got_w5, _ = _ours(theta, x, xv, yv, lam_w, lam_s, symmetric, steps=5, alpha=alpha)
    torch.testing.assert_close(got_w5, -torch.einsum("t,t...->...", p5, mixed_w), rtol=1e-8, atol=1e-11)
    assert not torch.allclose(got_w5, exact_w, rtol=1e-2)  # 5 steps are an approximation here


def _solve_inner(x, lam_w, lam_s, iterations=40):
    theta = torch.zeros(12)
    for _ in range(iterations):  # Newton's method on a strictly convex objective
        grad = torch.autograd.functional.jacobian(lambda t: _train_loss(t, x, lam_w, lam_s, False), theta)
        hess = torch.autograd.functional.hessian(lambda t: _train_loss(t, x, lam_w, lam_s, False), theta)
        theta = theta - torch.linalg.solve(hess, grad)
    return theta


def test_hypergradient_matches_finite_differences_of_the_validation_loss_after_inner_optimisation():
    """The IFT itself: dLv(theta*(lambda))/dlambda by re-solving the inner problem at lambda +- eps."""
    x, y, xv, yv, lam_w, lam_s = _problem(seed=3)
    lw, ls = lam_w.detach(), lam_s.detach()
    theta = _solve_inner(x, lw, ls)
    grad = torch.autograd.functional.jacobian(lambda t: _train_loss(t, x, lw, ls, False), theta)
    assert grad.abs().max() < 1e-12  # at the minimum, as the theorem needs
    hess = torch.autograd.functional.hessian(lambda t: _train_loss(t, x, lw, ls, False), theta)
    alpha = 1.0 / float(torch.linalg.eigvalsh(hess).max())
    got_w, got_s = _ours(theta, x, xv, yv, lam_w, lam_s, False, steps=3000, alpha=alpha)
    eps = 1e-5
    for table, got, entries in ((lw, got_w, [(0, 0), (5, 0), (11, 0)]), (ls, got_s, [(0, 1), (4, 2), (9, 0)])):
        for entry in entries:
            plus, minus = table.clone(), table.clone()
            plus[entry] += eps
            minus[entry] -= eps
            args = ((plus, ls), (minus, ls)) if table is lw else ((lw, plus), (lw, minus))
            lv = [float(_val_loss(_solve_inner(x, *a), xv, yv)) for a in args]
            fd = (lv[0] - lv[1]) / (2 * eps)
            assert float(got[entry]) == pytest.approx(fd, rel=1e-4, abs=1e-8), entry
    assert got_w.abs().max() > 1e-4 and got_s.abs().max() > 1e-4


class _Smooth(nn.Module):
    """A tiny differentiable model with a linear ``head`` on features (tanh: C^1, as the IFT needs)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(36, 5), nn.Tanh())
        self.head = nn.Linear(5, 3)

    def forward(self, x, return_features=False):
        f = self.body(x)
        return (self.head(f), f) if return_features else self.head(f)


def test_mixed_derivative_through_the_warp_and_the_body_matches_finite_differences():
    torch.manual_seed(0)
    model = _Smooth().double()
    augment = AutoDOAugment(ops=("rotate", "translate", "shear", "scale"), prob_init=0.9)
    augment.setup(ComponentSpec(num_classes=3, feature_dim=5, input_shape=(1, 6, 6), dataset_size=10, train_size=10))
    augment.magnitude.values.data += 0.3 * torch.randn(10, 4)
    g = torch.Generator().manual_seed(1)
    batch = Batch(torch.rand(6, 1, 6, 6, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2]),
                  torch.tensor([0, 2, 3, 5, 7, 9]), 3)
    theta = list(model.head.parameters())
    p = [torch.randn_like(t) for t in theta]

    def f(mag_rows):  # dL/dtheta . p with the same random draws
        out = augment.transform(batch, augment.probability.lookup(batch.index).double(), mag_rows,
                                torch.Generator().manual_seed(7))
        loss = F.cross_entropy(model(out.inputs), batch.labels)
        grads = torch.autograd.grad(loss, theta, create_graph=True)
        return sum((gr * pi).sum() for gr, pi in zip(grads, p)), loss

    rows = augment.magnitude.lookup(batch.index).double().requires_grad_()
    _, loss = f(rows)
    # implicit_hypergradient with T = 0 and alpha = 1 returns -d/dlambda (dL/dtheta . v): here v = p
    (got,), _ = implicit_hypergradient(loss, theta, p, [rows], steps=0, alpha=1.0)
    direction = torch.randn(rows.shape, generator=g, dtype=torch.float64)
    eps = 1e-6
    plus, minus = (float(f(rows.detach() + s * eps * direction)[0].detach()) for s in (1, -1))
    fd = (plus - minus) / (2 * eps)
    assert got.abs().sum() > 0
    assert float((got * direction).sum()) == pytest.approx(-fd, rel=1e-4, abs=1e-9)
    assert not math.isnan(float(got.sum()))
