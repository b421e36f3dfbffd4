"""Exponential learning rates (chapter 9, «Острота минимумов, SAM и экспоненциальный шаг»).

Li & Arora (2020): if the loss is scale-invariant, L(c·w) = L(w) for c > 0, then SGD with step α
and weight decay λ,  w_{t+1} = (1 − αλ) w_t − α ∇L_t(w_t),  and SGD without weight decay with the
growing step  α_t = α (1 − αλ)^(−2t−1),  started at the same point and fed the same batches, give
w̃_t = w_t / (1 − αλ)^t: the same direction, so the same network function at every step.
Scale invariance may hold per group of parameters (each weight matrix followed by a BatchNorm);
the statement then holds group by group with the same factor.

:func:`scale_invariant_net` is such a model (BatchNorm without affine parameters after every
linear layer); :func:`run_pair` trains both ways and returns what the chapter compares.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ._checks import check_positive_int

__all__ = ["BatchStandardize", "explr_schedule", "scale_invariant_net", "sgd_step", "run_pair"]


class BatchStandardize(nn.Module):
    """BatchNorm without affine parameters or running statistics: (z − mean)/√(var + eps).

    torch's BatchNorm1d refuses ``eps = 0`` in training; with ``eps = 0`` this layer makes the
    preceding weight matrix exactly scale-invariant (the chapter's check needs exactness).
    """

    def __init__(self, eps: float = 0.0) -> None:
        super().__init__()
        if not eps >= 0:
            raise ValueError(f"eps must be non-negative, got {eps!r}")
        self.eps = eps

    def forward(self, z: Tensor) -> Tensor:
        mean = z.mean(dim=0, keepdim=True)
        var = z.var(dim=0, unbiased=False, keepdim=True)
        return (z - mean) / torch.sqrt(var + self.eps)


def _check_rates(lr: float, wd: float) -> None:
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if not 0 <= wd < 1 / lr:
        raise ValueError(f"weight decay must satisfy 0 <= wd < 1/lr (so that 1 - lr*wd > 0), got {wd!r}")


def explr_schedule(lr: float, wd: float, steps: int) -> Tensor:
    """α_t = α (1 − αλ)^(−2t−1) for t = 0..steps−1 (float64)."""
    _check_rates(lr, wd)
    check_positive_int("steps", steps)
    t = torch.arange(steps, dtype=torch.float64)
    return lr * (1 - lr * wd) ** (-2 * t - 1)


def scale_invariant_net(sizes: list[int], eps: float = 0.0, seed: int = 0,
                        dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """Linear (no bias) → BatchNorm (no affine) → ReLU … → Linear → BatchNorm.

    Every weight matrix is followed by a BatchNorm, so the loss is invariant to scaling each matrix;
    with ``eps = 0`` exactly, with BatchNorm's usual ``eps = 1e-5`` only approximately.
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output size, got {sizes!r}")
    for s in sizes:
        check_positive_int("every size", s)
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b, bias=False), BatchStandardize(eps)]
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).to(dtype)


@torch.no_grad()
def sgd_step(model: nn.Module, grads: list[Tensor], lr: float, wd: float = 0.0) -> None:
    """Plain SGD with coupled weight decay: w ← (1 − αλ) w − α g (no momentum)."""
    for p, g in zip(model.parameters(), grads):
        p.mul_(1 - lr * wd).sub_(lr * g)


def run_pair(model: nn.Module, x: Tensor, y: Tensor, lr: float, wd: float, steps: int,
             batch_size: int, seed: int = 0) -> dict[str, Tensor]:
    """Train two copies of ``model``: SGD + weight decay, and SGD with the exponential step.

    Both see the same mini-batches. Returns per step: the largest relative difference between
    w̃_t·(1 − αλ)^t and w_t over the weight tensors (``rel_diff``), the two training losses,
    the norm ratio ‖w̃_t‖/‖w_t‖ and the schedule.
    """
    _check_rates(lr, wd)
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    if not list(model.parameters()):
        raise ValueError("the model has no parameters")
    wd_model, exp_model = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    schedule = explr_schedule(lr, wd, steps)
    gen = torch.Generator().manual_seed(seed)
    rho = 1 - lr * wd
    out = {k: torch.empty(steps, dtype=torch.float64)
           for k in ("rel_diff", "loss_wd", "loss_exp", "norm_ratio")}
    for t in range(steps):
        idx = torch.randperm(len(x), generator=gen)[:batch_size]
        losses = []
        for m, rate, decay in ((wd_model, lr, wd), (exp_model, float(schedule[t]), 0.0)):
            loss = nn.functional.cross_entropy(m(x[idx]), y[idx])
            grads = torch.autograd.grad(loss, list(m.parameters()))
            sgd_step(m, grads, rate, decay)
            losses.append(float(loss.detach()))
        out["loss_wd"][t], out["loss_exp"][t] = losses
        diffs, num, den = [], 0.0, 0.0
        for p, q in zip(wd_model.parameters(), exp_model.parameters()):
            scaled = q.detach() * rho ** (t + 1)
            diffs.append(float((scaled - p.detach()).norm() / p.detach().norm()))
            num += float(q.detach().norm() ** 2)
            den += float(p.detach().norm() ** 2)
        out["rel_diff"][t] = max(diffs)
        out["norm_ratio"][t] = (num / den) ** 0.5
    out["schedule"] = schedule
    return out
