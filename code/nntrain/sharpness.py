"""Sharpness of a minimum: chapter 9, section "sharpness".

Section «Острота минимумов, SAM и экспоненциальный шаг». The sharpness is the top
eigenvalue of the Hessian of the training loss. We never form the Hessian: a Hessian-
vector product costs two backward passes (double backward, chapter 1), and power
iteration (:func:`top_eigenvalue`) or the Lanczos method (:func:`lanczos`) on it finds
the top eigenvalues; both draw their start vector the same way (:func:`_start_vector`),
so with one seed they start from the same vector. :func:`explicit_hessian` is the check
on tiny models. :func:`filter_scales` gives the per-filter norms ``D`` of the book's
filter-normalized sharpness λ_max(D H D): our construction, built on Li et al.'s filter
normalization (they compare pictures; the eigenvalues they compute are those of the raw
Hessian). A layer-wise rescaling of a ReLU net leaves it unchanged, a per-neuron one
does not. :func:`gd_sharpness_run` is the edge-of-stability experiment of Cohen et al.
(full-batch GD, the sharpness tracked along the way), :func:`dinh_rescale` the
reparametrisation of Dinh et al. that changes the sharpness of a ReLU net without
changing the function it computes.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import Tensor, nn

from ._checks import check_positive_int

__all__ = ["trainable_params", "hvp", "top_eigenvalue", "lanczos", "filter_scales",
           "explicit_hessian", "full_loss",
           "gd_sharpness_run", "dinh_rescale", "train_minibatch", "accuracy",
           "fit_and_measure", "step_cost"]


def trainable_params(model: nn.Module) -> list[Tensor]:
    """The parameters that require grad; a clear error when there are none."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters: sharpness is undefined")
    return params


def hvp(loss_fn: Callable[[], Tensor], params: list[Tensor], v: list[Tensor]) -> list[Tensor]:
    """Hessian-vector product ∇²L·v by double backward: ∇(∇L·v), two backward passes."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    dot = sum((g * vi).sum() for g, vi in zip(grads, v))
    return list(torch.autograd.grad(dot, params))


def _dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def filter_scales(model: nn.Module) -> list[Tensor]:
    """Per-parameter scales ``D`` of the filter-normalized sharpness λ_max(D H D)
    (chapter 9).

    For every trainable tensor of dimension > 1, each entry gets the norm of its filter
    (slice along dim 0), as in Li et al.'s filter normalization; biases and BatchNorm
    parameters get 0, as they get a zero direction in the landscape pictures. The
    measure itself is the book's construction, not Li et al.'s. The eigenvalues of ``D H
    D`` are curvatures along directions ``D u`` measured in filter norms; a layer-wise
    rescaling ``W1 → c W1, W2 → W2 / c`` of a ReLU net (Dinh et al.) leaves them
    unchanged while those of ``H`` grow like ``c²``; a per-neuron rescaling (a different
    ``c`` for every hidden unit) changes them.
    """
    out = []
    for p in trainable_params(model):
        w = p.detach()
        if w.dim() <= 1:
            out.append(torch.zeros_like(w))
        else:
            norms = w.reshape(w.shape[0], -1).norm(dim=1)
            out.append(norms.reshape(-1, *([1] * (w.dim() - 1))).expand_as(w).clone())
    return out


def _start_vector(params: list[Tensor],
                  generator: torch.Generator | None) -> list[Tensor]:
    """One N(0, 1) tensor per parameter, drawn on the CPU in parameter order and
    normalized.

    Power iteration and Lanczos both start here, so with the same seed they start from
    the same vector (the comparison of the two methods in chapter 9 relies on it).
    """
    v = [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
         for p in params]
    norm = _dot(v, v).sqrt()
    return [t / norm for t in v]


def _operator(loss_fn: Callable[[], Tensor], params: list[Tensor],
              scale: list[Tensor] | None) -> Callable[[list[Tensor]], list[Tensor]]:
    """``v ↦ H v`` or, with ``scale`` = diag(D), ``v ↦ D H D v``."""
    if scale is None:
        return lambda v: hvp(loss_fn, params, v)
    if len(scale) != len(params) or any(s.shape != p.shape for s, p in zip(scale, params)):
        raise ValueError("scale must have one tensor of each parameter's shape")

    def op(v: list[Tensor]) -> list[Tensor]:
        hv = hvp(loss_fn, params, [s * t for s, t in zip(scale, v)])
        return [s * t for s, t in zip(scale, hv)]

    return op


def top_eigenvalue(model: nn.Module, loss_fn: Callable[[], Tensor], iters: int = 100,
                   tol: float = 1e-6, v0: list[Tensor] | None = None,
                   generator: torch.Generator | None = None,
                   scale: list[Tensor] | None = None) -> tuple[float, list[Tensor]]:
    """Eigenvalue of largest modulus of ∇²L by power iteration on Hessian-vector
    products.

    ``loss_fn()`` recomputes the loss of ``model``. Stops when the Rayleigh quotient
    changes by less than ``tol`` (relative) or after ``iters`` products. ``v0``
    warm-starts the iteration (the edge-of-stability runner passes the previous
    eigenvector). Returns ``(λ, v)`` with ‖v‖ = 1. Near a minimum the Hessian is nearly
    positive semidefinite, so this is the top eigenvalue. ``scale`` (from
    :func:`filter_scales`) gives the top eigenvalue of ``D H D`` instead.
    """
    check_positive_int("iters", iters)
    params = trainable_params(model)
    op = _operator(loss_fn, params, scale)
    if v0 is None:
        v = _start_vector(params, generator)
    else:
        v = [t.detach().clone() for t in v0]
        norm = _dot(v, v).sqrt()
        v = [t / norm for t in v]
    lam = float("nan")
    for _ in range(iters):
        hv = op(v)
        new = float(_dot(hv, v))
        norm = _dot(hv, hv).sqrt()
        if norm == 0:
            return 0.0, v
        v = [t / norm for t in hv]
        if abs(new - lam) <= tol * max(abs(new), 1e-12):
            lam = new
            break
        lam = new
    return lam, v


def lanczos(model: nn.Module, loss_fn: Callable[[], Tensor], k: int = 1, steps: int = 30,
            generator: torch.Generator | None = None,
            scale: list[Tensor] | None = None) -> Tensor:
    """The ``k`` largest eigenvalues of ∇²L (or of ``D H D`` with ``scale``) by
    ``steps`` Lanczos iterations on Hessian-vector products, with full
    reorthogonalisation.

    Lanczos builds an orthonormal basis of the Krylov space span{v, Hv, …, H^{m-1}v} and
    the tridiagonal matrix ``T = Qᵀ H Q``; the largest eigenvalue of ``T`` (a Ritz
    value) is the largest Rayleigh quotient over that space. In exact arithmetic and
    from the same start vector (the same ``generator`` seed as :func:`top_eigenvalue`),
    it is therefore never below the power method's estimate after the same number of
    products, and usually far closer to λ_max. Full reorthogonalisation (Gram–Schmidt
    twice against all previous vectors) costs ``steps`` vectors of memory and keeps the
    basis orthogonal in floating point. Returns a descending tensor.
    """
    check_positive_int("k", k)
    check_positive_int("steps", steps)
    params = trainable_params(model)
    n = sum(p.numel() for p in params)
    if k > steps or steps > n:
        raise ValueError(
            f"need k <= steps <= number of parameters ({n}), got k={k}, steps={steps}")
    op = _operator(loss_fn, params, scale)
    shapes, sizes = [p.shape for p in params], [p.numel() for p in params]

    def apply(q: Tensor) -> Tensor:
        parts = [c.reshape(s) for c, s in zip(torch.split(q, sizes), shapes)]
        return torch.cat([t.reshape(-1) for t in op(parts)]).detach()

    q = torch.cat([t.reshape(-1) for t in _start_vector(params, generator)])
    basis, alphas, betas = [], [], []
    for j in range(steps):
        basis.append(q)
        w = apply(q)
        a = torch.dot(w, q)
        alphas.append(a)
        Q = torch.stack(basis)
        for _ in range(2):  # full reorthogonalisation, twice is enough
            w = w - Q.T @ (Q @ w)
        b = w.norm()
        if j == steps - 1 or b <= 1e-12 * max(float(a.abs()), 1e-30):
            break   # the Krylov space is exhausted: T is exact on it
        betas.append(b)
        q = w / b
    m = len(alphas)
    T = torch.diag(torch.stack(alphas))
    if m > 1:
        off = torch.stack(betas[:m - 1])
        T = T + torch.diag(off, 1) + torch.diag(off, -1)
    ritz = torch.linalg.eigvalsh(T).flip(0)
    return ritz[:min(k, m)].cpu()


def explicit_hessian(model: nn.Module, loss_of: Callable[[nn.Module], Tensor]) -> Tensor:
    """The full Hessian of ``loss_of(model)`` w.r.t. the flattened parameters (tiny models only)."""
    params = trainable_params(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def f(flat: Tensor) -> Tensor:
        chunks = torch.split(flat, sizes)
        new = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}
        return loss_of(_Functional(model, new))

    return torch.autograd.functional.hessian(f, flat0)


class _Functional:
    """Calls ``model`` with substituted parameters (torch.func.functional_call)."""

    def __init__(self, model: nn.Module, params: dict[str, Tensor]) -> None:
        self.model, self.params = model, params

    def __call__(self, *args):
        return torch.func.functional_call(self.model, self.params, args)


def full_loss(model: nn.Module, x: Tensor, y: Tensor, loss: str = "mse") -> Tensor:
    """Full-batch loss: ``"mse"`` on one-hot targets (as Cohen et al.) or ``"ce"``."""
    out = model(x)
    if loss == "mse":
        target = nn.functional.one_hot(y, out.shape[1]).to(out.dtype)
        return 0.5 * ((out - target) ** 2).sum(dim=1).mean()
    if loss == "ce":
        return nn.functional.cross_entropy(out, y)
    raise ValueError(f"unknown loss {loss!r}; expected 'mse' or 'ce'")


def gd_sharpness_run(model: nn.Module, x: Tensor, y: Tensor, lr: float, steps: int,
                     every: int = 10, loss: str = "mse", power_iters: int = 20,
                     seed: int = 0) -> dict[str, list[float]]:
    """Full-batch GD with step ``lr``; the loss each step and the sharpness every ``every`` steps.

    The experiment of Cohen et al. (2021): the sharpness rises until about 2/lr and stays there.
    The power iteration is warm-started from the previous eigenvector, so few products suffice.
    """
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    check_positive_int("steps", steps)
    check_positive_int("every", every)
    params = trainable_params(model)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {"loss": [], "sharp_step": [], "sharpness": []}
    v = None
    for k in range(steps):
        if k % every == 0 or k == steps - 1:
            lam, v = top_eigenvalue(model, lambda: full_loss(model, x, y, loss),
                                    iters=power_iters if v is not None else 5 * power_iters,
                                    v0=v, generator=gen)
            out["sharp_step"].append(k)
            out["sharpness"].append(lam)
        value = full_loss(model, x, y, loss)
        grads = torch.autograd.grad(value, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
        out["loss"].append(float(value.detach()))
    return out


def dinh_rescale(model: nn.Sequential, c: float | Tensor) -> nn.Sequential:
    """A copy of a Linear–ReLU–Linear… net with layer 1 multiplied by ``c`` and layer 2
    divided by it.

    ReLU is positively homogeneous, relu(c·z) = c·relu(z) for c > 0, so the function is
    unchanged, while the Hessian block of layer 2 grows like c² (Dinh et al., 2017):
    sharpness is not a property of the function alone. ``c`` is a number (the layer-wise
    rescaling) or a vector of positive numbers, one per hidden unit: row i of layer 1
    times ``c[i]``, column i of layer 2 divided by it (a per-neuron rescaling, which the
    filter-normalized sharpness does not absorb).
    """
    kinds = [type(m) for m in model][:3]
    if kinds != [nn.Linear, nn.ReLU, nn.Linear]:
        raise ValueError("dinh_rescale needs an nn.Sequential that starts Linear, ReLU, Linear")
    hidden = model[0].out_features
    scale = torch.as_tensor(c, dtype=model[0].weight.dtype)
    if scale.dim() > 1 or (scale.dim() == 1 and scale.numel() != hidden):
        raise ValueError(
            f"c must be a number or a vector of {hidden} hidden-unit factors")
    if not bool((scale > 0).all()):
        raise ValueError(
            f"c must be positive (ReLU is only positively homogeneous), got {c!r}")
    scale = scale.to(model[0].weight.device)
    new = copy.deepcopy(model)
    first, second = new[0], new[2]
    with torch.no_grad():
        rows = scale.reshape(-1, 1) if scale.dim() == 1 else scale
        first.weight.mul_(rows)
        if first.bias is not None:
            first.bias.mul_(scale)
        second.weight.div_(scale.reshape(1, -1) if scale.dim() == 1 else scale)
    return new


def train_minibatch(model: nn.Module, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer,
                    epochs: int, batch_size: int, seed: int = 0) -> dict[str, float]:
    """Mini-batch training with cross-entropy; SAM (anything with ``first_step``) gets two passes.

    Used by the chapter's small- vs large-batch and SAM vs SGD comparisons. Returns the number of
    gradient evaluations and the wall time (to measure SAM's cost).
    """
    import time

    from .data import batches

    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    gen = torch.Generator().manual_seed(seed)
    two_pass = hasattr(optimizer, "first_step")
    evaluations, start = 0, time.perf_counter()
    model.train()
    for _ in range(epochs):
        for xb, yb in batches(x, y, batch_size, generator=gen):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            evaluations += 1
            if two_pass:
                optimizer.first_step(zero_grad=True)
                nn.functional.cross_entropy(model(xb), yb).backward()
                evaluations += 1
                optimizer.second_step()
            else:
                optimizer.step()
    return {"grad_evaluations": float(evaluations), "seconds": time.perf_counter() - start}


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Share of correct argmax predictions."""
    return float((model(x).argmax(dim=1) == y).double().mean())


def fit_and_measure(x: Tensor, y: Tensor, x_test: Tensor, y_test: Tensor, sizes: list[int],
                    lr: float, seed: int, rho: float | None = None, epochs: int = 40,
                    batch_size: int = 32, momentum: float = 0.9,
                    filter_sharpness: bool = False) -> dict[str, float]:
    """Train a ReLU perceptron with SGD (``rho=None``) or SAM around the same SGD; measure it.

    Returns test accuracy, the sharpness (top Hessian eigenvalue of the full training loss),
    the training loss, the number of gradient evaluations, the training time and the model;
    with ``filter_sharpness`` also ``"sharpness_filter"``, the top eigenvalue of ``D H D``.
    """
    from .models import mlp
    from .optim.sam import SAM

    torch.manual_seed(seed)
    model = mlp(sizes)
    if rho is None:
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    else:
        opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr, momentum=momentum)
    info = train_minibatch(model, x, y, opt, epochs, batch_size, seed)
    lam, _ = top_eigenvalue(model, lambda: full_loss(model, x, y, "ce"), iters=100, tol=1e-4,
                            generator=torch.Generator().manual_seed(seed))
    extra = {}
    if filter_sharpness:
        extra["sharpness_filter"], _ = top_eigenvalue(
            model, lambda: full_loss(model, x, y, "ce"), iters=100, tol=1e-4,
            generator=torch.Generator().manual_seed(seed), scale=filter_scales(model))
    with torch.no_grad():
        train_loss = float(full_loss(model, x, y, "ce"))
    return {"lr": lr, "rho": float("nan") if rho is None else rho, "seed": seed,
            "test_acc": accuracy(model, x_test, y_test), "sharpness": lam,
            "train_loss": train_loss, **info, **extra, "model": model}


def step_cost(sizes: list[int], x: Tensor, y: Tensor, rho: float = 0.05, lr: float = 0.1,
              batch_size: int = 32, steps: int = 50, repeats: int = 5) -> dict[str, float]:
    """Seconds per training step of SGD and of SAM around it: the minimum over ``repeats``.

    The minimum, not the mean, because on a shared machine the other processes only add time.
    The two are timed alternately, on the same batch, so slow periods hit both.
    """
    import time

    from .models import mlp
    from .optim.sam import SAM

    check_positive_int("steps", steps)
    check_positive_int("repeats", repeats)
    xb, yb = x[:batch_size], y[:batch_size]
    model = mlp(sizes).to(x.device)
    opts = {"sgd": torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9),
            "sam": SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr, momentum=0.9)}
    best = {name: float("inf") for name in opts}
    for _ in range(repeats):
        for name, opt in opts.items():
            start = time.perf_counter()
            for _ in range(steps):
                opt.zero_grad()
                nn.functional.cross_entropy(model(xb), yb).backward()
                if name == "sam":
                    opt.first_step(zero_grad=True)
                    nn.functional.cross_entropy(model(xb), yb).backward()
                    opt.second_step()
                else:
                    opt.step()
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return best
