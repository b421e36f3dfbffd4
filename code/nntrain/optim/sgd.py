"""SGD with momentum, dampening, Nesterov and weight decay (chapter 2, «Стохастический градиентный спуск»).

The rule, with torch.optim.SGD's exact semantics (``g`` is the gradient, ``b`` the momentum buffer):

    d = ±g + λ·p                       (minus when ``maximize``; λ = weight_decay)
    b = d                 on the first step (no dampening),
    b = μ·b + (1 − τ)·d   afterwards     (μ = momentum, τ = dampening)
    u = d + μ·b  (Nesterov)   or   u = b   (heavy ball)   or   u = d   (μ = 0)
    p = p − lr·u

Design: the rule is written ONCE, in :func:`sgd_step_`, over *lists* of tensors with the
``torch._foreach_*`` kernels, updating parameters and buffers in place. That is what makes the
optimizer as fast as ``torch.optim.SGD(foreach=True)``: one kernel launch per operation for all the
tensors of a device and dtype, instead of a Python loop over parameters. The pure function
:func:`sgd_update` (what the chapter shows and the tests compare against) is the same code applied
to copies of one tensor, and :class:`SGD` is a thin ``torch.optim.Optimizer`` that gathers the
lists and keeps the buffers in its state. So the notebook, the tests and the fast optimizer cannot
disagree about the rule.

:func:`heavy_ball_update` is the «physics» convention ``v ← βv − α∇f, x ← x + v`` used by the
momentum section; with a constant step it is PyTorch's rule up to the rescaling ``v = −α·b``.
:func:`ema_momentum_update` is the EMA form ``m ← βm + (1 − β)∇f, x ← x − αm``. These two are
elementwise and take tensor hyper-parameters (one per problem of a batch), which is what the
trajectory rules of :mod:`nntrain.optim.trajectory` (and ``nntrain.rates``) run.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from ._common import ListOptimizer, as_float, check_flag, check_grads, check_lists, check_range, \
    direction, group_by_device_and_dtype

__all__ = ["SGD", "sgd_step_", "sgd_update", "heavy_ball_update", "ema_momentum_update",
           "check_sgd_options", "SGD_OPTIONS"]

# The keyword options of SGD and their defaults (same names and defaults as torch.optim.SGD).
SGD_OPTIONS: dict[str, Any] = {
    "lr": 1e-3,
    "momentum": 0.0,
    "dampening": 0.0,
    "weight_decay": 0.0,
    "nesterov": False,
    "maximize": False,
}


def check_sgd_options(lr: Any, momentum: Any = 0.0, dampening: Any = 0.0, weight_decay: Any = 0.0,
                      nesterov: Any = False, maximize: Any = False) -> dict[str, Any]:
    """Validate SGD's hyper-parameters like torch does (and a little stricter: NaN and ∞ are refused).

    Returns them normalised (floats and bools). Raises ValueError with the reason otherwise.
    """
    values = {name: as_float(name, v) for name, v in
              (("lr", lr), ("momentum", momentum), ("dampening", dampening), ("weight_decay", weight_decay))}
    for name, v in values.items():
        if not math.isfinite(v):
            raise ValueError(f"Invalid {name}: {v} (must be a finite number)")
    if values["lr"] < 0.0:
        raise ValueError(f"Invalid learning rate: {values['lr']} (must be >= 0)")
    if values["momentum"] < 0.0:
        raise ValueError(f"Invalid momentum value: {values['momentum']} (must be >= 0)")
    if values["weight_decay"] < 0.0:
        raise ValueError(f"Invalid weight_decay value: {values['weight_decay']} (must be >= 0)")
    for name, flag in (("nesterov", nesterov), ("maximize", maximize)):
        check_flag(name, flag)
    if nesterov and (values["momentum"] <= 0.0 or values["dampening"] != 0.0):
        raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening "
                         f"(got momentum={values['momentum']}, dampening={values['dampening']})")
    return {**values, "nesterov": nesterov, "maximize": maximize}


@torch.no_grad()
def sgd_step_(params: Sequence[Tensor], grads: Sequence[Tensor], bufs: Sequence[Tensor | None], *,
              lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
              nesterov: bool = False, maximize: bool = False) -> list[Tensor | None]:
    """One SGD step, in place, on lists of tensors: the single definition of the rule (chapter 2).

    ``params`` are updated in place; ``bufs[i]`` is the momentum buffer of ``params[i]`` or None
    before the first step. Returns the list of buffers after the step (new ones created, old ones
    updated in place; all None when ``momentum == 0``). The gradients are never modified
    (torch.optim.SGD adds the Nesterov term into ``p.grad`` in place; here ``.grad`` stays intact).
    """
    check_lists(params=params, grads=grads, bufs=bufs)
    check_grads(params, grads, "SGD")
    new_bufs: list[Tensor | None] = list(bufs)
    for idx in group_by_device_and_dtype(params).values():
        ps = [params[i] for i in idx]
        d = direction([grads[i] for i in idx], ps, weight_decay, maximize)
        if momentum != 0.0:
            old = [bufs[i] for i in idx]
            if all(b is not None for b in old):
                torch._foreach_mul_(old, momentum)
                torch._foreach_add_(old, d, alpha=1.0 - dampening)
                b = old
            else:  # first step for some tensors: the buffer starts as the (undampened) direction
                b = []
                for bi, di in zip(old, d):
                    if bi is None:
                        bi = di.detach().clone()
                    else:
                        bi.mul_(momentum).add_(di, alpha=1.0 - dampening)
                    b.append(bi)
            for i, bi in zip(idx, b):
                new_bufs[i] = bi
            d = torch._foreach_add(d, b, alpha=momentum) if nesterov else b
        torch._foreach_add_(ps, d, alpha=-lr)
    return new_bufs


def sgd_update(param: Tensor, grad: Tensor, buf: Tensor | None = None, *, lr: float, momentum: float = 0.0,
               dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
               maximize: bool = False) -> tuple[Tensor, Tensor | None]:
    """The SGD rule as a pure function: returns ``(new_param, new_buf)`` and changes nothing (chapter 2).

    ``buf`` is None before the first step; ``new_buf`` is None when ``momentum == 0``. It runs
    :func:`sgd_step_` on copies, so it is the very rule the optimizer :class:`SGD` applies.
    """
    opts = check_sgd_options(lr, momentum, dampening, weight_decay, nesterov, maximize)
    if not isinstance(param, Tensor) or not isinstance(grad, Tensor):
        raise TypeError(f"param and grad must be tensors, got {type(param).__name__} and {type(grad).__name__}")
    if buf is not None and buf.shape != param.shape:
        raise ValueError(f"momentum buffer of shape {tuple(buf.shape)} does not match the parameter {tuple(param.shape)}")
    p = param.detach().clone()
    b = None if buf is None else buf.detach().clone()
    (new_buf,) = sgd_step_([p], [grad.detach()], [b], **opts)
    return p, new_buf


def _heavy_ball(x: Tensor, v: Tensor | float, grad: Tensor, lr: Any, beta: Any) -> tuple[Tensor, Tensor]:
    """The heavy-ball formula itself, unchecked (the trajectory rules check once, not every step)."""
    v_new = beta * v - lr * grad
    return x + v_new, v_new


def _ema_momentum(x: Tensor, m: Tensor, grad: Tensor, lr: Any, beta: Any) -> tuple[Tensor, Tensor]:
    """The EMA-momentum formula itself, unchecked."""
    m_new = beta * m + (1 - beta) * grad
    return x - lr * m_new, m_new


def check_momentum_hyper(lr: Any, beta: Any) -> None:
    """α ≥ 0 and β ∈ [0, 1): floats, or tensors that broadcast against a batch of problems."""
    check_range("learning rate lr", lr, 0.0)
    check_range("beta", beta, 0.0, 1.0, high_open=True)


def heavy_ball_update(x: Tensor, v: Tensor, grad: Tensor, *, lr: Any, beta: Any) -> tuple[Tensor, Tensor]:
    """Polyak's heavy ball in the «physics» convention: ``v ← βv − α∇f``, ``x ← x + v`` (pure).

    With a constant step α this is PyTorch's ``b ← μb + g, x ← x − αb`` (μ = β) after the change of
    variable ``v = −α·b``; the two differ only when the step changes along the way (a schedule).
    ``lr`` and ``beta`` may be tensors that broadcast against ``x`` (one value per problem of a
    batch, as in the momentum chapter). Gradient descent is β = 0; Nesterov's method is this rule
    with the gradient taken at the look-ahead point x + βv (see :mod:`nntrain.optim.trajectory`).
    """
    check_momentum_hyper(lr, beta)
    return _heavy_ball(x, v, grad, lr, beta)


def ema_momentum_update(x: Tensor, m: Tensor, grad: Tensor, *, lr: Any, beta: Any) -> tuple[Tensor, Tensor]:
    """Momentum as an exponential moving average: ``m ← βm + (1 − β)∇f``, ``x ← x − αm`` (pure).

    It is the heavy ball with the step α(1 − β) and ``v = −α·m`` (the momentum chapter checks it);
    torch's ``SGD(momentum=β, dampening=β)`` is this rule started from m₀ = ∇f(x₀) instead of 0.
    ``lr`` and ``beta`` may be tensors that broadcast against ``x``.
    """
    check_momentum_hyper(lr, beta)
    return _ema_momentum(x, m, grad, lr, beta)


class SGD(ListOptimizer):
    """A thin ``torch.optim.Optimizer`` around :func:`sgd_step_`: same options, state and results as
    ``torch.optim.SGD`` (chapter 2).

    Parameters whose ``.grad`` is None are skipped, and their buffers left untouched, exactly like
    torch. The state is ``state[p]["momentum_buffer"]``, as in torch, so ``state_dict`` can be moved
    between the two optimizers. Unknown keyword options raise TypeError naming the valid ones.
    """

    NAME = "SGD"
    OPTIONS = SGD_OPTIONS
    check = staticmethod(check_sgd_options)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = SGD_OPTIONS["lr"],
                 momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, maximize: bool = False, **unknown: Any) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize),
                         unknown)

    def _step_group(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        use_momentum = group["momentum"] != 0
        bufs = [self.state[p].get("momentum_buffer") for p in params] if use_momentum else [None] * len(params)
        new_bufs = sgd_step_(params, grads, bufs, **{k: group[k] for k in SGD_OPTIONS})
        if use_momentum:
            for p, b in zip(params, new_bufs):
                self.state[p]["momentum_buffer"] = b
