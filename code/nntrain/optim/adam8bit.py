"""8-bit Adam from scratch, in pure torch (chapter 4, «Оптимизаторы, экономящие память»).

Dettmers et al. (arXiv 2110.02861) store Adam's moments m and v as uint8 indices into two code books
(:func:`nntrain.quant.dynamic_code`, signed for m, unsigned for v), with one float32 absmax per
block of ``block_size`` values. Every step dequantizes both moments to float32, applies the ordinary
Adam update, and quantizes them back:

    m̃, ṽ = dequantize(state)                        (float32)
    m̃ = β₁·m̃ + (1 − β₁)·g,   ṽ = β₂·ṽ + (1 − β₂)·g²
    p = p·(1 − lr·λ)                                  (decoupled, as bitsandbytes does for Adam8bit)
    p = p − (lr / (1 − β₁ᵗ)) · m̃ / (√ṽ / √(1 − β₂ᵗ) + ε)
    state = quantize(m̃), quantize(ṽ)

The bytes of state per parameter are 1 + 1 (the two uint8 tensors) + 2·4/block_size (the absmax
numbers): 2.03 with bitsandbytes' block of 256, plus two shared 256-entry code books per optimizer
(2 KiB) and a float32 ``step`` per tensor. Tensors with fewer than ``min_8bit_size`` values keep
float32 moments (``exp_avg``, ``exp_avg_sq``), as in bitsandbytes: for them the absmax overhead and
the precision loss would buy nothing.

Non-finite gradients are refused with a ValueError *before* anything is changed: quantizing a NaN
would turn the absmax of its block into NaN and destroy the 8-bit state of the whole block for good
(bitsandbytes does not check). A mixed-precision loop skips such steps before ``step()`` anyway.

Design as in :mod:`nntrain.optim.sgd`: :func:`adam8bit_step_` is the single definition of the rule,
:func:`adam8bit_update` runs it on copies, :class:`Adam8bit` (named and parametrised like
``bitsandbytes.optim.Adam8bit``) is a thin wrapper. No bitsandbytes inside.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor

from .._checks import check_positive_int
from ._common import ListOptimizer, new_step
from ..quant import dequantize_blockwise, dynamic_code, n_blocks, quantize_blockwise

__all__ = ["ADAM8BIT_OPTIONS", "check_adam8bit_options", "adam8bit_init", "adam8bit_step_",
           "adam8bit_update", "adam8bit_moments", "check_finite_grads", "Adam8bit"]

ADAM8BIT_OPTIONS: dict[str, Any] = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                                    "block_size": 256, "min_8bit_size": 4096}

_CODES: dict[tuple[bool, torch.device], Tensor] = {}


def _code(signed: bool, device: torch.device) -> Tensor:
    """One shared code book per (signedness, device): every state refers to the same tensor."""
    key = (signed, torch.device(device))
    if key not in _CODES:
        _CODES[key] = dynamic_code(signed=signed).to(device)
    return _CODES[key]


def check_adam8bit_options(lr: Any = 1e-3, betas: Any = (0.9, 0.999), eps: Any = 1e-8,
                           weight_decay: Any = 0.0, block_size: Any = 256,
                           min_8bit_size: Any = 4096) -> dict[str, Any]:
    """Validate the options: lr, eps, λ ≥ 0 and finite, β ∈ [0, 1), block_size a positive int."""
    out: dict[str, Any] = {}
    for name, v in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        out[name] = float(v)
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"betas must be a pair of numbers, got {betas!r}") from None
    if not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in (b1, b2)):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    out["betas"] = (float(b1), float(b2))
    out["block_size"] = check_positive_int("block_size", block_size)
    if isinstance(min_8bit_size, bool) or not isinstance(min_8bit_size, int) or min_8bit_size < 0:
        raise ValueError(f"min_8bit_size must be an int >= 0, got {min_8bit_size!r}")
    out["min_8bit_size"] = min_8bit_size
    return out


def check_finite_grads(grads: Sequence[Tensor]) -> None:
    """Refuse NaN or ∞ in any gradient *before* anything changes: a NaN quantized into a block would
    make its absmax NaN and destroy the 8-bit state of the whole block for good."""
    if not all(bool(torch.isfinite(g).all()) for g in grads):
        raise ValueError("non-finite gradient (NaN or ∞): 8-bit Adam refuses the step and leaves the "
                         "parameters and the state intact (a NaN would destroy the quantized block); "
                         "skip this step or lower the learning rate / loss scale")


def adam8bit_init(param: Tensor, block_size: int = 256, min_8bit_size: int = 4096) -> dict[str, Tensor]:
    """The zero state of one tensor: uint8 moments with absmax (large tensors) or float32 moments.

    Keys as in bitsandbytes: ``state1``/``state2`` (uint8, the parameter's shape), ``absmax1``/
    ``absmax2`` (float32, one per block), ``qmap1``/``qmap2`` (the shared code books); small
    tensors get ``exp_avg``/``exp_avg_sq`` in float32. ``step`` is a float32 scalar tensor.
    """
    check_positive_int("block_size", block_size)
    state: dict[str, Tensor] = {"step": new_step()}
    if param.numel() < min_8bit_size:
        state["exp_avg"] = torch.zeros_like(param, dtype=torch.float32)
        state["exp_avg_sq"] = torch.zeros_like(param, dtype=torch.float32)
        return state
    blocks = n_blocks(param.numel(), block_size)
    for i, signed in ((1, True), (2, False)):
        # code 0 of the signed book is −0.993 and of the unsigned book 0; a zero state must
        # decode to 0 in both, so the initial codes are the index of the value 0 in each book
        code = _code(signed, param.device)
        zero = int(torch.argmin(code.abs()))
        state[f"state{i}"] = torch.full(param.shape, zero, dtype=torch.uint8, device=param.device)
        state[f"absmax{i}"] = torch.zeros(blocks, dtype=torch.float32, device=param.device)
        state[f"qmap{i}"] = code
    return state


def adam8bit_moments(state: dict[str, Tensor], block_size: int = 256) -> tuple[Tensor, Tensor]:
    """The float32 moments (m, v) that a state stands for (dequantized for 8-bit states)."""
    if "exp_avg" in state:
        return state["exp_avg"], state["exp_avg_sq"]
    m = dequantize_blockwise(state["state1"], state["absmax1"], state["qmap1"], block_size)
    v = dequantize_blockwise(state["state2"], state["absmax2"], state["qmap2"], block_size)
    return m, v


@torch.no_grad()
def adam8bit_step_(params: Sequence[Tensor], grads: Sequence[Tensor], states: Sequence[dict], *,
                   lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                   weight_decay: float = 0.0, block_size: int = 256, min_8bit_size: int = 4096) -> None:
    """One step of 8-bit Adam, in place on the parameters and their states (chapter 4).

    All gradients are checked first: a NaN or ∞ raises ValueError and leaves every parameter and
    every state as it was. ``min_8bit_size`` only matters in :func:`adam8bit_init`.
    """
    if not len(params) == len(grads) == len(states):
        raise ValueError(f"params, grads and states must have the same length, got "
                         f"{len(params)}, {len(grads)}, {len(states)}")
    for p, g in zip(params, grads):
        if g.shape != p.shape:
            raise ValueError(f"gradient of shape {tuple(g.shape)} does not match its parameter {tuple(p.shape)}")
    check_finite_grads(grads)
    b1, b2 = betas
    for p, g, st in zip(params, grads, states):
        st["step"] += 1
        t = st["step"].item()
        eight_bit = "state1" in st
        m, v = adam8bit_moments(st, block_size) if eight_bit else (st["exp_avg"], st["exp_avg_sq"])
        g32 = g.float()
        m.mul_(b1).add_(g32, alpha=1 - b1)
        v.mul_(b2).addcmul_(g32, g32, value=1 - b2)
        c1 = 1 - b1 ** t
        c2 = math.sqrt(1 - b2 ** t)
        denom = (v.sqrt() / c2).add_(eps)
        p32 = p.float() if p.dtype != torch.float32 else p
        if weight_decay > 0:
            p32.mul_(1 - lr * weight_decay)
        p32.addcdiv_(m, denom, value=-lr / c1)
        if p32 is not p:
            p.copy_(p32)
        if eight_bit:
            st["state1"], st["absmax1"] = quantize_blockwise(m, st["qmap1"], block_size)
            st["state2"], st["absmax2"] = quantize_blockwise(v, st["qmap2"], block_size)


def adam8bit_update(param: Tensor, grad: Tensor, state: dict | None = None,
                    **options: Any) -> tuple[Tensor, dict]:
    """8-bit Adam as a pure function: returns ``(new_param, new_state)`` and changes nothing."""
    opts = check_adam8bit_options(**options)
    p = param.detach().clone()
    if state is None:
        st = adam8bit_init(p, opts["block_size"], opts["min_8bit_size"])
    else:  # the code books are shared constants, the rest is copied
        st = {k: (v if k.startswith("qmap") else v.detach().clone()) for k, v in state.items()}
    adam8bit_step_([p], [grad.detach()], [st], **opts)
    return p, st


class Adam8bit(ListOptimizer):
    """A thin ``torch.optim.Optimizer`` around :func:`adam8bit_step_` (chapter 4).

    Options as in ``bitsandbytes.optim.Adam8bit`` (lr, betas, eps, weight_decay, min_8bit_size),
    plus ``block_size`` (256 as bitsandbytes' optimizers use; the paper used 2048).
    ``nntrain.memory.optimizer_state_bytes(opt)`` counts 2 + 8/block_size bytes per parameter of
    the large tensors, the code books once. A non-finite gradient in any group refuses the whole
    step before any group is changed.
    """

    NAME = "Adam8bit"
    OPTIONS = ADAM8BIT_OPTIONS
    check = staticmethod(check_adam8bit_options)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 block_size: int = 256, min_8bit_size: int = 4096) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      block_size=block_size, min_8bit_size=min_8bit_size), {})

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One step for every group; ``closure`` re-evaluates the loss, as in torch."""

        def then_refuse_non_finite() -> Tensor | None:  # runs where the base class runs a closure
            loss = None if closure is None else closure()
            check_finite_grads([p.grad for group in self.param_groups for p in group["params"]
                                if p.grad is not None])
            return loss

        return super().step(then_refuse_non_finite)

    def _step_group(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        states = [self.state[p] for p in params]
        for p, st in zip(params, states):
            if not st:
                st.update(adam8bit_init(p, group["block_size"], group["min_8bit_size"]))
        adam8bit_step_(params, grads, states, **{k: group[k] for k in ADAM8BIT_OPTIONS})
