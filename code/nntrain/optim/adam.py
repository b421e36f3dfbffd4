"""Adam and AdamW: the update rule as a pure function and a thin ``torch.optim`` wrapper.

Chapter 2 (adaptive methods) teaches the rule; chapter 8 uses AdamW for the parameters that Muon
does not handle (embeddings, the output head, biases and gains). The pure function is written
to give exactly what ``torch.optim.AdamW`` (and, with ``decoupled=False``, ``torch.optim.Adam``)
computes, so that the tests can compare them in float64 step by step.
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple

import torch

__all__ = ["AdamState", "adamw_init", "adamw_update", "adamw_step_", "AdamW"]


class AdamState(NamedTuple):
    """Per-parameter state of Adam: step count, first and second moments, running max (AMSGrad)."""

    step: int
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    max_exp_avg_sq: torch.Tensor | None


def _check_hyper(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    if not isinstance(lr, (int, float)) or lr < 0:
        raise ValueError(f"lr must be a non-negative number, got {lr!r}")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be non-negative, got {weight_decay!r}")


def adamw_init(param: torch.Tensor, amsgrad: bool = False) -> AdamState:
    """The zero state of Adam for one parameter tensor."""
    zeros = torch.zeros_like(param)
    return AdamState(0, zeros, zeros.clone(), zeros.clone() if amsgrad else None)


def adamw_update(
    param: torch.Tensor,
    grad: torch.Tensor,
    state: AdamState,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    decoupled: bool = True,
) -> tuple[torch.Tensor, AdamState]:
    """One Adam(W) step; returns the new parameter and the new state (inputs are not modified).

    ``decoupled=True`` is AdamW (Loshchilov & Hutter): ``param *= 1 - lr*wd`` before the step.
    ``decoupled=False`` is Adam with an L2 term added to the gradient (``torch.optim.Adam``).
    The bias corrections follow torch: ``step_size = lr / (1 - beta1^t)`` and
    ``denom = sqrt(v) / sqrt(1 - beta2^t) + eps``.
    """
    _check_hyper(lr, betas, eps, weight_decay)
    if grad.shape != param.shape:
        raise ValueError(f"grad has shape {tuple(grad.shape)}, param has {tuple(param.shape)}")
    if amsgrad and state.max_exp_avg_sq is None:
        raise ValueError("amsgrad=True needs a state made with adamw_init(param, amsgrad=True)")
    beta1, beta2 = betas
    step = state.step + 1
    if decoupled:
        param = param * (1 - lr * weight_decay)
    elif weight_decay:
        grad = grad + weight_decay * param
    exp_avg = state.exp_avg.lerp(grad, 1 - beta1)
    exp_avg_sq = state.exp_avg_sq * beta2 + (1 - beta2) * grad * grad
    bias1 = 1 - beta1**step
    bias2_sqrt = math.sqrt(1 - beta2**step)
    max_sq = None
    if amsgrad:
        max_sq = torch.maximum(state.max_exp_avg_sq, exp_avg_sq)
        denom = max_sq.sqrt() / bias2_sqrt + eps
    else:
        denom = exp_avg_sq.sqrt() / bias2_sqrt + eps
    param = param - (lr / bias1) * exp_avg / denom
    return param, AdamState(step, exp_avg, exp_avg_sq, max_sq)


@torch.no_grad()
def adamw_step_(p: torch.Tensor, state: dict, *, lr: float, betas: tuple[float, float], eps: float,
                weight_decay: float, amsgrad: bool = False, decoupled: bool = True) -> None:
    """Apply :func:`adamw_update` to ``p`` in place, keeping its state in ``state["adam"]``.

    The one per-parameter step of the optimizer wrappers: :class:`AdamW` and Muon's AdamW group.
    """
    if p.grad.is_sparse:
        raise TypeError("AdamW does not support sparse gradients")
    if "adam" not in state:
        state["adam"] = adamw_init(p, amsgrad)
    new_p, state["adam"] = adamw_update(p, p.grad, state["adam"], lr=lr, betas=betas, eps=eps,
                                        weight_decay=weight_decay, amsgrad=amsgrad, decoupled=decoupled)
    p.copy_(new_p)


class AdamW(torch.optim.Optimizer):
    """``torch.optim.AdamW`` rebuilt on :func:`adamw_update` (chapters 2 and 8).

    ``decoupled=False`` turns it into ``torch.optim.Adam`` (L2 penalty in the gradient).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        decoupled: bool = True,
    ) -> None:
        _check_hyper(lr, tuple(betas), eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        decoupled=decoupled)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """Apply :func:`adamw_update` to every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                adamw_step_(p, self.state[p], lr=group["lr"], betas=group["betas"], eps=group["eps"],
                            weight_decay=group["weight_decay"], amsgrad=group["amsgrad"], decoupled=group["decoupled"])
        return loss
