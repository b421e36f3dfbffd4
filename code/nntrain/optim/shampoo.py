"""Shampoo and full-matrix AdaGrad (chapter 2, «Большие батчи, усреднение и предобусловливание»).

Shampoo (Gupta, Koren and Singer, arXiv 1802.09568, Algorithm 1) for a matrix parameter W ∈ ℝ^{m×n}
with gradient G, started from L₀ = ε·I_m and R₀ = ε·I_n:

    L = L + G·Gᵀ,   R = R + Gᵀ·G,   W = W − lr · L^{−1/4} · G · R^{−1/4}

An order-k tensor keeps one statistic per mode, H_i = H_i + G_(i)·G_(i)ᵀ (G_(i) the mode-i
unfolding), and multiplies G along every mode by H_i^{−1/(2k)} (the paper's Algorithm 2).
Vectors (k = 1) would need a full d×d matrix; they raise unless ``vector="diagonal"``, which keeps
the diagonal H = ε + Σ g² and steps by g·H^{−1/2} — diagonal AdaGrad, the k = 1 exponent.

Options beyond the paper (our choices, said in the chapter): ``update_freq`` recomputes the inverse
roots every that many steps (the statistics are accumulated every step); ``momentum`` is heavy-ball
on the preconditioned direction, b = μ·b + P, W = W − lr·b. The roots are computed by a symmetric
eigendecomposition in float64. With a fresh state (no accumulation) one step is
U·diag(σ/√(σ² + ε))·Vᵀ for G = U·diag(σ)·Vᵀ, so for ε → 0 it is the polar factor U·Vᵀ of chapter 8
(Muon); the tests check both.

:func:`full_matrix_adagrad_update` is the unstructured preconditioner H^{−1/2}·vec(G) with
H = ε·I + Σ vec(G)·vec(G)ᵀ, the reference Shampoo approximates by a Kronecker product.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from ._common import ListOptimizer, as_float, check_grads, check_lists, check_range, new_step, \
    step_values, zeros_state

__all__ = ["Shampoo", "SHAMPOO_OPTIONS", "VECTOR_RULES", "check_shampoo_options", "shampoo_init",
           "inverse_root", "shampoo_direction", "shampoo_step_", "shampoo_update", "shampoo_state_numel",
           "full_matrix_adagrad_init", "full_matrix_adagrad_update"]

SHAMPOO_OPTIONS: dict[str, Any] = {"lr": 1e-3, "momentum": 0.0, "eps": 1e-4, "update_freq": 1,
                                   "vector": "error"}
VECTOR_RULES = ("error", "diagonal")


def check_shampoo_options(lr: Any, momentum: Any = 0.0, eps: Any = 1e-4, update_freq: Any = 1,
                          vector: Any = "error") -> dict[str, Any]:
    """Validate Shampoo's options: lr > 0, momentum in [0, 1), eps > 0, update_freq ≥ 1, a known vector rule."""
    out = {"lr": as_float("lr", lr), "momentum": as_float("momentum", momentum), "eps": as_float("eps", eps)}
    check_range("learning rate lr", out["lr"], 0.0, low_open=True)
    check_range("momentum", out["momentum"], 0.0, 1.0, high_open=True)
    check_range("eps", out["eps"], 0.0, low_open=True)
    if isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1:
        raise ValueError(f"update_freq must be a positive integer, got {update_freq!r}")
    if vector not in VECTOR_RULES:
        raise ValueError(f"vector must be one of {VECTOR_RULES}, got {vector!r}")
    out["update_freq"], out["vector"] = update_freq, vector
    return out


def _check_order(param: Tensor, vector: str) -> None:
    if param.ndim == 0:
        raise ValueError("Shampoo cannot precondition a scalar parameter; give it to another optimizer")
    if param.ndim == 1 and vector != "diagonal":
        raise ValueError(f"Shampoo got a 1-D parameter of shape {tuple(param.shape)} (a bias or a norm "
                         "scale): a full preconditioner for it is a d×d matrix. Pass vector='diagonal' "
                         "(diagonal AdaGrad for vectors) or give such parameters to another optimizer")


def shampoo_init(param: Tensor, eps: float = 1e-4, vector: str = "error") -> dict[str, Any]:
    """The state of Shampoo for one tensor: ε·I per mode (``stats``) and their roots (``roots``),
    or the diagonal ``sum`` = ε for a vector under ``vector="diagonal"``."""
    check_range("eps", as_float("eps", eps), 0.0, low_open=True)
    _check_order(param, vector)
    if param.ndim == 1:
        return {"sum": torch.full_like(param, eps).detach()}
    stats = [eps * torch.eye(d, dtype=param.dtype, device=param.device) for d in param.shape]
    return {"stats": stats, "roots": [torch.eye(d, dtype=param.dtype, device=param.device) for d in param.shape]}


def inverse_root(h: Tensor, p: float, floor: float | None = None) -> Tensor:
    """H^{−1/p} of a symmetric positive definite matrix, by eigendecomposition in float64.

    ``floor``: a known lower bound on the eigenvalues (Shampoo's ε, since H ⪰ ε·I in exact
    arithmetic); computed eigenvalues are clamped to it, which absorbs round-off when ε ≪ ‖H‖.
    Without it a non-positive eigenvalue raises.
    """
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"inverse_root expects a square matrix, got shape {tuple(h.shape)}")
    lam, q = torch.linalg.eigh(h.double())
    if floor is not None:
        lam = lam.clamp_min(floor)
    if (lam <= 0).any():
        raise ValueError(f"inverse_root needs a positive definite matrix; smallest eigenvalue {lam.min().item():.3g}")
    return ((q * lam.pow(-1.0 / p)) @ q.T).to(h.dtype)


def _mode_product(t: Tensor, m: Tensor, mode: int) -> Tensor:
    """t ×_mode m: multiply the mode-``mode`` fibres of t by the matrix m."""
    return torch.tensordot(m, t, dims=([1], [mode])).movedim(0, mode)


def _unfold(t: Tensor, mode: int) -> Tensor:
    return t.movedim(mode, 0).reshape(t.shape[mode], -1)


def shampoo_direction(grad: Tensor, roots: Sequence[Tensor]) -> Tensor:
    """The preconditioned gradient G ×₁ H₁^{−1/(2k)} ×₂ … ×_k H_k^{−1/(2k)} (for a matrix: L^{−1/4} G R^{−1/4})."""
    out = grad
    for i, r in enumerate(roots):
        out = _mode_product(out, r, i)
    return out


@torch.no_grad()
def shampoo_step_(params: Sequence[Tensor], grads: Sequence[Tensor], states: Sequence[dict],
                  bufs: Sequence[Tensor | None], steps: Sequence[int], *, lr: float, momentum: float = 0.0,
                  eps: float = 1e-4, update_freq: int = 1, vector: str = "error") -> None:
    """One Shampoo step, in place, on lists of tensors: the single definition of the rule (chapter 2).

    ``states[i]`` comes from :func:`shampoo_init`; ``bufs[i]`` is a momentum buffer (needed when
    momentum > 0, else may be None); ``steps[i]`` is the number of the step being taken (1 first).
    """
    check_lists(params=params, grads=grads, states=states, bufs=bufs, steps=steps)
    check_grads(params, grads, "Shampoo")
    for p, g, s, b, t in zip(params, grads, states, bufs, steps):
        _check_order(p, vector)
        if p.ndim == 1:
            s["sum"].addcmul_(g, g)
            direction = g / s["sum"].sqrt()
        else:
            k = p.ndim
            for i, h in enumerate(s["stats"]):
                gi = _unfold(g, i)
                h.addmm_(gi, gi.T)
            if (t - 1) % update_freq == 0:
                s["roots"] = [inverse_root(h, 2 * k, floor=eps) for h in s["stats"]]
            direction = shampoo_direction(g, s["roots"])
        if momentum:
            if b is None:
                raise ValueError("momentum > 0 needs a momentum buffer for every parameter")
            b.mul_(momentum).add_(direction)
            direction = b
        p.sub_(direction, alpha=lr)


def shampoo_update(param: Tensor, grad: Tensor, state: dict | None = None, *, lr: float, eps: float = 1e-4,
                   vector: str = "error", step: int = 1) -> tuple[Tensor, dict]:
    """One Shampoo step (no momentum) as a pure function: ``(new_param, new_state)``.

    ``state=None`` is the fresh state ε·I: then the step is U·diag(σ/√(σ²+ε))·Vᵀ times lr.
    """
    opts = check_shampoo_options(lr, 0.0, eps, 1, vector)
    if not isinstance(param, Tensor) or not isinstance(grad, Tensor):
        raise TypeError(f"param and grad must be tensors, got {type(param).__name__} and {type(grad).__name__}")
    if grad.shape != param.shape:
        raise ValueError(f"grad has shape {tuple(grad.shape)}, param has {tuple(param.shape)}")
    _check_order(param, vector)
    src = shampoo_init(param, eps, vector) if state is None else state
    new = {k: ([t.clone() for t in v] if isinstance(v, list) else v.clone()) for k, v in src.items()}
    p = param.detach().clone()
    shampoo_step_([p], [grad.detach()], [new], [None], [step], **opts)
    return p, new


def shampoo_state_numel(shape: Sequence[int]) -> dict[str, int]:
    """Numbers kept per parameter of this shape: diagonal (Adam's v), Shampoo's statistics, full AdaGrad."""
    n = 1
    for d in shape:
        n *= int(d)
    return {"diagonal": n, "shampoo": sum(int(d) ** 2 for d in shape), "full": n * n}


def full_matrix_adagrad_init(param: Tensor, eps: float = 1e-4) -> Tensor:
    """H₀ = ε·I of size numel × numel for full-matrix AdaGrad on vec(param)."""
    check_range("eps", as_float("eps", eps), 0.0, low_open=True)
    return eps * torch.eye(param.numel(), dtype=param.dtype, device=param.device)


@torch.no_grad()
def full_matrix_adagrad_update(param: Tensor, grad: Tensor, h: Tensor, *, lr: float,
                               eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Full-matrix AdaGrad (Duchi et al. 2011): H = H + vec(G)vec(G)ᵀ, vec(W) = vec(W) − lr·H^{−1/2}vec(G).

    Pure: returns ``(new_param, new_H)``; ``eps`` is the ε of H₀ = ε·I (the eigenvalue floor).
    Costs numel² memory and an eigendecomposition of that size.
    """
    check_range("learning rate lr", as_float("lr", lr), 0.0, low_open=True)
    if grad.shape != param.shape or h.shape != (param.numel(), param.numel()):
        raise ValueError(f"shapes do not fit: param {tuple(param.shape)}, grad {tuple(grad.shape)}, "
                         f"H {tuple(h.shape)}")
    g = grad.reshape(-1)
    h_new = h + torch.outer(g, g)
    step = inverse_root(h_new, 2, floor=eps) @ g
    return param - lr * step.reshape(param.shape), h_new


class Shampoo(ListOptimizer):
    """Shampoo (Gupta et al. 2018) on :func:`shampoo_step_`; torch has no twin.

    State per parameter: ``step``, ``stats`` and ``roots`` (one matrix per mode) or ``sum`` (vectors
    under ``vector="diagonal"``), ``momentum_buffer`` when momentum > 0. A 1-D parameter with the
    default ``vector="error"`` raises ValueError at the first step that reaches it.
    """

    NAME = "Shampoo"
    OPTIONS = SHAMPOO_OPTIONS
    check = staticmethod(check_shampoo_options)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float, momentum: float = 0.0,
                 eps: float = 1e-4, update_freq: int = 1, vector: str = "error", **unknown: Any) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, eps=eps, update_freq=update_freq,
                                      vector=vector), unknown)
        for group in self.param_groups:  # fail at construction, not at the first step
            for p in group["params"]:
                _check_order(p, group["vector"])

    def _step_group(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        states = [self.state[p] for p in params]
        for p, s in zip(params, states):
            if not s:
                s["step"] = new_step()
                s.update(shampoo_init(p, group["eps"], group["vector"]))
                if group["momentum"]:
                    s["momentum_buffer"] = zeros_state(p)
        steps = step_values(states)
        shampoo_step_(params, grads, states, [s.get("momentum_buffer") for s in states], steps,
                      **{k: group[k] for k in self.OPTIONS})
