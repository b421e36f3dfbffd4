"""Sharpness-aware minimization, SAM (chapter 9, «Острота минимумов, SAM и экспоненциальный шаг»).

Foret et al. (2021) minimise max_{‖ε‖₂ ≤ ρ} L(w + ε). To first order the inner maximiser is
ε̂ = ρ·g/‖g‖₂ (g = ∇L(w)); SAM then steps with the gradient taken at w + ε̂. One step is two passes:

    first_step():  g = ∇L(w) is in p.grad;  ε̂ = ρ g/‖g‖;  w ← w + ε̂   (the ascent)
    (the caller recomputes the loss and its gradient at w + ε̂)
    second_step(): w ← w − ε̂;  base_optimizer.step() with the gradient of w + ε̂

or, equivalently, ``step(closure)`` where ``closure()`` zeroes the grads, computes the loss,
calls ``backward()`` and returns the loss; SAM calls it twice. ``adaptive=True`` is ASAM
(Kwon et al., 2021): ε̂ = ρ T²g/‖Tg‖ with T = diag(|w|), which makes ρ invariant to rescaling
the weights. The norm ‖g‖ is taken over all parameter groups together, as in the paper.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor

__all__ = ["SAM"]


class SAM(torch.optim.Optimizer):
    """SAM around any base optimizer: ``SAM(params, torch.optim.SGD, rho=0.05, lr=0.1, ...)``.

    ``base`` is an optimizer class (called as ``base(self.param_groups, **base_kwargs)``, so both
    share their param groups and a scheduler on SAM schedules the base too).
    """

    def __init__(self, params: Iterable, base: type[torch.optim.Optimizer], rho: float = 0.05,
                 adaptive: bool = False, eps: float = 1e-12, **base_kwargs) -> None:
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not rho > 0:
            raise ValueError(f"rho must be a positive number, got {rho!r}")
        if not (isinstance(base, type) and issubclass(base, torch.optim.Optimizer)):
            raise TypeError(f"base must be a torch.optim.Optimizer class, got {base!r}")
        params = list(params)
        if not params:
            raise ValueError("SAM got an empty parameter list (a model with no parameters?)")
        super().__init__(params, dict(rho=float(rho), adaptive=bool(adaptive), **base_kwargs))
        self.eps = eps
        self.base_optimizer = base(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.grad_evaluations = 0

    def _grad_norm(self) -> Tensor:
        norms = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                scale = p.abs() if group["adaptive"] else 1.0
                norms.append((scale * p.grad).norm(2))
        if not norms:
            raise RuntimeError("SAM.first_step: no parameter has a gradient; call backward() first")
        return torch.stack(norms).norm(2)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Ascend to w + ε̂ with ε̂ = ρ g/‖g‖ (ASAM: ρ T²g/‖Tg‖); remembers ε̂ to undo it."""
        norm = self._grad_norm()
        for group in self.param_groups:
            factor = group["rho"] / (norm + self.eps)
            for p in group["params"]:
                if p.grad is None:
                    continue
                e = p.grad * factor
                if group["adaptive"]:
                    e = e * p.abs() ** 2
                p.add_(e)
                self.state[p]["e_w"] = e
        self.grad_evaluations += 1
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Return to w and let the base optimizer step with the gradient taken at w + ε̂."""
        for group in self.param_groups:
            for p in group["params"]:
                if "e_w" in self.state[p]:
                    p.sub_(self.state[p].pop("e_w"))
        self.base_optimizer.step()
        self.grad_evaluations += 1
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """Both passes; ``closure`` must zero the grads, compute the loss, backward and return it."""
        if closure is None:
            raise ValueError("SAM.step needs a closure (or call first_step / second_step yourself)")
        closure = torch.enable_grad()(closure)
        loss = closure()
        self.first_step(zero_grad=True)
        closure()
        self.second_step()
        return loss
