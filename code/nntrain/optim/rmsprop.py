"""RMSprop (Hinton's lecture 6e, 2012) with torch.optim.RMSprop's exact semantics (chapter 2, adaptive methods).

The rule (``g`` the gradient; ``v`` the mean square, ``a`` the mean gradient, ``b`` the buffer):

    d = ±g + λ·p                          (minus when ``maximize``; λ = weight_decay)
    v = α·v + (1 − α)·d²
    a = α·a + (1 − α)·d,   r = √(v − a²) + ε      if ``centered``,   else   r = √v + ε
    b = μ·b + d / r,   p = p − lr·b               if ``momentum`` μ > 0,   else   p = p − lr·d / r

ε is added after the square root, as in torch (Hinton's slides and Keras put it elsewhere).
Written once, in :func:`rmsprop_step_`, over lists with ``torch._foreach_*`` in the order of
torch's foreach implementation; :func:`rmsprop_update` runs it on copies of one tensor.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple, Sequence

import torch
from torch import Tensor

from ._common import ListOptimizer, as_float, check_flag, check_grads, check_lists, check_range, \
    direction, group_by_device_and_dtype, new_step, step_values, zeros_state, copy_or_none

__all__ = ["RMSpropState", "RMSPROP_OPTIONS", "check_rmsprop_options", "rmsprop_init", "rmsprop_update",
           "rmsprop_step_", "RMSprop"]

# Options and defaults of torch.optim.RMSprop (foreach/capturable/differentiable are not offered).
RMSPROP_OPTIONS: dict[str, Any] = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0,
                                   "momentum": 0.0, "centered": False, "maximize": False}


class RMSpropState(NamedTuple):
    """Per-parameter state of RMSprop: step count, mean square, momentum buffer and mean gradient.

    ``momentum_buffer`` is None unless momentum > 0, ``grad_avg`` None unless centered (as in torch).
    """

    step: int
    square_avg: Tensor
    momentum_buffer: Tensor | None
    grad_avg: Tensor | None


def check_rmsprop_options(lr: Any = 1e-2, alpha: Any = 0.99, eps: Any = 1e-8, weight_decay: Any = 0.0,
                          momentum: Any = 0.0, centered: Any = False, maximize: Any = False) -> dict[str, Any]:
    """Validate RMSprop's options like torch (α ∈ [0, 1] here, NaN/∞ refused); floats and bools."""
    out: dict[str, Any] = {name: as_float(name, v) for name, v in
                           (("lr", lr), ("alpha", alpha), ("eps", eps), ("weight_decay", weight_decay),
                            ("momentum", momentum))}
    check_range("learning rate lr", out["lr"], 0.0)
    check_range("alpha", out["alpha"], 0.0, 1.0)
    for name in ("eps", "weight_decay", "momentum"):
        check_range(name, out[name], 0.0)
    out["centered"] = check_flag("centered", centered)
    out["maximize"] = check_flag("maximize", maximize)
    return out


def rmsprop_init(param: Tensor, momentum: float = 0.0, centered: bool = False) -> RMSpropState:
    """The zero state of RMSprop for one parameter tensor (buffers only for the options that use them)."""
    opts = check_rmsprop_options(momentum=momentum, centered=centered)
    return RMSpropState(0, zeros_state(param), zeros_state(param) if opts["momentum"] > 0 else None,
                        zeros_state(param) if opts["centered"] else None)


@torch.no_grad()
def rmsprop_step_(params: Sequence[Tensor], grads: Sequence[Tensor], square_avgs: Sequence[Tensor],
                  momentum_buffers: Sequence[Tensor | None], grad_avgs: Sequence[Tensor | None], *,
                  lr: float, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                  momentum: float = 0.0, centered: bool = False, maximize: bool = False) -> None:
    """One RMSprop step, in place, on lists of tensors: the single definition of the rule (chapter 2).

    ``momentum_buffers`` must hold tensors when momentum > 0, ``grad_avgs`` when ``centered``
    (None entries otherwise); all state is updated in place, the gradients are never written to.
    """
    check_lists(params=params, grads=grads, square_avgs=square_avgs, momentum_buffers=momentum_buffers,
                grad_avgs=grad_avgs)
    check_grads(params, grads, "RMSprop")
    if momentum > 0 and any(b is None for b in momentum_buffers):
        raise ValueError("momentum > 0 needs momentum buffers (make the state with rmsprop_init(p, momentum=...))")
    if centered and any(a is None for a in grad_avgs):
        raise ValueError("centered=True needs gradient averages (make the state with rmsprop_init(p, centered=True))")
    for idx in group_by_device_and_dtype(params).values():
        ps, sq = [params[i] for i in idx], [square_avgs[i] for i in idx]
        d = direction([grads[i] for i in idx], ps, weight_decay, maximize)
        torch._foreach_mul_(sq, alpha)
        torch._foreach_addcmul_(sq, d, d, value=1 - alpha)
        if centered:
            ga = [grad_avgs[i] for i in idx]
            torch._foreach_lerp_(ga, d, 1 - alpha)
            avg = torch._foreach_addcmul(sq, ga, ga, value=-1)
            torch._foreach_sqrt_(avg)
        else:
            avg = torch._foreach_sqrt(sq)
        torch._foreach_add_(avg, eps)
        if momentum > 0:
            bufs = [momentum_buffers[i] for i in idx]
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_addcdiv_(bufs, d, avg)
            torch._foreach_add_(ps, bufs, alpha=-lr)
        else:
            torch._foreach_addcdiv_(ps, d, avg, value=-lr)


def rmsprop_update(param: Tensor, grad: Tensor, state: RMSpropState, *, lr: float = 1e-2, alpha: float = 0.99,
                   eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                   maximize: bool = False) -> tuple[Tensor, RMSpropState]:
    """One RMSprop step as a pure function: returns ``(new_param, new_state)``, changes nothing.

    ``state`` must come from ``rmsprop_init(param, momentum, centered)`` with the same options.
    It runs :func:`rmsprop_step_` on copies, so it is the very rule :class:`RMSprop` applies.
    """
    opts = check_rmsprop_options(lr, alpha, eps, weight_decay, momentum, centered, maximize)
    if state.square_avg.shape != param.shape:
        raise ValueError(f"state of shape {tuple(state.square_avg.shape)} does not match the parameter "
                         f"{tuple(param.shape)}")
    p, sq, buf, ga = (copy_or_none(t) for t in (param, *state[1:]))
    rmsprop_step_([p], [grad.detach()], [sq], [buf], [ga], **opts)
    return p, RMSpropState(state.step + 1, sq, buf, ga)


class RMSprop(ListOptimizer):
    """``torch.optim.RMSprop`` rebuilt on :func:`rmsprop_step_` (chapter 2, adaptive methods).

    Same options, defaults and state keys as torch: ``step`` (a float32 scalar tensor),
    ``square_avg``, ``momentum_buffer`` (only when momentum > 0) and ``grad_avg`` (only when
    centered), created at a parameter's first step. ``state_dict`` round-trips within ours and loads
    into ``torch.optim.RMSprop`` and back (tested both ways). ``foreach``, ``capturable`` and
    ``differentiable`` are not offered: an unknown option raises TypeError.
    """

    NAME = "RMSprop"
    OPTIONS = RMSPROP_OPTIONS
    check = staticmethod(check_rmsprop_options)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 *, maximize: bool = False, **unknown: Any) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize), unknown)

    def _step_group(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        momentum, centered = group["momentum"], group["centered"]
        states = [self.state[p] for p in params]
        for p, s in zip(params, states):
            if not s:
                fresh = rmsprop_init(p)
                s["step"], s["square_avg"] = new_step(), fresh.square_avg
            if momentum > 0 and "momentum_buffer" not in s:
                s["momentum_buffer"] = zeros_state(p)
            if centered and "grad_avg" not in s:
                s["grad_avg"] = zeros_state(p)
        step_values(states)
        rmsprop_step_(params, grads, [s["square_avg"] for s in states],
                      [s.get("momentum_buffer") for s in states], [s.get("grad_avg") for s in states],
                      **{k: group[k] for k in RMSPROP_OPTIONS})
