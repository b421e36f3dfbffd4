"""The gradient-noise-scale estimator and the steps-to-target helpers (chapter 2, large batches)."""

import math

import numpy as np
import pytest
import torch

from nntrain import noise_scale as ns
from nntrain.models import mlp


def test_two_batch_estimator_is_unbiased_on_a_known_problem():
    """Per-example gradients g = G + A·z with z ~ N(0, I): Σ = A·Aᵀ, tr Σ and |G|² known exactly."""
    gen = torch.Generator().manual_seed(0)
    d, b_small, b_big, draws = 5, 4, 32, 20_000
    G = torch.tensor([1.0, -0.5, 0.25, 0.0, 2.0], dtype=torch.float64)
    A = torch.randn(d, d, generator=gen, dtype=torch.float64) * 0.7
    tr_true, g2_true = (A @ A.T).trace().item(), G.pow(2).sum().item()
    z = torch.randn(draws, b_big, d, generator=gen, dtype=torch.float64)
    per_ex = G + z @ A.T
    small = per_ex[:, :b_small].mean(1).pow(2).sum(1).numpy()
    big = per_ex.mean(1).pow(2).sum(1).numpy()
    g2, tr = ns.two_batch_estimates(small, big, b_small, b_big)
    for est, true in ((g2, g2_true), (tr, tr_true)):
        se = est.std(ddof=1) / math.sqrt(draws)
        assert abs(est.mean() - true) < 4 * se
    out = ns.simple_noise_scale(small, big, b_small, b_big)
    assert abs(out["B_simple"] - tr_true / g2_true) < 0.05 * tr_true / g2_true


def test_exact_expectations_give_exact_values():
    g2, tr, bs, bb = 3.0, 12.0, 2, 10
    out = ns.simple_noise_scale([g2 + tr / bs] * 2, [g2 + tr / bb] * 2, bs, bb)
    assert out["G2"] == pytest.approx(g2) and out["trace"] == pytest.approx(tr)
    assert out["B_simple"] == pytest.approx(4.0)


def test_measure_noise_scale_on_linear_regression_matches_the_exact_covariance():
    """Least squares at fixed w: per-example gradients are known, so tr Σ and |G|² are exact."""
    gen = torch.Generator().manual_seed(1)
    n, d = 400, 3
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = x @ torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64) + torch.randn(n, generator=gen, dtype=torch.float64)
    model = torch.nn.Linear(d, 1, bias=False).double()
    loss = lambda out, t: 0.5 * (out.squeeze(1) - t).pow(2).mean()  # noqa: E731
    w = model.weight.detach().reshape(-1)
    per_ex = (x @ w - y)[:, None] * x
    G = per_ex.mean(0)
    tr_pop = (per_ex - G).pow(2).sum(1).mean().item()  # sampling with replacement: population covariance
    out = ns.measure_noise_scale(model, loss, x, y, 4, 16, 1000, gen)
    assert out["trace"] == pytest.approx(tr_pop, abs=4 * out["trace_se"])
    assert out["G2"] == pytest.approx(G.pow(2).sum().item(), abs=4 * out["G2_se"])


def test_fit_steps_curve_recovers_the_hyperbola():
    b = np.array([8, 16, 32, 64, 128, 256])
    s = 100 * (1 + 40 / b)
    fit = ns.fit_steps_curve(b, s)
    assert fit["S_min"] == pytest.approx(100) and fit["B_crit"] == pytest.approx(40)
    # the paper's form (S/S_min − 1)(E/E_min − 1) = 1 with E = B·S
    e_min = fit["E_min"]
    np.testing.assert_allclose((s / 100 - 1) * (b * s / e_min - 1), 1.0)
    np.testing.assert_allclose(ns.predicted_steps(b, 100, 40), s)


def test_train_run_reaches_a_target_and_is_seeded():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(200, 4, generator=gen)
    y = (x[:, 0] > 0).long()
    build = lambda: mlp([4, 16, 2])  # noqa: E731
    opt = lambda m: torch.optim.SGD(m.parameters(), lr=0.5)  # noqa: E731
    a = ns.train_run(build, opt, x, y, 32, 300, target=0.3, eval_every=5)
    b = ns.train_run(build, opt, x, y, 32, 300, target=0.3, eval_every=5)
    assert a["steps_to_target"] is not None and a["steps_to_target"] == b["steps_to_target"]
    assert a["train_loss"] <= 0.3


def test_lr_factor_and_bad_input():
    assert ns.lr_factor(0, 100, warmup=10) == pytest.approx(0.1)
    assert ns.lr_factor(99, 100, schedule="cosine") < 1e-3
    with pytest.raises(ValueError, match="warmup"):
        ns.lr_factor(0, 10, warmup=10)
    with pytest.raises(ValueError, match="b_small < b_big"):
        ns.two_batch_estimates([1.0], [1.0], 8, 8)
    with pytest.raises(ValueError, match="multiple"):
        ns.measure_noise_scale(torch.nn.Linear(1, 1), None, torch.zeros(4, 1), torch.zeros(4), 3, 8, 2,
                               torch.Generator())
    with pytest.raises(ValueError, match="batch_size"):
        ns.train_run(lambda: mlp([1, 2]), lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                     torch.zeros(4, 1), torch.zeros(4).long(), 8, 1)


def test_bn_mlp_first_layer_rescaling_keeps_the_function():
    torch.manual_seed(0)
    a = ns.bn_mlp([5, 7, 3])
    torch.manual_seed(0)
    b = ns.bn_mlp([5, 7, 3], first_scale=10.0)
    x = torch.randn(16, 5)
    torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="first_scale"):
        ns.bn_mlp([5, 7, 3], first_scale=0.0)


def test_tune_grid_picks_the_minimum_flags_edges_and_treats_nan_as_a_loss():
    out = ns.tune_grid(lambda lr: (math.log2(lr) - 1.0) ** 2, [0.5, 1.0, 2.0, 4.0, 8.0])
    assert out["best"] == 2.0 and not out["edge"] and len(out["scores"]) == 5
    assert ns.tune_grid(lambda lr: lr, [3.0, 1.0, 2.0])["edge"]
    nan_out = ns.tune_grid(lambda lr: math.nan if lr > 1 else lr, [0.5, 1.0, 2.0])
    assert nan_out["scores"][2.0] == math.inf and nan_out["best"] == 0.5
    with pytest.raises(ValueError):
        ns.tune_grid(lambda lr: lr, [])


def test_noise_probe_records_every_k_steps_along_a_run():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=gen)
    y = torch.randint(0, 3, (200,), generator=gen)
    cb, marks = ns.noise_probe(x, y, torch.nn.functional.cross_entropy, 4, 16, 3, 5,
                               torch.Generator().manual_seed(1))
    ns.train_run(lambda: mlp([5, 8, 3]), lambda m: torch.optim.SGD(m.parameters(), lr=0.1), x, y, 16, 12,
                 callback=cb)
    assert [m[0] for m in marks] == [0, 5, 10]
    assert all(len(m) == 5 and math.isfinite(m[1]) for m in marks)
    with pytest.raises(ValueError):
        ns.noise_probe(x, y, torch.nn.functional.cross_entropy, 4, 16, 3, 0, gen)


def test_ema_tracker_matches_the_recursion_by_hand():
    """EMA of the weights: first update copies, then w̄ = ρ·w̄ + (1 − ρ)·w (torch's get_ema_multi_avg_fn)."""
    rho = 0.9
    cb, box = ns.ema_tracker(rho)
    model = torch.nn.Linear(3, 2)
    by_hand = None
    for k in range(5):
        with torch.no_grad():
            model.weight.add_(1.0)
        cb(k, model)
        w = model.weight.detach().clone()
        by_hand = w if by_hand is None else rho * by_hand + (1 - rho) * w
    assert torch.allclose(box["model"].module.weight, by_hand, atol=1e-6)
    with pytest.raises(ValueError):
        ns.ema_tracker(1.0)


def test_spd_with_condition_has_the_asked_spectrum_and_run_on_gradient_descends():
    a = ns.spd_with_condition(6, 100.0, torch.Generator().manual_seed(0))
    lam = torch.linalg.eigvalsh(a)
    assert torch.allclose(a, a.T) and lam.min().item() == pytest.approx(1.0)
    assert (lam.max() / lam.min()).item() == pytest.approx(100.0)
    target = torch.ones(6, dtype=torch.float64)
    loss = lambda w: 0.5 * float((w - target) @ a @ (w - target))  # noqa: E731
    grad = lambda w: a @ (w - target)  # noqa: E731
    curve = ns.run_on_gradient(lambda ps: torch.optim.SGD(ps, lr=0.015), grad, loss,
                               torch.zeros(6, dtype=torch.float64), 200)
    assert len(curve) == 200 and curve[-1] < 1e-3 * loss(torch.zeros(6, dtype=torch.float64))
    with pytest.raises(ValueError):
        ns.spd_with_condition(3, 0.5, torch.Generator())
