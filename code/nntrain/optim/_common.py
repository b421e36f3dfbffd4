"""What every optimizer of ``nntrain.optim`` shares: argument checks, tensor grouping, the wrapper base.

Chapter 2 («SGD и прочие оптимизаторы») writes each update rule once, over lists of tensors
with the ``torch._foreach_*`` kernels; the pure functions run that rule on copies of one tensor and the
``torch.optim`` wrappers gather the lists. This module holds the plumbing that would otherwise be
copied into every rule's module: one wording for the same mistake, one way to split tensors into
groups a single foreach call can take, and one ``torch.optim.Optimizer`` base class.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["as_float", "check_range", "check_flag", "check_betas", "check_lists", "check_grads",
           "group_by_device_and_dtype", "direction", "zeros_state", "copy_or_none", "ListOptimizer",
           "new_step", "step_values"]


def as_float(name: str, value: Any) -> float:
    """A hyper-parameter as a Python float; a 1-element tensor is accepted like in torch."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} given as a tensor must have exactly one element, "
                             f"got shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_range(name: str, value: Any, low: float, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> None:
    """Validate a float or a tensor of them (one value per problem of a batch): finite, in the range.

    The range is [low, high] by default; ``low_open``/``high_open`` exclude an end. NaN and ∞ are
    refused with the value named, so a typo in a sweep fails loudly instead of drawing NaN paths.
    """
    t = torch.as_tensor(value, dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {value!r}")
    bad_low = (t <= low).any() if low_open else (t < low).any()
    bad_high = high is not None and bool(((t >= high) if high_open else (t > high)).any())
    if bad_low or bad_high:
        top = "∞)" if high is None else f"{high}{')' if high_open else ']'}"
        where = f"{'(' if low_open else '['}{low}, {top}"
        raise ValueError(f"{name} must lie in {where}, got {value!r}")


def check_flag(name: str, value: Any) -> bool:
    """A boolean option; 0/1 and strings are refused (a silent ``"False"`` would be truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_betas(betas: Any) -> tuple[float, float]:
    """Adam's (β₁, β₂): two finite numbers in [0, 1), returned as a tuple of floats."""
    try:
        pair = tuple(betas)
    except TypeError:
        raise TypeError(f"betas must be a pair of numbers, got {betas!r}") from None
    if len(pair) != 2:
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    out = tuple(as_float(f"betas[{i}]", b) for i, b in enumerate(pair))
    if not all(math.isfinite(b) and 0.0 <= b < 1.0 for b in out):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    return out  # type: ignore[return-value]


def check_lists(**lists: Sequence) -> int:
    """All the per-tensor lists of one step must have the same length; returns it."""
    lengths = [len(v) for v in lists.values()]
    if len(set(lengths)) > 1:
        raise ValueError(f"{', '.join(lists)} must have the same length, got {', '.join(map(str, lengths))}")
    return lengths[0] if lengths else 0


def check_grads(params: Sequence[Tensor], grads: Sequence[Tensor], optimizer: str) -> None:
    """Dense real gradients of the parameters' shapes: what the foreach rules can take."""
    for p, g in zip(params, grads):
        if g.is_sparse:
            raise ValueError(f"sparse gradients are not supported by nntrain.optim.{optimizer}; "
                             f"use torch.optim.{optimizer} (or SparseAdam)")
        if g.shape != p.shape:
            raise ValueError(f"gradient of shape {tuple(g.shape)} does not match its parameter "
                             f"of shape {tuple(p.shape)}")
        if p.is_complex() or g.is_complex():
            raise ValueError(f"complex parameters are not supported by nntrain.optim.{optimizer}")


def group_by_device_and_dtype(params: Sequence[Tensor]) -> dict[tuple, list[int]]:
    """Indices of the tensors that a single ``torch._foreach_*`` call can take together."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        groups[(p.device, p.dtype)].append(i)
    return groups


def direction(grads: Sequence[Tensor], params: Sequence[Tensor], weight_decay: float,
              maximize: bool) -> list[Tensor]:
    """d = ±g + λ·p for lists of tensors (minus when maximizing): the first line of every rule.

    The gradients are never written to: a new list of tensors is made whenever d differs from g
    (torch's SGD writes into ``p.grad``; ours leaves ``.grad`` as backward left it).
    """
    if maximize:
        d = torch._foreach_neg(grads)
        if weight_decay != 0.0:
            torch._foreach_add_(d, params, alpha=weight_decay)
        return d
    if weight_decay != 0.0:
        return torch._foreach_add(grads, params, alpha=weight_decay)
    return list(grads)  # read only


def zeros_state(param: Tensor) -> Tensor:
    """A zero buffer shaped like ``param`` (same dtype, device and strides), outside autograd."""
    return torch.zeros_like(param, memory_format=torch.preserve_format).detach()


def copy_or_none(t: Tensor | None) -> Tensor | None:
    """A detached copy of a state tensor, so that a pure function never writes into its input."""
    return None if t is None else t.detach().clone()


def new_step() -> Tensor:
    """A step counter as torch keeps it (a float32 scalar tensor), so state dicts move between the two."""
    return torch.tensor(0.0, dtype=torch.float32)


def step_values(states: Sequence[dict]) -> list[int]:
    """Advance the ``"step"`` counters of the states by one and return the new counts as ints."""
    out = []
    for s in states:
        s["step"] += 1
        out.append(int(s["step"]))
    return out


class ListOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` that checks its options once and hands each group's lists to a rule.

    A subclass sets ``NAME`` (the torch twin's class name), ``OPTIONS`` (option → default, in
    torch's order), ``check`` (validates and normalises the options, same order) and implements
    ``_step_group(group, params, grads)``, which gathers the state lists and calls the rule.
    Parameters whose ``.grad`` is None are skipped, as in torch.
    """

    NAME: ClassVar[str]
    OPTIONS: ClassVar[dict[str, Any]]
    check: ClassVar[Callable[..., dict[str, Any]]]

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], options: Mapping[str, Any],
                 unknown: Mapping[str, Any]) -> None:
        self._refuse_unknown(unknown, f"{self.NAME} got")
        defaults = type(self).check(**options)
        super().__init__(params, defaults)

    def _refuse_unknown(self, given: Iterable[str], who: str) -> None:
        unknown = set(given) - set(self.OPTIONS) - {"params"}
        if unknown:
            raise TypeError(f"{who} unknown option(s) {sorted(unknown)}; valid options are {list(self.OPTIONS)}")

    def add_param_group(self, param_group: dict) -> None:
        """Add a group, checking its own options (torch.optim does not re-check per-group values)."""
        self._refuse_unknown(param_group, "parameter group has")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.update(type(self).check(**{k: group[k] for k in self.OPTIONS}))

    def _step_group(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Perform one step for every group; ``closure`` re-evaluates the loss, as in torch."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._step_group(group, params, [p.grad for p in params])
        return loss
