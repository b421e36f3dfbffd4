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
