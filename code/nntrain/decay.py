"""Weight decay: L2 in the loss against decoupled decay (chapter 2, «AdamW и затухание весов»).

The section compares two ways of pulling weights towards zero:

* **L2 regularisation**: the term ``λ'·w`` is added to the gradient (``torch.optim.Adam(weight_decay=λ')``,
  ``torch.optim.SGD(weight_decay=λ')``); an adaptive method then divides it by ``√v̂ + ε``;
* **decoupled weight decay** (Loshchilov & Hutter): the weights are multiplied by ``1 − α·λ`` before
  the step (``torch.optim.AdamW``: ``p *= 1 − lr·weight_decay``), outside the preconditioner.

No update rule is written here: every step is taken by :mod:`nntrain.optim`. This module holds what
the chapter's experiments need around the rules:

* closed forms on the separable quadratic ``f(x) = ½ Σ h_i (x_i − c_i)²``: the fixed point of Adam
  with L2 (:func:`l2_fixed_point`) and of AdamW (:func:`decoupled_fixed_point`), and the stationary
  mean of AdamW under gradient noise (:func:`decoupled_noisy_mean`);
* the trajectories on it (:func:`separable_quadratic`, :func:`noisy_stationary_mean`);
* the SGD equivalence ``λ' = λ/α`` checked on a network (:func:`sgd_l2_vs_decoupled`);
* the digits experiment: a grid over (lr, λ) with several seeds trained at once
  (:func:`grid_runs`, :class:`ReplicaMLP`) and its summaries (:func:`grid_table`, :func:`best_cell`,
  :func:`row_best_decays`, :func:`best_decay_slope`, :func:`paired_cell_gap`);
* what a weight-decay number means: :func:`decay_factor` and :func:`normalized_weight_decay`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ._checks import check_choice, check_positive_int
from .compare import at_edge, t_interval
from .functions import Function2D, Trajectory, run

__all__ = ["METHODS", "l2_fixed_point", "decoupled_fixed_point", "decoupled_noisy_mean", "separable_quadratic",
           "quadratic_trajectory", "noisy_run", "noisy_stationary_mean", "sgd_l2_vs_decoupled", "ReplicaMLP", "GridRun",
           "digits_splits", "grid_runs", "grid_table", "best_cell", "row_best_decays", "best_decay_slope", "cell_runs",
           "paired_cell_gap", "decay_factor",
           "normalized_weight_decay", "cosine_factors", "schedule_factors", "decay_groups", "decay_split"]

# The two methods of the comparison, named as in ``nntrain.optim.trajectory_rule``.
METHODS = ("adam", "adamw")


# ------------------------------------------------------------------------------ checks


def _finite_nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _finite_pos(name: str, value: Any) -> float:
    if _finite_nonneg(name, value) == 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _as_vector(name: str, value: Any) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float64)
    if t.ndim != 1 or t.numel() == 0 or not torch.isfinite(t).all():
        raise ValueError(f"{name} must be a non-empty 1-D sequence of finite numbers, got {value!r}")
    return t


def _curvatures(h: Any, c: Any) -> tuple[Tensor, Tensor]:
    h, c = _as_vector("h", h), _as_vector("c", c)
    if h.shape != c.shape:
        raise ValueError(f"h and c must have the same length, got {h.numel()} and {c.numel()}")
    if (h <= 0).any():
        raise ValueError(f"every curvature h_i must be > 0, got {h.tolist()}")
    return h, c


# ------------------------------------------------------------------------------ closed forms


def l2_fixed_point(h: Any, c: Any, l2: float) -> Tensor:
    """Where Adam with L2 (or SGD, or any method whose step vanishes only at a zero gradient) stops.

    On ``f(x) = ½ Σ h_i (x_i − c_i)²`` the stationary point of ``f + ½λ'‖x‖²`` is
    ``x_i = h_i c_i / (h_i + λ')``: every coordinate is shrunk by its own factor, the flat ones
    (small ``h_i``) most. The preconditioner changes the path, not this point (chapter 2, AdamW).
    """
    h, c = _curvatures(h, c)
    l2 = _finite_nonneg("l2", l2)
    return h * c / (h + l2)


def decoupled_fixed_point(h: Any, c: Any, weight_decay: float, eps: float = 1e-8) -> Tensor:
    """Where AdamW (torch's form ``p *= 1 − lr·λ``) stops on ``f(x) = ½ Σ h_i (x_i − c_i)²``.

    At a fixed point ``m̂ = g`` and ``v̂ = g²``, so ``λ x_i (|g_i| + ε) = −g_i`` with
    ``g_i = h_i (x_i − c_i)``; the learning rate cancels. For ``c_i > 0`` this is the smaller root of
    ``λh x² − (λhc + λε + h) x + hc = 0``, which lies in ``(0, c_i)``; as ``ε → 0`` it tends to
    ``min(c_i, 1/λ)``: the box ``|x_i| ≤ 1/λ``, whatever the curvature (chapter 2, AdamW).
    ``eps=0`` gives that limit exactly.
    """
    h, c = _curvatures(h, c)
    lam = _finite_nonneg("weight_decay", weight_decay)
    eps = _finite_nonneg("eps", eps)
    if lam == 0:
        return c.clone()
    a = c.abs()
    if eps == 0:
        return torch.sign(c) * torch.clamp(a, max=1 / lam)
    b = lam * h * a + lam * eps + h
    disc = (b * b - 4 * lam * h * h * a).clamp(min=0)
    x = 2 * h * a / (b + disc.sqrt())  # the smaller root, written without cancellation
    return torch.sign(c) * x


def decoupled_noisy_mean(h: float, c: float, sigma: float, weight_decay: float, tol: float = 1e-12,
                         max_iter: int = 100_000) -> float:
    """The mean AdamW settles at on ``½h(x − c)²`` with gradient noise of standard deviation ``sigma``.

    With a small step, ``v̂`` is nearly constant, ``v̂ ≈ σ² + ḡ²`` with the mean gradient
    ``ḡ = h(x − c)``, and the mean of ``m̂/√v̂ + λx`` vanishes: ``x = hc / (h + λ√(σ² + h²(x − c)²))``.
    So AdamW acts as an L2 penalty of strength ``λ√v̂``, stronger for noisier weights (Loshchilov and
    Hutter's Proposition 3 with ``s = √v̂``). Solved by the monotone iteration from ``x = 0``, which
    reaches the smallest root; ``sigma = 0`` gives ``min(c, 1/λ)`` (for ``c > 0``). An approximation:
    the chapter compares it with simulation.
    """
    h, c = _finite_pos("h", h), float(c)
    if not math.isfinite(c):
        raise ValueError(f"c must be finite, got {c!r}")
    sigma, lam = _finite_nonneg("sigma", sigma), _finite_nonneg("weight_decay", weight_decay)
    check_positive_int("max_iter", max_iter)
    sign, a = (1.0 if c >= 0 else -1.0), abs(c)
    x = 0.0
    for _ in range(max_iter):
        new = h * a / (h + lam * math.sqrt(sigma * sigma + h * h * (x - a) ** 2))
        if abs(new - x) <= tol * max(1.0, a):
            return sign * new
        x = new
    raise RuntimeError(f"the iteration did not settle in {max_iter} steps (sigma={sigma}, λ={lam})")


# ------------------------------------------------------------------------------ the 2-D quadratic


def separable_quadratic(h: Sequence[float], c: Sequence[float]) -> Function2D:
    """``f(x) = ½ Σ h_i (x_i − c_i)²`` as a :class:`~nntrain.functions.Function2D` for ``functions.run``.

    Axis-aligned on purpose: Adam's preconditioner is diagonal, so the two coordinates feel the
    L2 term differently when their curvatures ``h_i`` differ (chapter 2, AdamW).
    """
    hv, cv = _curvatures(h, c)
    if hv.numel() != 2:
        raise ValueError(f"separable_quadratic draws in 2-D: give two curvatures, got {hv.numel()}")

    def value(x: Tensor) -> Tensor:
        return 0.5 * (hv.to(x) * (x - cv.to(x)) ** 2).sum(-1)

    def grad(x: Tensor) -> Tensor:
        return hv.to(x) * (x - cv.to(x))

    def hessian(x: Tensor) -> Tensor:
        return torch.diag(hv).to(x).expand(*x.shape[:-1], 2, 2).clone()

    lo, hi = float(min(cv.min(), 0.0)), float(max(cv.max(), 0.0))
    pad = 0.25 * (hi - lo + 1.0)
    box = (lo - pad, hi + pad, lo - pad, hi + pad)
    point = tuple(cv.tolist())
    return Function2D(name="separable_quadratic", value=value, grad=grad, hessian=hessian, minimizers=(point,),
                      stationary=(point,), box=box, f_min=0.0, info={"h": tuple(hv.tolist()), "c": point})


def quadratic_trajectory(fn: Function2D, method: str, x0: Sequence[float], steps: int, *, lr: float,
                         weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                         eps: float = 1e-8) -> Trajectory:
    """Run Adam with L2 (``method="adam"``) or AdamW (``"adamw"``) on ``fn`` with ``nntrain.optim``'s rule."""
    from .optim import trajectory_rule

    check_choice("method", method, METHODS)
    rule = trajectory_rule(method, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return run(fn, list(x0), check_positive_int("steps", steps), update=rule)


def noisy_run(method: str, h: float, c: float, sigmas: Sequence[float], weight_decay: float, *,
              lr: float = 1e-2, steps: int = 6000, replicas: int = 200, seed: int = 0, x0: float = 0.0,
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> np.ndarray:
    """Adam+L2 or AdamW on ``½h(x − c)²`` with Gaussian gradient noise: the mean path over replicas.

    Every ``sigmas[j]`` is a separate coordinate, run ``replicas`` times independently (Adam acts
    elementwise, so one tensor of shape ``(replicas, len(sigmas))`` holds them all). Returns the
    replica-mean position, shape ``(steps + 1, len(sigmas))``. ``h = 0`` is a weight the loss does
    not care about: only the noise and the decay move it (chapter 2, AdamW).
    """
    from .optim import trajectory_rule

    check_choice("method", method, METHODS)
    h, sig = _finite_nonneg("h", h), _as_vector("sigmas", sigmas)
    if (sig < 0).any():
        raise ValueError(f"sigmas must be >= 0, got {sig.tolist()}")
    steps, replicas = check_positive_int("steps", steps), check_positive_int("replicas", replicas)
    rule = trajectory_rule(method, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    x = torch.full((replicas, sig.numel()), float(x0), dtype=torch.float64)
    noisy = lambda z: h * (z - c) + sig * torch.randn(z.shape, generator=gen, dtype=z.dtype)  # noqa: E731
    path, state = [x.mean(0)], None
    for _ in range(steps):
        x, state = rule(x, noisy, state)
        path.append(x.mean(0))
    return torch.stack(path).numpy()


def noisy_stationary_mean(method: str, h: float, c: float, sigmas: Sequence[float], weight_decay: float,
                          **kwargs: Any) -> np.ndarray:
    """Where Adam+L2 or AdamW settles on average under gradient noise: :func:`noisy_run` averaged over
    the second half of its iterations (chapter 2, AdamW)."""
    path = noisy_run(method, h, c, sigmas, weight_decay, **kwargs)
    return path[(len(path) - 1) // 2 + 1:].mean(0)


# ------------------------------------------------------------------------------ SGD: L2 ≡ decoupled


def sgd_l2_vs_decoupled(decay: float, lr: float, steps: int = 200, batch_size: int = 32, hidden: int = 32,
                        seed: int = 0, n_train: int = 512) -> dict[str, float]:
    """Proposition 1 of Loshchilov & Hutter on a real network, in float64 (chapter 2, AdamW).

    Two copies of one MLP on digits see the same mini-batches. One takes SGD steps on the loss plus
    ``½λ'‖w‖²`` (``nntrain.optim.SGD(weight_decay=λ')``); the other multiplies its weights by
    ``1 − λ`` and takes a plain SGD step with the gradient of the loss at the old weights:
    ``w ← (1 − λ)w − α∇f(w)``. Returns the largest parameter difference with ``λ' = λ/α``
    (``max_diff``: rounding only) and with the naive ``λ' = λ`` (``max_diff_naive``), and the
    largest weight (``scale``) to compare them with.
    """
    from . import data, models
    from .optim import SGD

    decay, lr = _finite_nonneg("decay", decay), _finite_pos("lr", lr)
    if decay >= 1:
        raise ValueError(f"decay is a per-step factor 1 − λ and must be < 1, got {decay!r}")
    steps, batch_size = check_positive_int("steps", steps), check_positive_int("batch_size", batch_size)
    X, y = data.load("digits", "train", size=n_train, device="cpu", dtype=torch.float64)

    def fresh() -> nn.Module:
        torch.manual_seed(seed)
        return models.mlp([64, check_positive_int("hidden", hidden), 10]).double()

    def train(l2: float | None) -> list[Tensor]:
        model, gen = fresh(), torch.Generator().manual_seed(1000 + seed)
        opt = SGD(model.parameters(), lr=lr, weight_decay=0.0 if l2 is None else l2)
        for _ in range(steps):
            idx = torch.randint(0, len(X), (batch_size,), generator=gen)
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if l2 is None:  # decoupled: shrink the weights, then step with ∇f at the old weights
                with torch.no_grad():
                    for p in model.parameters():
                        p.mul_(1 - decay)
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    def gap(a: list[Tensor], b: list[Tensor]) -> float:
        return max(float((p - q).abs().max()) for p, q in zip(a, b))

    ref = train(None)
    return {"max_diff": gap(ref, train(decay / lr)), "max_diff_naive": gap(ref, train(decay)),
            "scale": max(float(p.abs().max()) for p in ref)}


# ------------------------------------------------------------------------------ the digits grid


class ReplicaMLP(nn.Module):
    """``S`` independent MLPs ``in → hidden → … → out`` (ReLU) evaluated together with batched matmuls.

    Weights have shape ``(S, n_in, n_out)`` and biases ``(S, 1, n_out)``; replica ``s`` is initialised
    like ``nn.Linear`` (uniform in ``±1/√n_in``) from its own seed ``seeds[s]``. Adam acts elementwise,
    so one optimizer over these tensors trains ``S`` separate networks exactly as ``S`` optimizers
    would — the seeds of the chapter's grid cost about one run (chapter 2, AdamW).
    """

    def __init__(self, sizes: Sequence[int], seeds: Sequence[int]) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output size, got {sizes!r}")
        for s in sizes:
            check_positive_int("every size", s)
        if not seeds:
            raise ValueError("give at least one seed")
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            bound = 1 / math.sqrt(n_in)
            w = torch.stack([(torch.rand(n_in, n_out, generator=g) * 2 - 1) * bound for g in gens])
            b = torch.stack([(torch.rand(1, n_out, generator=g) * 2 - 1) * bound for g in gens])
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, x: Tensor) -> Tensor:
        """``x`` of shape ``(S, B, n_in)`` → logits ``(S, B, n_out)``."""
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < n - 1:
                x = torch.relu(x)
        return x


def decay_split(model: nn.Module, exclude_embeddings: bool = False) -> tuple[list[str], list[str]]:
    """Names of the parameters that get weight decay and of those that do not (see :func:`decay_groups`)."""
    if not isinstance(exclude_embeddings, bool):
        raise TypeError(f"exclude_embeddings must be True or False, got {exclude_embeddings!r}")
    replica = isinstance(model, ReplicaMLP)
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)} if exclude_embeddings else set()
    decay, keep = [], []
    for name, p in model.named_parameters():
        is_matrix = name.startswith("weights") if replica else p.ndim >= 2
        (decay if is_matrix and id(p) not in embeddings else keep).append(name)
    return decay, keep


def decay_groups(model: nn.Module, weight_decay: float, exclude_embeddings: bool = False) -> list[dict]:
    """Two parameter groups: matrices (``ndim ≥ 2``) with ``weight_decay``, the rest (biases, gains) without.

    The usual split for AdamW (chapter 2, AdamW); ``exclude_embeddings=True`` also keeps the
    weights of every ``nn.Embedding`` out of the decay (and so an output layer tied to one).
    For :class:`ReplicaMLP` the leading replica dimension is not counted: its biases have shape
    ``(S, 1, n)``. The groups work for ``nntrain.optim`` and ``torch.optim`` alike.
    """
    _finite_nonneg("weight_decay", weight_decay)
    params = dict(model.named_parameters())
    decay, keep = decay_split(model, exclude_embeddings)
    return [{"params": [params[n] for n in decay], "weight_decay": weight_decay},
            {"params": [params[n] for n in keep], "weight_decay": 0.0}]


@dataclass
class GridRun:
    """One training run of the grid: settings and held-out metrics (``val_*``, ``test_*``, ``train_*``)."""

    method: str
    lr: float
    weight_decay: float
    seed: int
    metrics: dict = field(default_factory=dict)


def digits_splits(n_train: int = 300, seed: int = 0, device: Any = "cpu") -> dict[str, tuple[Tensor, Tensor]]:
    """Train, validation and test sets from scikit-learn's digits, fixed by ``seed``.

    The train split of :func:`nntrain.data.load` is cut into its first ``n_train`` examples (train)
    and the rest (validation); the test split is held out of every choice (chapter 2, AdamW).
    """
    from . import data

    X, y = data.load("digits", "train", seed=seed, device=device)
    n_train = check_positive_int("n_train", n_train)
    if n_train >= len(X):
        raise ValueError(f"n_train must leave examples for validation: at most {len(X) - 1}, got {n_train}")
    Xte, yte = data.load("digits", "test", seed=seed, device=device)
    return {"train": (X[:n_train], y[:n_train]), "val": (X[n_train:], y[n_train:]), "test": (Xte, yte)}


def schedule_factors(steps: int, warmup: int = 0, floor: float = 0.0) -> list[float]:
    """Learning-rate multipliers of a run: linear warmup over ``warmup`` steps, then cosine from 1 to ``floor``.

    The warmup multipliers are ``(k + 1)/warmup`` for ``k < warmup``; the cosine then runs over the
    remaining ``steps − warmup`` steps, ``floor + (1 − floor)·½(1 + cos(π(k − warmup)/(steps − warmup)))``.
    ``floor = 0.1`` is LLaMA's «cosine down to 10 % of the peak»; with ``warmup = 0`` and ``floor = 0``
    it is ``½(1 + cos(πk/K))`` for ``k = 0 … K − 1`` (chapter 2, AdamW).
    """
    steps = check_positive_int("steps", steps)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < steps:
        raise ValueError(f"warmup must be an int in [0, steps), got {warmup!r}")
    floor = _finite_nonneg("floor", floor)
    if floor > 1:
        raise ValueError(f"floor is a fraction of the peak and must be <= 1, got {floor!r}")
    out = [(k + 1) / warmup for k in range(warmup)]
    rest = steps - warmup
    for k in range(rest):
        out.append(floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * k / rest)))
    return out


def cosine_factors(steps: int) -> list[float]:
    """The cosine schedule without warmup, ``½(1 + cos(πk/K))`` for ``k = 0 … K − 1`` (multipliers of lr)."""
    return schedule_factors(steps)


def _check_grid(method: str, lrs: Sequence[float], weight_decays: Sequence[float], seeds: Sequence[int]) -> None:
    check_choice("method", method, METHODS)
    for name, grid in (("lrs", lrs), ("weight_decays", weight_decays), ("seeds", seeds)):
        if isinstance(grid, (str, bytes)) or not hasattr(grid, "__len__") or len(grid) == 0:
            raise ValueError(f"{name} must be a non-empty sequence, got {grid!r}")
        if len(set(grid)) != len(grid):
            raise ValueError(f"{name} has repeated values: {list(grid)!r}")
    for lr in lrs:
        _finite_pos("every lr", lr)
    for wd in weight_decays:
        _finite_nonneg("every weight decay", wd)
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"every seed must be an int >= 0, got {s!r}")


def grid_runs(method: str, lrs: Sequence[float], weight_decays: Sequence[float], seeds: Sequence[int], *,
              splits: dict[str, tuple[Tensor, Tensor]], steps: int = 500, batch_size: int = 32,
              hidden: Sequence[int] = (128, 128), betas: tuple[float, float] = (0.9, 0.999),
              progress: bool = True) -> list[GridRun]:
    """Train an MLP on every (lr, λ) of the grid with every seed; return the held-out metrics of each run.

    ``method="adam"``: ``nntrain.optim.Adam(weight_decay=λ)`` (L2 in the gradient); ``"adamw"``:
    ``nntrain.optim.AdamW(weight_decay=λ)``. Only matrices are decayed (:func:`decay_groups`).
    The learning rate follows the cosine schedule to zero (:func:`cosine_factors`). A seed fixes the
    initialisation and the mini-batches, so both methods see the same ones; the seeds of one
    setting are trained at once in a :class:`ReplicaMLP` (chapter 2, AdamW).
    """
    from .optim import Adam, AdamW

    _check_grid(method, lrs, weight_decays, seeds)
    steps, batch_size = check_positive_int("steps", steps), check_positive_int("batch_size", batch_size)
    for k in ("train", "val", "test"):
        if k not in splits:
            raise ValueError(f"splits must hold 'train', 'val' and 'test', got {sorted(splits)}")
    X, y = splits["train"]
    n_in, n_out = X.shape[1], int(torch.cat([splits[k][1] for k in splits]).max()) + 1
    factors = cosine_factors(steps)
    S = len(seeds)
    jobs = [(lr, wd) for lr in lrs for wd in weight_decays]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc=method, leave=False)
    out: list[GridRun] = []
    for lr, wd in jobs:
        model = ReplicaMLP([n_in, *hidden, n_out], seeds).to(X.device)
        cls = Adam if method == "adam" else AdamW
        opt = cls(decay_groups(model, wd), lr=lr, betas=betas)
        gens = [torch.Generator().manual_seed(1000 + s) for s in seeds]
        for k in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr * factors[k]
            idx = torch.stack([torch.randint(0, len(X), (batch_size,), generator=g) for g in gens]).to(X.device)
            logits = model(X[idx])
            # the sum over replicas of each one's mean loss: replica s gets exactly its own gradient
            loss = nn.functional.cross_entropy(logits.reshape(-1, n_out), y[idx].reshape(-1),
                                               reduction="sum") / batch_size
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            metrics: list[dict] = [{} for _ in seeds]
            for split, (Xs, ys) in splits.items():
                logits = model(Xs.expand(S, *Xs.shape))
                losses = nn.functional.cross_entropy(logits.transpose(1, 2), ys.expand(S, -1),
                                                     reduction="none").mean(1)
                accs = (logits.argmax(-1) == ys).double().mean(1)
                for s in range(S):
                    metrics[s][f"{split}_loss"] = float(losses[s])
                    metrics[s][f"{split}_acc"] = float(accs[s])
            norms = torch.sqrt(sum((w.detach() ** 2).sum((1, 2)) for w in model.weights))
            for s in range(S):
                metrics[s]["weight_norm"] = float(norms[s])
        out += [GridRun(method, float(lr), float(wd), int(seed), metrics[s]) for s, seed in enumerate(seeds)]
    return out


def grid_table(runs: Sequence[GridRun], lrs: Sequence[float], weight_decays: Sequence[float],
               metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95 % t half-width over seeds of ``metric``, as arrays ``[i_lr, j_λ]``.

    A cell with no run is an error, so a table never silently shows a hole.
    """
    if not runs:
        raise ValueError("no runs")
    methods = {r.method for r in runs}
    if len(methods) != 1:
        raise ValueError(f"a table is for one method, got runs of {sorted(methods)}")
    mean = np.full((len(lrs), len(weight_decays)), np.nan)
    half = np.full_like(mean, np.nan)
    for i, lr in enumerate(lrs):
        for j, wd in enumerate(weight_decays):
            vals = [r.metrics[metric] for r in runs if np.isclose(r.lr, lr) and np.isclose(r.weight_decay, wd)]
            if not vals:
                raise ValueError(f"no run at lr={lr}, weight_decay={wd}")
            mean[i, j], half[i, j] = t_interval(vals)
    return mean, half


def best_cell(mean: np.ndarray, lrs: Sequence[float], weight_decays: Sequence[float],
              maximize: bool = False) -> dict[str, Any]:
    """The best cell of a table and whether it sits on an edge of the grid (then widen the grid).

    ``lr_edge``/``wd_edge`` use :func:`nntrain.compare.at_edge`; a best λ of 0 counts as an edge too
    (decay did not help on that grid).
    """
    mean = np.asarray(mean, dtype=float)
    if mean.shape != (len(lrs), len(weight_decays)):
        raise ValueError(f"table of shape {mean.shape} does not match the grid {len(lrs)} × {len(weight_decays)}")
    flat = np.nanargmax(mean) if maximize else np.nanargmin(mean)
    i, j = np.unravel_index(flat, mean.shape)
    return {"lr": float(lrs[i]), "weight_decay": float(weight_decays[j]), "i": int(i), "j": int(j),
            "value": float(mean[i, j]), "lr_edge": at_edge(lrs, lrs[i]),
            "wd_edge": at_edge(weight_decays, weight_decays[j])}


def row_best_decays(mean: np.ndarray, weight_decays: Sequence[float], maximize: bool = False) -> list[float]:
    """The best *positive* λ of each lr row of a table ``[i_lr, j_λ]`` (the white frames of the chapter's map).

    λ = 0 is left out on purpose: the question is which decay to choose once one decays at all
    (chapter 2, AdamW).
    """
    wds = np.asarray(weight_decays, dtype=float)
    pos = wds > 0
    sub = np.asarray(mean, dtype=float)
    if sub.ndim != 2 or sub.shape[1] != wds.size:
        raise ValueError(f"table of shape {sub.shape} does not match {wds.size} weight decays")
    if not pos.any():
        raise ValueError("need at least one positive weight decay")
    sub = sub[:, pos]
    j = np.nanargmax(sub, 1) if maximize else np.nanargmin(sub, 1)
    return [float(w) for w in wds[pos][j]]


def best_decay_slope(mean: np.ndarray, lrs: Sequence[float], weight_decays: Sequence[float],
                     maximize: bool = False) -> float:
    """Slope of ``log λ*(α)`` against ``log α``, with ``λ*(α)`` the best positive λ of each lr row.

    0 means the best decay does not depend on the learning rate; −1 means the product ``α·λ*`` is what
    is fixed. For AdamW in torch's form (decay ``α·λ`` per step) add 1 to get the slope in Loshchilov
    and Hutter's form, where the decay per step is ``λ_paper = α·λ`` (chapter 2, AdamW).
    """
    if int(np.sum(np.asarray(weight_decays, dtype=float) > 0)) < 2 or len(lrs) < 2:
        raise ValueError("need at least two learning rates and two positive weight decays")
    best = row_best_decays(mean, weight_decays, maximize)
    return float(np.polyfit(np.log(np.asarray(lrs, dtype=float)), np.log(best), 1)[0])


def cell_runs(runs: Sequence[GridRun], lr: float, weight_decay: float) -> dict[int, GridRun]:
    """The runs of one grid cell, by seed (an error if the cell is empty)."""
    out = {r.seed: r for r in runs if np.isclose(r.lr, lr) and np.isclose(r.weight_decay, weight_decay)}
    if not out:
        raise ValueError(f"no run at lr={lr}, weight_decay={weight_decay}")
    return out


def paired_cell_gap(runs_a: Sequence[GridRun], cell_a: tuple[float, float], runs_b: Sequence[GridRun],
                    cell_b: tuple[float, float], metric: str) -> tuple[float, float, int]:
    """Mean and 95 % t half-width of ``metric(a) − metric(b)`` over the seeds both cells share.

    A seed fixes the initialisation and the mini-batches, so the difference of two cells with the same
    seed removes the part of the noise they share (chapter 2, AdamW).
    """
    a, b = cell_runs(runs_a, *cell_a), cell_runs(runs_b, *cell_b)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("the two cells share no seed")
    return (*t_interval([a[s].metrics[metric] - b[s].metrics[metric] for s in seeds]), len(seeds))


# ------------------------------------------------------------------------------ what λ means


def decay_factor(lr: float, weight_decay: float, factors: Sequence[float]) -> dict[str, float]:
    """What decoupled decay alone does to a weight over a run: ``Π (1 − α_k λ)`` with ``α_k = lr·factors[k]``.

    Returns the exact product, its approximation ``exp(−λ Σ α_k)`` and the sum ``λ Σ α_k`` (the
    number of e-foldings). With a constant step this is ``(1 − αλ)^T ≈ e^{−αλT}`` (chapter 2, AdamW).
    """
    lr, lam = _finite_nonneg("lr", lr), _finite_nonneg("weight_decay", weight_decay)
    f = np.asarray(list(factors), dtype=float)
    if f.ndim != 1 or f.size == 0 or not np.isfinite(f).all() or (f < 0).any():
        raise ValueError("factors must be a non-empty sequence of finite numbers >= 0")
    steps = lr * lam * f
    if (steps >= 1).any():
        raise ValueError(f"lr·weight_decay·factor must stay below 1, got up to {steps.max():.3g}")
    return {"product": float(np.exp(np.log1p(-steps).sum())), "approx": float(np.exp(-steps.sum())),
            "efolds": float(steps.sum())}


def normalized_weight_decay(lam_norm: float, batch_size: int, n_train: int, epochs: float) -> float:
    """Loshchilov & Hutter's normalised weight decay (their Appendix B.1): ``λ = λ_norm √(b / (B T))``.

    ``b`` is the batch size, ``B`` the number of training points and ``T`` the number of epochs, so
    ``BT/b`` is the number of steps: the decay shrinks as the run gets longer (chapter 2, AdamW).
    """
    lam_norm = _finite_nonneg("lam_norm", lam_norm)
    b, n = check_positive_int("batch_size", batch_size), check_positive_int("n_train", n_train)
    epochs = _finite_pos("epochs", epochs)
    return lam_norm * math.sqrt(b / (n * epochs))
