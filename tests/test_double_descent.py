"""Tests for nntrain.double_descent (chapter 10, «Двойной спуск»)."""

import math

import numpy as np
import pytest
import torch

from nntrain import double_descent as dd


@pytest.mark.parametrize("gamma,snr", [(0.5, 1.0), (0.8, 4.0), (2.0, 1.0), (3.0, 5.0)])
def test_hastie_formula_matches_large_simulation(gamma, snr):
    n = 400
    sims = dd.simulate_ridgeless_risk(n, int(gamma * n), snr, sigma2=0.5, seeds=8,
                                      generator=torch.Generator().manual_seed(1))
    theory = dd.ridgeless_risk(gamma, snr, sigma2=0.5)
    assert sims.sum(1).mean().item() == pytest.approx(theory, rel=0.05)


def test_hastie_formula_closed_values():
    assert dd.ridgeless_risk(0.5, 3.0) == pytest.approx(1.0)
    assert dd.ridgeless_risk(2.0, 1.0, sigma2=2.0) == pytest.approx(2.0 * 0.5 + 2.0)
    assert dd.ridgeless_risk(1.0, 1.0) == math.inf


def test_finite_n_risk_matches_simulation_and_limit():
    n, p = 60, 20
    sims = dd.simulate_ridgeless_risk(n, p, 1.0, seeds=400,
                                      generator=torch.Generator().manual_seed(2))
    assert sims[:, 0].abs().max() < 1e-10  # no bias below the threshold
    assert sims[:, 1].mean().item() == pytest.approx(dd.finite_n_risk(n, p), rel=0.05)
    assert dd.finite_n_risk(10**6, 5 * 10**5) == pytest.approx(dd.ridgeless_risk(0.5, 1.0),
                                                              rel=1e-5)


@pytest.mark.parametrize("shape", [(30, 10), (10, 30), (20, 20)])
def test_min_norm_is_pinv_and_ridge_limit(shape):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(*shape, generator=g, dtype=torch.float64)
    y = torch.randn(shape[0], generator=g, dtype=torch.float64)
    b = dd.min_norm_lstsq(X, y)
    assert torch.allclose(b, torch.linalg.pinv(X) @ y)
    assert torch.allclose(dd.ridge(X, y, 1e-11), b, atol=1e-5)
    lstsq = torch.linalg.lstsq(X, y.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    assert torch.allclose(b, lstsq, atol=1e-8)
    if shape[1] > shape[0]:
        assert torch.allclose(X @ b, y, atol=1e-8)  # interpolates


def test_ridge_branches_agree():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(15, 25, generator=g, dtype=torch.float64)
    y = torch.randn(15, generator=g, dtype=torch.float64)
    lam = 0.3
    primal = torch.linalg.solve(X.T @ X + 15 * lam * torch.eye(25, dtype=X.dtype), X.T @ y)
    assert torch.allclose(dd.ridge(X, y, lam), primal)


def test_smallest_singular_value_near_marchenko_pastur_edge():
    vals = dd.smallest_singular_values(400, [100, 400, 1600], seeds=3)
    assert vals[0].mean().item() == pytest.approx((1 - 0.5) ** 2, rel=0.15)
    assert vals[2].mean().item() == pytest.approx((1 - 2) ** 2, rel=0.15)
    assert vals[1].max().item() < 0.01


def test_random_features_peak_at_interpolation_threshold():
    out = dd.random_features_curve(40, 5, [10, 40, 400], noise=0.1, lams=[1e-2], seeds=4,
                                   n_test=200, n_val=50)
    med = out["min_norm"].median(0).values
    assert med[1] > 5 * med[0] and med[1] > 5 * med[2]
    assert out["norm_sq"][:, 1].median() > out["norm_sq"][:, 2].median()
    assert out["ridge"].shape == (4, 3, 1) and out["ridge_val"].shape == (4, 3, 1)
    assert out["ridge"][:, 1, 0].median() < med[1]


def test_relu_features_shape_and_scale():
    W = dd.draw_relu_weights(3, 7)
    phi = dd.relu_features(torch.ones(4, 3), W)
    assert phi.shape == (4, 7) and (phi >= 0).all()


def test_bad_input():
    X = torch.randn(5, 3)
    with pytest.raises(ValueError, match="gamma"):
        dd.ridgeless_risk(0.0, 1.0)
    with pytest.raises(ValueError, match="snr"):
        dd.ridgeless_risk(0.5, -1.0)
    with pytest.raises(ValueError, match="n > p"):
        dd.finite_n_risk(10, 9)
    with pytest.raises(ValueError, match="lam"):
        dd.ridge(X, torch.randn(5), 0.0)
    with pytest.raises(ValueError, match="y must"):
        dd.min_norm_lstsq(X, torch.randn(4))
    with pytest.raises(ValueError, match="2-D"):
        dd.min_norm_lstsq(torch.randn(5), torch.randn(5))
    with pytest.raises(ValueError, match="beta"):
        dd.conditional_risk(X, torch.randn(4), 1.0)
    with pytest.raises(ValueError, match="columns"):
        dd.relu_features(torch.randn(4, 2), dd.draw_relu_weights(3, 5))
    with pytest.raises(ValueError, match="noise"):
        dd.random_features_curve(10, 2, [5], noise=-1.0)
    with pytest.raises(ValueError, match="positive int"):
        dd.random_features_curve(10, 2, [0], noise=0.1)
    with pytest.raises(ValueError, match="n_val"):
        dd.random_features_curve(10, 2, [5], noise=0.1, n_val=1.5)


def test_gd_risk_path_matches_explicit_gradient_descent():
    g = torch.Generator().manual_seed(4)
    X = torch.randn(20, 30, generator=g, dtype=torch.float64)
    y = torch.randn(20, generator=g, dtype=torch.float64)
    beta = torch.randn(30, generator=g, dtype=torch.float64)
    w = torch.rand(30, generator=g, dtype=torch.float64)
    lr = 0.5 * 20 / torch.linalg.svdvals(X)[0].item() ** 2
    b = torch.zeros(30, dtype=torch.float64)
    expected = []
    for k in range(6):
        expected.append(((b - beta).square() * w).sum())
        b = b - lr * X.T @ (X @ b - y) / 20
    path = dd.gd_risk_path(X, y, beta, range(6), weights=w, lr=lr)
    assert torch.allclose(path, torch.stack(expected))
    # the limit is the min-norm solution; a (p, 2) weight stack splits the risk
    far = dd.gd_risk_path(X, y, beta, [10**9])
    assert far.item() == pytest.approx((dd.min_norm_lstsq(X, y) - beta).square().sum().item())
    halves = torch.zeros(30, 2, dtype=torch.float64)
    halves[:15, 0] = halves[15:, 1] = 1.0
    split = dd.gd_risk_path(X, y, beta, [0, 3, 50], weights=halves)
    assert split.shape == (3, 2)
    assert torch.allclose(split.sum(1), dd.gd_risk_path(X, y, beta, [0, 3, 50]))


def test_two_scale_regression_shapes_and_signal():
    X, y, beta, var = dd.two_scale_regression(50, 8, 4, 0.1, 1.0, 2.0, 0.5)
    assert X.shape == (50, 12) and y.shape == (50,) and var.shape == (12,)
    assert (var * beta.square())[:8].sum().item() == pytest.approx(1.0)
    assert (var * beta.square())[8:].sum().item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="scale_slow"):
        dd.two_scale_regression(50, 8, 4, 0.0, 1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="lr"):
        dd.gd_risk_path(X, y, beta, [1], lr=10.0)


def test_ridge_conditional_risk_against_monte_carlo():
    g = torch.Generator().manual_seed(11)
    X = torch.randn(15, 25, generator=g, dtype=torch.float64)
    beta = torch.randn(25, generator=g, dtype=torch.float64)
    sigma2, lam = 0.3, 0.05
    bias, var = dd.ridge_conditional_risk(X, beta, sigma2, lam)
    # ridge is linear in y: build its matrix column by column from dd.ridge itself
    A = torch.stack([dd.ridge(X, e, lam) for e in torch.eye(15, dtype=torch.float64)], 1)
    Y = (X @ beta)[:, None] + math.sqrt(sigma2) * torch.randn(15, 20000, generator=g,
                                                              dtype=torch.float64)
    fits = (A @ Y).T
    mean = fits.mean(0)
    assert math.isclose(float((mean - beta).square().sum()), bias, rel_tol=0.02)
    assert math.isclose(float((fits - mean).square().sum(1).mean()), var, rel_tol=0.03)
    assert dd.ridge_conditional_risk(X, beta, sigma2, 0.0) == dd.conditional_risk(X, beta, sigma2)
    near = dd.ridge_conditional_risk(X, beta, sigma2, 1e-12)
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in
               zip(near, dd.conditional_risk(X, beta, sigma2)))
    with pytest.raises(ValueError, match="lam"):
        dd.ridge_conditional_risk(X, beta, sigma2, -1.0)
    with pytest.raises(ValueError, match="beta"):
        dd.ridge_conditional_risk(X, beta[:3], sigma2, 0.1)


def test_two_scale_network_shows_fall_rise_fall_and_control_does_not():
    # the chapter's setting at its stable step, 2 seeds; c = 1 is the same data rescaled
    ks = sorted({0, *np.unique(np.logspace(0, np.log10(40000), 30).astype(int)).tolist()})
    args = (200, 100, 10)
    rest = (1.5, 2.0, 0.2, 64, 40000, 0.015, ks)
    out = dd.two_scale_network_curve(*args, 0.05, *rest, seeds=2,
                                     generator=torch.Generator().manual_seed(3))
    flat = dd.two_scale_network_curve(*args, 1.0, *rest, seeds=2,
                                      generator=torch.Generator().manual_seed(3))
    assert out["risk"].shape == (2, len(ks)) and out["steps"].tolist() == ks
    assert torch.allclose(out["risk"], out["fast"] + out["slow"])
    m = out["risk"].mean(0)
    i1, ip, i2 = dd.fall_rise_fall(m)
    assert 0 < i1 < ip < i2
    assert m[i1] < m[0] and m[ip] > 1.2 * m[i1] and m[i2] < 0.8 * m[i1]
    # the rise is carried by the fast group, the second descent by learning the slow one
    f, s = out["fast"].mean(0), out["slow"].mean(0)
    assert f[ip] > f[i1] and s[i2] < 0.5 * s[ip]
    # below the edge of stability all along, and the training loss only falls
    assert (0.015 * out["sharpness"]).max() < 1.9
    assert (out["train"].diff(dim=1) <= 1e-12).all()
    # equal feature scales: one U, no second descent, and a lower early-stopping risk
    assert dd.descent_after_minimum(flat["risk"].mean(0)) < 0.05
    assert dd.descent_after_minimum(m) > 3.0
    assert flat["risk"].mean(0).min() < m.min()
    # rescaling features does not change the least-squares predictor both runs converge to
    assert torch.allclose(out["risk"][:, -1], flat["risk"][:, -1], atol=1e-3)


def test_two_scale_network_data_same_draws_for_every_scale():
    d1 = dd.two_scale_network_data(30, 5, 3, 0.1, 1.0, 2.0, 0.3, 4, seeds=2,
                                   generator=torch.Generator().manual_seed(5))
    d2 = dd.two_scale_network_data(30, 5, 3, 1.0, 1.0, 2.0, 0.3, 4, seeds=2,
                                   generator=torch.Generator().manual_seed(5))
    assert torch.allclose(d1["X"][..., 5:], 0.1 * d2["X"][..., 5:])
    assert torch.equal(d1["X"][..., :5], d2["X"][..., :5])
    assert torch.allclose(d1["X"] @ d1["beta"][..., None], d2["X"] @ d2["beta"][..., None])
    assert torch.allclose(d1["y"], d2["y"])  # equal up to rounding in Xβ
    for k in ("W", "a"):
        assert torch.equal(d1[k], d2[k])
    # about the fraction q of the targets is replaced
    clean = (d1["X"] @ d1["beta"][..., None])[..., 0]
    frac = (~torch.isclose(clean, d1["y"])).double().mean().item()
    assert 0.1 < frac < 0.5


def test_two_scale_network_matches_autograd_gradient_descent():
    n, p1, p2, c, h, lr, steps = 40, 6, 3, 0.2, 5, 0.05, 12
    ks = [0, 1, 5, 12]
    out = dd.two_scale_network_curve(n, p1, p2, c, 1.0, 1.5, 0.25, h, steps, lr, ks, seeds=2,
                                     generator=torch.Generator().manual_seed(9))
    d = dd.two_scale_network_data(n, p1, p2, c, 1.0, 1.5, 0.25, h, seeds=2,
                                  generator=torch.Generator().manual_seed(9))
    for s in range(2):
        X, y, beta, var = d["X"][s], d["y"][s], d["beta"][s], d["var"]
        W = d["W"][s].clone().requires_grad_()
        a = d["a"][s].clone().requires_grad_()
        col = 0
        for k in range(steps + 1):
            if k in ks:
                with torch.no_grad():
                    b = W @ a
                    risk = (var * (b - beta).square()).sum()
                    train = (X @ b - y).square().mean()
                    # Gauss–Newton matrix from the explicit Jacobian of β = Wa
                    J = torch.autograd.functional.jacobian(
                        lambda w, v: w @ v, (W.detach(), a.detach()))
                    J = torch.cat([J[0].reshape(p1 + p2, -1), J[1]], 1)
                    gn = J.T @ (X.T @ X / n) @ J
                assert math.isclose(out["risk"][s, col].item(), risk.item(), rel_tol=1e-9)
                assert math.isclose(out["train"][s, col].item(), train.item(), rel_tol=1e-9)
                assert math.isclose(out["sharpness"][s, col].item(),
                                    torch.linalg.eigvalsh(gn)[-1].item(), rel_tol=1e-9)
                assert math.isclose(out["a_sq"][s, col].item(), a.square().sum().item(),
                                    rel_tol=1e-12)
                col += 1
            if k == steps:
                break
            loss = (X @ (W @ a) - y).square().sum() / (2 * n)
            gW, ga = torch.autograd.grad(loss, (W, a))
            with torch.no_grad():
                W -= lr * gW
                a -= lr * ga


def test_linear_network_step_in_function_space():
    # one GD step on (W, a) moves β = Wa by −αPg + α²(βᵀg)g, P = WWᵀ + ‖a‖²I
    g0 = torch.Generator().manual_seed(4)
    X = torch.randn(25, 7, generator=g0, dtype=torch.float64)
    y = torch.randn(25, generator=g0, dtype=torch.float64)
    W = torch.randn(7, 3, generator=g0, dtype=torch.float64)
    a = torch.randn(3, generator=g0, dtype=torch.float64)
    lr, n = 0.07, 25
    beta = W @ a
    grad = X.T @ (X @ beta - y) / n
    W1, a1 = W - lr * torch.outer(grad, a), a - lr * W.T @ grad
    P = W @ W.T + a.square().sum() * torch.eye(7, dtype=torch.float64)
    assert torch.allclose(W1 @ a1, beta - lr * P @ grad + lr**2 * (beta @ grad) * grad)
    ev = torch.linalg.eigvalsh(P)
    assert ev[0] >= a.square().sum() - 1e-12
    assert ev[-1] <= a.square().sum() + torch.linalg.matrix_norm(W, ord=2) ** 2 + 1e-12


def test_descent_after_minimum():
    assert dd.descent_after_minimum(torch.tensor([3.0, 1.0, 2.0, 0.5, 0.7])) == 1.5
    assert dd.descent_after_minimum(torch.tensor([3.0, 2.0, 1.0])) == 0.0
    assert dd.descent_after_minimum(torch.tensor([3.0, 1.0, 2.0, 4.0])) == 0.0
    with pytest.raises(ValueError, match="curve"):
        dd.descent_after_minimum(torch.tensor([1.0]))


def test_fall_rise_fall_and_network_bad_input():
    assert dd.fall_rise_fall(torch.tensor([3.0, 1.0, 2.0, 0.5, 0.7])) == (1, 2, 3)
    with pytest.raises(ValueError, match="never rises"):
        dd.fall_rise_fall(torch.tensor([3.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="label_noise"):
        dd.two_scale_network_curve(20, 5, 2, 0.1, 1.0, 1.0, 1.5, 4, 10, 0.1, [0, 10])
    with pytest.raises(ValueError, match="eval_steps"):
        dd.two_scale_network_curve(20, 5, 2, 0.1, 1.0, 1.0, 0.2, 4, 10, 0.1, [0, 11])
    with pytest.raises(ValueError, match="diverged"):
        dd.two_scale_network_curve(20, 5, 2, 0.1, 1.0, 1.0, 0.2, 4, 200, 50.0, [0, 200])
    with pytest.raises(ValueError, match="lr"):
        dd.two_scale_network_curve(20, 5, 2, 0.1, 1.0, 1.0, 0.2, 4, 10, -0.1, [0, 10])
