"""BFGS and L-BFGS (chapter 2, «За пределами первого порядка»).

Quasi-Newton methods keep an approximation ``H`` of the inverse Hessian that satisfies the secant
condition ``H y = s`` for the last step ``s = x_{k+1} − x_k`` and gradient change
``y = ∇f(x_{k+1}) − ∇f(x_k)``. BFGS stores the d × d matrix (:func:`bfgs_inverse_update`);
L-BFGS (Liu and Nocedal 1989) stores only the last ``m`` pairs (s, y) and applies the same
matrix to a vector with the two-loop recursion (:func:`lbfgs_direction`, Nocedal and Wright,
Algorithm 7.4), starting from ``H⁰ = γI`` with ``γ = sᵀy / yᵀy`` of the newest pair.

:class:`LBFGS` is a thin ``torch.optim.Optimizer`` with the exact semantics of
``torch.optim.LBFGS`` (same options, the same first step ``t = min(1, 1/‖g‖₁)·lr``, the same
curvature test ``yᵀs > 1e-10`` for keeping a pair, the same stopping tests), so that the chapter
can check the from-scratch two-loop recursion against torch to float64 rounding. With
``line_search_fn="strong_wolfe"`` it calls torch's own strong-Wolfe line search (a private
function of ``torch.optim.lbfgs``): the line search is not what the chapter teaches, the memory
and the two-loop recursion are.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor

__all__ = ["lbfgs_direction", "lbfgs_push", "bfgs_inverse_update", "lbfgs_dense_inverse",
           "LBFGS", "CURVATURE_EPS"]

# torch.optim.LBFGS keeps a pair only when yᵀs exceeds this (an absolute threshold).
CURVATURE_EPS = 1e-10


def _check_vector(name: str, v: Tensor) -> None:
    if not isinstance(v, Tensor) or v.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor, got {type(v).__name__} "
                         f"{tuple(v.shape) if isinstance(v, Tensor) else ''}")
    if not torch.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or ∞")


def lbfgs_direction(grad: Tensor, s_hist: Sequence[Tensor], y_hist: Sequence[Tensor],
                    gamma: float | Tensor | None = None) -> Tensor:
    """The L-BFGS direction ``d = −H g`` by the two-loop recursion (oldest pair first in the lists).

    ``H`` is the inverse-Hessian approximation obtained by applying the BFGS update for each stored
    pair, oldest first, to ``H⁰ = γI``; ``gamma`` defaults to ``sᵀy/yᵀy`` of the newest pair (1
    without pairs). Cost: about 4md multiplications, no matrix. The operations are in the order of
    ``torch.optim.LBFGS``, so the two agree to the last bits in float64.
    """
    _check_vector("grad", grad)
    if len(s_hist) != len(y_hist):
        raise ValueError(f"s_hist and y_hist must have the same length, got {len(s_hist)} "
                         f"and {len(y_hist)}")
    rho = []
    for i, (s, y) in enumerate(zip(s_hist, y_hist)):
        if s.shape != grad.shape or y.shape != grad.shape:
            raise ValueError(f"pair {i} has shapes {tuple(s.shape)}, {tuple(y.shape)}; "
                             f"expected {tuple(grad.shape)}")
        ys = y.dot(s)
        if not ys > 0:
            raise ValueError(f"pair {i} violates the curvature condition yᵀs > 0 (yᵀs = {float(ys)})")
        rho.append(1.0 / ys)
    if gamma is None:
        gamma = (s_hist[-1].dot(y_hist[-1]) / y_hist[-1].dot(y_hist[-1])) if s_hist else 1.0
    if not float(gamma) > 0 or not math.isfinite(float(gamma)):
        raise ValueError(f"gamma must be a positive finite number, got {gamma!r}")
    m = len(s_hist)
    alpha: list[Any] = [None] * m
    q = grad.neg()  # torch works with −g throughout: d = H(−g)
    for i in range(m - 1, -1, -1):  # newest to oldest
        alpha[i] = s_hist[i].dot(q) * rho[i]
        q.add_(y_hist[i], alpha=-alpha[i])
    r = torch.mul(q, gamma)  # H⁰ = γI
    for i in range(m):  # oldest to newest
        beta = y_hist[i].dot(r) * rho[i]
        r.add_(s_hist[i], alpha=alpha[i] - beta)
    return r


def lbfgs_push(s_hist: Sequence[Tensor], y_hist: Sequence[Tensor], s: Tensor, y: Tensor,
               history_size: int) -> tuple[list[Tensor], list[Tensor], bool]:
    """Add the pair (s, y) to the memory if ``yᵀs > 1e-10`` (torch's test), dropping the oldest.

    Returns new lists (the inputs are not modified) and whether the pair was kept. A pair with
    small or negative curvature would make H indefinite; skipping it keeps H positive definite.
    """
    if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
        raise ValueError(f"history_size must be an int >= 1, got {history_size!r}")
    _check_vector("s", s)
    _check_vector("y", y)
    s_new, y_new = list(s_hist), list(y_hist)
    if not y.dot(s) > CURVATURE_EPS:
        return s_new, y_new, False
    if len(s_new) == history_size:
        s_new.pop(0)
        y_new.pop(0)
    s_new.append(s)
    y_new.append(y)
    return s_new, y_new, True


def bfgs_inverse_update(H: Tensor, s: Tensor, y: Tensor) -> Tensor:
    """BFGS update of the inverse Hessian: ``(I − ρsyᵀ) H (I − ρysᵀ) + ρssᵀ``, ``ρ = 1/yᵀs``.

    The result satisfies the secant condition ``H₊ y = s`` and stays symmetric positive definite
    when H is and ``yᵀs > 0`` (Nocedal and Wright, eq. 6.17). O(d²) memory and work.
    """
    if H.dim() != 2 or H.shape[0] != H.shape[1] or H.shape[0] != s.numel():
        raise ValueError(f"H must be a square matrix of size {s.numel()}, got {tuple(H.shape)}")
    _check_vector("s", s)
    _check_vector("y", y)
    ys = y.dot(s)
    if not ys > 0:
        raise ValueError(f"the curvature condition yᵀs > 0 fails (yᵀs = {float(ys)})")
    rho = 1.0 / ys
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    V = eye - rho * torch.outer(y, s)
    return V.T @ H @ V + rho * torch.outer(s, s)


def lbfgs_dense_inverse(s_hist: Sequence[Tensor], y_hist: Sequence[Tensor],
                        gamma: float | None = None) -> Tensor:
    """The matrix H that the two-loop recursion applies, built by explicit BFGS updates of γI.

    Only for checking :func:`lbfgs_direction` on small problems (O(m d²) work, O(d²) memory).
    """
    if not s_hist:
        raise ValueError("need at least one (s, y) pair")
    if gamma is None:
        gamma = float(s_hist[-1].dot(y_hist[-1]) / y_hist[-1].dot(y_hist[-1]))
    d = s_hist[0].numel()
    H = gamma * torch.eye(d, dtype=s_hist[0].dtype, device=s_hist[0].device)
    for s, y in zip(s_hist, y_hist):
        H = bfgs_inverse_update(H, s, y)
    return H


def _as_float(loss: Any) -> float:
    return float(loss.detach()) if isinstance(loss, Tensor) else float(loss)


class LBFGS(torch.optim.Optimizer):
    """L-BFGS with the semantics of ``torch.optim.LBFGS``, its direction from :func:`lbfgs_direction`.

    One ``step(closure)`` runs up to ``max_iter`` iterations. The first iteration of all (not of
    each step) is a gradient step of length ``min(1, 1/‖g‖₁)·lr``; later ones take the L-BFGS
    direction with step ``lr`` (no line search) or the strong-Wolfe step of torch's line search.
    One parameter group only, as in torch.
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 1.0, max_iter: int = 20,
                 max_eval: int | None = None, tolerance_grad: float = 1e-7,
                 tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None) -> None:
        lr = float(lr.item() if isinstance(lr, Tensor) else lr)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        for name, v in (("max_iter", max_iter), ("history_size", history_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        for name, v in (("tolerance_grad", tolerance_grad), ("tolerance_change", tolerance_change)):
            if not (math.isfinite(float(v)) and float(v) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"line_search_fn must be None or 'strong_wolfe', got {line_search_fn!r}")
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                        tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                        history_size=history_size, line_search_fn=line_search_fn)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS takes a single parameter group")
        self._params = self.param_groups[0]["params"]
        for p in self._params:
            if p.is_complex():
                raise ValueError("complex parameters are not supported by nntrain.optim.LBFGS")

    def _flat_grad(self) -> Tensor:
        return torch.cat([p.new_zeros(p.numel()) if p.grad is None else p.grad.reshape(-1)
                          for p in self._params])

    def _add(self, t: float, d: Tensor) -> None:
        offset = 0
        for p in self._params:
            n = p.numel()
            p.add_(d[offset:offset + n].view_as(p), alpha=t)
            offset += n

    def _evaluate(self, closure: Callable[[], Tensor], x: list[Tensor], t: float,
                  d: Tensor) -> tuple[float, Tensor]:
        self._add(t, d)
        loss = _as_float(closure())
        g = self._flat_grad()
        for p, v in zip(self._params, x):
            p.copy_(v)
        return loss, g

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        """Up to ``max_iter`` L-BFGS iterations; ``closure`` zeroes grads, computes the loss, backward."""
        if closure is None:
            raise ValueError("LBFGS needs a closure that re-evaluates the loss")
        closure = torch.enable_grad()(closure)
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        m = group["history_size"]
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = closure()
        loss = _as_float(orig_loss)
        evals = 1
        state["func_evals"] += 1
        g = self._flat_grad()
        if not torch.isfinite(g).all():
            raise ValueError("the gradient contains NaN or ∞")
        if g.abs().max() <= tol_grad:
            return orig_loss
        d, t = state.get("d"), state.get("t")
        s_hist, y_hist = state.get("s_hist", []), state.get("y_hist", [])
        gamma = state.get("gamma", 1.0)
        g_prev, loss_prev = state.get("g_prev"), state.get("loss_prev")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d, s_hist, y_hist, gamma = g.neg(), [], [], 1.0
            else:
                y, s = g.sub(g_prev), d.mul(t)
                s_hist, y_hist, kept = lbfgs_push(s_hist, y_hist, s, y, m)
                if kept:
                    gamma = y.dot(s) / y.dot(y)
                d = lbfgs_direction(g, s_hist, y_hist, gamma)
            g_prev = g.clone(memory_format=torch.contiguous_format)
            loss_prev = loss
            t = min(1.0, 1.0 / g.abs().sum()) * lr if state["n_iter"] == 1 else lr
            gtd = g.dot(d)
            if gtd > -tol_change:
                break
            ls_evals = 0
            if group["line_search_fn"] == "strong_wolfe":
                from torch.optim.lbfgs import _strong_wolfe  # torch's own line search

                x0 = [p.clone(memory_format=torch.contiguous_format) for p in self._params]
                loss, g, t, ls_evals = _strong_wolfe(
                    lambda x, t_, d_: self._evaluate(closure, x, t_, d_),
                    x0, t, d, loss, g, gtd, max_ls=max_eval - evals)
                self._add(t, d)
                opt_cond = g.abs().max() <= tol_grad
            else:
                self._add(t, d)
                opt_cond = False
                if n_iter != max_iter:  # torch skips the evaluation after the last iteration
                    with torch.enable_grad():
                        loss = _as_float(closure())
                    g = self._flat_grad()
                    opt_cond = g.abs().max() <= tol_grad
                    ls_evals = 1
            evals += ls_evals
            state["func_evals"] += ls_evals
            if n_iter == max_iter or evals >= max_eval or opt_cond:
                break
            if d.mul(t).abs().max() <= tol_change or abs(loss - loss_prev) < tol_change:
                break

        state.update(d=d, t=t, s_hist=s_hist, y_hist=y_hist, gamma=gamma, g_prev=g_prev,
                     loss_prev=loss_prev)
        return orig_loss
