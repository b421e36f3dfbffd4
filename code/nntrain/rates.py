"""Gradient descent, heavy ball and Nesterov as pure update rules, their tuned constants and rates (chapter 2).

The update rules follow one protocol, ``update(x, grad_fn, state) -> (x_new, state)`` with
``state=None`` at the start, so that ``nntrain.functions.run`` draws their trajectories and
``iterations_to_tolerance`` counts their iterations on a whole batch of problems at once.
The rules are defined once, in ``nntrain.optim``; ``gd``, ``heavy_ball``, ``nesterov`` and
``ema_momentum`` here are its adapters under the chapter's names (``nntrain.optim.trajectory``).
``alpha`` and ``beta`` may be floats or tensors that broadcast against ``x`` (one value per problem).

The formulas for the constants and rates are those of Polyak (1964) for the heavy ball and of
Nesterov (*Introductory Lectures on Convex Optimization*, 2004, §2.1–2.2) for gradient descent and
the accelerated method; the chapters «Градиентный спуск» and «Метод импульса» check them by code.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .optim import trajectory as _traj
from .optim._common import check_range as _check_scalar
from .optim.trajectory import GradFn, Update

Tensor = torch.Tensor

METHODS = ("gd", "gd_optimal", "heavy_ball", "nesterov")

__all__ = [
    "METHODS", "gd", "gd_exact_quadratic", "gd_armijo", "heavy_ball", "nesterov", "ema_momentum", "gd_step", "gd_optimal_step",
    "heavy_ball_params", "nesterov_params", "method_params", "spectral_rate", "predicted_iterations",
    "iterations_to_tolerance", "quadratic_iterations", "loglog_slope", "gd_convex_bound",
    "gd_strongly_convex_bound", "nesterov_bound", "kappa", "stability_limit", "nesterov_potential",
    "heavy_ball_global_rate", "cycle_period",
]


# ---------------------------------------------------------------- pure update rules


def gd(alpha) -> Update:
    """Gradient descent, x ← x − α∇f(x) (:func:`nntrain.optim.trajectory.gd_rule`)."""
    return _traj.gd_rule(alpha)


def heavy_ball(alpha, beta) -> Update:
    """Polyak's heavy ball in the physics form: v ← βv − α∇f(x), x ← x + v (state: the velocity v).

    The same as x_{k+1} = x_k − α∇f(x_k) + β(x_k − x_{k−1}) with v_k = x_k − x_{k−1}, v_0 = 0;
    the rule is :func:`nntrain.optim.heavy_ball_update`.
    """
    return _traj.heavy_ball_rule(alpha, beta)


def nesterov(alpha, beta) -> Update:
    """Nesterov's method in the look-ahead form: v ← βv − α∇f(x + βv), x ← x + v.

    The heavy ball with the gradient taken at x + βv (:func:`nntrain.optim.trajectory.nesterov_rule`).
    """
    return _traj.nesterov_rule(alpha, beta)


def ema_momentum(alpha, beta) -> Update:
    """Momentum as an exponential moving average: m ← βm + (1 − β)∇f(x), x ← x − αm (m₀ = 0).

    It equals ``heavy_ball(alpha * (1 - beta), beta)``: only the step is rescaled
    (:func:`nntrain.optim.ema_momentum_update`).
    """
    return _traj.ema_momentum_rule(alpha, beta)


def gd_exact_quadratic(A: Tensor) -> Update:
    """Steepest descent with exact line search on f = ½ xᵀAx: α_k = gᵀg / gᵀAg minimises f(x − αg)."""
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {tuple(A.shape)}")

    def update(x: Tensor, grad_fn: GradFn, state: Any = None) -> tuple[Tensor, Any]:
        g = grad_fn(x)
        curv = g @ A.to(g) @ g
        if curv <= 0:
            return x, state  # at the minimum (g = 0) or a direction of no curvature: stay
        return x - (g @ g) / curv * g, state

    return update


def gd_armijo(f: Callable[[Tensor], Tensor], alpha0: float = 1.0, c: float = 1e-4, shrink: float = 0.5,
              max_halvings: int = 60) -> Update:
    """Gradient descent with Armijo backtracking: halve α from ``alpha0`` until f(x − αg) ≤ f(x) − cα‖g‖².

    The state holds the number of function evaluations spent so far (the price of the line search).
    """
    _check_scalar("alpha0", alpha0, 0.0, None, low_open=True)
    _check_scalar("c", c, 0.0, 1.0, low_open=True)
    _check_scalar("shrink", shrink, 0.0, 1.0, low_open=True)
    if shrink >= 1 or c >= 1:
        raise ValueError(f"need 0 < c < 1 and 0 < shrink < 1, got c={c}, shrink={shrink}")

    def update(x: Tensor, grad_fn: GradFn, state: Any = None) -> tuple[Tensor, Any]:
        evals = 0 if state is None else state
        g = grad_fn(x)
        fx, gg, alpha = f(x), g @ g, alpha0
        for _ in range(max_halvings):
            evals += 1
            if f(x - alpha * g) <= fx - c * alpha * gg:
                break
            alpha *= shrink
        return x - alpha * g, evals

    return update


# ---------------------------------------------------------------- constants


def kappa(mu, L):
    """The condition number κ = L/μ."""
    _check_scalar("mu", mu, 0.0, None, low_open=True)
    _check_scalar("L", L, 0.0, None, low_open=True)
    return L / mu


def gd_step(L):
    """The classical safe step 1/L of gradient descent for an L-smooth function."""
    _check_scalar("L", L, 0.0, None, low_open=True)
    return 1.0 / L


def gd_optimal_step(mu, L):
    """The step 2/(μ + L) that minimises max|1 − αλ| over λ ∈ [μ, L]: rate (κ − 1)/(κ + 1)."""
    kappa(mu, L)
    return 2.0 / (mu + L)


def _sqrt(v):
    return torch.sqrt(v) if isinstance(v, torch.Tensor) else math.sqrt(v)


def heavy_ball_params(mu, L):
    """Polyak's tuned heavy ball: α = 4/(√L + √μ)², β = ((√κ − 1)/(√κ + 1))²; rate (√κ − 1)/(√κ + 1)."""
    kappa(mu, L)
    sl, sm = _sqrt(L), _sqrt(mu)
    return 4.0 / (sl + sm) ** 2, ((sl - sm) / (sl + sm)) ** 2


def nesterov_params(mu, L):
    """Nesterov's constants for strongly convex f: α = 1/L, β = (√κ − 1)/(√κ + 1)."""
    kappa(mu, L)
    sl, sm = _sqrt(L), _sqrt(mu)
    return 1.0 / L, (sl - sm) / (sl + sm)


def method_params(method: str, mu, L) -> tuple[Any, Any]:
    """(α, β) of a named method, tuned for μ and L; β = 0 for gradient descent."""
    if method == "gd":
        return gd_step(L), 0.0
    if method == "gd_optimal":
        return gd_optimal_step(mu, L), 0.0
    if method == "heavy_ball":
        return heavy_ball_params(mu, L)
    if method == "nesterov":
        return nesterov_params(mu, L)
    raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")


def make_update(method: str, alpha, beta) -> Update:
    """The update rule of a named method with the given constants."""
    if method in ("gd", "gd_optimal"):
        return gd(alpha)
    if method == "heavy_ball":
        return heavy_ball(alpha, beta)
    if method == "nesterov":
        return nesterov(alpha, beta)
    raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")


# ---------------------------------------------------------------- rates on quadratics


def spectral_rate(alpha: float, beta: float, eigenvalues: Sequence[float], look_ahead: bool = False) -> float:
    """The asymptotic rate of a momentum method on f = ½ xᵀAx: the largest spectral radius over λ ∈ spec A.

    Along an eigenvector with eigenvalue λ the heavy ball obeys x_{k+1} = (1 + β − αλ)x_k − βx_{k−1},
    Nesterov (``look_ahead=True``) x_{k+1} = (1 + β)(1 − αλ)x_k − β(1 − αλ)x_{k−1}; gradient descent is β = 0.
    The error falls like rate^k (times a polynomial in k when the roots coincide).
    """
    _check_scalar("alpha", alpha, 0.0, None, low_open=True)
    _check_scalar("beta", beta, 0.0, 1.0)
    worst = 0.0
    for lam in eigenvalues:
        if look_ahead:
            b, c = (1 + beta) * (1 - alpha * lam), beta * (1 - alpha * lam)
        else:
            b, c = 1 + beta - alpha * lam, beta
        roots = np.roots([1.0, -b, c])
        worst = max(worst, float(np.max(np.abs(roots))))
    return worst


def predicted_iterations(rate, tol: float):
    """The smallest k with rate^k ≤ tol: ⌈ln(1/tol) / ln(1/rate)⌉ (≈ κ ln(1/tol) when rate = 1 − 1/κ)."""
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol!r}")
    r = torch.as_tensor(rate, dtype=torch.float64)
    if ((r <= 0) | (r >= 1)).any():
        raise ValueError(f"a contraction rate must lie in (0, 1), got {rate!r}")
    k = torch.ceil(math.log(tol) / torch.log(r) - 1e-9)
    return int(k) if k.ndim == 0 else k.long()


def iterations_to_tolerance(update: Update, grad_fn: GradFn, x0: Tensor, tol: float, max_steps: int,
                            x_star: Tensor | None = None) -> Tensor:
    """For each row of ``x0`` (shape (batch, dim)): the first k with ‖x_k − x*‖ ≤ tol·‖x_0 − x*‖, or −1.

    All problems of the batch run together (``grad_fn`` works on the batch); the loop stops as soon
    as every row has reached the tolerance.
    """
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (batch, dim), got {tuple(x0.shape)}")
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol!r}")
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    x_star = torch.zeros_like(x0) if x_star is None else x_star.expand_as(x0)
    r0 = (x0 - x_star).norm(dim=1)
    if (r0 == 0).any():
        raise ValueError("x0 must differ from x_star in every row")
    hit = torch.full((x0.shape[0],), -1, dtype=torch.long)
    x, state = x0.clone(), None
    for k in range(1, max_steps + 1):
        x, state = update(x, grad_fn, state)
        done = ((x - x_star).norm(dim=1) <= tol * r0) & (hit < 0)
        hit[done] = k
        if (hit >= 0).all():
            break
    return hit


def quadratic_iterations(method: str, kappas: Sequence[float], tol: float = 1e-6, dim: int = 2,
                         mu: float = 1.0, max_steps: int | None = None) -> dict[str, Tensor]:
    """Measured and predicted iteration counts of a tuned method on quadratics ½ Σ λ_i x_i², λ ∈ [μ, κμ].

    The eigenvalues are spread evenly over [μ, κμ], x₀ = (1, …, 1). Every method here is rotation
    invariant, so working in the eigenbasis loses nothing. Returns tensors ``kappa``, ``measured``,
    ``predicted`` (⌈ln(1/tol)/ln(1/rate)⌉) and ``rate`` (the spectral rate of the method).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    if dim < 2:
        raise ValueError(f"dim must be at least 2 (the smallest and the largest eigenvalue), got {dim}")
    ks = torch.as_tensor(list(kappas), dtype=torch.float64)
    if (ks < 1).any() or not torch.isfinite(ks).all():
        raise ValueError(f"condition numbers must be finite and >= 1, got {list(kappas)}")
    lam = mu * (1 + (ks[:, None] - 1) * torch.linspace(0, 1, dim, dtype=torch.float64)[None, :])
    L = (mu * ks)[:, None]
    alpha, beta = method_params(method, torch.full_like(L, mu), L)
    beta = torch.as_tensor(beta, dtype=torch.float64)
    upd = make_update(method, alpha, beta)
    rates = torch.tensor([
        spectral_rate(float(a), float(b), lam_row.tolist(), look_ahead=(method == "nesterov"))
        for a, b, lam_row in zip(torch.as_tensor(alpha).expand_as(L).flatten(), beta.expand_as(L).flatten(), lam)
    ], dtype=torch.float64)
    predicted = predicted_iterations(rates, tol)
    limit = max_steps or int(4 * predicted.max()) + 100
    measured = iterations_to_tolerance(upd, lambda x: lam * x, torch.ones_like(lam), tol, limit)
    return {"kappa": ks, "measured": measured, "predicted": predicted, "rate": rates}


def loglog_slope(x, y) -> float:
    """The least-squares slope of log y against log x: the exponent p in y ∝ x^p."""
    lx = np.log(np.asarray(x, dtype=float))
    ly = np.log(np.asarray(y, dtype=float))
    if lx.shape != ly.shape or lx.size < 2:
        raise ValueError("x and y must have the same length, at least 2")
    return float(np.polyfit(lx, ly, 1)[0])


# ---------------------------------------------------------------- upper bounds of the theorems


def gd_convex_bound(L: float, r0_sq: float, k):
    """f(x_k) − f* ≤ L‖x₀ − x*‖² / (2k) for gradient descent with step 1/L on a convex L-smooth f."""
    _check_scalar("L", L, 0.0, None, low_open=True)
    kk = np.asarray(k, dtype=float)
    if (kk < 1).any():
        raise ValueError("the bound holds for k >= 1")
    return L * r0_sq / (2 * kk)


def gd_strongly_convex_bound(mu: float, L: float, gap0: float, k):
    """f(x_k) − f* ≤ (1 − μ/L)^k (f(x₀) − f*) for gradient descent with step 1/L, f μ-strongly convex."""
    kappa(mu, L)
    return (1 - mu / L) ** np.asarray(k, dtype=float) * gap0


def nesterov_bound(mu: float, L: float, gap0: float, r0_sq: float, k):
    """f(x_k) − f* ≤ (1 − √(μ/L))^k (f(x₀) − f* + μ‖x₀ − x*‖²/2): Nesterov's method with ``nesterov_params``."""
    kappa(mu, L)
    return (1 - math.sqrt(mu / L)) ** np.asarray(k, dtype=float) * (gap0 + mu * r0_sq / 2)


def stability_limit(beta: float, L: float, look_ahead: bool = False) -> float:
    """The largest step α with which the method is stable on f = ½Lx² (a quadratic of curvature L).

    Gradient descent is β = 0: α < 2/L. The heavy ball: α < 2(1 + β)/L; Nesterov
    (``look_ahead=True``): α < 2(1 + β)/((1 + 2β)L). Divide by 1 − β for the effective step.
    """
    _check_scalar("beta", beta, 0.0, 1.0)
    _check_scalar("L", L, 0.0, None, low_open=True)
    if look_ahead:
        return 2 * (1 + beta) / ((1 + 2 * beta) * L)
    return 2 * (1 + beta) / L


def nesterov_potential(values, path, f_star: float, x_star, mu: float, L: float) -> np.ndarray:
    """The Lyapunov function Φ_k = f(x_k) − f* + μ/2‖z_k − x*‖² of Nesterov's strongly convex scheme.

    ``values`` are f(x_k) and ``path`` the points x_k (shape (K + 1, dim)) of a run of
    ``nesterov(*nesterov_params(mu, L))``; z_k = x_k + (√κ − 1)(x_k − x_{k−1}) with x_{−1} = x_0.
    The chapter's theorem: Φ_{k+1} ≤ (1 − 1/√κ) Φ_k.
    """
    sk = math.sqrt(kappa(mu, L))
    x = torch.as_tensor(path, dtype=torch.float64)
    if x.ndim != 2:
        raise ValueError(f"path must have shape (steps + 1, dim), got {tuple(x.shape)}")
    prev = torch.cat([x[:1], x[:-1]])
    z = x + (sk - 1) * (x - prev)
    dist_sq = ((z - torch.as_tensor(x_star, dtype=torch.float64)) ** 2).sum(1)
    return np.asarray(values, dtype=float) - f_star + mu / 2 * dist_sq.numpy()


def heavy_ball_global_rate(mu: float, L: float, beta: float) -> float:
    """The rate r of the chapter's global theorem for the heavy ball with α = 2/(μ + L).

    With q = (κ − 1)/(κ + 1) the errors obey e_{k+1} ≤ (q + β)e_k + βe_{k−1}, so
    ‖x_k − x*‖ ≤ r^k ‖x_0 − x*‖ with r the positive root of z² = (q + β)z + β; r < 1 iff β < 1/(κ + 1).
    """
    k = kappa(mu, L)
    _check_scalar("beta", beta, 0.0, 1.0)
    if beta >= 1 / (k + 1):
        raise ValueError(f"the theorem needs beta < 1/(kappa + 1) = {1 / (k + 1):.4g}, got {beta!r}")
    q = (k - 1) / (k + 1)
    return ((q + beta) + math.sqrt((q + beta) ** 2 + 4 * beta)) / 2


def cycle_period(path, max_period: int = 20, atol: float = 1e-9) -> int:
    """The smallest p ≤ ``max_period`` with x_K = x_{K−p} at the end of ``path`` (shape (K + 1, dim)), or 0.

    A trajectory that has settled on a cycle of period p repeats every p iterations; one that
    converges has period 1 (a fixed point). The last 2·max_period + 1 points must all repeat.
    """
    pts = torch.as_tensor(path, dtype=torch.float64)
    if pts.ndim != 2 or pts.shape[0] < 3 * max_period + 1:
        raise ValueError(f"path must have shape (K + 1, dim) with K ≥ 3·max_period, got {tuple(pts.shape)}")
    if not torch.isfinite(pts[-1]).all():
        return 0
    tail = pts[-(2 * max_period + 1):]
    for p in range(1, max_period + 1):
        if torch.allclose(tail[p:], tail[:-p], rtol=0.0, atol=atol):
            return p
    return 0
