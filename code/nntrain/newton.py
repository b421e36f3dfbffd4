"""Newton's method and damped Newton on small problems (chapter 2, «За пределами первого порядка»).

The Newton step ``Δx = −∇²f(x)⁻¹∇f(x)`` minimizes the second-order Taylor model; it is also the
steepest-descent direction in the norm ``‖u‖ = (uᵀ∇²f(x)u)^½``. Pure Newton takes the full step
and converges quadratically near a minimum with a Lipschitz Hessian, but may diverge from far
away; damped Newton (Boyd and Vandenberghe, §9.5) chooses the step t by backtracking until
``f(x + tΔx) ≤ f(x) + c·t·∇f(x)ᵀΔx``. The test problems here have closed-form gradients and
Hessians: ``log_two_cosh`` (the classical divergent example) and L2-regularized logistic
regression.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["newton_direction", "newton_decrement2", "backtracking", "newton", "NewtonRun",
           "log_two_cosh", "logistic_problem", "solve_seconds"]

Fn = Callable[[Tensor], Tensor]


def newton_direction(grad: Tensor, hess: Tensor) -> Tensor:
    """``Δx = −H⁻¹g`` by a Cholesky factorization: O(d³/3) work, O(d²) memory.

    Raises ValueError if H is not positive definite (then Δx need not be a descent direction).
    """
    if hess.dim() != 2 or hess.shape != (grad.numel(), grad.numel()):
        raise ValueError(f"hess must be {grad.numel()} × {grad.numel()}, got {tuple(hess.shape)}")
    if not (torch.isfinite(grad).all() and torch.isfinite(hess).all()):
        raise ValueError("gradient or Hessian contains NaN or ∞")
    chol, info = torch.linalg.cholesky_ex(hess)
    if int(info) != 0:
        raise ValueError("the Hessian is not positive definite: Newton's step is not defined "
                         "as a descent direction")
    return -torch.cholesky_solve(grad.reshape(-1, 1), chol).reshape(grad.shape)


def newton_decrement2(grad: Tensor, step: Tensor) -> float:
    """``λ(x)² = −∇f(x)ᵀΔx = ∇fᵀ H⁻¹ ∇f``: the model's predicted decrease is λ²/2."""
    return float(-grad.dot(step))


def backtracking(f: Fn, x: Tensor, fx: float, slope: float, step: Tensor, c: float = 0.25,
                 shrink: float = 0.5, max_halvings: int = 60) -> float:
    """Largest t in {1, shrink, shrink², …} with ``f(x + t·step) ≤ fx + c·t·slope`` (Armijo).

    ``slope = ∇f(x)ᵀstep`` must be negative; c ∈ (0, ½) and shrink ∈ (0, 1) as in Boyd and
    Vandenberghe's Algorithm 9.2.
    """
    if not 0 < c < 0.5:
        raise ValueError(f"c must lie in (0, 0.5), got {c!r}")
    if not 0 < shrink < 1:
        raise ValueError(f"shrink must lie in (0, 1), got {shrink!r}")
    if not slope < 0:
        raise ValueError(f"the step is not a descent direction (slope {slope!r} >= 0)")
    t = 1.0
    for _ in range(max_halvings):
        val = float(f(x + t * step))
        if math.isfinite(val) and val <= fx + c * t * slope:
            return t
        t *= shrink
    raise RuntimeError(f"backtracking found no acceptable step after {max_halvings} halvings")


@dataclass
class NewtonRun:
    """Iterates, values, step lengths t and squared Newton decrements of a run."""

    path: list[Tensor] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    decrements2: list[float] = field(default_factory=list)
    diverged: bool = False


def newton(f: Fn, grad: Fn, hess: Fn, x0: Tensor, iters: int, damped: bool = False,
           c: float = 0.25, shrink: float = 0.5, tol: float = 0.0,
           blowup: float = 1e6) -> NewtonRun:
    """Pure (``damped=False``) or damped Newton for ``iters`` iterations from x0.

    Stops early when λ²/2 ≤ tol, or (pure Newton) when ‖x‖ exceeds ``blowup``, f is no longer
    finite or the Hessian is no longer numerically positive definite; ``diverged`` then says so.
    """
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be an int >= 0, got {iters!r}")
    if not torch.isfinite(x0).all():
        raise ValueError("x0 contains NaN or ∞")
    x = x0.clone()
    run = NewtonRun(path=[x.clone()], values=[float(f(x))])
    for _ in range(iters):
        g = grad(x)
        H = hess(x)
        if not damped and int(torch.linalg.cholesky_ex(H)[1]) != 0:
            run.diverged = True  # far out the curvature underflows: the step is not defined
            break
        dx = newton_direction(g, H)
        lam2 = newton_decrement2(g, dx)
        run.decrements2.append(lam2)
        if lam2 / 2 <= tol:
            break
        t = backtracking(f, x, run.values[-1], -lam2, dx, c, shrink) if damped else 1.0
        x = x + t * dx
        run.steps.append(t)
        run.path.append(x.clone())
        run.values.append(float(f(x)))
        if not (math.isfinite(run.values[-1]) and float(x.norm()) < blowup):
            run.diverged = True
            break
    return run


def log_two_cosh() -> tuple[Fn, Fn, Fn]:
    """``f(x) = Σᵢ log(e^{xᵢ} + e^{−xᵢ})``: convex and smooth, minimum d·log 2 at x = 0, f'' → 0 far away.

    Returns (f, grad, hess). Pure Newton maps x to ``x − sinh(2x)/2`` per coordinate and diverges
    when |x₀| exceeds the root of ``sinh(2x) = 4x`` (≈ 1.0887).
    """
    def f(x: Tensor) -> Tensor:
        a = x.abs()
        return (a + torch.log1p(torch.exp(-2 * a))).sum()

    def grad(x: Tensor) -> Tensor:
        return torch.tanh(x)

    def hess(x: Tensor) -> Tensor:
        e = torch.exp(-2 * x.abs())  # sech² x = 4e^{−2|x|}/(1 + e^{−2|x|})², no 1 − tanh² cancellation
        return torch.diag(4 * e / (1 + e) ** 2)

    return f, grad, hess


def logistic_problem(X: Tensor, y: Tensor, reg: float) -> tuple[Fn, Fn, Fn]:
    """Binary logistic regression with labels in {0, 1} and an L2 term: (f, grad, hess).

    ``f(w) = mean(softplus(Xw) − y·Xw) + reg/2·‖w‖²``; with reg > 0 it is strongly convex and its
    Hessian ``XᵀDX/n + reg·I`` (D = diag σ(1 − σ)) is Lipschitz: Newton converges quadratically.
    """
    if X.dim() != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"need X (n, d) and y (n,), got {tuple(X.shape)} and {tuple(y.shape)}")
    if not (math.isfinite(reg) and reg >= 0):
        raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
    if not ((y == 0) | (y == 1)).all():
        raise ValueError("labels must be 0 or 1")
    n = X.shape[0]
    y = y.to(X.dtype)

    def f(w: Tensor) -> Tensor:
        z = X @ w
        return (torch.nn.functional.softplus(z) - y * z).mean() + 0.5 * reg * w.dot(w)

    def grad(w: Tensor) -> Tensor:
        return X.T @ (torch.sigmoid(X @ w) - y) / n + reg * w

    def hess(w: Tensor) -> Tensor:
        p = torch.sigmoid(X @ w)
        return (X.T * (p * (1 - p))) @ X / n + reg * torch.eye(X.shape[1], dtype=X.dtype)

    return f, grad, hess


def solve_seconds(dims: Sequence[int], repeats: int = 3, seed: int = 0) -> list[float]:
    """Best-of-``repeats`` wall time of one Newton solve (Cholesky + two triangular solves).

    The matrices are random symmetric positive definite, float64, on the CPU; the time grows
    like d³ once d is large enough for the arithmetic to dominate the call overhead.
    """
    gen = torch.Generator().manual_seed(seed)
    out = []
    for d in dims:
        B = torch.randn(d, d, generator=gen, dtype=torch.float64)
        H = B @ B.T / d + torch.eye(d, dtype=torch.float64)
        g = torch.randn(d, generator=gen, dtype=torch.float64)
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            newton_direction(g, H)
            best = min(best, time.perf_counter() - t0)
        out.append(best)
    return out
