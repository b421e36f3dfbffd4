"""Weight initialization: schemes by name, their variance formulas, and what they do at init (chapter 11).

Why: whether a deep plain network trains at all is decided before the first step, by the scale of
its random weights. This module names the usual schemes with the variance each one gives a weight
entry (Glorot & Bengio 2010, He et al. 2015, orthogonal matrices of Saxe et al. 2014, the default of
``torch.nn.Linear``), predicts how the second moment of the pre-activations and of the backward
signal changes from layer to layer, and measures both on a real network, together with the
singular values of the input–output Jacobian (dynamical isometry, Pennington et al. 2017).

Layout: weights are stored as ``torch.nn.Linear`` stores them, ``out × in``; ``n_in`` is the fan-in.

    net = init.plain_mlp([64] + [256] * 10 + [10], "relu")
    init.init_mlp_(net, "he_normal", torch.Generator().manual_seed(0))
    stats = init.layer_stats(net, x)          # measured per layer
    init.predicted_second_moments(net, "relu", x)   # the derivation
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ._checks import check_choice, check_positive_int

__all__ = [
    "ACTIVATIONS",
    "SCHEMES",
    "LayerStats",
    "TrainResult",
    "Scheme",
    "activation_moments",
    "depth_run",
    "init_mlp_",
    "init_weight",
    "jacobian",
    "jacobian_singular_values",
    "layer_stats",
    "linears",
    "plain_mlp",
    "predicted_grad_moments",
    "predicted_second_moments",
    "scheme",
    "train",
    "variance",
]

NAIVE_STD = 0.01  # the fixed standard deviation of early CNNs that He et al. say fails past ~8 layers


@dataclass(frozen=True)
class Scheme:
    """An initialization scheme: its distribution and the variance of one weight entry.

    ``formula`` is the variance as the chapter writes it; ``var(n_in, n_out, gain)`` computes it.
    ``gain`` multiplies the standard deviation (``None`` means the scheme's own default).
    """
    name: str
    distribution: str  # "normal", "uniform", "orthogonal" or "constant"
    formula: str
    var: Callable[[int, int, float], float]
    default_gain: float = 1.0


def _fan_var(kind: str) -> Callable[[int, int, float], float]:
    if kind == "in":
        return lambda n_in, n_out, g: g * g / n_in
    if kind == "out":
        return lambda n_in, n_out, g: g * g / n_out
    if kind == "avg":
        return lambda n_in, n_out, g: g * g * 2.0 / (n_in + n_out)
    if kind == "max":
        return lambda n_in, n_out, g: g * g / max(n_in, n_out)
    raise AssertionError(kind)


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in [
        Scheme("naive", "normal", "0.01²", lambda n_in, n_out, g: (g * NAIVE_STD) ** 2),
        Scheme("torch_default", "uniform", "1/(3 n_in)", lambda n_in, n_out, g: g * g / (3.0 * n_in)),
        Scheme("lecun_normal", "normal", "1/n_in", _fan_var("in")),
        Scheme("xavier_normal", "normal", "2/(n_in + n_out)", _fan_var("avg")),
        Scheme("xavier_uniform", "uniform", "2/(n_in + n_out)", _fan_var("avg")),
        Scheme("he_normal", "normal", "2/n_in", _fan_var("in"), math.sqrt(2.0)),
        Scheme("he_uniform", "uniform", "2/n_in", _fan_var("in"), math.sqrt(2.0)),
        Scheme("he_normal_out", "normal", "2/n_out", _fan_var("out"), math.sqrt(2.0)),
        Scheme("orthogonal", "orthogonal", "g²/max(n_in, n_out)", _fan_var("max")),
        Scheme("constant", "constant", "0 (every entry equal)", lambda n_in, n_out, g: 0.0, 0.1),
    ]
}


def scheme(name: str) -> Scheme:
    """The scheme called ``name``; a clear error lists the known names."""
    if not isinstance(name, str):
        raise TypeError(f"an init scheme is named by a string, got {type(name).__name__}")
    check_choice("init scheme", name, SCHEMES)
    return SCHEMES[name]


def _check_fans(n_in: int, n_out: int) -> None:
    check_positive_int("n_in", n_in)
    check_positive_int("n_out", n_out)


def _gain(s: Scheme, gain: float | None) -> float:
    g = s.default_gain if gain is None else float(gain)
    if not (math.isfinite(g) and g > 0):
        raise ValueError(f"gain must be a positive finite number, got {gain!r}")
    return g


def variance(name: str, n_in: int, n_out: int, gain: float | None = None) -> float:
    """Variance of one weight entry under scheme ``name`` for a layer ``n_in → n_out``."""
    s = scheme(name)
    _check_fans(n_in, n_out)
    return float(s.var(n_in, n_out, _gain(s, gain)))


def init_weight(name: str, n_in: int, n_out: int, generator: torch.Generator | None = None,
                gain: float | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A fresh ``n_out × n_in`` weight drawn by scheme ``name`` (entries of zero mean, symmetric law).

    Uniform schemes use U[−a, a] with a = √(3·var); "orthogonal" takes Q of the QR decomposition of a
    Gaussian matrix with the signs fixed by diag(R) (Haar-distributed), times the gain.
    """
    s = scheme(name)
    _check_fans(n_in, n_out)
    g = _gain(s, gain)
    var = s.var(n_in, n_out, g)
    shape = (n_out, n_in)
    if s.distribution == "normal":
        return torch.randn(shape, generator=generator, dtype=dtype) * math.sqrt(var)
    if s.distribution == "uniform":
        a = math.sqrt(3.0 * var)
        return (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * a
    if s.distribution == "orthogonal":
        big, small = max(shape), min(shape)
        a = torch.randn(big, small, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))  # Haar measure, not QR's sign convention
        q = q if n_out >= n_in else q.T
        return (g * q).to(dtype)
    return torch.full(shape, g, dtype=dtype)  # "constant": symmetric on purpose


def linears(model: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of ``model`` in order; an error if there are none."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError("the model has no nn.Linear layers")
    return layers


ACTIVATIONS = ("relu", "tanh", "linear")
_ACT_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "linear": nn.Identity}


def plain_mlp(sizes: list[int], activation: str = "relu", bias: bool = True) -> nn.Sequential:
    """Linear → activation → … → Linear with ``sizes = [in, hidden..., out]``: no normalization,
    no skip connections (a "plain" net in He et al.'s sense). "linear" puts an identity in between."""
    if not isinstance(sizes, (list, tuple)) or len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output size, got {sizes!r}")
    for n in sizes:
        check_positive_int("every size", n)
    check_choice("activation", activation, ACTIVATIONS)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out, bias=bias))
        if i < len(sizes) - 2:
            layers.append(_ACT_MODULES[activation]())
    return nn.Sequential(*layers)


@torch.no_grad()
def init_mlp_(model: nn.Module, name: str, generator: torch.Generator | None = None,
              gain: float | None = None, bias: float | str = 0.0, last: str | None = None) -> nn.Module:
    """Re-initialize every ``nn.Linear`` of ``model`` in place by scheme ``name``.

    ``bias``: a constant, or "torch_default" for U[−1/√n_in, 1/√n_in] as nn.Linear does.
    ``last``: another scheme for the output layer (default: the same one). Returns ``model``.
    """
    scheme(name)
    if last is not None:
        scheme(last)
    if not (bias == "torch_default" or isinstance(bias, (int, float))):
        raise ValueError(f"bias must be a number or 'torch_default', got {bias!r}")
    layers = linears(model)
    for i, layer in enumerate(layers):
        this = last if (last is not None and i == len(layers) - 1) else name
        this_gain = None if this != name else gain
        w = init_weight(this, layer.in_features, layer.out_features, generator, this_gain,
                        dtype=layer.weight.dtype)
        layer.weight.copy_(w.to(layer.weight.device))
        if layer.bias is not None:
            if bias == "torch_default":
                a = 1.0 / math.sqrt(layer.in_features)
                b = (torch.rand(layer.out_features, generator=generator) * 2 - 1) * a
                layer.bias.copy_(b.to(layer.bias.dtype).to(layer.bias.device))
            else:
                layer.bias.fill_(float(bias))
    return model


# ------------------------------------------------------------------ the derivation


def activation_moments(activation: str, q: float, nodes: int = 80) -> tuple[float, float]:
    """E[φ(z)²] and E[φ'(z)²] for z ~ N(0, q): the two numbers the recursions need.

    ReLU: q/2 and 1/2 (symmetry is enough; no Gaussianity needed); linear: q and 1; tanh: by
    Gauss–Hermite quadrature, i.e. the mean-field assumption that z is Gaussian.
    """
    check_choice("activation", activation, ACTIVATIONS)
    if not (q >= 0 and math.isfinite(q)):
        raise ValueError(f"q must be a finite non-negative second moment, got {q!r}")
    if activation == "relu":
        return q / 2.0, 0.5
    if activation == "linear":
        return q, 1.0
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    z = math.sqrt(q) * x
    t = np.tanh(z)
    return float((w * t * t).sum()), float((w * (1 - t * t) ** 2).sum())


def _layer_vars(model: nn.Module) -> list[tuple[int, int, float, float]]:
    """(n_in, n_out, variance of a weight entry, mean square of the biases) of each layer, measured."""
    out = []
    for layer in linears(model):
        w = layer.weight.detach().double()
        b2 = 0.0 if layer.bias is None else float(layer.bias.detach().double().pow(2).mean())
        out.append((layer.in_features, layer.out_features, float(w.pow(2).mean()), b2))
    return out


def predicted_second_moments(model: nn.Module, activation: str, x: torch.Tensor,
                             weight_vars: list[float] | None = None) -> list[float]:
    """Predicted q_ℓ = E[z_ℓ,j²] for every layer ℓ = 1..D (pre-activations; the last one is the output).

    q_1 = v_1·Σ_i E[x_i²] + s_1,  q_{ℓ+1} = v_{ℓ+1}·n_ℓ·E[φ(z)²](q_ℓ) + s_{ℓ+1}, where v_ℓ is the weight
    variance (the scheme's formula if ``weight_vars`` is given, else the empirical mean square of the
    entries) and s_ℓ the mean square of the biases. Exact in expectation for ReLU and linear layers
    with zero-mean symmetric weights independent of the input (the chapter's theorem).
    """
    check_choice("activation", activation, ACTIVATIONS)
    info = _layer_vars(model)
    if weight_vars is not None and len(weight_vars) != len(info):
        raise ValueError(f"weight_vars has {len(weight_vars)} entries for {len(info)} layers")
    if x.ndim != 2 or x.shape[1] != info[0][0]:
        raise ValueError(f"x must be a batch (B, {info[0][0]}), got shape {tuple(x.shape)}")
    sum_x2 = float(x.detach().double().pow(2).mean(0).sum())
    qs: list[float] = []
    for i, (n_in, _, v_emp, b2) in enumerate(info):
        v = v_emp if weight_vars is None else float(weight_vars[i])
        incoming = sum_x2 if i == 0 else n_in * activation_moments(activation, qs[-1])[0]
        qs.append(v * incoming + b2)
    return qs


def predicted_grad_moments(model: nn.Module, activation: str, x: torch.Tensor,
                           weight_vars: list[float] | None = None) -> list[float]:
    """Predicted r_ℓ = E[δ_ℓ,j²] for δ_ℓ = ∂(uᵀz_D)/∂z_ℓ with u ~ N(0, I) (so r_D = 1).

    r_ℓ = E[φ'(z)²](q_ℓ)·n_{ℓ+1}·v_{ℓ+1}·r_{ℓ+1}: He et al.'s backward recursion. It assumes the
    backward signal independent of the weights it meets, which holds only approximately (the same
    W is used forward and backward); the chapter measures how well.
    """
    qs = predicted_second_moments(model, activation, x, weight_vars)
    info = _layer_vars(model)
    vs = [v for (_, _, v, _) in info] if weight_vars is None else [float(v) for v in weight_vars]
    rs = [1.0]
    for ell in range(len(info) - 2, -1, -1):  # layer ℓ (0-based) receives from layer ℓ+1
        n_next = info[ell + 1][1]
        rs.append(activation_moments(activation, qs[ell])[1] * n_next * vs[ell + 1] * rs[-1])
    return rs[::-1]


# ------------------------------------------------------------------ measurements


@dataclass(frozen=True)
class LayerStats:
    """Measured at init, per linear layer ℓ = 1..D (lists of length D).

    ``preact`` — mean over the batch and the units of z_ℓ², the measured q_ℓ;
    ``grad`` — mean of δ_ℓ² with δ_ℓ = ∂(Σ_b u_bᵀ z_D,b)/∂z_ℓ, u ~ N(0, I) (the measured r_ℓ);
    ``weight_grad_norm`` — ‖∂L/∂W_ℓ‖_F for the same backward seed, divided by the batch size.
    """
    preact: list[float]
    grad: list[float]
    weight_grad_norm: list[float]


def layer_stats(model: nn.Module, x: torch.Tensor, seed: int = 0) -> LayerStats:
    """Run one forward and one backward pass of ``model`` on ``x`` and record the statistics above.

    The backward seed is a Gaussian u at the output (independent of the network), as in the
    derivation; a loss would only change the last factor.
    """
    layers = linears(model)
    if x.ndim != 2 or x.shape[1] != layers[0].in_features:
        raise ValueError(f"x must be a batch (B, {layers[0].in_features}), got shape {tuple(x.shape)}")
    pre: list[torch.Tensor] = []

    def keep(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        output.retain_grad()
        pre.append(output)

    hooks = [layer.register_forward_hook(keep) for layer in layers]
    try:
        model.zero_grad(set_to_none=True)
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(out.shape, generator=gen, dtype=out.dtype).to(out.device)
    (out * u).sum().backward()
    b = x.shape[0]
    stats = LayerStats(
        preact=[float(z.detach().double().pow(2).mean()) for z in pre],
        grad=[float(z.grad.double().pow(2).mean()) for z in pre],
        weight_grad_norm=[float(layer.weight.grad.double().norm()) / b for layer in layers],
    )
    model.zero_grad(set_to_none=True)
    return stats


def jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input–output Jacobian ∂model(x)/∂x (n_out × n_in) at one input vector ``x``."""
    if x.ndim != 1:
        raise ValueError(f"x must be one input vector, got shape {tuple(x.shape)}")
    return torch.func.jacrev(model)(x.detach()).detach()


def jacobian_singular_values(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Singular values of the input–output Jacobian at every row of ``x`` (B × min(n_out, n_in)).

    All of them near 1 is "dynamical isometry" (Saxe et al. 2014; Pennington et al. 2017).
    """
    if x.ndim != 2:
        raise ValueError(f"x must be a batch (B, n_in), got shape {tuple(x.shape)}")
    return torch.stack([torch.linalg.svdvals(jacobian(model, row)) for row in x])


# ------------------------------------------------------------------ training at two depths


@dataclass(frozen=True)
class TrainResult:
    """Loss on each mini-batch (``losses``), and the full-batch train loss and accuracy at the end."""
    losses: list[float]
    final_loss: float
    final_accuracy: float


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, momentum: float = 0.9,
          steps: int = 300, batch_size: int = 64, seed: int = 0, nesterov: bool = False) -> TrainResult:
    """Mini-batch SGD (torch.optim.SGD) on cross-entropy; a diverged run stops with loss = inf.

    The same seed gives the same mini-batches for every model, so that inits are compared on one
    data order.
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    n = len(x)
    order = torch.randperm(n, generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos:pos + batch_size].to(x.device)
        pos += batch_size
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        if not torch.isfinite(loss):
            losses.append(float("inf"))
            return TrainResult(losses, float("inf"), 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        logits = model(x)
        final = float(nn.functional.cross_entropy(logits, y))
        acc = float((logits.argmax(1) == y).double().mean())
    return TrainResult(losses, final if math.isfinite(final) else float("inf"), acc)


def depth_run(depth: int, width: int, name: str, lr: float, x: torch.Tensor, y: torch.Tensor,
              seed: int = 0, momentum: float = 0.9, steps: int = 300, batch_size: int = 64,
              activation: str = "relu") -> TrainResult:
    """Train a plain MLP with ``depth`` linear layers of width ``width`` initialized by ``name``.

    Biases start at zero except for "torch_default", whose biases are drawn (with the same
    generator) from nn.Linear's own law U[−1/√n_in, 1/√n_in].
    """
    check_positive_int("depth", depth)
    if depth < 2:
        raise ValueError(f"depth counts linear layers and must be at least 2, got {depth}")
    n_classes = int(y.max()) + 1
    sizes = [x.shape[1]] + [width] * (depth - 1) + [n_classes]
    net = plain_mlp(sizes, activation).to(dtype=x.dtype, device=x.device)
    gen = torch.Generator().manual_seed(10_000 + seed)
    bias = "torch_default" if name == "torch_default" else 0.0
    init_mlp_(net, name, gen, bias=bias)
    return train(net, x, y, lr, momentum, steps, batch_size, seed)
