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
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor

from .._checks import check_positive_int

__all__ = ["SGD", "sgd_step_", "sgd_update", "heavy_ball_update", "check_sgd_options", "SGD_OPTIONS",
           "compare_step_time"]

# The keyword options of SGD and their defaults (same names and defaults as torch.optim.SGD).
SGD_OPTIONS: dict[str, Any] = {
    "lr": 1e-3,
    "momentum": 0.0,
    "dampening": 0.0,
    "weight_decay": 0.0,
    "nesterov": False,
    "maximize": False,
}


def _as_float(name: str, value: Any) -> float:
    """A hyper-parameter as a Python float; a 1-element tensor is accepted like in torch."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} given as a tensor must have exactly one element, got shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_sgd_options(lr: Any, momentum: Any = 0.0, dampening: Any = 0.0, weight_decay: Any = 0.0,
                      nesterov: Any = False, maximize: Any = False) -> dict[str, Any]:
    """Validate SGD's hyper-parameters like torch does (and a little stricter: NaN and ∞ are refused).

    Returns them normalised (floats and bools). Raises ValueError with the reason otherwise.
    """
    values = {name: _as_float(name, v) for name, v in
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
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if nesterov and (values["momentum"] <= 0.0 or values["dampening"] != 0.0):
        raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening "
                         f"(got momentum={values['momentum']}, dampening={values['dampening']})")
    return {**values, "nesterov": nesterov, "maximize": maximize}


def _group_by_device_and_dtype(params: Sequence[Tensor]) -> dict[tuple, list[int]]:
    """Indices of the tensors that a single ``torch._foreach_*`` call can take together."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        groups[(p.device, p.dtype)].append(i)
    return groups


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
    if not (len(params) == len(grads) == len(bufs)):
        raise ValueError(f"params, grads and bufs must have the same length, got {len(params)}, {len(grads)}, {len(bufs)}")
    for p, g in zip(params, grads):
        if g.is_sparse:
            raise ValueError("sparse gradients are not supported by nntrain.optim.SGD; use torch.optim.SGD")
        if g.shape != p.shape:
            raise ValueError(f"gradient of shape {tuple(g.shape)} does not match its parameter of shape {tuple(p.shape)}")
    new_bufs: list[Tensor | None] = list(bufs)
    for idx in _group_by_device_and_dtype(params).values():
        ps = [params[i] for i in idx]
        # d = ±g + λ·p: a new list of tensors, so that p.grad is never written to
        if maximize:
            d = torch._foreach_neg([grads[i] for i in idx])
            if weight_decay != 0.0:
                torch._foreach_add_(d, ps, alpha=weight_decay)
        elif weight_decay != 0.0:
            d = torch._foreach_add([grads[i] for i in idx], ps, alpha=weight_decay)
        else:
            d = [grads[i] for i in idx]  # read only below
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


def heavy_ball_update(x: Tensor, v: Tensor, grad: Tensor, *, lr: float, beta: float) -> tuple[Tensor, Tensor]:
    """Polyak's heavy ball in the «physics» convention: ``v ← βv − α∇f``, ``x ← x + v`` (pure).

    With a constant step α this is PyTorch's ``b ← μb + g, x ← x − αb`` (μ = β) after the change of
    variable ``v = −α·b``; the two differ only when the step changes along the way (a schedule).
    """
    lr = check_sgd_options(lr)["lr"]
    beta = _as_float("beta", beta)
    if not 0.0 <= beta < 1.0 or not math.isfinite(beta):
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    v_new = beta * v - lr * grad
    return x + v_new, v_new


class SGD(torch.optim.Optimizer):
    """A thin ``torch.optim.Optimizer`` around :func:`sgd_step_`: same options, state and results as
    ``torch.optim.SGD`` (chapter 2).

    Parameters whose ``.grad`` is None are skipped, and their buffers left untouched, exactly like
    torch. The state is ``state[p]["momentum_buffer"]``, as in torch, so ``state_dict`` can be moved
    between the two optimizers. Unknown keyword options raise TypeError naming the valid ones.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = SGD_OPTIONS["lr"],
                 momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, maximize: bool = False, **unknown: Any) -> None:
        if unknown:
            raise TypeError(f"SGD got unknown option(s) {sorted(unknown)}; valid options are {list(SGD_OPTIONS)}")
        defaults = check_sgd_options(lr, momentum, dampening, weight_decay, nesterov, maximize)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group, checking its own options (torch.optim does not re-check per-group values)."""
        unknown = set(param_group) - set(SGD_OPTIONS) - {"params"}
        if unknown:
            raise TypeError(f"parameter group has unknown option(s) {sorted(unknown)}; valid options are {list(SGD_OPTIONS)}")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.update(check_sgd_options(*(group[k] for k in SGD_OPTIONS)))

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Perform one step for every group; ``closure`` re-evaluates the loss, as in torch."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            use_momentum = group["momentum"] != 0
            bufs = [self.state[p].get("momentum_buffer") for p in params] if use_momentum else [None] * len(params)
            new_bufs = sgd_step_(params, grads, bufs, **{k: group[k] for k in SGD_OPTIONS})
            if use_momentum:
                for p, b in zip(params, new_bufs):
                    self.state[p]["momentum_buffer"] = b
        return loss


def _bench_params(n_params: int, width: int, seed: int) -> list[Tensor]:
    """Weights width×width and biases of width, enough layers for about ``n_params`` numbers, with fixed grads."""
    g = torch.Generator().manual_seed(seed)
    params = []
    for _ in range(max(1, round(n_params / (width * width + width)))):
        for shape in ((width, width), (width,)):
            p = torch.randn(shape, generator=g).requires_grad_()
            p.grad = torch.randn(shape, generator=g)
            params.append(p)
    return params


def compare_step_time(n_params: int = 10_000_000, repeats: int = 30, warmup: int = 5, momentum: float = 0.9,
                      lr: float = 1e-3, width: int = 1000) -> dict[str, Any]:
    """Step time of :class:`SGD` against ``torch.optim.SGD(foreach=True)`` on the same float32 parameters.

    The gradients are fixed random tensors, so only the optimizer step is timed. Steps of the two
    optimizers alternate, so that load that comes and goes hits both; returns the median times
    (seconds), the median of the step-by-step ratios ours/torch, and whether the parameters are
    still bit-for-bit equal afterwards.
    """
    ours_p, ref_p = _bench_params(n_params, width, 0), _bench_params(n_params, width, 0)
    ours = SGD(ours_p, lr=lr, momentum=momentum)
    ref = torch.optim.SGD(ref_p, lr=lr, momentum=momentum, foreach=True)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times: dict[str, list[float]] = {"ours": [], "torch": []}
    for i in range(warmup + check_positive_int("repeats", repeats)):
        for name, opt in (("ours", ours), ("torch", ref)):
            start = time.perf_counter()
            opt.step()
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {"params": sum(p.numel() for p in ours_p),
            "ours_s": statistics.median(times["ours"]), "torch_s": statistics.median(times["torch"]),
            "ratio": statistics.median(a / b for a, b in zip(times["ours"], times["torch"])),
            "identical": all(torch.equal(p, q) for p, q in zip(ours_p, ref_p))}
