"""Loss-landscape projections for chapter 9 («Ландшафт функции потерь»),
section «Проекции ландшафта».

A network has far too many parameters to look at its loss directly, so the chapter looks at slices:
``L(w0 + t d)`` along one direction, ``L(w0 + t1 d1 + t2 d2)`` on a plane, and the loss along a path
between two trained networks. This module holds what those pictures need:

* random directions, raw or filter-normalised exactly as Li et al. (arXiv 1712.09913,
  ``net_plotter.py``): every output filter/neuron of a weight tensor gets the norm of the same filter
  of the weights, and biases and BatchNorm parameters (tensors of dimension <= 1) get zero;
* ``losses_at``: the loss at a batch of flat parameter vectors in one vectorised call
  (``torch.func.functional_call`` under ``torch.vmap``), and ``plane_losses`` / ``line_losses`` on top;
* linear interpolation (Goodfellow et al., arXiv 1412.6544) and the quadratic Bézier curve of Garipov
  et al. (arXiv 1802.10026) with its training, and the barrier height of a path;
* the 1-D toy of the section's first part (a narrow deep well next to a wide shallow one) and noisy
  gradient descent on it, with the Gibbs share it is compared to; a small residual MLP and a small
  convolutional net for the 8×8 digits (BatchNorm and the skip connection switchable), the
  miniature of Li et al.'s ResNet-with-and-without-shortcuts planes.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from ._checks import check_choice, check_positive_int

__all__ = [
    "ResMLP",
    "SmallCNN",
    "barrier_height",
    "bezier",
    "cosines_of_random_pairs",
    "fit",
    "flat_params",
    "gibbs_share",
    "interpolate",
    "line_losses",
    "losses_at",
    "noisy_gd_1d",
    "plane_losses",
    "plane_summary",
    "random_direction",
    "train_bezier",
    "two_wells",
    "unflatten",
]

NORMALIZATIONS = ("filter", "none")


# --------------------------------------------------------------------------- parameters as vectors

def _named_params(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    params = [(n, p) for n, p in model.named_parameters()]
    if not params:
        raise ValueError("the model has no parameters: there is no landscape to project")
    return params


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters of ``model`` as one detached vector (in ``named_parameters`` order)."""
    return torch.cat([p.detach().reshape(-1) for _, p in _named_params(model)])


def unflatten(model: nn.Module, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split a vector (or a batch of vectors, shape ``(n, Ψ)``) into ``{name: tensor}`` like the model's."""
    params = _named_params(model)
    total = sum(p.numel() for _, p in params)
    if theta.shape[-1] != total:
        raise ValueError(f"the vector has {theta.shape[-1]} entries, the model {total} parameters")
    out, start = {}, 0
    lead = theta.shape[:-1]
    for name, p in params:
        out[name] = theta[..., start:start + p.numel()].reshape(*lead, *p.shape)
        start += p.numel()
    return out


def random_direction(model: nn.Module, generator: torch.Generator | None = None,
                     normalization: str = "filter") -> torch.Tensor:
    """A Gaussian direction in parameter space as a flat vector.

    ``normalization="filter"`` is Li et al.'s filter normalisation: for every tensor of dimension > 1,
    each slice along dim 0 (an output neuron of ``nn.Linear``, an output filter of a convolution) is
    rescaled to the norm of the same slice of the weights; tensors of dimension <= 1 (biases, BatchNorm)
    get zero. ``"none"`` returns the raw N(0, I) draw, whose scale ignores the weights' scale.
    """
    check_choice("normalization", normalization, NORMALIZATIONS)
    parts = []
    for _, p in _named_params(model):
        w = p.detach()
        d = torch.randn(w.shape, generator=generator, dtype=w.dtype, device="cpu").to(w.device)
        if normalization == "filter":
            if w.dim() <= 1:
                d = torch.zeros_like(w)
            else:
                w_rows, d_rows = w.reshape(w.shape[0], -1), d.reshape(w.shape[0], -1)
                scale = w_rows.norm(dim=1, keepdim=True) / (d_rows.norm(dim=1, keepdim=True) + 1e-10)
                d = (d_rows * scale).reshape(w.shape)
        parts.append(d.reshape(-1))
    return torch.cat(parts)


def cosines_of_random_pairs(dim: int, pairs: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cosines of the angle between ``pairs`` pairs of independent N(0, I_dim) vectors (float64)."""
    check_positive_int("dim", dim)
    check_positive_int("pairs", pairs)
    u = torch.randn(pairs, dim, generator=generator, dtype=torch.float64)
    v = torch.randn(pairs, dim, generator=generator, dtype=torch.float64)
    return (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1))


# --------------------------------------------------------------------------- batched evaluation

METHODS = ("vmap", "loop")


def losses_at(model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              x: torch.Tensor, y: torch.Tensor, thetas: torch.Tensor, chunk: int = 64,
              method: str = "vmap") -> torch.Tensor:
    """The loss of ``model`` on ``(x, y)`` at every row of ``thetas`` (shape ``(n, Ψ)``).

    ``method="vmap"``: each chunk of parameter vectors goes through ``torch.func.functional_call``
    under ``torch.vmap``, so a grid of hundreds of points costs a few large matrix products instead
    of hundreds of small ones (the fast way for MLPs, and for anything on a GPU).
    ``method="loop"``: one ``functional_call`` per point, no autograd graph. On a CPU this is the
    faster way for convolutions: vmap turns a batch of convolution weights into one grouped
    convolution, which CPU kernels run slowly (``scripts/bench_landscape.py`` measures both).
    The model's buffers are shared; call ``model.eval()`` first if it has BatchNorm.
    """
    if thetas.dim() != 2 or thetas.shape[0] == 0:
        raise ValueError(f"thetas must have shape (n, Ψ) with n >= 1, got {tuple(thetas.shape)}")
    check_positive_int("chunk", chunk)
    check_choice("method", method, METHODS)
    buffers = dict(model.named_buffers())

    def one(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return loss_fn(functional_call(model, (params, buffers), (x,)), y)

    out = []
    with torch.no_grad():
        if method == "loop":
            for theta in thetas:
                out.append(one(unflatten(model, theta)).reshape(1))
        else:
            batched = torch.vmap(one)
            for start in range(0, thetas.shape[0], chunk):
                out.append(batched(unflatten(model, thetas[start:start + chunk])))
    return torch.cat(out)


def _check_coords(name: str, t: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D grid of coordinates, got shape {tuple(t.shape)}")
    return t


def line_losses(model: nn.Module, loss_fn, x, y, center: torch.Tensor, direction: torch.Tensor,
                ts: torch.Tensor, chunk: int = 64, method: str = "vmap") -> torch.Tensor:
    """``L(center + t d)`` for every ``t`` in ``ts``."""
    ts = _check_coords("ts", ts).to(center)
    return losses_at(model, loss_fn, x, y, center + ts[:, None] * direction, chunk, method)


def plane_losses(model: nn.Module, loss_fn, x, y, center: torch.Tensor, d1: torch.Tensor,
                 d2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, chunk: int = 64,
                 method: str = "vmap") -> torch.Tensor:
    """``L(center + t1 d1 + t2 d2)`` on the grid ``t1 × t2``: a tensor of shape ``(len(t2), len(t1))``.

    Rows follow ``t2`` and columns ``t1``, as ``plt.contour(t1, t2, Z)`` expects.
    """
    t1 = _check_coords("t1", t1).to(center)
    t2 = _check_coords("t2", t2).to(center)
    a, b = torch.meshgrid(t2, t1, indexing="ij")
    thetas = center + b.reshape(-1, 1) * d1 + a.reshape(-1, 1) * d2
    return losses_at(model, loss_fn, x, y, thetas, chunk, method).reshape(len(t2), len(t1))


# --------------------------------------------------------------------------- paths between solutions

def interpolate(theta_a: torch.Tensor, theta_b: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
    """Points ``(1 - t) θ_a + t θ_b`` (Goodfellow et al.), one row per ``t``."""
    ts = _check_coords("ts", ts).to(theta_a)
    return (1 - ts)[:, None] * theta_a + ts[:, None] * theta_b


def bezier(theta_a: torch.Tensor, theta_mid: torch.Tensor, theta_b: torch.Tensor,
           ts: torch.Tensor) -> torch.Tensor:
    """The quadratic Bézier curve ``(1-t)² θ_a + 2t(1-t) θ_mid + t² θ_b`` (Garipov et al.),
    one row per ``t``."""
    ts = _check_coords("ts", ts).to(theta_a)[:, None]
    return (1 - ts) ** 2 * theta_a + 2 * ts * (1 - ts) * theta_mid + ts ** 2 * theta_b


def train_bezier(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, theta_a: torch.Tensor,
                 theta_b: torch.Tensor, steps: int, lr: float = 1e-2, batch_size: int = 128,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[float]]:
    """Find the control point of a low-loss Bézier curve between two solutions (Garipov et al.).

    Minimises ``E_{t ~ U(0, 1)} L(φ(t))`` over the middle point only: every step draws one ``t`` and one
    mini-batch, exactly as the paper's training of the curve. Starts from the midpoint of the segment,
    so step 0 is the linear path. Returns the control point and the loss of every step.
    """
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    mid = ((theta_a + theta_b) / 2).clone().requires_grad_(True)
    opt = torch.optim.Adam([mid], lr=lr)
    buffers = dict(model.named_buffers())
    history = []
    for _ in range(steps):
        t = torch.rand((), generator=generator).item()
        idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=generator).to(x.device)
        point = (1 - t) ** 2 * theta_a + 2 * t * (1 - t) * mid + t ** 2 * theta_b
        loss = loss_fn(functional_call(model, (unflatten(model, point), buffers), (x[idx],)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return mid.detach(), history


def barrier_height(ts: torch.Tensor, losses: torch.Tensor) -> float:
    """The largest excess of the loss along a path over the chord between its end values.

    ``max_t [L(φ(t)) - ((1 - t) L(φ(0)) + t L(φ(1)))]`` for ``ts`` from 0 to 1; zero or below means
    the path has no barrier.
    """
    ts, losses = torch.as_tensor(ts), torch.as_tensor(losses)
    if ts.shape != losses.shape or ts.dim() != 1 or ts.numel() < 2:
        raise ValueError("ts and losses must be 1-D of the same length >= 2")
    if abs(float(ts[0])) > 1e-6 or abs(float(ts[-1]) - 1) > 1e-6:
        raise ValueError(f"the path must run from t = 0 to t = 1, got [{float(ts[0])}, {float(ts[-1])}]")
    chord = (1 - ts) * losses[0] + ts * losses[-1]
    return float((losses - chord.to(losses)).max())


# --------------------------------------------------------------------------- the 1-D toy

def two_wells(x: torch.Tensor) -> torch.Tensor:
    """A 1-D loss with a narrow deep well at x = -1 and a wide shallow one at x = 1.5.

    The narrow well (width 0.15, depth 1) is the better minimum by value; the wide one (width 0.8,
    depth 0.8) is the one a noisy method keeps. A gentle x²/40 keeps both inside a bowl.
    """
    return (-torch.exp(-(x + 1) ** 2 / (2 * 0.15 ** 2))
            - 0.8 * torch.exp(-(x - 1.5) ** 2 / (2 * 0.8 ** 2)) + x ** 2 / 40)


def gibbs_share(fn: Callable[[torch.Tensor], torch.Tensor], temperature: float,
                lo: float = -8.0, hi: float = 10.0, split: float = 0.0, n: int = 20001) -> float:
    """The mass that the Gibbs density ``exp(-f(x)/T)`` on ``[lo, hi]`` puts on ``x > split``.

    The stationary law of the Langevin model of noisy GD (chapter 9, first section), integrated on a
    uniform grid without Laplace's approximation; ``T = α σ² / 2`` for the step ``α`` and noise ``σ``.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if not lo < split < hi:
        raise ValueError(f"need lo < split < hi, got {lo}, {split}, {hi}")
    check_positive_int("n", n)
    grid = torch.linspace(lo, hi, n, dtype=torch.float64)
    f = fn(grid)
    p = torch.exp(-(f - f.min()) / temperature)
    return float(p[grid > split].sum() / p.sum())


def noisy_gd_1d(fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, lr: float, noise: float,
                steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gradient descent ``x ← x - α (f'(x) + σ ξ)``, ξ ~ N(0, 1), for a batch of starts at once.

    A model of SGD: the mini-batch gradient is the full gradient plus zero-mean noise of scale σ
    (``noise``). Returns the path, shape ``(steps + 1, *x0.shape)``; ``noise=0`` is plain GD.
    """
    check_positive_int("steps", steps)
    if not lr > 0 or noise < 0:
        raise ValueError(f"need lr > 0 and noise >= 0, got lr={lr!r}, noise={noise!r}")
    x = torch.as_tensor(x0, dtype=torch.float64).clone()
    path = [x.clone()]
    for _ in range(steps):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(xg).sum(), xg)
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x = x - lr * (g + noise * xi)
        path.append(x.clone())
    return torch.stack(path)


# --------------------------------------------------------------------------- a small residual MLP

class ResMLP(nn.Module):
    """``depth`` ReLU blocks of width ``width``, each ``h ← h + relu(W h + b)`` or, with ``skip=False``,
    ``h ← relu(W h + b)``: the MLP analogue of Li et al.'s ResNet with and without shortcuts."""

    def __init__(self, n_in: int, width: int, depth: int, n_out: int, skip: bool = True):
        super().__init__()
        for name, v in [("n_in", n_in), ("width", width), ("depth", depth), ("n_out", n_out)]:
            check_positive_int(name, v)
        self.skip = skip
        self.inp = nn.Linear(n_in, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, n_out)
        if skip:  # keep the residual stream's variance from doubling at every block
            for blk in self.blocks:
                nn.init.normal_(blk.weight, std=math.sqrt(2 / width) / math.sqrt(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        for blk in self.blocks:
            h = h + torch.relu(blk(h)) if self.skip else torch.relu(blk(h))
        return self.out(h)


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float = 1e-2,
        batch_size: int = 128, generator: torch.Generator | None = None) -> list[float]:
    """Train ``model`` in place with Adam and cross-entropy on random mini-batches; the section's
    solutions (a trained point to project around, two independent solutions to connect) come from here."""
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=generator).to(x.device)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history


# --------------------------------------------------------------------------- a small CNN for 8×8 digits

class SmallCNN(nn.Module):
    """A stem convolution and ``depth`` 3×3 blocks of ``width`` channels on 1×8×8 images, then
    global average pooling and a linear layer.

    A block is ``h ← relu(h + bn(conv(h)))`` with ``skip=True`` (the ResNet form) and
    ``h ← relu(bn(conv(h)))`` without; ``batchnorm=False`` drops the BatchNorm layers. Flat inputs of
    64 pixels (``nntrain.data`` digits) are reshaped. This is the chapter's stand-in for Li et al.'s
    ResNet-56 with and without shortcuts: small enough that a 41×41 plane takes tens of seconds
    on a CPU (``scripts/bench_landscape.py``).
    """

    def __init__(self, width: int = 8, depth: int = 2, n_out: int = 10, skip: bool = True,
                 batchnorm: bool = True, side: int = 8):
        super().__init__()
        for name, v in [("width", width), ("depth", depth), ("n_out", n_out), ("side", side)]:
            check_positive_int(name, v)
        self.skip, self.side = skip, side

        def norm() -> nn.Module:
            return nn.BatchNorm2d(width) if batchnorm else nn.Identity()

        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=not batchnorm)
        self.stem_norm = norm()
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, bias=not batchnorm)
                                   for _ in range(depth))
        self.norms = nn.ModuleList(norm() for _ in range(depth))
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.reshape(-1, 1, self.side, self.side)
        h = torch.relu(self.stem_norm(self.stem(x)))
        for conv, norm in zip(self.convs, self.norms):
            z = norm(conv(h))
            h = torch.relu(h + z) if self.skip else torch.relu(z)
        return self.head(h.mean(dim=(2, 3)))


def plane_summary(z: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor,
                  threshold: float = 1.0) -> dict[str, float]:
    """Numbers that describe a plane of losses (from :func:`plane_losses`) beyond the picture.

    ``share``: the fraction of the grid's points with loss below ``threshold`` (how much of the
    drawn square the basin covers); ``radius``: the distance, in the plane's coordinates (units of
    the filter norms), from the centre to the nearest grid point at or above ``threshold`` (inf
    when there is none; known only to the grid step); ``local_minima``: the number of grid points
    lower than all their neighbours, 8 inside and fewer on the border (a count of the small pits
    that make a surface look chaotic).
    """
    t1, t2 = _check_coords("t1", t1), _check_coords("t2", t2)
    if z.shape != (len(t2), len(t1)):
        raise ValueError(f"z must have shape (len(t2), len(t1)) = {(len(t2), len(t1))}, "
                         f"got {tuple(z.shape)}")
    z = z.detach().double().cpu()
    b, a = torch.meshgrid(t2.double().cpu(), t1.double().cpu(), indexing="ij")
    dist = (a ** 2 + b ** 2).sqrt()
    high = z >= threshold
    radius = float(dist[high].min()) if high.any() else float("inf")
    pad = torch.nn.functional.pad(z[None, None], (1, 1, 1, 1), value=float("inf"))[0, 0]
    neighbours = torch.stack([pad[1 + i:1 + i + z.shape[0], 1 + j:1 + j + z.shape[1]]
                              for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)])
    minima = int((z[None] < neighbours).all(dim=0).sum())
    return {"share": float((z < threshold).double().mean()), "radius": radius,
            "local_minima": minima}
