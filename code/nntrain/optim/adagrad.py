"""AdaGrad (Duchi, Hazan, Singer 2011) with torch.optim.Adagrad's exact semantics (chapter 2, adaptive methods).

The rule (``g`` the gradient, ``t`` the step number, ``s`` the running sum of squares):

    d = ±g + λ·p                          (minus when ``maximize``; λ = weight_decay)
    s = s + d²                            (s₀ = initial_accumulator_value)
    p = p − lr_t · d / (√s + ε),   lr_t = lr / (1 + (t − 1)·lr_decay)

It is written once, in :func:`adagrad_step_`, over lists of tensors with ``torch._foreach_*``
kernels in the order torch's foreach implementation uses; :func:`adagrad_update` runs it on
copies of one tensor, :class:`Adagrad` gathers the lists (design of :mod:`nntrain.optim.sgd`).
"""

from __future__ import annotations

from typing import Any, Iterable, NamedTuple, Sequence

import torch
from torch import Tensor

from ._common import ListOptimizer, as_float, check_flag, check_grads, check_lists, check_range, \
    direction, group_by_device_and_dtype, new_step, step_values, copy_or_none

__all__ = ["AdagradState", "ADAGRAD_OPTIONS", "check_adagrad_options", "adagrad_init", "adagrad_update",
           "adagrad_step_", "Adagrad"]

# Options and defaults of torch.optim.Adagrad (foreach/fused/differentiable are not offered).
ADAGRAD_OPTIONS: dict[str, Any] = {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0,
                                   "initial_accumulator_value": 0.0, "eps": 1e-10, "maximize": False}


class AdagradState(NamedTuple):
    """Per-parameter state of AdaGrad: the step count and the running sum of squared gradients."""

    step: int
    sum: Tensor


def check_adagrad_options(lr: Any = 1e-2, lr_decay: Any = 0.0, weight_decay: Any = 0.0,
                          initial_accumulator_value: Any = 0.0, eps: Any = 1e-10,
                          maximize: Any = False) -> dict[str, Any]:
    """Validate AdaGrad's options like torch (and refuse NaN/∞); returns them as floats and a bool."""
    values = {"lr": lr, "lr_decay": lr_decay, "weight_decay": weight_decay,
              "initial_accumulator_value": initial_accumulator_value, "eps": eps}
    out: dict[str, Any] = {}
    for name, v in values.items():
        out[name] = as_float(name, v)
        check_range("learning rate lr" if name == "lr" else name, out[name], 0.0)
    out["maximize"] = check_flag("maximize", maximize)
    return out


def adagrad_init(param: Tensor, initial_accumulator_value: float = 0.0) -> AdagradState:
    """The state before the first step: the sum of squares filled with ``initial_accumulator_value``."""
    value = check_adagrad_options(initial_accumulator_value=initial_accumulator_value)["initial_accumulator_value"]
    return AdagradState(0, torch.full_like(param, value, memory_format=torch.preserve_format).detach())


@torch.no_grad()
def adagrad_step_(params: Sequence[Tensor], grads: Sequence[Tensor], sums: Sequence[Tensor],
                  steps: Sequence[int], *, lr: float, lr_decay: float = 0.0, weight_decay: float = 0.0,
                  eps: float = 1e-10, maximize: bool = False) -> None:
    """One AdaGrad step, in place, on lists of tensors: the single definition of the rule (chapter 2).

    ``steps[i]`` is the number of the step being taken for ``params[i]`` (1 on the first step);
    ``sums`` are updated in place, the gradients are never written to.
    """
    check_lists(params=params, grads=grads, sums=sums, steps=steps)
    check_grads(params, grads, "Adagrad")
    for idx in group_by_device_and_dtype(params).values():
        ps, ss = [params[i] for i in idx], [sums[i] for i in idx]
        d = direction([grads[i] for i in idx], ps, weight_decay, maximize)
        minus_clr = [-lr / (1 + (steps[i] - 1) * lr_decay) for i in idx]
        torch._foreach_addcmul_(ss, d, d, value=1)
        std = torch._foreach_sqrt(ss)
        torch._foreach_add_(std, eps)
        torch._foreach_addcdiv_(ps, torch._foreach_mul(d, minus_clr), std)


def adagrad_update(param: Tensor, grad: Tensor, state: AdagradState, *, lr: float = 1e-2,
                   lr_decay: float = 0.0, weight_decay: float = 0.0, eps: float = 1e-10,
                   maximize: bool = False) -> tuple[Tensor, AdagradState]:
    """One AdaGrad step as a pure function: returns ``(new_param, new_state)``, changes nothing.

    It runs :func:`adagrad_step_` on copies, so it is the very rule :class:`Adagrad` applies.
    """
    opts = check_adagrad_options(lr, lr_decay, weight_decay, 0.0, eps, maximize)
    del opts["initial_accumulator_value"]
    if state.sum.shape != param.shape:
        raise ValueError(f"state of shape {tuple(state.sum.shape)} does not match the parameter {tuple(param.shape)}")
    p, s = (copy_or_none(t) for t in (param, state.sum))
    step = state.step + 1
    adagrad_step_([p], [grad.detach()], [s], [step], **opts)
    return p, AdagradState(step, s)


class Adagrad(ListOptimizer):
    """``torch.optim.Adagrad`` rebuilt on :func:`adagrad_step_` (chapter 2, adaptive methods).

    Same options, defaults and state keys as torch (``state[p]["step"]``, a float32 scalar tensor,
    and ``state[p]["sum"]``). The state is created lazily at a parameter's first step (torch creates
    it in the constructor), so a ``state_dict`` taken before any step is empty here. ``state_dict``
    round-trips within ours and loads into ``torch.optim.Adagrad`` and back (tested both ways).
    ``foreach``, ``fused`` and ``differentiable`` are not offered: an unknown option raises TypeError.
    """

    NAME = "Adagrad"
    OPTIONS = ADAGRAD_OPTIONS
    check = staticmethod(check_adagrad_options)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, initial_accumulator_value: float = 0.0, eps: float = 1e-10,
                 *, maximize: bool = False, **unknown: Any) -> None:
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize), unknown)

    def _step_group(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        states = [self.state[p] for p in params]
        for p, s in zip(params, states):
            if not s:
                s["step"] = new_step()
                s["sum"] = adagrad_init(p, group["initial_accumulator_value"]).sum
        steps = step_values(states)
        adagrad_step_(params, grads, [s["sum"] for s in states], steps, lr=group["lr"],
                      lr_decay=group["lr_decay"], weight_decay=group["weight_decay"], eps=group["eps"],
                      maximize=group["maximize"])
