"""Adafactor with torch.optim.Adafactor's exact semantics (chapter 4, «Оптимизаторы, экономящие память»).

Shazeer & Stern (arXiv 1804.04235) keep, for an n×m matrix, only the running means of the rows and
the columns of G² (n + m numbers instead of n·m) and rebuild the second moment as the rank-1 matrix
V̂ = R Cᵀ / mean(R), the minimiser of the I-divergence (proved in the chapter). Tensors with more
than two dimensions are factored along their last two dimensions; vectors and scalars keep the full
(unfactored) second moment, as the paper prescribes. There is no first moment.

The rule, step t = 1, 2, … (``lr`` = γ, ``beta2_decay`` = τ, ``eps`` = (ε₁, ε₂), λ = weight_decay):

    g = ±grad                                         (minus when ``maximize``)
    1 − β̂₂ = t^τ,   ρ = min(γ, 1/√t),   α = max(ε₂, RMS(p)) · ρ
    p = p · (1 − γλ)                                   (decoupled decay, scaled by γ, not by α)
    matrix:  R = lerp(R, mean_cols(g²), t^τ),  C = lerp(C, mean_rows(g²), t^τ),
             V̂ = R C / max(mean(R), ε₁)
    vector:  V̂ = v = lerp(v, g², t^τ)
    U = g / max(√V̂, ε₁),   p = p − α · U / max(1, RMS(U)/d)

ε₁ = None means the machine epsilon of the parameter's dtype. This is what torch ≥ 2.5 computes
(its single-tensor path, the default); the paper differs in where ε₁ goes (it adds ε₁ = 10⁻³⁰ to G²
inside R and C), in fixing the cap of ρ at 10⁻² (torch: ``lr``) and in having no weight decay.

Design as in :mod:`nntrain.optim.sgd`: :func:`adafactor_step_` is the single definition of the rule
(in place, over lists); :func:`adafactor_update` runs it on copies of one tensor; :class:`Adafactor`
is a thin ``torch.optim.Optimizer`` whose state has torch's keys (``step``, ``row_var``,
``col_var``, ``variance``), so state dicts move between the two; it is a
:class:`nntrain.optim._common.ListOptimizer`, the wrapper base of every optimizer of the book.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from ._common import ListOptimizer, new_step

__all__ = ["ADAFACTOR_OPTIONS", "check_adafactor_options", "adafactor_init", "adafactor_step_",
           "adafactor_update", "factored", "Adafactor"]

# Options and defaults of torch.optim.Adafactor (``foreach`` is accepted and has no effect here).
ADAFACTOR_OPTIONS: dict[str, Any] = {"lr": 1e-2, "beta2_decay": -0.8, "eps": (None, 1e-3), "d": 1.0,
                                     "weight_decay": 0.0, "maximize": False}


def _real(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} given as a tensor must have exactly one element")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def check_adafactor_options(lr: Any = 1e-2, beta2_decay: Any = -0.8, eps: Any = (None, 1e-3),
                            d: Any = 1.0, weight_decay: Any = 0.0, maximize: Any = False) -> dict[str, Any]:
    """Validate the options with torch's rules (lr ≥ 0, τ ≤ 0, ε ≥ 0, d ≥ 1, λ ≥ 0); NaN/∞ refused."""
    out: dict[str, Any] = {k: _real(k, v) for k, v in
                           (("lr", lr), ("beta2_decay", beta2_decay), ("d", d), ("weight_decay", weight_decay))}
    if out["lr"] < 0:
        raise ValueError(f"Learning rate should be >= 0 but is: {out['lr']}")
    if out["beta2_decay"] > 0:
        raise ValueError(f"beta2_decay should be <= 0 but is: {out['beta2_decay']}")
    if out["d"] < 1:
        raise ValueError(f"Clipping threshold d should be >= 1 but is: {out['d']}")
    if out["weight_decay"] < 0:
        raise ValueError(f"weight_decay should be >= 0 but is: {out['weight_decay']}")
    try:
        eps1, eps2 = eps
    except (TypeError, ValueError):
        raise TypeError(f"eps must be a pair (eps1 or None, eps2), got {eps!r}") from None
    eps1 = None if eps1 is None else _real("eps[0]", eps1)
    eps2 = _real("eps[1]", eps2)
    if (eps1 is not None and eps1 < 0) or eps2 < 0:
        raise ValueError(f"epsilons should be >= 0, got {eps!r}")
    out["eps"] = (eps1, eps2)
    if not isinstance(maximize, bool):
        raise TypeError(f"maximize must be True or False, got {maximize!r}")
    out["maximize"] = maximize
    return out


def factored(shape: Sequence[int]) -> bool:
    """Whether Adafactor factors a tensor of this shape (two or more dimensions)."""
    return len(shape) > 1


def adafactor_init(param: Tensor) -> dict[str, Tensor]:
    """The zero state of one tensor, with torch's keys and shapes.

    A tensor of shape (…, n, m) gets ``row_var`` of shape (…, n, 1) and ``col_var`` of shape
    (…, 1, m); a vector or a scalar gets ``variance`` of its own shape. ``step`` is a float32
    scalar tensor, as in torch.
    """
    state: dict[str, Tensor] = {"step": new_step()}
    if factored(param.shape):
        state["row_var"] = param.new_zeros((*param.shape[:-1], 1))
        state["col_var"] = param.new_zeros((*param.shape[:-2], 1, param.shape[-1]))
    else:
        state["variance"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    return state


def _rms(t: Tensor) -> float:
    return t.norm(2).item() / math.sqrt(t.numel())


@torch.no_grad()
def adafactor_step_(params: Sequence[Tensor], grads: Sequence[Tensor], states: Sequence[dict], *,
                    lr: float = 1e-2, beta2_decay: float = -0.8, eps: tuple = (None, 1e-3),
                    d: float = 1.0, weight_decay: float = 0.0, maximize: bool = False) -> None:
    """One Adafactor step, in place: the single definition of the rule (chapter 4).

    ``states[i]`` is the dict of ``params[i]`` (from :func:`adafactor_init`); it is updated in
    place, and so is the parameter. The gradients are not modified. The order of the operations
    is torch's, so float64 runs agree with ``torch.optim.Adafactor`` to rounding.
    """
    if not len(params) == len(grads) == len(states):
        raise ValueError(f"params, grads and states must have the same length, got "
                         f"{len(params)}, {len(grads)}, {len(states)}")
    eps1_opt, eps2 = eps
    for p, g, st in zip(params, grads, states):
        if g.shape != p.shape:
            raise ValueError(f"gradient of shape {tuple(g.shape)} does not match its parameter {tuple(p.shape)}")
        if p.is_complex() or g.is_sparse:
            raise ValueError("Adafactor supports real dense tensors only")
        g = -g if maximize else g
        eps1 = torch.finfo(p.dtype).eps if eps1_opt is None else eps1_opt
        st["step"] += 1
        t = st["step"].item()
        one_minus_beta2 = t ** beta2_decay  # 1 − β̂₂ₜ = t^τ: 1 at t = 1, so the first V̂ is g²
        rho = min(lr, 1 / t ** 0.5)  # relative step size, capped by lr
        alpha = max(eps2, _rms(p)) * rho  # RMS of the weights before this step's decay
        if weight_decay != 0:
            p.mul_(1 - lr * weight_decay)
        if factored(p.shape):
            row, col = st["row_var"], st["col_var"]
            row.lerp_(g.norm(dim=-1, keepdim=True).square_().div_(g.size(-1)), one_minus_beta2)
            col.lerp_(g.norm(dim=-2, keepdim=True).square_().div_(g.size(-2)), one_minus_beta2)
            v_hat = row @ col  # the rank-1 estimate R Cᵀ (per matrix of a batch of them)
            v_hat.div_(row.mean(dim=-2, keepdim=True).clamp_(min=eps1))
        else:
            st["variance"].lerp_(g * g, one_minus_beta2)
            v_hat = st["variance"].clone()
        u = v_hat.clamp_(min=eps1 * eps1).rsqrt_().mul_(g)  # g / max(√V̂, ε₁)
        clip = max(1.0, u.norm(2).item() / (math.sqrt(u.numel()) * d))  # update clipping
        p.add_(u, alpha=-alpha / clip)


def adafactor_update(param: Tensor, grad: Tensor, state: dict | None = None,
                     **options: Any) -> tuple[Tensor, dict]:
    """The Adafactor rule as a pure function: returns ``(new_param, new_state)``, changes nothing.

    ``state`` is None before the first step. It runs :func:`adafactor_step_` on copies.
    """
    opts = check_adafactor_options(**options)
    if not isinstance(param, Tensor) or not isinstance(grad, Tensor):
        raise TypeError("param and grad must be tensors")
    p = param.detach().clone()
    st = adafactor_init(p) if state is None else {k: v.detach().clone() for k, v in state.items()}
    adafactor_step_([p], [grad.detach()], [st], **opts)
    return p, st


class Adafactor(ListOptimizer):
    """A thin ``torch.optim.Optimizer`` around :func:`adafactor_step_`, with torch.optim.Adafactor's
    options, defaults and state keys (chapter 4).

    Parameters whose ``.grad`` is None are skipped. ``foreach`` is accepted for compatibility of
    signatures and ignored (the rule runs tensor by tensor, like torch's default path). One
    difference from torch, on purpose: with ``eps=(None, …)`` torch's loop takes ε₁ from the dtype of
    the *first* tensor of a group and keeps it for the rest; here each tensor gets its own dtype's
    machine epsilon (the two agree whenever a group has one dtype).
    """

    NAME = "Adafactor"
    OPTIONS = ADAFACTOR_OPTIONS
    check = staticmethod(check_adafactor_options)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-2,
                 beta2_decay: float = -0.8, eps: tuple = (None, 1e-3), d: float = 1.0,
                 weight_decay: float = 0.0, *, foreach: bool | None = None, maximize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d,
                                      weight_decay=weight_decay, maximize=maximize), {})

    def _step_group(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        states = [self.state[p] for p in params]
        for p, st in zip(params, states):
            if not st:
                st.update(adafactor_init(p))
        adafactor_step_(params, grads, states, **{k: group[k] for k in ADAFACTOR_OPTIONS})
