"""Proximal gradient for L1: soft thresholding, ISTA and FISTA (chapter 2, «За пределами первого порядка»).

The problem is ``F(x) = f(x) + λ‖x‖₁`` with f convex and ∇f Lipschitz with constant L. The
proximal gradient step with step ``lr = 1/L`` is ``x₊ = S_{lr·λ}(y − lr·∇f(y))``, where
``S_τ(z) = sign(z)·max(|z| − τ, 0)`` is the proximal operator of ``τ‖·‖₁``. ISTA takes y = x;
FISTA (Beck and Teboulle 2009) takes y an extrapolation of the last two iterates with
``t₊ = (1 + √(1 + 4t²))/2``. Their bounds, ``L‖x₀ − x*‖²/(2k)`` and ``2L‖x₀ − x*‖²/(k + 1)²``,
are what the chapter measures on a lasso problem.

The functions are pure (they return new tensors); :func:`lasso_path` runs either method and
records F, which is what the notebook and the tests use. Chapter «Градиентный спуск» runs the same
methods through ``nntrain.functions.proximal_gradient`` (with the book's shifted FISTA index);
the soft threshold itself is ``nntrain.functions.soft_threshold``, checked here for NaN.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

__all__ = ["soft_threshold", "prox_grad_step", "fista_t", "ista_step", "fista_step",
           "lasso_objective", "lasso_grad", "lasso_lipschitz", "lasso_kkt_violation",
           "lasso_path", "sign_identification"]


def _check_nonneg(name: str, v: float) -> float:
    v = float(v)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return v


def _check_lr(lr: float) -> float:
    lr = float(lr)
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    return lr


def _check_finite(name: str, x: Tensor) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or ∞")


def soft_threshold(z: Tensor, tau: float) -> Tensor:
    """``S_τ(z) = sign(z)·max(|z| − τ, 0)``: the minimizer of ``τ‖x‖₁ + ½‖x − z‖²``."""
    tau = _check_nonneg("tau", tau)
    _check_finite("z", z)
    from ..functions import soft_threshold as formula  # lazy: nntrain.functions imports optim

    return formula(z, tau)  # the formula lives once, in nntrain.functions


def prox_grad_step(y: Tensor, grad: Tensor, lr: float, lam: float) -> Tensor:
    """One proximal gradient step from y: ``S_{lr·λ}(y − lr·∇f(y))``."""
    lr, lam = _check_lr(lr), _check_nonneg("lam", lam)
    _check_finite("grad", grad)
    return soft_threshold(y - lr * grad, lr * lam)


def fista_t(t: float) -> float:
    """FISTA's sequence: ``t₊ = (1 + √(1 + 4t²))/2`` (t₁ = 1, and t_k ≥ (k + 1)/2)."""
    if not (math.isfinite(t) and t >= 1):
        raise ValueError(f"t must be a finite number >= 1, got {t!r}")
    return (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0


def ista_step(x: Tensor, grad_fn: Callable[[Tensor], Tensor], lr: float, lam: float) -> Tensor:
    """ISTA: ``x₊ = S_{lr·λ}(x − lr·∇f(x))``."""
    return prox_grad_step(x, grad_fn(x), lr, lam)


def fista_step(x: Tensor, y: Tensor, t: float, grad_fn: Callable[[Tensor], Tensor], lr: float,
               lam: float) -> tuple[Tensor, Tensor, float]:
    """One FISTA iteration from (x_{k−1}, y_k, t_k); returns (x_k, y_{k+1}, t_{k+1}).

    Start with y₁ = x₀ and t₁ = 1 (Beck and Teboulle 2009, eq. 4.1–4.3).
    """
    x_new = prox_grad_step(y, grad_fn(y), lr, lam)
    t_new = fista_t(t)
    y_new = x_new + ((t - 1.0) / t_new) * (x_new - x)
    return x_new, y_new, t_new


def _check_lasso(A: Tensor, b: Tensor, x: Tensor | None = None) -> None:
    if A.dim() != 2 or b.dim() != 1 or b.shape[0] != A.shape[0]:
        raise ValueError(f"need A of shape (n, d) and b of shape (n,), got {tuple(A.shape)} "
                         f"and {tuple(b.shape)}")
    if x is not None and (x.dim() != 1 or x.shape[0] != A.shape[1]):
        raise ValueError(f"x must have shape ({A.shape[1]},), got {tuple(x.shape)}")


def lasso_objective(A: Tensor, b: Tensor, lam: float, x: Tensor) -> Tensor:
    """``F(x) = ‖Ax − b‖²/(2n) + λ‖x‖₁`` — the scaling of ``sklearn.linear_model.Lasso(alpha=λ)``."""
    _check_lasso(A, b, x)
    lam = _check_nonneg("lam", lam)
    r = A @ x - b
    return r.dot(r) / (2 * A.shape[0]) + lam * x.abs().sum()


def lasso_grad(A: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """∇f for the smooth part ``‖Ax − b‖²/(2n)``: ``Aᵀ(Ax − b)/n``."""
    return A.T @ (A @ x - b) / A.shape[0]


def lasso_lipschitz(A: Tensor) -> float:
    """L = λ_max(AᵀA)/n = σ_max(A)²/n, the Lipschitz constant of the smooth part's gradient."""
    return float(torch.linalg.matrix_norm(A, ord=2) ** 2 / A.shape[0])


def lasso_kkt_violation(A: Tensor, b: Tensor, lam: float, x: Tensor) -> float:
    """How far x is from optimal: the distance of −∇f(x) to λ·∂‖x‖₁, in the max norm.

    At a solution, ``∇f(x)_i = −λ·sign(x_i)`` where ``x_i ≠ 0`` and ``|∇f(x)_i| ≤ λ`` where ``x_i = 0``.
    """
    _check_lasso(A, b, x)
    lam = _check_nonneg("lam", lam)
    g = lasso_grad(A, b, x)
    nz = x != 0
    v = torch.where(nz, (g + lam * torch.sign(x)).abs(), torch.clamp(g.abs() - lam, min=0.0))
    return float(v.max())


def lasso_path(A: Tensor, b: Tensor, lam: float, iters: int, method: str = "fista",
               x0: Tensor | None = None, lr: float | None = None) -> tuple[Tensor, Tensor]:
    """Run ISTA or FISTA with step ``lr`` (default 1/L) for ``iters`` iterations from x0 (default 0).

    Returns (x_K, F) where ``F[k] = F(x_k)`` for k = 0 … K (F[0] at the start).
    """
    _check_lasso(A, b, x0)
    if method not in ("ista", "fista"):
        raise ValueError(f"method must be 'ista' or 'fista', got {method!r}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be an int >= 0, got {iters!r}")
    lr = 1.0 / lasso_lipschitz(A) if lr is None else _check_lr(lr)
    x = torch.zeros(A.shape[1], dtype=A.dtype, device=A.device) if x0 is None else x0.clone()
    grad_fn = lambda z: lasso_grad(A, b, z)  # noqa: E731
    values = [lasso_objective(A, b, lam, x)]
    y, t = x, 1.0
    for _ in range(iters):
        if method == "ista":
            x = ista_step(x, grad_fn, lr, lam)
        else:
            x, y, t = fista_step(x, y, t, grad_fn, lr, lam)
        values.append(lasso_objective(A, b, lam, x))
    return x, torch.stack(values)


def sign_identification(A: Tensor, b: Tensor, lam: float, iters: int, x_ref: Tensor,
                        method: str = "fista") -> int:
    """The iteration from which on ``sign(x_k) = sign(x_ref)`` for every k ≤ ``iters``.

    Chapter «За пределами первого порядка» uses it to test the story «the method found the support,
    then converged linearly»: it returns ``iters + 1`` if the signs still differ at the last
    iteration, and 0 if they agree from the start x₀ = 0 on. Step 1/L, as in :func:`lasso_path`.
    """
    _check_lasso(A, b, x_ref)
    lam = _check_nonneg("lam", lam)
    if method not in ("ista", "fista"):
        raise ValueError(f"method must be 'ista' or 'fista', got {method!r}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be an int >= 0, got {iters!r}")
    lr = 1.0 / lasso_lipschitz(A)
    target = torch.sign(x_ref)
    x = torch.zeros(A.shape[1], dtype=A.dtype, device=A.device)
    grad_fn = lambda z: lasso_grad(A, b, z)  # noqa: E731
    last_bad = -1 if torch.equal(torch.sign(x), target) else 0
    y, t = x, 1.0
    for k in range(1, iters + 1):
        if method == "ista":
            x = ista_step(x, grad_fn, lr, lam)
        else:
            x, y, t = fista_step(x, y, t, grad_fn, lr, lam)
        if not torch.equal(torch.sign(x), target):
            last_bad = k
    return last_bad + 1
