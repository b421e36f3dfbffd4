"""Tests of nntrain.adaptive: the experiments of the section «AdaGrad, RMSProp, Adam» (chapter 2)."""

import math

import numpy as np
import pytest
import torch

from nntrain import adaptive as A
from nntrain import functions as F
from nntrain.optim import adam_init, adam_update, trajectory_rule


def test_project_box_clamps_and_checks():
    x = torch.tensor([-3.0, 0.2, 5.0])
    assert torch.equal(A.project_box(x, -1, 1), torch.tensor([-1.0, 0.2, 1.0]))
    with pytest.raises(ValueError, match="low < high"):
        A.project_box(x, 1, 1)


def test_reddi_gradients_and_constants():
    assert [A.reddi_gradient(t, 3.0) for t in range(1, 7)] == [3.0, -1.0, -1.0, 3.0, -1.0, -1.0]
    c = A.reddi_constants(3.0)
    assert c["beta1"] == 0 and c["beta2"] == pytest.approx(0.1)
    assert c["alpha_max"] == pytest.approx(math.sqrt(0.9))
    assert c["avg_regret_at_plus_one"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="C > 2"):
        A.reddi_constants(2.0)
    with pytest.raises(ValueError, match="alpha < sqrt"):
        A.reddi_run("adam", 10, alpha=0.99)
    with pytest.raises(ValueError, match="unknown method"):
        A.reddi_run("sgd", 10)


def test_reddi_counterexample_adam_goes_to_plus_one_amsgrad_to_minus_one():
    adam = A.reddi_run("adam", 3000)
    ams = A.reddi_run("amsgrad", 3000)
    assert adam.x[-300:].mean() > 0.99
    assert ams.x[-300:].mean() < -0.99
    # staying near +1 costs the average regret 2(C − 2)/3; AMSGrad's average regret falls towards 0
    assert adam.average_regret[-1] == pytest.approx(2 / 3, abs=0.02)
    assert ams.average_regret[-1] < 0.05
    assert ((adam.x >= -1) & (adam.x <= 1)).all() and ((ams.x >= -1) & (ams.x <= 1)).all()


@pytest.mark.parametrize("seed", range(6))
def test_adagrad_regret_bound_holds_on_random_online_problems(seed):
    gen = torch.Generator().manual_seed(seed)
    dim = int(torch.randint(1, 8, (1,), generator=gen))
    freq = torch.rand(dim, generator=gen, dtype=torch.float64) * 0.9 + 0.05
    grads = A.online_linear_gradients(400, dim, freq, drift=float(torch.rand(1, generator=gen)), generator=gen)
    grads = grads * (1 + 9 * torch.rand(dim, generator=gen, dtype=torch.float64))  # coordinates of other scales
    radius = float(0.5 + torch.rand(1, generator=gen))
    for lr in (0.1, 2 * radius / math.sqrt(2), 5.0):
        for eps in (1e-10, 0.1):
            run = A.adagrad_box_regret(grads, radius, lr, eps=eps)
            bound = A.adagrad_regret_bound(grads, 2 * radius, lr, eps=eps)
            assert (run.regret <= bound + 1e-9).all()
            assert (run.x.abs() <= radius + 1e-12).all()


def test_adagrad_regret_is_exact_against_the_best_corner():
    grads = torch.tensor([[1.0, -2.0], [0.5, 0.0], [-0.25, 1.0]], dtype=torch.float64)
    run = A.adagrad_box_regret(grads, 1.0, 0.7)
    total = grads.sum(0)
    best = -(total.abs()).sum()                 # min over the box of ⟨Σ g, x⟩ at x = −sign(Σ g)
    losses = (grads * run.x[:-1]).sum(1).sum()
    assert run.regret[-1].item() == pytest.approx((losses - best).item())


def test_adagrad_bound_formula_at_the_tuned_step():
    grads = torch.tensor([[3.0, 0.0], [4.0, 1.0]], dtype=torch.float64)
    d = 2.0
    b = A.adagrad_regret_bound(grads, d, d / math.sqrt(2))
    assert b[-1].item() == pytest.approx(math.sqrt(2) * d * (5.0 + 1.0))
    with pytest.raises(ValueError):
        A.adagrad_regret_bound(grads, d, 1.0, eps=-1)


def test_rotation_gd_is_invariant_adaptive_methods_are_not():
    kappas, angles = [10.0, 10.0, 100.0, 100.0], [0.0, math.pi / 4, 0.0, math.pi / 4]
    gd = A.rotation_iterations(lambda lr: trajectory_rule("gd", alpha=lr), [0.02, 0.1, 0.18], kappas, angles)
    assert gd["iterations"][0] == gd["iterations"][1] and gd["iterations"][2] == gd["iterations"][3]
    ada = A.rotation_iterations(lambda lr: trajectory_rule("adagrad", lr=lr, eps=0.0), [0.5, 1.0, 2.0],
                                kappas, angles, max_steps=2000)
    it = ada["iterations"]
    assert it[0] == it[2]              # axis-aligned: κ does not matter at all
    assert it[1] > it[0] and it[3] > it[1]  # rotated: κ is back


def test_rotation_iterations_reports_grid_edges():
    res = A.rotation_iterations(lambda lr: trajectory_rule("gd", alpha=lr), [1e-3, 2e-3, 4e-3], [10.0], [0.0],
                                max_steps=200)
    assert res["iterations"][0] == -1 and np.isnan(res["best_lr"][0]) and not res["at_edge"][0]
    res = A.rotation_iterations(lambda lr: trajectory_rule("gd", alpha=lr), [0.01, 0.02, 0.05], [10.0], [0.0])
    assert res["at_edge"][0] and res["best_lr"][0] == 0.05
    with pytest.raises(ValueError, match="at least 3"):
        A.rotation_iterations(lambda lr: trajectory_rule("gd", alpha=lr), [0.1, 0.2], [10.0], [0.0])
    with pytest.raises(ValueError, match="one angle per kappa"):
        A.rotated_quadratic_grad([1.0, 2.0], [0.0])


def test_rotated_quadratic_gradient_matches_functions_quadratic():
    grad = A.rotated_quadratic_grad([5.0], [0.3])
    fn = F.quadratic((1.0, 5.0), angle=0.3)
    x = torch.tensor([[0.7, -1.1]], dtype=torch.float64)
    assert torch.allclose(grad(x), fn.grad(x))


def test_moment_means_follow_the_bias_formula():
    mm = A.moment_means(30, 20000, mean=1.0, std=0.5, betas=(0.9, 0.99))
    assert np.allclose(mm["m"], mm["m_theory"], rtol=0.03)
    assert np.allclose(mm["v"], mm["v_theory"], rtol=0.03)


def test_uncorrected_schedule_gives_adam_without_bias_correction():
    # with ε = 0 the moments do not depend on x, so the uncorrected update m/√v is the corrected
    # one m̂/√v̂ times (1 − β₁ᵗ)/√(1 − β₂ᵗ), for any sequence of gradients
    betas, lr = (0.9, 0.999), 1e-2
    gen = torch.Generator().manual_seed(1)
    gs = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    corrected = A.adam_path(gs, lr, betas, eps=0.0)
    raw = A.adam_path(gs, lr, betas, eps=0.0, corrected=False)
    t = torch.arange(1, 21, dtype=torch.float64)[:, None]
    factor = (1 - betas[0] ** t) / torch.sqrt(1 - betas[1] ** t)
    assert torch.allclose(raw, corrected * factor, rtol=1e-12, atol=1e-15)
    # the trajectory rule takes the same steps
    rule = A.uncorrected_adam_rule(lr, betas, eps=0.0)
    x, state = torch.zeros(3, dtype=torch.float64), None
    for g in gs:
        x, state = rule(x, lambda _, g=g: g, state)
    assert torch.allclose(x, raw.sum(0), rtol=1e-12, atol=1e-15)
    lr_t, eps_t = A.uncorrected_schedule(1, 1.0, betas, 1e-8)
    assert lr_t == pytest.approx(0.1 / math.sqrt(0.001)) and eps_t == pytest.approx(1e-8 / math.sqrt(0.001))


def test_effective_step_with_and_without_correction():
    g = torch.ones(40, 1, dtype=torch.float64)
    corrected = -A.adam_path(g, 1e-3, eps=0.0)[:, 0] / 1e-3
    raw = -A.adam_path(g, 1e-3, eps=0.0, corrected=False)[:, 0] / 1e-3
    t = torch.arange(1, 41, dtype=torch.float64)
    assert torch.allclose(corrected, torch.ones(40, dtype=torch.float64))
    assert torch.allclose(raw, (1 - 0.9**t) / torch.sqrt(1 - 0.999**t))


def test_adam_without_moments_is_sign_descent_and_response_tends_to_sign():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, generator=gen, dtype=torch.float64)
    g = torch.randn(50, generator=gen, dtype=torch.float64)
    new, _ = adam_update(x, g, adam_init(x), lr=0.1, betas=(0.0, 0.0), eps=0.0)
    assert torch.allclose(new, x - 0.1 * g.sign())
    r = A.adam_step_response([-20.0, 0.0, 20.0], 400)
    assert r[0] == pytest.approx(-1, abs=0.01) and r[2] == pytest.approx(1, abs=0.01) and abs(r[1]) < 0.2


def test_adam_step_response_over_many_streams_has_a_standard_error():
    mean, se = A.adam_step_response([0.0, 1.0], 400, streams=50, with_error=True)
    assert mean.shape == (2,) and se.shape == (2,) and (se > 0).all()
    # the approximation s/√(s² + 1) holds within a few standard errors
    assert abs(mean[1] - 1 / math.sqrt(2)) < 5 * se[1] + 0.01
    assert abs(mean[0]) < 5 * se[0]
    # one stream is the old behaviour; a standard error needs at least two
    assert A.adam_step_response([1.0], 100).shape == (1,)
    with pytest.raises(ValueError, match="at least 2 streams"):
        A.adam_step_response([1.0], 100, with_error=True)


def test_contraction_factor_of_adam_is_capped_by_sqrt_beta1():
    angles = [0.0, math.pi / 4]
    grad = A.rotated_quadratic_grad([100.0, 100.0], angles)
    x0 = A.rotated_start(angles)
    rate = A.contraction_factor(trajectory_rule("adam", lr=0.3, eps=0.0), grad, x0, 50, 200)
    assert torch.allclose(rate, torch.full((2,), math.sqrt(0.9), dtype=torch.float64), atol=0.01)
    gd = A.contraction_factor(trajectory_rule("gd", alpha=2 / 101), grad, x0, 10, 100)
    assert torch.allclose(gd, torch.full((2,), 99 / 101, dtype=torch.float64), atol=1e-3)
    with pytest.raises(ValueError, match="first < last"):
        A.contraction_factor(trajectory_rule("gd", alpha=0.01), grad, x0, 5, 5)


def test_escape_iterations_on_the_saddle():
    sad = F.saddle()
    y0 = torch.tensor([1e-8, 1e-4], dtype=torch.float64)
    x0 = torch.stack([torch.ones(2, dtype=torch.float64), y0], 1)
    gd = A.escape_iterations(trajectory_rule("gd", alpha=0.1), sad.grad, x0)
    ada = A.escape_iterations(trajectory_rule("adagrad", lr=0.1, eps=0.0), sad.grad, x0)
    assert gd[0] > gd[1] > 0                   # GD needs ∝ log(1/y0) iterations
    assert ada[0] == ada[1]                    # AdaGrad's first step is lr·sign(g): y0 does not matter
    with pytest.raises(ValueError):
        A.escape_iterations(trajectory_rule("gd", alpha=0.1), sad.grad, y0)


def test_plateau_gradient_and_hessian_match_autograd():
    fn = A.plateau()
    x = torch.tensor([[-3.0, 0.5], [0.0, -1.0], [2.5, 0.2]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(fn.value(x).sum(), x)
    assert torch.allclose(fn.grad(x.detach()), g)
    h = torch.autograd.functional.hessian(lambda p: fn.value(p), x.detach()[1])
    assert torch.allclose(fn.hessian(x.detach()[1]), h)


def test_plateau_adagrad_stalls_rmsprop_crosses():
    fn = A.plateau()
    ada = F.run(fn, [-4.0, 1.0], 600, update=trajectory_rule("adagrad", lr=0.1))
    rms = F.run(fn, [-4.0, 1.0], 600, update=trajectory_rule("rmsprop", lr=0.1, alpha=0.9))
    assert ada.final[0] < 1.0 and abs(rms.final[0] - 3.0) < 0.2


def test_state_bytes_per_parameter_of_adam_is_eight_in_fp32():
    model = torch.nn.Linear(5, 3)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 5)).sum().backward()
    opt.step()
    assert A.state_bytes_per_parameter(opt) == 8
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    sgd.step()
    assert A.state_bytes_per_parameter(sgd) == 0
    # a one-element parameter: its scalar ``step`` tensor is not state
    scalar = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.Adam([scalar])
    scalar.grad = torch.ones(1)
    opt.step()
    assert A.state_bytes_per_parameter(opt) == 8


def test_digits_task_builds_and_trains_one_step():
    from nntrain import compare

    task = A.digits_task([], steps=3)
    run = compare.train(task, "adamw", 1e-2, seed=0, betas=(0.9, 0.999), schedule="constant")
    assert len(run.train_loss) == 3 and {"val_loss", "test_loss"} <= set(run.metrics)
