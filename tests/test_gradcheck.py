"""nntrain.gradcheck: central differences, relative error, the error-vs-h trade-off, NaN reporting."""

import numpy as np
import pytest
import torch

from nntrain import gradcheck as gc


def _f(x):
    return float(np.sum(np.sin(x) * x**2))


def _df(x):
    return np.cos(x) * x**2 + 2 * x * np.sin(x)


def test_numerical_grad_matches_analytic_and_torch():
    x = np.random.default_rng(0).standard_normal((3, 4))
    num = gc.numerical_grad(_f, x, h=1e-6)
    t = torch.tensor(x, requires_grad=True)
    (torch.sin(t) * t**2).sum().backward()
    assert gc.relative_error(_df(x), num) < 1e-9
    assert gc.relative_error(t.grad.numpy(), num) < 1e-9


def test_numerical_grad_does_not_modify_x():
    x = np.linspace(-1, 1, 5)
    before = x.copy()
    gc.numerical_grad(_f, x)
    np.testing.assert_array_equal(x, before)


def test_torch_gradcheck_agrees():
    # torch's own finite-difference check is the library twin of ours
    t = torch.randn(4, dtype=torch.float64, requires_grad=True, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(lambda v: (torch.sin(v) * v**2).sum(), (t,), eps=1e-6)


def test_relative_error_properties():
    a = np.array([1.0, 2.0, 3.0])
    assert gc.relative_error(a, a) == 0.0
    assert gc.relative_error(a, -a) == pytest.approx(1.0)
    assert gc.relative_error(1e6 * a, 1e6 * a * (1 + 1e-8)) == pytest.approx(gc.relative_error(a, a * (1 + 1e-8)))
    assert gc.relative_error(np.zeros(3), np.zeros(3)) == 0.0


def test_nan_is_reported_not_hidden():
    with pytest.raises(ValueError, match="numeric gradient has 1 non-finite.*\\(1,\\)"):
        gc.relative_error(np.ones(3), np.array([1.0, np.nan, 1.0]))
    result = gc.gradcheck(lambda x: float(np.sum(np.log(x))), np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    assert not result.ok and "NaN" in str(result)
    with np.errstate(invalid="ignore"):
        result = gc.gradcheck(lambda x: float(np.sum(np.sqrt(x))), np.array([np.inf]), np.array([0.0]))
    assert not result.ok and np.isnan(result.error)


def test_gradcheck_catches_a_wrong_gradient():
    x = np.random.default_rng(1).standard_normal(5)
    assert gc.gradcheck(_f, _df(x), x).ok
    wrong = _df(x)
    wrong[2] *= 1.01
    bad = gc.gradcheck(_f, wrong, x)
    assert not bad.ok and "FAILED" in str(bad)


def test_error_vs_h_is_v_shaped_with_minimum_near_optimal_step():
    hs = np.logspace(-12, -1, 45)
    for dtype, eps in ((np.float64, np.finfo(np.float64).eps), (np.float32, np.finfo(np.float32).eps)):
        errors = gc.error_vs_h(np.exp, np.exp(1.0), 1.0, hs, dtype=dtype)
        best = hs[np.argmin(errors)]
        h_star = gc.optimal_step(eps, f_value=np.e, third_derivative=np.e)
        assert h_star / 30 < best < h_star * 30, (dtype, best, h_star)
        assert errors[0] > 100 * errors.min() and errors[-1] > 100 * errors.min()


def test_error_model_and_optimal_step():
    eps = 2.0**-52
    assert gc.optimal_step(eps) == pytest.approx((3 * eps) ** (1 / 3))
    hs = np.logspace(-9, -3, 2001)
    model = gc.error_model(hs, eps, 1.0, 1.0)
    assert hs[np.argmin(model)] == pytest.approx(gc.optimal_step(eps), rel=0.01)
    # truncation error of the central difference really is h²f'''/6 (a float64 check at moderate h)
    h = 1e-2
    err = gc.central_difference(np.exp, 0.0, h) - 1.0
    assert err == pytest.approx(h**2 / 6, rel=1e-3)


def test_bad_input():
    with pytest.raises(ValueError, match="positive"):
        gc.numerical_grad(_f, np.ones(2), h=0.0)
    with pytest.raises(TypeError, match="floating"):
        gc.numerical_grad(_f, np.ones(2, dtype=int))
    with pytest.raises(ValueError, match="shapes"):
        gc.relative_error(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="dtype must be one of"):
        gc.central_difference(np.exp, 0.0, 1e-3, dtype=np.int32)
    with pytest.raises(ValueError, match="positive"):
        gc.error_vs_h(np.exp, 1.0, 0.0, [1e-3, -1.0])
    with pytest.raises(ValueError, match="eps"):
        gc.optimal_step(0.0)
    with pytest.raises(ValueError, match="f''' = 0"):
        gc.optimal_step(1e-16, third_derivative=0.0)


def test_gradcheck_param_on_our_mlp_float64_and_float32():
    from nntrain import autograd as ag

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
    errors = {}
    for dtype, h in ((np.float64, 1e-6), (np.float32, 1e-3)):
        net = ag.MLP([5, 4, 3], np.random.default_rng(0), activation="tanh", dtype=dtype)
        w = net.layers[0].W
        before = w.data.copy()
        result = gc.gradcheck_param(lambda: ag.cross_entropy(net(ag.tensor(x, dtype=dtype)), y), w, h=h)
        np.testing.assert_array_equal(w.data, before)
        assert w.grad is None
        errors[dtype] = result.error
    assert errors[np.float64] < 1e-8 < 1e-5 < errors[np.float32] < 1e-1
    with pytest.raises(ValueError, match="requires_grad"):
        gc.gradcheck_param(lambda: None, ag.tensor(1.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_error_model_at_the_point_is_an_estimate_not_a_bound(dtype):
    """With f, f‴ at x the model drops O(h⁴): the measured error exceeds it at large h."""
    eps = float(np.finfo(dtype).eps)
    hs = np.logspace(-14, 0, 141)
    measured = gc.error_vs_h(np.exp, np.e, 1.0, hs, dtype=dtype)
    at_point = gc.error_model(hs, eps, np.e, np.e)
    assert np.any(measured > at_point)
    assert np.all(hs[measured > at_point] > 10 * gc.optimal_step(eps, np.e, np.e))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_error_model_with_maxima_over_the_interval_bounds_the_measured_error(dtype):
    """max |f|, |f‴| over [x − h, x + h] (here e^{1+h}) make h²|f‴|/6 + ε|f|/h a bound."""
    eps = float(np.finfo(dtype).eps)
    hs = np.logspace(-14, 0, 141)
    measured = gc.error_vs_h(np.exp, np.e, 1.0, hs, dtype=dtype)
    maxima = np.e * np.exp(hs)
    assert np.all(measured <= gc.error_model(hs, eps, maxima, maxima))


def test_max_elementwise_error():
    a = np.array([1.0, 0.0, -2.0])
    assert gc.max_elementwise_error(a, a) == 0.0
    assert gc.max_elementwise_error(a, np.array([1.1, 0.0, -2.0])) == pytest.approx(0.1 / 1.1)
    assert gc.max_elementwise_error(a, -a) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="non-finite"):
        gc.max_elementwise_error(a, np.array([1.0, np.nan, 0.0]))
    x = np.random.default_rng(2).standard_normal(4)
    result = gc.gradcheck(_f, _df(x), x)
    assert result.error <= result.elementwise < 1e-6


def test_optimal_step_minimises_the_error_model():
    eps = float(np.finfo(np.float64).eps)
    h_star = gc.optimal_step(eps, f_value=2.0, third_derivative=3.0)
    hs = h_star * np.array([0.5, 0.9, 1.0, 1.1, 2.0])
    values = gc.error_model(hs, eps, 2.0, 3.0)
    assert np.argmin(values) == 2
