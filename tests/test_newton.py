"""nntrain.newton: quadratic rate, damped Newton's global convergence, bad input."""

import math

import pytest
import torch

from nntrain.newton import backtracking, log_two_cosh, logistic_problem, newton, \
    newton_direction, solve_seconds


def _logistic():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(200, 5, generator=gen, dtype=torch.float64)
    y = (X @ torch.ones(5, dtype=torch.float64) + torch.randn(200, generator=gen,
                                                               dtype=torch.float64) > 0)
    return logistic_problem(X, y.double(), 1e-2)


def test_gradient_and_hessian_match_autograd():
    f, g, h = _logistic()
    w = torch.linspace(-0.5, 0.5, 5, dtype=torch.float64)
    assert torch.allclose(torch.func.grad(f)(w), g(w), atol=1e-12)
    assert torch.allclose(torch.func.hessian(f)(w), h(w), atol=1e-12)
    f2, g2, h2 = log_two_cosh()
    x = torch.tensor([0.3, -2.0, 5.0], dtype=torch.float64)
    assert torch.allclose(torch.func.grad(f2)(x), g2(x), atol=1e-12)
    assert torch.allclose(torch.func.hessian(f2)(x), h2(x), atol=1e-12)
    assert math.isclose(float(f2(torch.zeros(2, dtype=torch.float64))), 2 * math.log(2))


def test_quadratic_rate():
    f, g, h = _logistic()
    run = newton(f, g, h, torch.zeros(5, dtype=torch.float64), 8)
    x_star = run.path[-1]
    err = [float((x - x_star).norm()) for x in run.path[:-1]]
    ratios = [err[k + 1] / err[k] ** 2 for k in range(len(err) - 1) if err[k + 1] > 1e-13]
    assert len(ratios) >= 2
    assert max(ratios) < 10 and err[-1] < 1e-12


def test_pure_newton_diverges_damped_converges_on_log_cosh():
    f, g, h = log_two_cosh()
    x_bad = torch.tensor([1.2], dtype=torch.float64)
    assert newton(f, g, h, x_bad, 10).diverged
    x_good = torch.tensor([1.0], dtype=torch.float64)
    assert abs(float(newton(f, g, h, x_good, 10).path[-1])) < 1e-12
    for x0 in (1.2, 5.0, -20.0):
        run = newton(f, g, h, torch.tensor([x0], dtype=torch.float64), 40, damped=True, tol=1e-20)
        assert not run.diverged and abs(float(run.path[-1])) < 1e-8
        assert all(b <= a for a, b in zip(run.values, run.values[1:]))


def test_solve_seconds_shape():
    assert len(solve_seconds([4, 8], repeats=1)) == 2


def test_bad_input():
    with pytest.raises(ValueError, match="positive definite"):
        newton_direction(torch.ones(2), -torch.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        newton_direction(torch.tensor([float("nan"), 0.0]), torch.eye(2))
    f, g, h = log_two_cosh()
    x = torch.ones(1, dtype=torch.float64)
    with pytest.raises(ValueError, match="descent"):
        backtracking(f, x, float(f(x)), 1.0, x)
    with pytest.raises(ValueError, match="c must"):
        backtracking(f, x, float(f(x)), -1.0, -x, c=0.7)
    with pytest.raises(ValueError, match="NaN"):
        newton(f, g, h, torch.tensor([float("nan")]), 3)
    with pytest.raises(ValueError, match="reg"):
        logistic_problem(torch.ones(2, 1), torch.ones(2), -1.0)
