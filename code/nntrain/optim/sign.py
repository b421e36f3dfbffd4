"""Sign descent: every coordinate moves by the step size, whatever the size of its gradient
(chapter 11, «Adam и SGD: несбалансированные классы с тяжёлым хвостом»).

The rule (``g`` the gradient):

    p = p − lr·sign(g)        (sign(0) = 0: a coordinate with a zero gradient stays)

Adam with β₁ = β₂ = 0 and ε = 0 takes the same step on every coordinate whose gradient is
nonzero and whose square does not underflow; at g = 0 it computes 0/0 (NaN), while sign descent
leaves the coordinate alone. Written once, in :func:`sign_step_`, over lists of tensors with the
``torch._foreach_*`` kernels; :func:`sign_update` runs it on a copy of one tensor and
:class:`SignDescent` is the ``torch.optim`` wrapper (no state; torch has no twin).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import Tensor

from ._common import ListOptimizer, as_float, check_grads, check_lists, check_range, \
    group_by_device_and_dtype

__all__ = ["SignDescent", "SIGN_OPTIONS", "check_sign_options", "sign_step_", "sign_update"]

# The only option. SignDescent itself has no default rate: ``lr`` must be given.
SIGN_OPTIONS: dict[str, Any] = {"lr": 1e-3}


def check_sign_options(lr: Any) -> dict[str, float]:
    """Validate sign descent's option: lr > 0 and finite (a number or a 1-element tensor)."""
    out = {"lr": as_float("lr", lr)}
    check_range("learning rate lr", out["lr"], 0.0, low_open=True)
    return out


@torch.no_grad()
def sign_step_(params: Sequence[Tensor], grads: Sequence[Tensor], *, lr: float) -> None:
    """One sign-descent step, in place, on lists of tensors: the single definition of the rule.

    ``params`` are updated in place; the gradients are never written to.
    """
    check_lists(params=params, grads=grads)
    check_grads(params, grads, "SignDescent")
    for idx in group_by_device_and_dtype(params).values():
        signs = torch._foreach_sign([grads[i] for i in idx])
        torch._foreach_add_([params[i] for i in idx], signs, alpha=-lr)


def sign_update(param: Tensor, grad: Tensor, *, lr: float) -> Tensor:
    """One sign-descent step as a pure function: returns the new parameter, changes nothing.

    It runs :func:`sign_step_` on a copy, so it is the very rule :class:`SignDescent` applies.
    """
    opts = check_sign_options(lr)
    if not isinstance(param, Tensor) or not isinstance(grad, Tensor):
        raise TypeError(f"param and grad must be tensors, got {type(param).__name__} "
                        f"and {type(grad).__name__}")
    if grad.shape != param.shape:
        raise ValueError(f"grad has shape {tuple(grad.shape)}, param has {tuple(param.shape)}")
    p = param.detach().clone()
    sign_step_([p], [grad.detach()], **opts)
    return p


class SignDescent(ListOptimizer):
    """``p ← p − lr·sign(∇L(p))`` on :func:`sign_step_` (chapter 11); torch has no twin.

    Adam's limit without momentum and without noise. No state is kept; parameters whose
    ``.grad`` is None are skipped. An unknown keyword option raises TypeError.
    """

    NAME = "SignDescent"
    OPTIONS = SIGN_OPTIONS
    check = staticmethod(check_sign_options)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float,
                 **unknown: Any) -> None:
        super().__init__(params, dict(lr=lr), unknown)

    def _step_group(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        sign_step_(params, grads, lr=group["lr"])
