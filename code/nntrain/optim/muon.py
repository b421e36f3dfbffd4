"""Muon: steepest descent in the spectral norm (chapter 8).

The update direction of Muon is the polar factor ``U V^T`` of the (momentum-averaged) gradient
``G = U S V^T``: the linear minimization oracle of the spectral-norm ball. An SVD per step is too
slow, so ``U V^T`` is approximated by odd matrix polynomials ``X <- a X + b (X X^T) X + c (X X^T)^2 X``
that use only matrix products:

* :func:`newton_schulz` — one fixed triple ``(a, b, c)`` per step (Jordan's quintic by default);
* :func:`polar_express` — a new, minimax-optimal triple per step (Amsel et al., arXiv 2505.16932),
  generated here by :func:`polar_express_coefficients`.

:func:`muon_update` is the whole step as a pure function; :class:`Muon` is the ``torch.optim``
wrapper, with an auxiliary AdamW group for the parameters Muon should not touch
(:func:`split_muon_params` makes the two groups).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from .adam import adamw_step_

__all__ = [
    "JORDAN_COEFFICIENTS", "CUBIC_COEFFICIENTS", "CLASSIC_QUINTIC_COEFFICIENTS", "POLAR_EXPRESS_PUBLISHED",
    "POLAR_EXPRESS_CUSHION",
    "SHAPE_SCALINGS", "ORTHOGONALIZERS",
    "odd_quintic", "iterate_scalar", "optimal_odd_quintic", "polar_express_coefficients",
    "polar_factor_svd", "newton_schulz", "polar_express", "orthogonalize",
    "newton_schulz_flops", "muon_flop_overhead", "shape_scale", "muon_update", "split_muon_params", "Muon",
]

# Jordan's quintic (KellerJordan/Muon, muon.py): chosen to maximise the slope at 0, at the price of
# not converging to 1 (the singular values settle in a band around 1).
JORDAN_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
# The classic Newton–Schulz iterations: cubic (3x - x^3)/2 and quintic (15x - 10x^3 + 3x^5)/8.
CUBIC_COEFFICIENTS: tuple[float, float, float] = (1.5, -0.5, 0.0)
CLASSIC_QUINTIC_COEFFICIENTS: tuple[float, float, float] = (15 / 8, -10 / 8, 3 / 8)
# The published Polar Express table (NoahAmsel/PolarExpress, polar_express/basic.py), before its
# safety factor; the last triple repeats. It is the ideal schedule (safety 0) with the paper's cushion
# 0.02407327424182761 (the repository's comment rounds it to 0.02): our generator reproduces it to ~1e-8.
POLAR_EXPRESS_PUBLISHED: tuple[tuple[float, float, float], ...] = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
)

# The cushion of the Polar Express paper: the lower end of each interval is raised to at least
# POLAR_EXPRESS_CUSHION·u before the minimax fit (keeps the first polynomials' coefficients moderate).
POLAR_EXPRESS_CUSHION = 0.02407327424182761

SHAPE_SCALINGS = ("original", "match_rms_adamw", "none")
ORTHOGONALIZERS = ("newton_schulz", "polar_express", "svd")

Coeffs = tuple[float, float, float]


# --------------------------------------------------------------------------- scalar polynomials


def odd_quintic(x, coeffs: Coeffs):
    """p(x) = a x + b x^3 + c x^5: what one iteration does to every singular value."""
    a, b, c = coeffs
    x2 = x * x
    return x * (a + x2 * (b + c * x2))


def iterate_scalar(x, schedule: Sequence[Coeffs]):
    """Apply the polynomials of ``schedule`` one after another to the scalars ``x`` (numpy or torch)."""
    for coeffs in schedule:
        x = odd_quintic(x, coeffs)
    return x


def optimal_odd_quintic(lo: float, hi: float, tol: float = 1e-15, max_iter: int = 100) -> Coeffs:
    """The odd quintic that best approximates 1 on [lo, hi] in the max norm (Remez exchange).

    The error of the optimum equioscillates at four points: lo, the two interior extrema q < r of p,
    and hi, with signs -, +, -, +. We solve the 4×4 linear system for (a, b, c, E), move q and r to
    the roots of p'(x) = a + 3b x^2 + 5c x^4, and repeat. For lo/hi -> 1 the answer tends to the
    classic (15/8, -10/8, 3/8) rescaled to hi.
    """
    if not (0 <= lo <= hi and hi > 0):
        raise ValueError(f"need 0 <= lo <= hi with hi > 0, got lo={lo!r}, hi={hi!r}")
    if lo / hi >= 1 - 5e-6:
        return (15 / 8 / hi, -10 / 8 / hi**3, 3 / 8 / hi**5)
    q, r = (3 * lo + hi) / 4, (lo + 3 * hi) / 4
    err_prev = math.inf
    for _ in range(max_iter):
        pts = np.array([lo, q, r, hi])
        system = np.stack([pts, pts**3, pts**5, np.array([1.0, -1.0, 1.0, -1.0])], axis=1)
        a, b, c, err = np.linalg.solve(system, np.ones(4))
        disc = 9 * b * b - 20 * a * c
        if c == 0 or disc < 0:
            raise RuntimeError(f"Remez exchange failed on [{lo}, {hi}]")
        roots = (-3 * b + np.array([-1.0, 1.0]) * math.sqrt(disc)) / (10 * c)
        q, r = np.sqrt(np.sort(roots))
        if abs(err - err_prev) <= tol:
            break
        err_prev = err
    return float(a), float(b), float(c)


@lru_cache(maxsize=64)
def polar_express_coefficients(steps: int = 5, lo: float = 1e-3, safety: float = 0.01,
                               cushion: float = POLAR_EXPRESS_CUSHION) -> tuple[Coeffs, ...]:
    """Polar Express schedule (Amsel, Persson, Musco, Gower; arXiv 2505.16932, Algorithm 1 greedy).

    Step k takes the minimax odd quintic on the current interval [l, u] of possible singular values
    (l is first raised to ``cushion*u`` and the result re-centred, which keeps the polynomial tame
    for tiny l); then [l, u] <- [p(l), 2 - p(l)]. Every triple but the last is divided by
    (1+s, (1+s)^3, (1+s)^5) with s = ``safety``, which guards against rounding pushing a singular
    value above the interval (the paper's Algorithm spares the last one; its reference code takes
    the first ``steps`` triples of a longer schedule, so there every triple is divided).
    ``safety=0, cushion=0`` gives the ideal greedy schedule, optimal among compositions of odd quintics.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not 0 < lo < 1:
        raise ValueError(f"lo must lie in (0, 1), got {lo!r}")
    if safety < 0 or not 0 <= cushion < 1:
        raise ValueError(f"need safety >= 0 and 0 <= cushion < 1, got {safety!r}, {cushion!r}")
    hi = 1.0
    schedule = []
    for k in range(steps):
        a, b, c = optimal_odd_quintic(max(lo, cushion * hi), hi)
        if cushion * hi > lo:
            scale = 2 / (odd_quintic(lo, (a, b, c)) + odd_quintic(hi, (a, b, c)))
            a, b, c = a * scale, b * scale, c * scale
        if k < steps - 1:
            f = 1 + safety
            a, b, c = a / f, b / f**3, c / f**5
        schedule.append((a, b, c))
        lo = odd_quintic(lo, (a, b, c))
        hi = 2 - lo
    return tuple(schedule)


# --------------------------------------------------------------------------- matrices


def polar_factor_svd(g: torch.Tensor) -> torch.Tensor:
    """The exact polar factor U V^T of ``g = U S V^T`` (reduced SVD): the reference for the tests."""
    _check_matrix(g, "polar_factor_svd")
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    return u @ vh


def _check_matrix(g: torch.Tensor, who: str) -> None:
    if not isinstance(g, torch.Tensor):
        raise TypeError(f"{who} expects a torch.Tensor, got {type(g).__name__}")
    if g.ndim != 2:
        raise ValueError(f"{who} expects a matrix (2-D tensor), got shape {tuple(g.shape)}; "
                         "flatten conv filters to (out, -1) first")


def _run_polynomials(g: torch.Tensor, schedule: Sequence[Coeffs], norm_scale: float, eps: float,
                     dtype: torch.dtype | None) -> torch.Tensor:
    """The shared loop: normalise, work on the wide orientation, X <- aX + (bA + cA^2) X with A = X X^T.

    A = X X^T is symmetric, so A^2 = A A^T: one product of an n×n matrix with itself; the update
    needs two n×n-by-n×m products. Cost per step: 4 n^2 m + 2 n^3 FLOPs (n <= m).
    """
    x = g.to(dtype) if dtype is not None else g
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.mT
    x = x / (x.norm() * norm_scale + eps)
    for a, b, c in schedule:
        gram = x @ x.mT
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, poly, x, beta=a)
    if tall:
        x = x.mT
    return x.to(g.dtype)


def newton_schulz(g: torch.Tensor, steps: int = 5, coeffs: Coeffs = JORDAN_COEFFICIENTS, eps: float = 1e-7,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximate U V^T of ``g`` by ``steps`` Newton–Schulz iterations with one fixed (a, b, c).

    ``g`` is first divided by its Frobenius norm, so every singular value lies in [0, 1]. With the
    default (Jordan's) coefficients the result is U S' V^T with S' in about [0.68, 1.13] rather
    than exactly U V^T (chapter 8 computes this band). ``dtype`` (e.g. torch.bfloat16, as in
    Jordan's code on GPUs) is the precision of the iterations; the result has ``g``'s dtype.
    """
    _check_matrix(g, "newton_schulz")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if len(coeffs) != 3:
        raise ValueError(f"coeffs must be three numbers (a, b, c), got {coeffs!r}")
    return _run_polynomials(g, [tuple(coeffs)] * steps, 1.0, eps, dtype)


def polar_express(g: torch.Tensor, steps: int = 5, eps: float = 1e-7, dtype: torch.dtype | None = None,
                  lo: float = 1e-3, safety: float = 0.01, cushion: float = POLAR_EXPRESS_CUSHION) -> torch.Tensor:
    """Approximate U V^T of ``g`` with the Polar Express schedule (a new optimal quintic per step).

    The input is divided by (1 + safety)·||g||_F, as in the reference code, so that rounding cannot
    put a singular value above 1.
    """
    _check_matrix(g, "polar_express")
    schedule = polar_express_coefficients(steps, lo, safety, cushion)
    return _run_polynomials(g, schedule, 1 + safety, eps, dtype)


def orthogonalize(g: torch.Tensor, method: str = "newton_schulz", steps: int = 5,
                  coeffs: Coeffs = JORDAN_COEFFICIENTS, eps: float = 1e-7, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Dispatch to :func:`newton_schulz`, :func:`polar_express` or the exact SVD (``method``)."""
    if method == "newton_schulz":
        return newton_schulz(g, steps, coeffs, eps, dtype)
    if method == "polar_express":
        return polar_express(g, steps, eps, dtype)  # its own per-step coefficients: ``coeffs`` is unused
    if method == "svd":
        return polar_factor_svd(g)
    raise ValueError(f"unknown method {method!r}; expected one of {ORTHOGONALIZERS}")


def newton_schulz_flops(rows: int, cols: int, steps: int = 5) -> int:
    """Matmul FLOPs of ``steps`` iterations on a rows×cols matrix: steps·(4 n^2 m + 2 n^3), n = min, m = max."""
    n, m = sorted((int(rows), int(cols)))
    if n <= 0:
        raise ValueError(f"matrix sizes must be positive, got {rows}×{cols}")
    return steps * (4 * n * n * m + 2 * n**3)


def muon_flop_overhead(width: int, batch_tokens: int, steps: int = 5) -> float:
    """Extra FLOPs of Muon relative to forward+backward for a width×width layer: ≈ steps·m/B (T·m/B).

    Newton–Schulz costs 6 m^3 per step; forward+backward through the layer costs 6 B m^2 for B tokens.
    """
    if width <= 0 or batch_tokens <= 0:
        raise ValueError(f"width and batch_tokens must be positive, got {width}, {batch_tokens}")
    return newton_schulz_flops(width, width, steps) / (6 * batch_tokens * width**2)


# --------------------------------------------------------------------------- the optimizer step


def shape_scale(shape: Sequence[int], rule: str = "original") -> float:
    """The learning-rate multiplier of a Muon update for a parameter of this (matrix) shape.

    ``"original"`` (Jordan): sqrt(max(1, rows/cols)), which makes the update RMS ≈ 1/sqrt(cols).
    ``"match_rms_adamw"`` (Moonlight, arXiv 2502.16982): 0.2·sqrt(max(rows, cols)), update RMS ≈ 0.2.
    ``"none"``: 1.
    """
    if len(shape) < 2:
        raise ValueError(f"shape_scale needs a matrix shape, got {tuple(shape)}")
    rows, cols = shape[0], math.prod(shape[1:])
    if rule == "original":
        return math.sqrt(max(1.0, rows / cols))
    if rule == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    if rule == "none":
        return 1.0
    raise ValueError(f"unknown shape scaling {rule!r}; expected one of {SHAPE_SCALINGS}")


class MuonUpdate(NamedTuple):
    """What :func:`muon_update` returns: the direction to subtract (times lr) and the new momentum."""

    direction: torch.Tensor
    momentum_buffer: torch.Tensor


def muon_update(grad: torch.Tensor, momentum_buffer: torch.Tensor, momentum: float = 0.95, nesterov: bool = True,
                method: str = "newton_schulz", steps: int = 5, coeffs: Coeffs = JORDAN_COEFFICIENTS,
                eps: float = 1e-7, dtype: torch.dtype | None = None, shape_scaling: str = "original") -> MuonUpdate:
    """One Muon direction (pure: the inputs are not modified).

    buf <- mu·buf + (1-mu)·g (an EMA, as in Jordan's code); the Nesterov look-ahead
    u = (1-mu)·g + mu·buf; O = orthogonalize(u); direction = shape_scale · O. A conv filter
    (out, in, kh, kw) is treated as the matrix (out, in·kh·kw). The caller does
    p <- p·(1 - lr·wd) - lr·direction.
    """
    if grad.ndim < 2:
        raise ValueError(f"Muon updates matrices; got a parameter of shape {tuple(grad.shape)}. "
                         "Give biases, gains and other vectors to the AdamW group (see split_muon_params)")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    buf = momentum_buffer.lerp(grad, 1 - momentum)
    u = grad.lerp(buf, momentum) if nesterov else buf
    o = orthogonalize(u.reshape(u.shape[0], -1), method, steps, coeffs, eps, dtype).reshape(grad.shape)
    return MuonUpdate(o * shape_scale(grad.shape, shape_scaling), buf)


def split_muon_params(model: nn.Module, head: str | Sequence[str] | None = None,
                      input_layer: bool | str | Sequence[str] = False) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split a model's parameters into (Muon group, AdamW group), as Jordan recommends.

    Muon gets the hidden weight matrices (ndim >= 2). AdamW gets everything else: embeddings
    (``nn.Embedding``), the output head, biases, gains (LayerNorm/RMSNorm weights) and scalars.
    ``head`` names the head module(s) (as in ``model.named_modules()``); by default the last
    ``nn.Linear`` registered in the model is taken to be the head. ``input_layer`` gives the input
    layer to AdamW as well: ``True`` takes the first ``nn.Linear`` or convolution registered in the
    model (for a model without embeddings, such as an MLP or a ConvNet; Jordan's README keeps the
    first conv layer on AdamW), a string or list names the module(s). Tied weights appear once.
    """
    names = [head] if isinstance(head, str) else list(head or [])
    modules = dict(model.named_modules())
    if not names:
        linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
        names = linears[-1:]
    if input_layer is True:
        layers = [n for n, m in modules.items() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]
        names += layers[:1]
    elif isinstance(input_layer, str):
        names.append(input_layer)
    elif input_layer:
        names += list(input_layer)
    for name in names:
        if name not in modules:
            raise ValueError(f"no module named {name!r} in the model; modules are {sorted(k for k in modules if k)}")
    to_adamw = set()
    for name, mod in modules.items():
        if isinstance(mod, nn.Embedding) or name in names:
            to_adamw.update(id(p) for p in mod.parameters(recurse=False))
    muon, adamw, seen = [], [], set()
    for p in model.parameters():
        if id(p) in seen or not p.requires_grad:
            continue
        seen.add(id(p))
        (muon if p.ndim >= 2 and id(p) not in to_adamw else adamw).append(p)
    return muon, adamw


class Muon(torch.optim.Optimizer):
    """Muon for the hidden matrices plus AdamW for the rest, in one ``torch.optim.Optimizer`` (chapter 8).

    ``Muon(muon_params, lr=0.02, adamw_params=others, adamw_lr=3e-4)``. Each parameter group has a
    flag ``use_muon``. The Muon group follows Jordan's code: EMA momentum 0.95 with Nesterov, the
    orthogonalised direction, shape scaling and decoupled weight decay p <- p·(1 - lr·wd).
    ``dtype=None`` iterates in the parameter's dtype (on a CPU bf16 is faster or slower than fp32
    depending on the CPU's bf16 matrix units, e.g. AMX-BF16); pass ``dtype=torch.bfloat16`` on a GPU.
    """

    def __init__(
        self,
        muon_params: Iterable[torch.Tensor],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        method: str = "newton_schulz",
        steps: int = 5,
        coeffs: Coeffs = JORDAN_COEFFICIENTS,
        eps: float = 1e-7,
        dtype: torch.dtype | None = None,
        shape_scaling: str = "original",
        adamw_params: Iterable[torch.Tensor] | None = None,
        adamw_lr: float = 3e-4,
        adamw_betas: tuple[float, float] = (0.9, 0.95),
        adamw_eps: float = 1e-8,
        adamw_weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"lr and weight_decay must be non-negative, got {lr!r}, {weight_decay!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
        if method not in ORTHOGONALIZERS:
            raise ValueError(f"unknown method {method!r}; expected one of {ORTHOGONALIZERS}")
        if shape_scaling not in SHAPE_SCALINGS:
            raise ValueError(f"unknown shape scaling {shape_scaling!r}; expected one of {SHAPE_SCALINGS}")
        muon_params = list(muon_params)
        for p in muon_params:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"Muon expects tensors in muon_params, got {type(p).__name__}")
            if p.ndim < 2:
                raise ValueError(f"Muon group got a parameter of shape {tuple(p.shape)}: Muon updates matrices only. "
                                 "Put biases, gains and scalars into adamw_params (see split_muon_params)")
        groups = [dict(params=muon_params, use_muon=True, lr=lr, momentum=momentum, nesterov=nesterov,
                       weight_decay=weight_decay, method=method, steps=steps, coeffs=tuple(coeffs), eps=eps,
                       dtype=dtype, shape_scaling=shape_scaling)]
        adamw_params = list(adamw_params or [])
        if adamw_params:
            groups.append(dict(params=adamw_params, use_muon=False, lr=adamw_lr, betas=tuple(adamw_betas),
                               eps=adamw_eps, weight_decay=adamw_weight_decay))
        super().__init__(groups, {})

    @torch.no_grad()
    def step(self, closure=None):
        """One step: :func:`muon_update` for the Muon group, :func:`adamw_step_` for the other."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if group["use_muon"]:
                    buf = state.get("momentum_buffer", torch.zeros_like(p))
                    upd = muon_update(p.grad, buf, group["momentum"], group["nesterov"], group["method"],
                                      group["steps"], group["coeffs"], group["eps"], group["dtype"], "none")
                    state["momentum_buffer"] = upd.momentum_buffer
                    # the shape scale goes into the step size (as in torch.optim.Muon): same rounding
                    step = group["lr"] * shape_scale(p.shape, group["shape_scaling"])
                    p.mul_(1 - group["lr"] * group["weight_decay"]).add_(upd.direction, alpha=-step)
                else:
                    adamw_step_(p, state, lr=group["lr"], betas=group["betas"], eps=group["eps"],
                                weight_decay=group["weight_decay"])
        return loss
