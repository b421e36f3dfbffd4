"""nntrain.optim.proximal: soft thresholding, ISTA/FISTA and their Beck–Teboulle bounds."""

import math

import pytest
import torch

from nntrain.optim.proximal import fista_t, lasso_kkt_violation, lasso_lipschitz, \
    lasso_objective, lasso_path, prox_grad_step, sign_identification, soft_threshold


def test_soft_threshold_properties():
    z = torch.linspace(-3, 3, 61, dtype=torch.float64)
    tau = 0.7
    s = soft_threshold(z, tau)
    assert torch.all(s[z.abs() <= tau] == 0)
    assert torch.allclose(s[z > tau], z[z > tau] - tau)
    assert torch.equal(soft_threshold(-z, tau), -s)  # odd
    assert torch.all((s[1:] - s[:-1]) >= 0)  # monotone
    # nonexpansive, and a prox: minimizer of tau|x| + (x − z)²/2 on a grid
    assert torch.all((s[1:] - s[:-1]).abs() <= (z[1:] - z[:-1]).abs() + 1e-15)
    grid = torch.linspace(-4, 4, 80001, dtype=torch.float64)
    for zi in (-2.0, -0.3, 0.5, 1.9):
        best = grid[torch.argmin(tau * grid.abs() + 0.5 * (grid - zi) ** 2)]
        assert abs(float(best) - float(soft_threshold(torch.tensor(zi), tau))) < 1e-4
    assert torch.equal(soft_threshold(z, 0.0), z)


def test_fista_t_sequence():
    t = 1.0
    for k in range(1, 200):
        assert t >= (k + 1) / 2 - 1e-12
        t_next = fista_t(t)
        assert math.isclose(t_next ** 2 - t_next, t ** 2, rel_tol=1e-12)
        t = t_next


def _orthogonal_problem(d=20, lam=0.1, seed=0):
    """A = √n·Q with orthonormal columns: the lasso solution is soft thresholding of Aᵀb/n."""
    gen = torch.Generator().manual_seed(seed)
    n = 40
    Q, _ = torch.linalg.qr(torch.randn(n, d, generator=gen, dtype=torch.float64))
    A = math.sqrt(n) * Q @ torch.diag(torch.linspace(0.3, 1.0, d, dtype=torch.float64))
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    return A, b, lam


def test_known_solution_and_kkt():
    gen = torch.Generator().manual_seed(0)
    n, d, lam = 40, 20, 0.1
    Q, _ = torch.linalg.qr(torch.randn(n, d, generator=gen, dtype=torch.float64))
    A = math.sqrt(n) * Q  # AᵀA/n = I
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    x_star = soft_threshold(A.T @ b / n, lam)
    for method in ("ista", "fista"):
        x, F = lasso_path(A, b, lam, 50, method)
        assert torch.allclose(x, x_star, atol=1e-12)
    assert lasso_kkt_violation(A, b, lam, x_star) < 1e-12


def test_rates_against_beck_teboulle_bounds():
    A, b, lam = _orthogonal_problem()
    gen = torch.Generator().manual_seed(3)
    A = A + 0.5 * torch.randn(A.shape, generator=gen, dtype=torch.float64)  # not orthogonal
    A = torch.cat([A, A[:, :5] + 1e-3 * A[:, 5:10]], 1)  # d > rank: not strongly convex
    L = lasso_lipschitz(A)
    x_star, F_ref = lasso_path(A, b, lam, 20000, "fista")
    assert lasso_kkt_violation(A, b, lam, x_star) < 1e-7
    f_star = float(F_ref.min())
    R2 = float(x_star.dot(x_star))  # x₀ = 0
    K = 300
    _, Fi = lasso_path(A, b, lam, K, "ista")
    _, Ff = lasso_path(A, b, lam, K, "fista")
    k = torch.arange(1, K + 1, dtype=torch.float64)
    assert torch.all(Fi[1:] - f_star <= L * R2 / (2 * k) + 1e-12)
    assert torch.all(Ff[1:] - f_star <= 2 * L * R2 / (k + 1) ** 2 + 1e-12)
    assert torch.all(Fi[1:] <= Fi[:-1] + 1e-15)  # ISTA is monotone
    assert float(Ff[K] - f_star) < float(Fi[K] - f_star)


def test_matches_sklearn_lasso():
    sklearn = pytest.importorskip("sklearn.linear_model")
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(60, 30, generator=gen, dtype=torch.float64)
    b = torch.randn(60, generator=gen, dtype=torch.float64)
    lam = 0.05
    x, _ = lasso_path(A, b, lam, 5000, "fista")
    ref = sklearn.Lasso(alpha=lam, fit_intercept=False, tol=1e-14, max_iter=100000)
    ref.fit(A.numpy(), b.numpy())
    xr = torch.from_numpy(ref.coef_)
    assert torch.allclose(x, xr, atol=1e-8)
    assert abs(float(lasso_objective(A, b, lam, x) - lasso_objective(A, b, lam, xr))) < 1e-12


def test_bad_input():
    z = torch.ones(3)
    with pytest.raises(ValueError, match="tau"):
        soft_threshold(z, -1.0)
    with pytest.raises(ValueError, match="NaN"):
        soft_threshold(torch.tensor([float("nan")]), 1.0)
    with pytest.raises(ValueError, match="lr"):
        prox_grad_step(z, z, 0.0, 0.1)
    with pytest.raises(ValueError, match="lam"):
        prox_grad_step(z, z, 0.1, -0.1)
    with pytest.raises(ValueError, match="lam"):
        prox_grad_step(z, z, 0.1, float("nan"))
    with pytest.raises(ValueError, match="method"):
        lasso_path(torch.ones(3, 2), torch.ones(3), 0.1, 5, "pgd")


def test_same_iterates_as_functions_proximal_gradient():
    """The gd chapter's runner (book's shifted FISTA index) and lasso_path give the same F(x_k)."""
    from nntrain import functions as F

    pb = F.lasso(n=60, d=120, nonzero=8, lam=0.05, seed=2)
    for accelerated, method in ((False, "ista"), (True, "fista")):
        _, ref = F.proximal_gradient(pb, 200, accelerated=accelerated)
        x, ours = lasso_path(pb.D, pb.y, pb.lam, 200, method)
        assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-14)


def test_sign_identification():
    """Orthogonal design: ISTA lands on the solution in one step, so its signs agree from k = 1."""
    gen = torch.Generator().manual_seed(0)
    n, d, lam = 40, 20, 0.1
    Q, _ = torch.linalg.qr(torch.randn(n, d, generator=gen, dtype=torch.float64))
    A = math.sqrt(n) * Q
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    x_star = soft_threshold(A.T @ b / n, lam)
    assert sign_identification(A, b, lam, 10, x_star, "ista") == 1
    assert sign_identification(A, b, lam, 0, x_star, "ista") == 1  # x₀ = 0 differs, no iterations
    assert sign_identification(A, b, 1e6, 5, torch.zeros(d, dtype=torch.float64)) == 0
    # a target the iterates never reach: the answer is iters + 1
    assert sign_identification(A, b, lam, 7, torch.ones(d, dtype=torch.float64), "fista") == 8
    with pytest.raises(ValueError, match="method"):
        sign_identification(A, b, lam, 3, x_star, "pgd")
