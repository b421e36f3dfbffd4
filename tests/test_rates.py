"""nntrain.rates: update rules, tuned constants, spectral rates and the theorems' bounds."""

import math

import numpy as np
import pytest
import torch

from nntrain import functions as F
from nntrain import optim, rates


@pytest.mark.parametrize("name,args", [("gd", (1e-3,)), ("heavy_ball", (1e-3, 0.9)), ("nesterov", (1e-3, 0.9)),
                                       ("ema_momentum", (1e-3, 0.9))])
def test_rates_rules_are_optims_rules(name, args):
    """One definition: rates' rules are adapters over nntrain.optim, with the same numbers to the last bit."""
    fn = F.rosenbrock()
    hyper = dict(zip(("alpha", "beta"), args))
    ours = F.run(fn, [-1.2, 1.0], 300, update=getattr(rates, name)(*args)).path
    assert torch.equal(ours, F.run(fn, [-1.2, 1.0], 300, update=optim.trajectory_rule(name, **hyper)).path)
    x, v = ours[0], torch.zeros(2, dtype=torch.float64)
    for k in range(300):  # the pure functions of nntrain.optim, step by step
        if name == "ema_momentum":
            x, v = optim.ema_momentum_update(x, v, fn.grad(x), lr=args[0], beta=args[1])
        else:
            beta = args[1] if len(args) > 1 else 0.0
            look = x + beta * v if name == "nesterov" else x
            x, v = optim.heavy_ball_update(x, v, fn.grad(look), lr=args[0], beta=beta)
        assert torch.equal(ours[k + 1], x)


def test_heavy_ball_equals_two_step_recursion():
    fn = F.rosenbrock()
    a, b = 1e-3, 0.8
    t = F.run(fn, [-1.0, 1.5], 200, update=rates.heavy_ball(a, b))
    xs = [t.path[0], t.path[0]]
    for _ in range(200):
        xs.append(xs[-1] - a * fn.grad(xs[-1]) + b * (xs[-1] - xs[-2]))
    torch.testing.assert_close(t.path, torch.stack(xs[1:]), rtol=1e-12, atol=1e-12)


def test_nesterov_equals_look_ahead_scheme():
    fn = F.ill_conditioned(30.0)
    a, b = rates.nesterov_params(1.0, 30.0)
    t = F.run(fn, [1.0, 1.0], 100, update=rates.nesterov(a, b))
    x_prev = x = t.path[0]
    for k in range(100):
        y = x + b * (x - x_prev)
        x_prev, x = x, y - a * fn.grad(y)
        torch.testing.assert_close(t.path[k + 1], x, rtol=1e-12, atol=1e-14)


def test_ema_momentum_is_rescaled_heavy_ball():
    fn = F.levy()
    a, b = 0.05, 0.9
    t1 = F.run(fn, [-6.0, 4.0], 300, update=rates.ema_momentum(a, b))
    t2 = F.run(fn, [-6.0, 4.0], 300, update=rates.heavy_ball(a * (1 - b), b))
    torch.testing.assert_close(t1.path, t2.path, rtol=1e-10, atol=1e-12)


def test_tuned_constants():
    a, b = rates.heavy_ball_params(1.0, 100.0)
    assert math.isclose(a, 4 / 121) and math.isclose(b, (9 / 11) ** 2)
    a, b = rates.nesterov_params(1.0, 100.0)
    assert math.isclose(a, 0.01) and math.isclose(b, 9 / 11)
    assert math.isclose(rates.gd_optimal_step(1.0, 3.0), 0.5)
    assert rates.method_params("gd", 1.0, 4.0) == (0.25, 0.0)


@pytest.mark.parametrize("k", [4.0, 25.0, 400.0])
def test_spectral_rates_closed_forms(k):
    lam = [1.0, k]
    sk = math.sqrt(k)
    assert math.isclose(rates.spectral_rate(1 / k, 0.0, lam), 1 - 1 / k, rel_tol=1e-12)
    assert math.isclose(rates.spectral_rate(2 / (1 + k), 0.0, lam), (k - 1) / (k + 1), rel_tol=1e-12)
    a, b = rates.heavy_ball_params(1.0, k)
    assert math.isclose(rates.spectral_rate(a, b, lam), (sk - 1) / (sk + 1), rel_tol=1e-6)
    a, b = rates.nesterov_params(1.0, k)
    assert math.isclose(rates.spectral_rate(a, b, lam, look_ahead=True), 1 - 1 / sk, rel_tol=1e-9)


def test_measured_iterations_scale_like_theory():
    ks = [10.0, 100.0, 1000.0]
    gd = rates.quadratic_iterations("gd", ks, tol=1e-6)
    hb = rates.quadratic_iterations("heavy_ball", ks, tol=1e-6)
    assert (gd["measured"] > 0).all() and (hb["measured"] > 0).all()
    assert (gd["measured"] <= gd["predicted"]).all()
    assert abs(rates.loglog_slope(ks, gd["measured"]) - 1.0) < 0.05
    assert abs(rates.loglog_slope(ks, hb["measured"]) - 0.5) < 0.08
    assert (hb["measured"] < gd["measured"]).all()


def test_iterations_are_rotation_invariant():
    fn = F.ill_conditioned(20.0, angle=0.7)
    a, b = rates.heavy_ball_params(1.0, 20.0)
    upd = rates.heavy_ball(a, b)
    rot = rates.iterations_to_tolerance(upd, fn.grad, torch.tensor([[1.0, 1.0]], dtype=torch.float64), 1e-6, 10_000)
    diag = rates.iterations_to_tolerance(upd, lambda x: x * torch.tensor([1.0, 20.0], dtype=torch.float64),
                                         (torch.tensor([[1.0, 1.0]], dtype=torch.float64) @ F.rotation(0.7)), 1e-6,
                                         10_000)
    assert rot.item() == diag.item() > 0


def test_bounds_hold_on_quadratics():
    lam = torch.tensor([1e-3, 0.01, 0.1, 1.0], dtype=torch.float64)  # convex, L = 1, barely strongly convex
    x = torch.ones(4, dtype=torch.float64)
    r0 = float(x @ x)
    gaps = []
    for _ in range(200):
        x = x - lam * x
        gaps.append(float(0.5 * (lam * x * x).sum()))
    k = np.arange(1, 201)
    assert (np.array(gaps) <= rates.gd_convex_bound(1.0, r0, k) + 1e-15).all()
    fn = F.ill_conditioned(10.0)
    t = F.run(fn, [1.0, 2.0], 100, update=rates.gd(rates.gd_step(10.0)))
    bound = rates.gd_strongly_convex_bound(1.0, 10.0, float(t.values[0]), np.arange(101))
    assert (t.values.numpy() <= bound + 1e-15).all()
    a, b = rates.nesterov_params(1.0, 10.0)
    t = F.run(fn, [1.0, 2.0], 100, update=rates.nesterov(a, b))
    bound = rates.nesterov_bound(1.0, 10.0, float(t.values[0]), 5.0, np.arange(101))
    assert (t.values.numpy() <= bound + 1e-15).all()


def test_predicted_iterations_and_slope():
    assert rates.predicted_iterations(0.5, 1e-3) == 10
    assert rates.predicted_iterations(torch.tensor([0.5, 0.1], dtype=torch.float64), 1e-3).tolist() == [10, 3]
    assert math.isclose(rates.loglog_slope([1, 10, 100], [3, 30, 300]), 1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        rates.gd(-0.1)
    with pytest.raises(ValueError, match="alpha"):
        rates.heavy_ball(float("nan"), 0.5)
    with pytest.raises(ValueError, match="beta"):
        rates.nesterov(0.1, 1.5)
    with pytest.raises(ValueError, match="expected one of"):
        rates.method_params("adam", 1.0, 2.0)
    with pytest.raises(ValueError, match="expected one of"):
        rates.quadratic_iterations("newton", [10.0])
    with pytest.raises(ValueError, match="condition numbers"):
        rates.quadratic_iterations("gd", [0.5])
    with pytest.raises(ValueError, match="mu"):
        rates.heavy_ball_params(0.0, 1.0)
    with pytest.raises(ValueError, match="tol"):
        rates.predicted_iterations(0.5, 2.0)
    with pytest.raises(ValueError, match="rate"):
        rates.predicted_iterations(1.0, 0.1)
    with pytest.raises(ValueError, match="batch, dim"):
        rates.iterations_to_tolerance(rates.gd(0.1), lambda x: x, torch.ones(2), 0.1, 10)
    with pytest.raises(ValueError, match="k >= 1"):
        rates.gd_convex_bound(1.0, 1.0, 0)


def test_exact_line_search_minimises_along_the_ray():
    fn = F.ill_conditioned(10.0)
    upd = rates.gd_exact_quadratic(fn.info["A"])
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    x1, _ = upd(x, fn.grad, None)
    g = fn.grad(x)
    alphas = torch.linspace(0, 1, 20001, dtype=torch.float64)
    best = alphas[fn(x[None] - alphas[:, None] * g[None]).argmin()]
    assert abs(float((x - x1).norm() / g.norm()) - float(best)) < 1e-4
    assert abs(float(fn.grad(x1) @ g)) < 1e-12  # consecutive directions are orthogonal
    with pytest.raises(ValueError, match="square"):
        rates.gd_exact_quadratic(torch.ones(2, 3))


def test_armijo_decreases_and_counts_evaluations():
    fn = F.rosenbrock()
    t = F.run(fn, [-1.2, 1.0], 200, update=rates.gd_armijo(fn.value, alpha0=1.0))
    assert (t.values[1:] <= t.values[:-1]).all()
    upd = rates.gd_armijo(fn.value)
    _, evals = upd(torch.tensor([-1.2, 1.0], dtype=torch.float64), fn.grad, None)
    assert evals > 1
    with pytest.raises(ValueError, match="shrink"):
        rates.gd_armijo(fn.value, shrink=1.0)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.99])
def test_stability_limits_of_momentum(beta):
    """Heavy ball is stable iff αL < 2(1 + β); Nesterov iff αL < 2(1 + β)/(1 + 2β) (chapter 2, momentum)."""
    for limit, look in ((2 * (1 + beta), False), (2 * (1 + beta) / (1 + 2 * beta), True)):
        assert rates.spectral_rate(limit * 0.999, beta, [1.0], look_ahead=look) < 1
        assert rates.spectral_rate(limit * 1.001, beta, [1.0], look_ahead=look) > 1


@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_velocity_is_a_low_pass_filter(beta):
    """A constant gradient is amplified by 1/(1 − β), a sign-alternating one by 1/(1 + β)."""
    update = rates.heavy_ball(1.0, beta)
    for sign, gain in ((lambda k: 1.0, 1 / (1 - beta)), (lambda k: (-1.0) ** k, 1 / (1 + beta))):
        x, v = torch.zeros(1, dtype=torch.float64), None
        for k in range(2000):
            x, v = update(x, lambda _, s=sign(k): torch.tensor([s], dtype=torch.float64), v)
        assert math.isclose(abs(v.item()), gain, rel_tol=1e-10)


def test_torch_dampening_is_ema_started_at_the_first_gradient():
    """torch.optim.SGD(momentum=β, dampening=β) = the EMA form with m₀ = ∇f(x₀) instead of 0."""
    fn = F.rosenbrock()
    lr, beta = 1e-3, 0.9
    ema = rates.ema_momentum(lr, beta)
    ours = F.run(fn, [-1.5, 2.0], 300, update=lambda x, g, m: ema(x, g, g(x) if m is None else m))
    ref = F.run(fn, [-1.5, 2.0], 300, optimizer=lambda p: torch.optim.SGD(p, lr=lr, momentum=beta, dampening=beta))
    torch.testing.assert_close(ours.path, ref.path, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_stability_limit_is_where_the_spectral_radius_crosses_one(beta):
    for look in (False, True):
        limit = rates.stability_limit(beta, 4.0, look_ahead=look)
        assert rates.spectral_rate(limit * 0.999, beta, [4.0], look_ahead=look) < 1
        assert rates.spectral_rate(limit * 1.001, beta, [4.0], look_ahead=look) > 1
    assert math.isclose(rates.stability_limit(0.9, 1.0) / (1 - 0.9) / 2, 19.0)
    with pytest.raises(ValueError, match="beta"):
        rates.stability_limit(1.5, 1.0)


@pytest.mark.parametrize("fn, mu, L, x0", [(F.ill_conditioned(100.0), 1.0, 100.0, [1.0, 2.0]),
                                           (F.lessard(), 1.0, 25.0, [3.3])])
def test_nesterov_potential_contracts_by_one_minus_inverse_sqrt_kappa(fn, mu, L, x0):
    """The Lyapunov function of the chapter's theorem: Φ_{k+1} ≤ (1 − 1/√κ)Φ_k, also off quadratics."""
    t = F.run(fn, x0, 200, update=rates.nesterov(*rates.nesterov_params(mu, L)))
    x_star = torch.zeros(len(x0), dtype=torch.float64)
    phi = rates.nesterov_potential(t.values.numpy(), t.path, 0.0, x_star, mu, L)
    live = phi[:-1] > 1e-200
    assert (phi[1:][live] <= (1 - math.sqrt(mu / L)) * phi[:-1][live] * (1 + 1e-9) + 1e-300).all()
    assert (t.values.numpy() <= phi + 1e-300).all()
    with pytest.raises(ValueError, match="shape"):
        rates.nesterov_potential(t.values.numpy(), t.path[:, 0], 0.0, x_star, mu, L)


def test_heavy_ball_global_rate_bounds_the_error_on_lessards_function():
    """With α = 2/(μ + L) and β < 1/(κ + 1): ‖x_k − x*‖ ≤ r^k‖x_0 − x*‖ on a non-quadratic function."""
    mu, L, beta = 1.0, 25.0, 0.03
    r = rates.heavy_ball_global_rate(mu, L, beta)
    assert (25 - 1) / (25 + 1) < r < 1
    t = F.run(F.lessard(), [3.3], 300, update=rates.heavy_ball(2 / (mu + L), beta))
    err = t.path[:, 0].abs().numpy()
    assert (err <= r ** np.arange(len(err)) * err[0] * (1 + 1e-12)).all()
    with pytest.raises(ValueError, match="1/\\(kappa"):
        rates.heavy_ball_global_rate(mu, L, 0.05)


def test_polyak_constants_cycle_with_period_three_on_lessards_function():
    """Lessard, Recht & Packard: the tuned heavy ball (μ = 1, L = 25) cycles from x₀ = 3.3; Nesterov converges."""
    les = F.lessard()
    t = F.run(les, [3.3], 300, update=rates.heavy_ball(*rates.heavy_ball_params(1.0, 25.0)))
    assert rates.cycle_period(t.path) == 3
    t = F.run(les, [3.3], 300, update=rates.nesterov(*rates.nesterov_params(1.0, 25.0)))
    assert rates.cycle_period(t.path) == 1 and t.final.abs().item() < 1e-10


@pytest.mark.parametrize("x0", [1.9, -2.4])
def test_momentum_alone_cycles_with_a_step_below_two_over_L(x0):
    """α = 0.06 < 2/L and β = 0.96: each quadratic piece is stable, yet the heavy ball settles on a 5-cycle."""
    alpha, beta, L = 0.06, 0.96, 25.0
    assert alpha * L < 2 and rates.spectral_rate(alpha, beta, [1.0, L]) < 1
    t = F.run(F.lessard(), [x0], 20_000, update=rates.heavy_ball(alpha, beta))
    assert rates.cycle_period(t.path) == 5
    cycle = sorted(round(v, 3) for v in t.path[-5:, 0].tolist())
    assert cycle == [-1.359, -0.816, 0.158, 1.024, 1.377]


def test_cycle_period():
    path = torch.tensor([[0.0], [1.0], [2.0]] * 30, dtype=torch.float64)
    assert rates.cycle_period(path) == 3
    assert rates.cycle_period(torch.zeros(61, 1)) == 1
    assert rates.cycle_period(torch.arange(61.0)[:, None]) == 0
    with pytest.raises(ValueError, match="shape"):
        rates.cycle_period(torch.zeros(10, 1))


# ---------------------------------------------------------------- the conventions of the momentum chapter

X0, LR, BETA, STEPS = [-1.5, 2.0], 1e-3, 0.9, 500


def _torch_path(fn, steps, **opts):
    return F.run(fn, X0, steps, optimizer=lambda p: torch.optim.SGD(p, **opts)).path


def test_physics_form_equals_torch_sgd_momentum():
    """v = −α·b: v ← βv − α∇f, x ← x + v is torch's b ← βb + ∇f, x ← x − αb with the same α, β."""
    fn = F.rosenbrock()
    physics = F.run(fn, X0, STEPS, update=rates.heavy_ball(LR, BETA)).path
    torch.testing.assert_close(physics, _torch_path(fn, STEPS, lr=LR, momentum=BETA), rtol=1e-10, atol=1e-12)


def test_dampening_is_not_the_ema_started_at_zero():
    """torch's first step puts the whole gradient into the buffer, so m₀ = 0 gives another path."""
    fn = F.rosenbrock()
    ema = F.run(fn, X0, STEPS, update=rates.ema_momentum(LR, BETA)).path
    damp = _torch_path(fn, STEPS, lr=LR, momentum=BETA, dampening=BETA)
    assert not torch.allclose(ema, damp, rtol=1e-10, atol=1e-12)


def _physics_schedule(rescale_velocity):
    """The physics form with the step halved after 250 iterations (and the velocity rescaled, or not)."""
    def update(x, grad_fn, state):
        k, v = (0, torch.zeros_like(x)) if state is None else state
        a = LR if k < 250 else LR / 2
        if rescale_velocity and k == 250:
            v = v * 0.5
        v = BETA * v - a * grad_fn(x)
        return x + v, (k + 1, v)
    return update


def test_with_a_schedule_the_forms_differ_unless_the_velocity_is_rescaled():
    fn = F.rosenbrock()
    p = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p], lr=LR, momentum=BETA)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=250, gamma=0.5)
    ref = []
    for _ in range(STEPS):
        p.grad = fn.grad(p.detach())
        opt.step()
        sched.step()
        ref.append(p.detach().clone())
    ref = torch.stack(ref)
    plain = F.run(fn, X0, STEPS, update=_physics_schedule(False)).path[1:]
    rescaled = F.run(fn, X0, STEPS, update=_physics_schedule(True)).path[1:]
    assert not torch.allclose(plain, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(rescaled, ref, rtol=1e-10, atol=1e-12)


def test_torch_nesterov_stores_the_look_ahead_point():
    """torch.optim.SGD(nesterov=True) keeps y_k = x_k + βv_k of the look-ahead form in the parameters."""
    fn = F.rosenbrock()
    upd = rates.nesterov(LR, BETA)
    x, v = torch.tensor(X0, dtype=torch.float64), None
    look_ahead = [x.clone()]
    for _ in range(STEPS):
        x, v = upd(x, fn.grad, v)
        look_ahead.append(x + BETA * v)
    torch.testing.assert_close(_torch_path(fn, STEPS, lr=LR, momentum=BETA, nesterov=True),
                               torch.stack(look_ahead), rtol=1e-10, atol=1e-12)
