"""Gradient checking with finite differences (chapter 1).

Why: an analytic gradient (derived by hand or by an autograd engine) can be silently wrong. The
central difference (f(x + h e_i) − f(x − h e_i)) / 2h estimates each partial derivative with an
error of two kinds: truncation ≈ h²|f'''|/6 (smaller h is better) and round-off ≈ ε|f|/h
(larger h is better): each computed value f(x ± h) may be off by up to about ε|f| (a few
roundings of u = ε/2 each), so their difference by up to 2ε|f|, and dividing by 2h gives ε|f|/h.
Their sum is smallest at h* = (3ε|f|/|f'''|)^{1/3} ~ ε^{1/3}: for
|f| = |f'''| about 9e-6 in float64 and 7e-3 in float32, with a best error ~ε^{2/3} (4e-11 and 3e-5).
Hence gradient checks are done in float64.

With f and f''' taken at the point x this sum is an estimate of the leading terms, not a bound: the
O(h⁴) remainder is dropped, and at large h the measured error can exceed it. With the maxima of |f|
and |f'''| over [x − h, x + h] (Lagrange's form of the remainder) it is a bound, as long as each
computed f(x ± h) is within ε|f| of the true value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def _as_float_array(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name} must be a floating array (float32 or float64), got dtype {a.dtype}")
    return a


def numerical_grad(f: Callable[[np.ndarray], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of a scalar function ``f`` at ``x`` (2·x.size calls of ``f``).

    Arithmetic happens in ``x``'s dtype, so a float32 ``x`` shows float32 round-off.
    """
    x = _as_float_array(x, "x")
    if not h > 0:
        raise ValueError(f"step h must be positive, got {h}")
    x = x.copy()
    grad = np.empty_like(x)
    step = x.dtype.type(h)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + step
        f_plus = f(x)
        flat[i] = old - step
        f_minus = f(x)
        flat[i] = old
        gflat[i] = (x.dtype.type(f_plus) - x.dtype.type(f_minus)) / (2 * step)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray, tiny: float = 1e-300) -> float:
    """‖a − n‖ / (‖a‖ + ‖n‖): scale-free, 0 for equal arrays, 1 for opposite ones.

    NaN or infinity in either array raises: a check that hides them is worse than none.
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.shape != n.shape:
        raise ValueError(f"gradients have different shapes: analytic {a.shape}, numeric {n.shape}")
    for name, arr in (("analytic", a), ("numeric", n)):
        bad = ~np.isfinite(arr)
        if bad.any():
            where = [tuple(int(i) for i in idx) for idx in np.argwhere(bad)[:5]]
            raise ValueError(f"{name} gradient has {int(bad.sum())} non-finite entries (NaN/inf), e.g. at {where}")
    return float(np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), tiny))


def max_elementwise_error(analytic: np.ndarray, numeric: np.ndarray, tiny: float = 1e-300) -> float:
    """max_i |a_i − n_i| / max(|a_i|, |n_i|): the entrywise ratio that CS231n's scale is about.

    Entries where both are exactly zero count as 0. NaN or infinity raises, as in :func:`relative_error`.
    """
    relative_error(analytic, numeric)  # shape and finiteness checks
    a = np.asarray(analytic, dtype=np.float64)
    n = np.asarray(numeric, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), tiny)))


@dataclass
class GradcheckResult:
    """What a gradient check found; ``ok`` is False when the error is large or something is NaN.

    ``error`` is the norm-based :func:`relative_error` (what ``tol`` applies to), ``elementwise``
    the largest entrywise ratio of :func:`max_elementwise_error` (NaN when a gradient is not finite).
    """
    error: float
    ok: bool
    message: str
    elementwise: float = float("nan")

    def __str__(self) -> str:
        return self.message


def gradcheck(f: Callable[[np.ndarray], float], grad: np.ndarray, x: np.ndarray, h: float = 1e-6,
              tol: float = 1e-7) -> GradcheckResult:
    """Compare an analytic gradient ``grad`` of ``f`` at ``x`` with central differences.

    Rule of thumb in float64: a relative error below ~1e-7 is fine, above ~1e-4 is a bug.
    NaN or infinity in either gradient gives ``ok=False`` with a message saying where.
    """
    numeric = numerical_grad(f, x, h)
    try:
        err = relative_error(grad, numeric)
    except ValueError as problem:
        return GradcheckResult(float("nan"), False, f"gradient check failed: {problem}")
    ok = err <= tol
    verdict = "passed" if ok else "FAILED"
    return GradcheckResult(err, ok, f"gradient check {verdict}: relative error {err:.2e} (tolerance {tol:.0e})",
                           max_elementwise_error(grad, numeric))


def central_difference(f: Callable, x0: float, h: float, dtype=np.float64) -> float:
    """(f(x0 + h) − f(x0 − h)) / 2h with every number rounded to ``dtype``."""
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of {[d.__name__ for d in _FLOAT_DTYPES]}, got {dtype!r}")
    t = np.dtype(dtype).type
    x, step = t(x0), t(h)
    return float((t(f(t(x + step))) - t(f(t(x - step)))) / (t(2) * step))


def error_vs_h(f: Callable, dfdx: float, x0: float, hs: np.ndarray, dtype=np.float64) -> np.ndarray:
    """|central difference − true derivative| for each step in ``hs`` (the V-shaped curve)."""
    hs = np.asarray(hs, dtype=np.float64)
    if np.any(hs <= 0):
        raise ValueError("every step h must be positive")
    return np.array([abs(central_difference(f, x0, h, dtype) - dfdx) for h in hs])


def error_model(hs: np.ndarray, eps: float, f_value: float, third_derivative: float) -> np.ndarray:
    """The error model h²|f'''|/6 + ε|f|/h: truncation plus round-off of a central difference.

    Round-off: each of f(x ± h) is off by up to ε|f|, their difference by up to 2ε|f|, divided by 2h.
    With |f(x)| and |f'''(x)| at the point it estimates the leading terms (not a bound: the O(h⁴)
    remainder is dropped). ``f_value`` and ``third_derivative`` may be arrays, one entry per step:
    their maxima over [x − h, x + h] turn the model into a bound.
    """
    hs = np.asarray(hs, dtype=np.float64)
    return hs**2 * abs(third_derivative) / 6 + eps * abs(f_value) / hs


def optimal_step(eps: float, f_value: float = 1.0, third_derivative: float = 1.0) -> float:
    """The h that minimises :func:`error_model`: h* = (3ε|f|/|f'''|)^{1/3} ≈ ε^{1/3}."""
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if third_derivative == 0:
        raise ValueError("f''' = 0: truncation error vanishes and no finite optimum exists")
    return float((3 * eps * max(abs(f_value), 1e-300) / abs(third_derivative)) ** (1 / 3))


def gradcheck_param(loss_fn: Callable[[], "object"], param, h: float = 1e-6, tol: float = 1e-7) -> GradcheckResult:
    """Check the gradient that our autograd gives for one parameter tensor of a model.

    ``loss_fn()`` builds the loss (an :class:`nntrain.autograd.Tensor`) from scratch; ``param`` is a
    leaf tensor it uses. The analytic gradient comes from ``loss_fn().backward()``, the numeric one
    from perturbing ``param.data`` in place (restored afterwards). Arithmetic in ``param``'s dtype.
    """
    if not getattr(param, "requires_grad", False):
        raise ValueError("param must be a leaf Tensor with requires_grad=True")
    param.grad = None
    loss_fn().backward()
    analytic = param.grad.copy()
    param.grad = None
    original = param.data

    def f(w: np.ndarray) -> float:
        param.data = w
        return float(loss_fn().data)

    try:
        return gradcheck(f, analytic, original, h=h, tol=tol)
    finally:
        param.data = original
