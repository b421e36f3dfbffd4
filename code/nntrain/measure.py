"""Measuring what a training step costs in arithmetic: FLOPs of forward and backward (chapter 1).

Why: "a gradient costs a small multiple of the function" is the promise of reverse mode. Here it
is counted with ``torch.utils.flop_counter.FlopCounterMode``, which counts the matrix products
(mm, addmm, bmm, convolutions, attention) and ignores elementwise operations — exactly the work
that dominates an MLP. A matrix product of (m×k)·(k×n) counts 2mkn FLOPs.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ._checks import check_positive_int


def _flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False)


def count_flops(fn: Callable, *args, **kwargs) -> int:
    """FLOPs of the matrix products that ``fn(*args, **kwargs)`` runs."""
    if not callable(fn):
        raise TypeError(f"count_flops needs a callable, got {type(fn).__name__}")
    with _flop_counter() as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def flops_by_op(fn: Callable, *args, **kwargs) -> dict[str, int]:
    """The same count split by ATen operation, e.g. ``{'aten.addmm': ..., 'aten.mm': ...}``."""
    with _flop_counter() as counter:
        fn(*args, **kwargs)
    return {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}


@dataclass(frozen=True)
class FlopSplit:
    """FLOPs of one forward pass and of the backward pass that follows it."""
    forward: int
    backward: int

    @property
    def total(self) -> int:
        return self.forward + self.backward

    @property
    def ratio(self) -> float:
        """(forward + backward) / forward: about 3 for a network made of matrix products."""
        return self.total / self.forward if self.forward else float("nan")


def forward_backward_flops(model: torch.nn.Module | Callable, x: torch.Tensor,
                           loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> FlopSplit:
    """Count FLOPs of ``loss_fn(model(x))`` and, separately, of its ``backward()``.

    ``x`` is used as given: if it does not require grad, backward skips dL/dx (see the chapter).
    """
    loss_fn = loss_fn or (lambda out: out.float().pow(2).mean())
    with _flop_counter() as fwd:
        loss = loss_fn(model(x))
    if loss.ndim != 0:
        raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
    if not loss.requires_grad:
        raise ValueError("the loss does not require grad: the model has no trainable parameters and x has no grad")
    with _flop_counter() as bwd:
        loss.backward()
    return FlopSplit(int(fwd.get_total_flops()), int(bwd.get_total_flops()))


def mlp_flops_formula(batch: int, sizes: list[int], input_grad: bool = False) -> FlopSplit:
    """Closed form for an MLP with layers sizes[i] → sizes[i+1] (biases and activations are free).

    Forward: 2·B·Σ nᵢnᵢ₊₁. Backward: twice that (dW = Xᵀδ and dX = δWᵀ), minus dX of the first
    layer unless the input itself needs a gradient.
    """
    if batch <= 0 or len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise ValueError(f"need a positive batch and at least two positive sizes, got {batch}, {sizes}")
    per_layer = [2 * batch * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    forward = sum(per_layer)
    backward = 2 * forward - (0 if input_grad else per_layer[0])
    return FlopSplit(forward, backward)


def gradient_by_forward_mode(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """∇f(x) of a scalar f by forward mode: one ``torch.func.jvp`` per input direction.

    Returns the gradient and the number of passes (= x.numel()).
    """
    flat = x.reshape(-1)
    grad = torch.empty_like(flat)
    for i in range(flat.numel()):
        direction = torch.zeros_like(flat)
        direction[i] = 1.0
        _, tangent = torch.func.jvp(f, (x,), (direction.reshape(x.shape),))
        grad[i] = tangent
    return grad.reshape(x.shape), flat.numel()


def gradient_by_reverse_mode(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """∇f(x) of a scalar f by reverse mode: one forward pass and one ``vjp`` with the seed 1."""
    out, pullback = torch.func.vjp(f, x)
    if out.ndim != 0:
        raise ValueError(f"f must return a scalar, got shape {tuple(out.shape)}")
    (grad,) = pullback(torch.ones_like(out))
    return grad, 1


def time_fn(fn: Callable[[], object], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` (synchronising CUDA when it is used)."""
    if repeat <= 0 or warmup < 0:
        raise ValueError(f"repeat must be positive and warmup non-negative, got {repeat}, {warmup}")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@contextmanager
def silenced_stderr_fd() -> Iterator[None]:
    """Send the process's file descriptor 2 to /dev/null for the duration of the block.

    torch's profiler library logs "profiler_start/stop" lines straight to descriptor 2, past
    Python, so they would land in notebook outputs; Python-level warnings still show.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2: nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# --------------------------------------------------------------- vanishing and exploding gradients

_GAIN_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "linear": lambda z: z}


@dataclass(frozen=True)
class GradientGain:
    """How a gradient changes on its way from the output of a deep MLP back to its input.

    ``gain`` — the root mean square over the examples of ‖∂(uᵀh_L)/∂h_0‖ for unit vectors u,
    that is ‖J_1ᵀ⋯J_Lᵀ u‖; ``bound`` — Π_ℓ ‖J_ℓ‖₂ (spectral norms), which bounds it for every
    example, computed for the first example together with its own ``gain_first``.
    """
    activation: str
    init_scale: float
    depth: int
    gain: float
    gain_first: float
    bound: float


def gradient_gain(depth: int, activation: str = "tanh", init_scale: float = 1.0, width: int = 128,
                  batch: int = 32, seed: int = 0, bound: bool = True) -> GradientGain:
    """Push a unit gradient back through ``depth`` random layers h_ℓ = σ(W_ℓᵀ h_{ℓ−1}) (float64).

    The weights W_ℓ (width × width) are N(0, init_scale²/width), biases zero, inputs N(0, I).
    Per example (a column vector) the layer's Jacobian is J_ℓ = diag(σ'(z_ℓ)) W_ℓᵀ, so the input
    gradient is J_1ᵀ⋯J_Lᵀ u and its norm is at most Π‖J_ℓ‖₂ · ‖u‖. ``bound=False`` skips the
    spectral norms (one SVD per layer). In the batch the layers are rows: H_ℓ = σ(H_{ℓ−1} W_ℓ).
    """
    if activation not in _GAIN_ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(_GAIN_ACTIVATIONS)}")
    for name, value in (("depth", depth), ("width", width), ("batch", batch)):
        check_positive_int(name, value)
    if not init_scale > 0:
        raise ValueError(f"init_scale must be positive, got {init_scale}")
    sigma = _GAIN_ACTIVATIONS[activation]
    gen = torch.Generator().manual_seed(seed)
    f64 = dict(dtype=torch.float64)
    weights = [torch.randn(width, width, generator=gen, **f64) * (init_scale / width**0.5) for _ in range(depth)]
    x = torch.randn(batch, width, generator=gen, **f64).requires_grad_()
    u = torch.randn(batch, width, generator=gen, **f64)
    u = u / u.norm(dim=1, keepdim=True)
    h, pre = x, []
    for w in weights:
        z = h @ w
        pre.append(z.detach())
        h = sigma(z)
    (g,) = torch.autograd.grad((h * u).sum(), x)
    norms = g.norm(dim=1)
    product = float("nan")
    if bound:
        product = 1.0
        for w, z in zip(weights, pre):
            zr = z[0].clone().requires_grad_()
            (slope,) = torch.autograd.grad(sigma(zr).sum(), zr)  # σ'(z) of the first example
            jac = slope[:, None] * w.T  # J_ℓ = diag(σ'(z_ℓ)) W_ℓᵀ
            product *= float(torch.linalg.matrix_norm(jac, ord=2))
    return GradientGain(activation, float(init_scale), depth, float(norms.pow(2).mean().sqrt()),
                        float(norms[0]), product)
