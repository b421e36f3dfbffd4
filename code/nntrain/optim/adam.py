"""Adam, AdamW and AMSGrad with torch.optim.Adam's exact semantics (chapter 2, adaptive methods and AdamW).

The rule (``g`` the gradient, ``t`` the step number, λ = weight_decay):

    d = ±g                                   (minus when ``maximize``)
    p = p·(1 − lr·λ)   if decoupled (AdamW, Loshchilov & Hutter),   else   d = d + λ·p   (L2, Adam)
    m = β₁·m + (1 − β₁)·d,   v = β₂·v + (1 − β₂)·d²,   v̂ = max(v̂, v) if ``amsgrad`` else v
    p = p − (lr / (1 − β₁ᵗ)) · m / (√v̂ / √(1 − β₂ᵗ) + ε)

Written once, in :func:`adam_step_`, over lists with ``torch._foreach_*`` in the order of torch's
foreach implementation; :func:`adam_update` runs it on copies of one tensor, :class:`Adam` and
:class:`AdamW` gather the lists, and Muon's auxiliary AdamW group (chapter 8) calls
:func:`adamw_step_`. ``adamw_init``/``adamw_update`` are the AdamW-default spellings of the same rule.
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple, Sequence

import torch
from torch import Tensor

from ._common import ListOptimizer, as_float, check_betas, check_flag, check_grads, check_lists, check_range, \
    direction, group_by_device_and_dtype, new_step, step_values, zeros_state, copy_or_none

__all__ = ["AdamState", "ADAM_OPTIONS", "check_adam_options", "adam_init", "adam_update", "adam_step_",
           "adamw_init", "adamw_update", "adamw_step_", "Adam", "AdamW"]

# Options and defaults of torch.optim.Adam (foreach/capturable/differentiable/fused are not offered).
ADAM_OPTIONS: dict[str, Any] = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                                "amsgrad": False, "maximize": False, "decoupled_weight_decay": False}


class AdamState(NamedTuple):
    """Per-parameter state of Adam: step count, first and second moments, running max (AMSGrad)."""

    step: int
    exp_avg: Tensor
    exp_avg_sq: Tensor
    max_exp_avg_sq: Tensor | None


def check_adam_options(lr: Any = 1e-3, betas: Any = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0.0,
                       amsgrad: Any = False, maximize: Any = False,
                       decoupled_weight_decay: Any = False) -> dict[str, Any]:
    """Validate Adam's options like torch (NaN/∞ refused); returns floats, a pair of floats and bools."""
    out: dict[str, Any] = {"lr": as_float("lr", lr), "betas": check_betas(betas), "eps": as_float("eps", eps),
                           "weight_decay": as_float("weight_decay", weight_decay)}
    check_range("learning rate lr", out["lr"], 0.0)
    check_range("eps", out["eps"], 0.0)
    check_range("weight_decay", out["weight_decay"], 0.0)
    for name, flag in (("amsgrad", amsgrad), ("maximize", maximize),
                       ("decoupled_weight_decay", decoupled_weight_decay)):
        out[name] = check_flag(name, flag)
    return out


def adam_init(param: Tensor, amsgrad: bool = False) -> AdamState:
    """The zero state of Adam for one parameter tensor (the running max only for AMSGrad)."""
    check_flag("amsgrad", amsgrad)
    return AdamState(0, zeros_state(param), zeros_state(param), zeros_state(param) if amsgrad else None)


@torch.no_grad()
def adam_step_(params: Sequence[Tensor], grads: Sequence[Tensor], exp_avgs: Sequence[Tensor],
               exp_avg_sqs: Sequence[Tensor], max_exp_avg_sqs: Sequence[Tensor | None], steps: Sequence[int], *,
               lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
               amsgrad: bool = False, maximize: bool = False, decoupled: bool = False) -> None:
    """One Adam(W) step, in place, on lists of tensors: the single definition of the rule (chapter 2).

    ``steps[i]`` is the number of the step being taken for ``params[i]`` (1 on the first step);
    ``max_exp_avg_sqs`` must hold tensors when ``amsgrad``. The gradients are never written to.
    """
    check_lists(params=params, grads=grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs,
                max_exp_avg_sqs=max_exp_avg_sqs, steps=steps)
    check_grads(params, grads, "Adam")
    if amsgrad and any(v is None for v in max_exp_avg_sqs):
        raise ValueError("amsgrad=True needs a running max (make the state with adam_init(p, amsgrad=True))")
    beta1, beta2 = betas
    for idx in group_by_device_and_dtype(params).values():
        ps, m, v = [params[i] for i in idx], [exp_avgs[i] for i in idx], [exp_avg_sqs[i] for i in idx]
        d = direction([grads[i] for i in idx], ps, 0.0 if decoupled else weight_decay, maximize)
        if decoupled and weight_decay != 0.0:
            torch._foreach_mul_(ps, 1 - lr * weight_decay)
        torch._foreach_lerp_(m, d, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, d, d, 1 - beta2)
        step_size = [(lr / (1 - beta1 ** steps[i])) * -1 for i in idx]
        bias2_sqrt = [(1 - beta2 ** steps[i]) ** 0.5 for i in idx]
        if amsgrad:
            vmax = [max_exp_avg_sqs[i] for i in idx]
            torch._foreach_maximum_(vmax, v)
            denom = torch._foreach_sqrt(vmax)
        else:
            denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(ps, m, denom, step_size)


def adam_update(param: Tensor, grad: Tensor, state: AdamState, *, lr: float = 1e-3,
                betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                amsgrad: bool = False, decoupled: bool = False, maximize: bool = False) -> tuple[Tensor, AdamState]:
    """One Adam step as a pure function: returns ``(new_param, new_state)``, changes nothing.

    ``decoupled=False`` is ``torch.optim.Adam`` (L2 term in the gradient), ``decoupled=True`` is
    ``torch.optim.AdamW`` (``p *= 1 − lr·weight_decay`` first). It runs :func:`adam_step_` on copies,
    so it is the very rule the wrappers apply.
    """
    opts = check_adam_options(lr, betas, eps, weight_decay, amsgrad, maximize, check_flag("decoupled", decoupled))
    opts["decoupled"] = opts.pop("decoupled_weight_decay")
    if not isinstance(param, Tensor) or not isinstance(grad, Tensor):
        raise TypeError(f"param and grad must be tensors, got {type(param).__name__} and {type(grad).__name__}")
    if grad.shape != param.shape:
        raise ValueError(f"grad has shape {tuple(grad.shape)}, param has {tuple(param.shape)}")
    if state.exp_avg.shape != param.shape:
        raise ValueError(f"state of shape {tuple(state.exp_avg.shape)} does not match the parameter "
                         f"{tuple(param.shape)}")
    p, m, v, vmax = (copy_or_none(t) for t in (param, *state[1:]))
    step = state.step + 1
    adam_step_([p], [grad.detach()], [m], [v], [vmax], [step], **opts)
    return p, AdamState(step, m, v, vmax)


def adamw_init(param: Tensor, amsgrad: bool = False) -> AdamState:
    """The zero state of AdamW: the same as :func:`adam_init` (kept for chapter 8 and the tests)."""
    return adam_init(param, amsgrad)


def adamw_update(param: Tensor, grad: Tensor, state: AdamState, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 amsgrad: bool = False, decoupled: bool = True, maximize: bool = False) -> tuple[Tensor, AdamState]:
    """:func:`adam_update` with AdamW's defaults (``weight_decay=1e-2``, ``decoupled=True``)."""
    return adam_update(param, grad, state, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                       amsgrad=amsgrad, decoupled=decoupled, maximize=maximize)


def adamw_step_(p: Tensor, state: dict, *, lr: float, betas: tuple[float, float], eps: float,
                weight_decay: float, amsgrad: bool = False, decoupled: bool = True) -> None:
    """Apply the Adam(W) rule to ``p`` in place, keeping its :class:`AdamState` in ``state["adam"]``.

    The per-parameter step of Muon's auxiliary AdamW group (chapter 8).
    """
    opts = check_adam_options(lr, betas, eps, weight_decay, amsgrad)
    if "adam" not in state:
        state["adam"] = adam_init(p, amsgrad)
    s = state["adam"]
    step = s.step + 1
    adam_step_([p], [p.grad], [s.exp_avg], [s.exp_avg_sq], [s.max_exp_avg_sq], [step], lr=opts["lr"],
               betas=opts["betas"], eps=opts["eps"], weight_decay=opts["weight_decay"], amsgrad=amsgrad,
               decoupled=decoupled)
    state["adam"] = s._replace(step=step)


class Adam(ListOptimizer):
    """``torch.optim.Adam`` rebuilt on :func:`adam_step_` (chapter 2, adaptive methods).

    Same options (``decoupled_weight_decay=True`` is AdamW, as in torch ≥ 2.6), defaults and state
    keys as torch: ``step`` (a float32 scalar tensor), ``exp_avg``, ``exp_avg_sq`` and
    ``max_exp_avg_sq`` (only with amsgrad), created at a parameter's first step. ``state_dict``
    round-trips within ours and loads into ``torch.optim.Adam`` and back (tested both ways).
    ``foreach``, ``capturable``, ``differentiable`` and ``fused`` are not offered: an unknown option
    raises TypeError; a sparse gradient raises ValueError.
    """

    NAME = "Adam"
    OPTIONS = ADAM_OPTIONS
    check = staticmethod(check_adam_options)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 amsgrad: bool = False, *, maximize: bool = False, decoupled_weight_decay: bool = False,
                 **unknown: Any) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, decoupled_weight_decay=decoupled_weight_decay), unknown)

    def _step_group(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        amsgrad = group["amsgrad"]
        states = [self.state[p] for p in params]
        for p, s in zip(params, states):
            if not s:
                fresh = adam_init(p, amsgrad)
                s["step"], s["exp_avg"], s["exp_avg_sq"] = new_step(), fresh.exp_avg, fresh.exp_avg_sq
                if amsgrad:
                    s["max_exp_avg_sq"] = fresh.max_exp_avg_sq
        steps = step_values(states)
        adam_step_(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                   [s.get("max_exp_avg_sq") for s in states], steps, lr=group["lr"], betas=group["betas"],
                   eps=group["eps"], weight_decay=group["weight_decay"], amsgrad=amsgrad,
                   maximize=group["maximize"], decoupled=group["decoupled_weight_decay"])


class AdamW(Adam):
    """``torch.optim.AdamW`` rebuilt on :func:`adam_step_` (chapters 2 «AdamW» and 8).

    :class:`Adam` with ``decoupled_weight_decay=True`` and ``weight_decay=1e-2``, as torch defines
    it; the group option ``decoupled_weight_decay`` is kept so ``state_dict`` moves like torch's.
    """

    NAME = "AdamW"

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 amsgrad: bool = False, *, maximize: bool = False, **unknown: Any) -> None:
        if "decoupled_weight_decay" in unknown:
            raise TypeError("AdamW always decouples the weight decay; use Adam for the L2 form")
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, **unknown)
