"""LARS: SGD with momentum and a layer-wise trust ratio (chapter 2, «Большие батчи, усреднение и предобусловливание»).

The rule of You, Gitman and Ginsburg (arXiv 1708.03888, Algorithm 1), for each parameter tensor
(«layer») w with gradient g; β = weight_decay, η = trust_coefficient, γ = lr, m = momentum:

    λ = η·‖w‖ / (‖g‖ + β·‖w‖ + eps)        (λ = 1 when ‖w‖ = 0 or ‖g‖ = 0)
    v = m·v + γ·λ·(g + β·w)
    w = w − v

Because λ·g has the length η·‖w‖ whatever ‖g‖ is (β = 0), the step of a layer is a fixed fraction
of its weights: rescaling a layer's weights (w → c·w, and for a scale-invariant layer g → g/c)
rescales its whole trajectory by c. The eps term and the λ = 1 fallback are not in the paper;
they keep a zero-initialised layer (a bias) trainable, as common implementations do.

Written once, in :func:`lars_step_`, over lists of tensors; :func:`lars_update` runs it on copies of
one tensor and :class:`LARS` is the ``torch.optim`` wrapper (state key ``momentum_buffer``).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from ._common import ListOptimizer, as_float, check_grads, check_lists, check_range, copy_or_none, \
    zeros_state

__all__ = ["LARS", "LARS_OPTIONS", "check_lars_options", "lars_trust_ratios", "lars_step_", "lars_update"]

LARS_OPTIONS: dict[str, Any] = {"lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0,
                                "trust_coefficient": 0.001, "eps": 1e-8}


def check_lars_options(lr: Any, momentum: Any = 0.9, weight_decay: Any = 0.0,
                       trust_coefficient: Any = 0.001, eps: Any = 1e-8) -> dict[str, float]:
    """Validate LARS's options: lr > 0, momentum in [0, 1), weight_decay ≥ 0, trust > 0, eps ≥ 0."""
    out = {"lr": as_float("lr", lr), "momentum": as_float("momentum", momentum),
           "weight_decay": as_float("weight_decay", weight_decay),
           "trust_coefficient": as_float("trust_coefficient", trust_coefficient), "eps": as_float("eps", eps)}
    check_range("learning rate lr", out["lr"], 0.0, low_open=True)
    check_range("momentum", out["momentum"], 0.0, 1.0, high_open=True)
    check_range("weight_decay", out["weight_decay"], 0.0)
    check_range("trust_coefficient", out["trust_coefficient"], 0.0, low_open=True)
    check_range("eps", out["eps"], 0.0)
    return out


@torch.no_grad()
def lars_trust_ratios(params: Sequence[Tensor], grads: Sequence[Tensor], *, weight_decay: float = 0.0,
                      trust_coefficient: float = 0.001, eps: float = 1e-8) -> list[Tensor]:
    """The local learning rates λ = η‖w‖/(‖g‖ + β‖w‖ + eps) of LARS, one 0-d tensor per parameter.

    λ falls back to 1 where ‖w‖ = 0 or ‖g‖ = 0 (nothing to compare the step with).
    """
    check_lists(params=params, grads=grads)
    w_norms = torch._foreach_norm(list(params)) if params else []
    g_norms = torch._foreach_norm(list(grads)) if grads else []
    out = []
    for wn, gn in zip(w_norms, g_norms):
        ratio = trust_coefficient * wn / (gn + weight_decay * wn + eps)
        out.append(torch.where((wn > 0) & (gn > 0), ratio, torch.ones_like(ratio)))
    return out


@torch.no_grad()
def lars_step_(params: Sequence[Tensor], grads: Sequence[Tensor], bufs: Sequence[Tensor], *, lr: float,
               momentum: float = 0.9, weight_decay: float = 0.0, trust_coefficient: float = 0.001,
               eps: float = 1e-8) -> None:
    """One LARS step, in place, on lists of tensors: the single definition of the rule (chapter 2).

    ``bufs`` are the momentum buffers v (zeros before the first step). Gradients are not written to.
    """
    check_lists(params=params, grads=grads, bufs=bufs)
    check_grads(params, grads, "LARS")
    if not params:
        return
    ratios = lars_trust_ratios(params, grads, weight_decay=weight_decay,
                               trust_coefficient=trust_coefficient, eps=eps)
    d = torch._foreach_add(list(grads), list(params), alpha=weight_decay) if weight_decay else \
        [g.clone() for g in grads]
    for di, r in zip(d, ratios):
        di.mul_(r.to(di.dtype) * lr)
    torch._foreach_mul_(list(bufs), momentum)
    torch._foreach_add_(list(bufs), d)
    torch._foreach_sub_(list(params), list(bufs))


def lars_update(param: Tensor, grad: Tensor, buf: Tensor | None = None, *, lr: float, momentum: float = 0.9,
                weight_decay: float = 0.0, trust_coefficient: float = 0.001,
                eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """One LARS step as a pure function: returns ``(new_param, new_buffer)``; ``buf=None`` is the zero state."""
    opts = check_lars_options(lr, momentum, weight_decay, trust_coefficient, eps)
    if not isinstance(param, Tensor) or not isinstance(grad, Tensor):
        raise TypeError(f"param and grad must be tensors, got {type(param).__name__} and {type(grad).__name__}")
    if grad.shape != param.shape:
        raise ValueError(f"grad has shape {tuple(grad.shape)}, param has {tuple(param.shape)}")
    p = param.detach().clone()
    b = zeros_state(p) if buf is None else copy_or_none(buf)
    if b.shape != p.shape:
        raise ValueError(f"buffer of shape {tuple(b.shape)} does not match the parameter {tuple(p.shape)}")
    lars_step_([p], [grad.detach()], [b], **opts)
    return p, b


class LARS(ListOptimizer):
    """LARS (You et al. 2017) on :func:`lars_step_`; torch has no twin. Each tensor is one «layer»."""

    NAME = "LARS"
    OPTIONS = LARS_OPTIONS
    check = staticmethod(check_lars_options)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0, trust_coefficient: float = 0.001, eps: float = 1e-8,
                 **unknown: Any) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, eps=eps), unknown)

    def _step_group(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        bufs = []
        for p in params:
            s = self.state[p]
            if "momentum_buffer" not in s:
                s["momentum_buffer"] = zeros_state(p)
            bufs.append(s["momentum_buffer"])
        lars_step_(params, grads, bufs, **{k: group[k] for k in self.OPTIONS})
