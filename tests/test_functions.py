"""nntrain.functions: analytic gradients and Hessians against autograd, stationary points, the runner."""

import math

import pytest
import torch

from nntrain import functions as F
from nntrain import rates

ALL = [F.quadratic((1.0, 10.0), angle=0.4), F.ill_conditioned(50.0), F.rosenbrock(), F.rosenbrock(a=0.5, b=20.0),
       F.saddle(), F.saddle(0.5, 2.0), F.levy(), F.himmelblau()]
IDS = [f"{fn.name}{i}" for i, fn in enumerate(ALL)]


def _points(fn, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    lo = torch.tensor([fn.box[0], fn.box[2]], dtype=torch.float64)
    hi = torch.tensor([fn.box[1], fn.box[3]], dtype=torch.float64)
    return lo + (hi - lo) * torch.rand(n, 2, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("fn", ALL, ids=IDS)
def test_gradient_matches_autograd(fn):
    x = _points(fn).requires_grad_(True)
    (auto,) = torch.autograd.grad(fn.value(x).sum(), x)
    torch.testing.assert_close(fn.grad(x.detach()), auto, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("fn", ALL, ids=IDS)
def test_hessian_matches_autograd(fn):
    for p in _points(fn, n=8):
        auto = torch.autograd.functional.hessian(lambda q: fn.value(q), p)
        torch.testing.assert_close(fn.hessian(p), auto, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("fn", ALL, ids=IDS)
def test_batched_shapes(fn):
    x = torch.zeros(3, 5, 2, dtype=torch.float64)
    assert fn(x).shape == (3, 5)
    assert fn.grad(x).shape == (3, 5, 2)
    assert fn.hessian(x).shape == (3, 5, 2, 2)
    assert fn(torch.zeros(2, dtype=torch.float32)).dtype == torch.float32


@pytest.mark.parametrize("fn", ALL, ids=IDS)
def test_known_points_are_stationary(fn):
    for m in fn.stationary:
        g = fn.grad(torch.tensor(m, dtype=torch.float64))
        assert g.norm() < 1e-9, (fn.name, m, g)
    for m in fn.minimizers:
        p = torch.tensor(m, dtype=torch.float64)
        assert abs(float(fn(p)) - fn.f_min) < 1e-12
        assert torch.linalg.eigvalsh(fn.hessian(p)).min() > 0  # a strict local minimum


def test_minimizers_are_global_on_the_box():
    for fn in [F.quadratic((1.0, 10.0), 0.3), F.rosenbrock(), F.levy(), F.himmelblau()]:
        x = _points(fn, n=4000, seed=1)
        assert float(fn(x).min()) >= fn.f_min - 1e-12


def test_saddle_has_no_minimum_and_indefinite_hessian():
    fn = F.saddle()
    assert fn.minimizers == () and fn.f_min is None
    ev = torch.linalg.eigvalsh(fn.hessian(torch.zeros(2, dtype=torch.float64)))
    assert ev.min() < 0 < ev.max()


def test_quadratic_spectrum_and_rotation():
    fn = F.quadratic((2.0, 8.0), angle=math.pi / 5)
    ev = torch.linalg.eigvalsh(fn.info["A"])
    torch.testing.assert_close(ev, torch.tensor([2.0, 8.0], dtype=torch.float64))
    assert fn.info["kappa"] == 4.0
    r = F.rotation(0.3)
    torch.testing.assert_close(r @ r.T, torch.eye(2, dtype=torch.float64))


def test_get_by_name():
    assert F.get("rosenbrock", b=10.0).info["b"] == 10.0
    assert set(F.NAMES) >= {"quadratic", "rosenbrock", "saddle", "levy", "himmelblau"}
    with pytest.raises(ValueError, match="expected one of"):
        F.get("beale")


def test_bad_input():
    fn = F.rosenbrock()
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        fn(torch.zeros(3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fn.grad([1.0, 2.0])
    with pytest.raises(ValueError, match="two eigenvalues"):
        F.quadratic((1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="kappa"):
        F.ill_conditioned(0.5)
    with pytest.raises(ValueError, match="positive"):
        F.rosenbrock(b=-1.0)
    with pytest.raises(ValueError, match="positive"):
        F.saddle(a=float("nan"))


# ---------------------------------------------------------------- the runner


def test_run_pure_update_equals_hand_loop():
    fn = F.ill_conditioned(10.0)
    t = F.run(fn, [1.0, -1.5], 50, update=rates.gd(0.05))
    x = torch.tensor([1.0, -1.5], dtype=torch.float64)
    for _ in range(50):
        x = x - 0.05 * fn.grad(x)
    assert t.steps == 50 and t.path.shape == (51, 2) and t.values.shape == (51,)
    torch.testing.assert_close(t.final, x, rtol=0, atol=0)
    torch.testing.assert_close(t.values, fn(t.path))
    assert not t.diverged


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_run_torch_optimizer_matches_pure_rules(momentum, nesterov):
    fn = F.rosenbrock()
    lr = 1e-3
    t = F.run(fn, [-1.2, 1.0], 300,
              optimizer=lambda p: torch.optim.SGD(p, lr=lr, momentum=momentum, nesterov=nesterov))
    if not nesterov:
        pure = F.run(fn, [-1.2, 1.0], 300, update=rates.heavy_ball(lr, momentum))
        torch.testing.assert_close(t.path, pure.path, rtol=1e-12, atol=1e-12)
    else:
        # torch's Nesterov iterate is the look-ahead point y_k = x_k + βv_k of the Sutskever form
        upd = rates.nesterov(lr, momentum)
        x, v = torch.tensor([-1.2, 1.0], dtype=torch.float64), None
        for k in range(300):
            x, v = upd(x, fn.grad, v)
            torch.testing.assert_close(t.path[k + 1], x + momentum * v, rtol=1e-12, atol=1e-12)


def test_run_stops_on_divergence():
    fn = F.quadratic((1.0, 10.0))
    t = F.run(fn, [1.0, 1.0], 1000, update=rates.gd(0.5))  # 0.5 > 2/L
    assert t.diverged and t.steps < 1000
    assert torch.isfinite(t.path).all()


def test_run_bad_input():
    fn = F.saddle()
    with pytest.raises(ValueError, match="exactly one"):
        F.run(fn, [0.1, 0.1], 5)
    with pytest.raises(ValueError, match="exactly one"):
        F.run(fn, [0.1, 0.1], 5, update=rates.gd(0.1), optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    with pytest.raises(ValueError, match="2 coordinates"):
        F.run(fn, [0.1, 0.1, 0.1], 5, update=rates.gd(0.1))
    with pytest.raises(ValueError, match="finite"):
        F.run(fn, [math.nan, 0.1], 5, update=rates.gd(0.1))
    with pytest.raises(ValueError, match="non-negative int"):
        F.run(fn, [0.1, 0.1], -1, update=rates.gd(0.1))
    with pytest.raises(TypeError, match="Function2D"):
        F.run(lambda x: x, [0.1, 0.1], 5, update=rates.gd(0.1))
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        F.run(fn, [0.1, 0.1], 5, optimizer=lambda p: p)


def test_lessard_counterexample():
    fn = F.lessard()
    x = torch.linspace(-3, 4, 701, dtype=torch.float64)[:, None].requires_grad_(True)
    (auto,) = torch.autograd.grad(fn.value(x).sum(), x)
    torch.testing.assert_close(fn.grad(x.detach()), auto)
    assert (fn.hessian(x.detach()) >= 1).all() and (fn.hessian(x.detach()) <= 25).all()
    # continuity of f and f' at the joints 1 and 2
    for j in (1.0, 2.0):
        lo, hi = torch.tensor([[j - 1e-9]], dtype=torch.float64), torch.tensor([[j]], dtype=torch.float64)
        assert abs(float(fn(lo) - fn(hi))) < 1e-6 and abs(float(fn.grad(lo) - fn.grad(hi))) < 1e-6
    a, b = rates.heavy_ball_params(1.0, 25.0)
    t = F.run(fn, [3.3], 300, update=rates.heavy_ball(a, b))
    torch.testing.assert_close(t.path[-1], t.path[-4])  # a 3-cycle, not convergence
    assert t.path[-1].abs() > 0.5
    a, b = rates.nesterov_params(1.0, 25.0)
    assert F.run(fn, [3.3], 300, update=rates.nesterov(a, b)).final.abs() < 1e-10


# ---------------------------------------------------------------- Drori–Teboulle's worst case


@pytest.mark.parametrize("L,R,steps", [(1.0, 1.0, 1), (2.0, 3.0, 7), (0.5, 2.0, 100)])
def test_drori_teboulle_is_attained_by_gd(L, R, steps):
    fn = F.drori_teboulle(L, R, steps)
    t = F.run(fn, [R], steps, update=rates.gd(1 / L))
    assert abs(float(t.values[-1]) - L * R * R / (4 * steps + 2)) < 1e-12 * L * R * R
    assert float(t.values[-1]) <= rates.gd_convex_bound(L, R * R, steps)  # below the simple bound
    x = torch.linspace(-2 * R, 2 * R, 2001, dtype=torch.float64)[:, None].requires_grad_(True)
    (auto,) = torch.autograd.grad(fn.value(x).sum(), x)
    torch.testing.assert_close(fn.grad(x.detach()), auto)
    h = fn.hessian(x.detach())
    assert (h >= 0).all() and (h <= L).all()  # convex and L-smooth
    g = fn.grad(x.detach())[:, 0]
    assert ((g[1:] - g[:-1]).abs() <= L * (x[1:, 0] - x[:-1, 0]).detach() + 1e-12).all()


def test_drori_teboulle_bad_input():
    with pytest.raises(ValueError, match="positive int"):
        F.drori_teboulle(steps=0)
    with pytest.raises(ValueError, match="positive"):
        F.drori_teboulle(L=-1.0)


# ---------------------------------------------------------------- Newton's method


def test_newton_solves_a_quadratic_in_one_step_whatever_kappa():
    for kappa in (1.0, 1e3, 1e8):
        fn = F.ill_conditioned(kappa)
        t = F.run(fn, [1.3, -0.7], 1, update=F.newton(fn))
        assert t.final.abs().max() < 1e-8


def test_newton_converges_quadratically_on_rosenbrock():
    fn = F.rosenbrock()
    t = F.run(fn, [-1.5, 2.0], 8, update=F.newton(fn))
    err = (t.path - 1).norm(dim=1)
    assert err[-1] < 1e-14
    close = [k for k in range(len(err) - 1) if 0 < err[k] < 1e-2 and err[k + 1] > 0]
    assert close and all(err[k + 1] <= 10 * err[k] ** 2 for k in close)


def test_newton_is_affine_invariant():
    # Newton on f(Ty) from T⁻¹x₀ is T⁻¹ (Newton on f from x₀)
    fn = F.rosenbrock()
    T = torch.tensor([[2.0, 0.5], [-0.3, 1.2]], dtype=torch.float64)
    Ti = torch.linalg.inv(T)
    g = F.Function2D("g", lambda y: fn.value(y @ T.T), lambda y: fn.grad(y @ T.T) @ T,
                     lambda y: T.T @ fn.hessian(y @ T.T) @ T, (), (), fn.box)
    a = F.run(fn, [-1.5, 2.0], 5, update=F.newton(fn))
    b = F.run(g, Ti @ torch.tensor([-1.5, 2.0], dtype=torch.float64), 5, update=F.newton(g))
    torch.testing.assert_close(b.path @ T.T, a.path, rtol=1e-9, atol=1e-9)


def test_newton_bad_input():
    with pytest.raises(TypeError, match="Function2D"):
        F.newton(lambda x: x)
    with pytest.raises(ValueError, match="positive"):
        F.newton(F.saddle(), alpha=0.0)


# ---------------------------------------------------------------- Lasso, soft thresholding, ISTA/FISTA


def test_soft_threshold_is_the_prox_of_l1():
    v = torch.linspace(-3, 3, 61, dtype=torch.float64)
    grid = torch.linspace(-4, 4, 80001, dtype=torch.float64)
    for tau in (0.0, 0.5, 1.7):
        brute = grid[(0.5 * (grid[None, :] - v[:, None]) ** 2 + tau * grid.abs()[None, :]).argmin(1)]
        torch.testing.assert_close(F.soft_threshold(v, tau), brute, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="non-negative"):
        F.soft_threshold(v, -1.0)


def _kkt_violation(pb, x):
    """How far x is from the Lasso optimality conditions −∇g(x) ∈ λ ∂‖x‖₁."""
    g = pb.grad(x)
    on = x != 0
    zero = torch.zeros(1, dtype=x.dtype)
    return max(float(torch.cat([zero, (g[on] + pb.lam * torch.sign(x[on])).abs()]).max()),
               float(torch.cat([zero, g[~on].abs() - pb.lam]).max()))


def test_ista_and_fista_reach_the_lasso_solution_within_their_bounds():
    pb = F.lasso(n=60, d=120, nonzero=6, lam=0.05, seed=3)
    x_star, v_star = F.proximal_gradient(pb, 5000, accelerated=True)
    assert _kkt_violation(pb, x_star) < 1e-9
    f_star = float(v_star[-1])
    r0_sq = float(x_star.norm() ** 2)  # x₀ = 0
    xi, vi = F.proximal_gradient(pb, 400)
    xf, vf = F.proximal_gradient(pb, 400, accelerated=True)
    k = torch.arange(1, 401, dtype=torch.float64)
    assert ((vi[1:] - vi[:-1]) <= 1e-12).all()  # ISTA is a descent method
    assert (vi[1:] - f_star <= pb.L * r0_sq / (2 * k) + 1e-12).all()  # Beck–Teboulle Thm 3.1
    assert (vf[1:] - f_star <= 2 * pb.L * r0_sq / (k + 1) ** 2 + 1e-12).all()  # Thm 4.4
    assert float(vf[50]) - f_star < float(vi[50]) - f_star
    assert (x_star[pb.x_true != 0] != 0).all()  # the true support is found


def test_proximal_gradient_with_zero_lambda_is_gradient_descent():
    pb = F.lasso(n=40, d=10, nonzero=3, seed=1)
    pb0 = F.Lasso(D=pb.D, y=pb.y, lam=0.0)
    x, _ = F.proximal_gradient(pb0, 50)
    z = torch.zeros(10, dtype=torch.float64)
    for _ in range(50):
        z = z - pb0.grad(z) / pb0.L
    torch.testing.assert_close(x, z, rtol=0, atol=1e-14)



def test_fista_is_beck_and_teboulle_scheme_with_two_plain_first_steps():
    # FISTA with constant step as printed by Beck and Teboulle (2009): y_1 = x_0, t_1 = 1,
    # x_k = p_L(y_k), t_{k+1} = (1 + √(1 + 4t_k²))/2, y_{k+1} = x_k + (t_k − 1)/t_{k+1} (x_k − x_{k−1}).
    pb = F.lasso(n=30, d=50, nonzero=4, lam=0.05, seed=2)

    def p_L(y):
        return F.soft_threshold(y - pb.grad(y) / pb.L, pb.lam / pb.L)

    x_prev = torch.zeros(50, dtype=torch.float64)
    y, t, paper = x_prev.clone(), 1.0, [pb.value(x_prev)]
    for _ in range(30):
        x = p_L(y)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = x + (t - 1) / t_next * (x - x_prev)
        x_prev, t = x, t_next
        paper.append(pb.value(x))
    _, ours = F.proximal_gradient(pb, 30, accelerated=True)
    torch.testing.assert_close(ours, torch.stack(paper), rtol=0, atol=1e-13)
    _, ista = F.proximal_gradient(pb, 3)
    assert torch.equal(ours[:3], ista[:3])  # x_1 and x_2 are plain ISTA steps
    assert not torch.equal(ours[3], ista[3])  # the extrapolation starts at the third step

def test_lasso_bad_input():
    with pytest.raises(ValueError, match="nonzero"):
        F.lasso(d=5, nonzero=6)
    with pytest.raises(ValueError, match="positive"):
        F.lasso(lam=0.0)
    with pytest.raises(TypeError, match="Lasso"):
        F.proximal_gradient(None, 5)
    with pytest.raises(ValueError, match="non-negative int"):
        F.proximal_gradient(F.lasso(), -1)


def test_sample_box():
    fn = F.levy()
    x = F.sample_box(fn, 500, torch.Generator().manual_seed(0))
    assert x.shape == (500, 2) and x.dtype == torch.float64
    assert (x[:, 0] >= fn.box[0]).all() and (x[:, 0] <= fn.box[1]).all()
    assert (x[:, 1] >= fn.box[2]).all() and (x[:, 1] <= fn.box[3]).all()
    again = F.sample_box(fn, 500, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    with pytest.raises(TypeError, match="two variables"):
        F.sample_box(F.lessard(), 5)
    with pytest.raises(ValueError, match="positive int"):
        F.sample_box(fn, 0)
