"""LAMB: Adam with a layer-wise trust ratio (chapter 2, «Большие батчи, усреднение и предобусловливание»).

The rule of You et al. (arXiv 1904.00962, Algorithm 2) for each parameter tensor x («layer»),
with gradient g, step number t and λ = weight_decay (decoupled, inside the trust ratio):

    m = β₁·m + (1 − β₁)·g,    v = β₂·v + (1 − β₂)·g²
    r = (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
    u = r + λ·x
    x = x − lr · φ(‖x‖)/‖u‖ · u,    φ = identity   (the ratio is 1 when ‖x‖ = 0 or ‖u‖ = 0)

The step of a layer has length lr·‖x‖ whatever the gradient's scale: rescaling x by c rescales the
step by c (exactly when λ = 0 and ε is negligible). The paper also allows a clipped φ; the book
uses the identity. Written once in :func:`lamb_step_`; :func:`lamb_update` is the
pure form and :class:`LAMB` the wrapper (state keys as torch's Adam: ``step``, ``exp_avg``, ``exp_avg_sq``).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from ._common import ListOptimizer, as_float, check_betas, check_grads, check_lists, check_range, \
    copy_or_none, new_step, step_values
from .adam import AdamState, adam_init

__all__ = ["LAMB", "LAMB_OPTIONS", "check_lamb_options", "lamb_step_", "lamb_update"]

LAMB_OPTIONS: dict[str, Any] = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0}


def check_lamb_options(lr: Any, betas: Any = (0.9, 0.999), eps: Any = 1e-6,
                       weight_decay: Any = 0.0) -> dict[str, Any]:
    """Validate LAMB's options: lr > 0, betas in [0, 1), eps ≥ 0, weight_decay ≥ 0."""
    out = {"lr": as_float("lr", lr), "betas": check_betas(betas), "eps": as_float("eps", eps),
           "weight_decay": as_float("weight_decay", weight_decay)}
    check_range("learning rate lr", out["lr"], 0.0, low_open=True)
    check_range("eps", out["eps"], 0.0)
    check_range("weight_decay", out["weight_decay"], 0.0)
    return out


@torch.no_grad()
def lamb_step_(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor],
               exp_avg_sqs: Sequence[Tensor], steps: Sequence[int], *, lr: float,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
               weight_decay: float = 0.0) -> list[Tensor]:
    """One LAMB step, in place, on lists of tensors (chapter 2); returns the trust ratios used.

    ``steps[i]`` is the number of the step being taken (1 on the first). Gradients are not written to.
    """
    check_lists(params=params, grads=grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs, steps=steps)
    check_grads(params, grads, "LAMB")
    if not params:
        return []
    beta1, beta2 = betas
    ps, gs, m, v = list(params), list(grads), list(exp_avgs), list(exp_avg_sqs)
    torch._foreach_lerp_(m, gs, 1 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, gs, gs, 1 - beta2)
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, [(1 - beta2 ** t) ** 0.5 for t in steps])
    torch._foreach_add_(denom, eps)
    u = torch._foreach_div(m, denom)
    torch._foreach_div_(u, [1 - beta1 ** t for t in steps])
    if weight_decay:
        torch._foreach_add_(u, ps, alpha=weight_decay)
    w_norms, u_norms = torch._foreach_norm(ps), torch._foreach_norm(u)
    ratios = []
    for p, ui, wn, un in zip(ps, u, w_norms, u_norms):
        r = torch.where((wn > 0) & (un > 0), wn / un, torch.ones_like(wn))
        ratios.append(r)
        p.add_(ui * (r.to(p.dtype) * -lr))
    return ratios


def lamb_update(param: Tensor, grad: Tensor, state: AdamState | None = None, *, lr: float,
                betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                weight_decay: float = 0.0) -> tuple[Tensor, AdamState]:
    """One LAMB step as a pure function: ``(new_param, new_state)``; ``state=None`` is the zero state."""
    opts = check_lamb_options(lr, betas, eps, weight_decay)
    if not isinstance(param, Tensor) or not isinstance(grad, Tensor):
        raise TypeError(f"param and grad must be tensors, got {type(param).__name__} and {type(grad).__name__}")
    if grad.shape != param.shape:
        raise ValueError(f"grad has shape {tuple(grad.shape)}, param has {tuple(param.shape)}")
    state = adam_init(param) if state is None else state
    p, m, v = (copy_or_none(t) for t in (param, state.exp_avg, state.exp_avg_sq))
    step = state.step + 1
    lamb_step_([p], [grad.detach()], [m], [v], [step], **opts)
    return p, AdamState(step, m, v, None)


class LAMB(ListOptimizer):
    """LAMB (You et al. 2020) on :func:`lamb_step_`; torch has no twin. Each tensor is one «layer»."""

    NAME = "LAMB"
    OPTIONS = LAMB_OPTIONS
    check = staticmethod(check_lamb_options)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, **unknown: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay), unknown)

    def _step_group(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        states = [self.state[p] for p in params]
        for p, s in zip(params, states):
            if not s:
                fresh = adam_init(p)
                s["step"], s["exp_avg"], s["exp_avg_sq"] = new_step(), fresh.exp_avg, fresh.exp_avg_sq
        steps = step_values(states)
        lamb_step_(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], steps,
                   **{k: group[k] for k in self.OPTIONS})
