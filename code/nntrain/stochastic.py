"""Stochastic gradients, measured and simulated (chapter 2, «Стохастический градиентный спуск»).

* mini-batch sampling: with replacement, random reshuffling (a fresh permutation every epoch), one
  shuffle for the whole run;
* the variance of a mini-batch gradient, measured by Monte Carlo, and its closed forms
  σ²/B (with replacement) and (N − B)/(N − 1)·σ²/B (without);
* SGD on a noisy 1-D quadratic f(x) = μx²/2 with gradient μx + sξ, ξ ~ N(0, 1): many independent
  runs at once, and the exact expectations E f(x_k), E g_k² from their closed recursion;
* the bounds of Karimi, Nutini & Schmidt 2016 (arXiv 1608.04636, Theorem 4) for constant and
  decreasing steps, and the constant-step bound under the consistent assumption
  E‖g‖² ≤ M + M_G‖∇f‖² of Bottou, Curtis & Nocedal 2018 (arXiv 1606.04838, Assumption 4.3);
* SGD on least squares, vectorised over independent runs, and a plain mini-batch training loop;
* the wall-clock time of one forward and backward pass as a function of the batch size.

Everything here is a pure function of its inputs and an explicit ``torch.Generator``.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

from ._checks import check_positive_int

__all__ = [
    "SCHEMES", "sample_batches", "index_schedule", "least_squares_grads", "population_variance",
    "minibatch_variance", "exact_minibatch_variance", "minibatch_variance_theory", "QuadraticRun", "noisy_quadratic_sgd",
    "noisy_quadratic_exact", "noisy_quadratic_plateau", "noisy_quadratic_stationary_c2",
    "kns_constant_step_bound", "kns_decreasing_steps", "kns_decreasing_step_bound",
    "bcn_constant_step_bound", "bcn_noise_floor",
    "least_squares_loss", "sgd_least_squares", "least_squares_excess", "train_epochs", "time_per_batch",
]

# How the examples of a mini-batch are drawn (see index_schedule).
SCHEMES = ("replacement", "reshuffle", "shuffle_once")
_CHUNK_ELEMENTS = 1 << 22  # numbers gathered at once by minibatch_variance (32 MiB in float64)


def _generator(generator: torch.Generator | None) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(0)


# --------------------------------------------------------------------------- sampling


def sample_batches(n: int, batch_size: int, draws: int, replace: bool,
                   generator: torch.Generator | None = None) -> Tensor:
    """``draws`` independent mini-batches of indices in ``range(n)``: a (draws, batch_size) LongTensor.

    With ``replace`` every index is uniform and independent; without, each row is a uniformly random
    subset of distinct indices (in random order).
    """
    n, batch_size, draws = (check_positive_int(k, v) for k, v in (("n", n), ("batch_size", batch_size), ("draws", draws)))
    g = _generator(generator)
    if replace:
        return torch.randint(0, n, (draws, batch_size), generator=g)
    if batch_size > n:
        raise ValueError(f"cannot draw {batch_size} distinct examples out of {n} without replacement")
    # the positions of the B largest of n i.i.d. uniforms form a uniformly random B-subset
    return torch.rand(draws, n, generator=g).topk(batch_size, dim=1).indices


def index_schedule(n: int, batch_size: int, steps: int, scheme: str,
                   generator: torch.Generator | None = None) -> Tensor:
    """The indices SGD uses at each of ``steps`` steps: a (steps, batch_size) LongTensor.

    ``scheme``: ``"replacement"`` — independent uniform draws; ``"reshuffle"`` — a new random
    permutation every epoch, cut into consecutive batches (what ``DataLoader(shuffle=True)`` does);
    ``"shuffle_once"`` — one permutation reused every epoch. An epoch is ``n // batch_size`` steps
    (the incomplete last batch is dropped).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown sampling scheme {scheme!r}; expected one of {SCHEMES}")
    n, batch_size, steps = (check_positive_int(k, v) for k, v in (("n", n), ("batch_size", batch_size), ("steps", steps)))
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the data set (n={n})")
    g = _generator(generator)
    if scheme == "replacement":
        return torch.randint(0, n, (steps, batch_size), generator=g)
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)
    fixed = torch.randperm(n, generator=g)
    rows = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g) if scheme == "reshuffle" else fixed
        rows.append(perm[: per_epoch * batch_size].view(per_epoch, batch_size))
    return torch.cat(rows)[:steps]


# --------------------------------------------------------------------------- gradient variance


def least_squares_grads(X: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """Per-example gradients of f_i(w) = ½(x_iᵀw − y_i)²: the rows (x_iᵀw − y_i)·x_i, shape (N, d)."""
    if X.ndim != 2 or y.shape != (X.shape[0],) or w.shape != (X.shape[1],):
        raise ValueError(f"expected X (N, d), y (N,), w (d,); got {tuple(X.shape)}, {tuple(y.shape)}, {tuple(w.shape)}")
    return (X @ w - y)[:, None] * X


def population_variance(grads: Tensor) -> float:
    """σ² = (1/N)·Σ‖g_i − ḡ‖²: the variance of the gradient of one uniformly drawn example."""
    if grads.ndim != 2 or grads.shape[0] < 2:
        raise ValueError(f"grads must be an (N, d) matrix with N >= 2, got shape {tuple(grads.shape)}")
    return (grads - grads.mean(0)).pow(2).sum(1).mean().item()


def minibatch_variance(grads: Tensor, batch_size: int, draws: int, replace: bool,
                       generator: torch.Generator | None = None) -> float:
    """Monte-Carlo estimate of E‖ĝ_B − ḡ‖², ĝ_B the mean gradient of a random mini-batch of size B."""
    if grads.ndim != 2:
        raise ValueError(f"grads must be an (N, d) matrix, got shape {tuple(grads.shape)}")
    check_positive_int("draws", draws)
    check_positive_int("batch_size", batch_size)
    g, mean, total = _generator(generator), grads.mean(0), 0.0
    chunk = max(1, _CHUNK_ELEMENTS // (batch_size * grads.shape[1]))  # bounds the memory of grads[idx]
    for start in range(0, draws, chunk):
        idx = sample_batches(grads.shape[0], batch_size, min(chunk, draws - start), replace, g).to(grads.device)
        total += (grads[idx].mean(1) - mean).pow(2).sum(1).sum().item()
    return total / draws


def exact_minibatch_variance(grads: Tensor, batch_size: int, replace: bool, max_terms: int = 1_000_000) -> float:
    """E‖ĝ_B − ḡ‖² computed exactly by listing every mini-batch (a tiny population only).

    Without replacement: all C(N, B) subsets; with replacement: all N^B ordered tuples. This checks
    the closed forms of :func:`minibatch_variance_theory` with no Monte-Carlo error.
    """
    n = grads.shape[0]
    check_positive_int("batch_size", batch_size)
    count = n ** batch_size if replace else math.comb(n, batch_size)
    if count == 0 or count > max_terms:
        raise ValueError(f"{count} mini-batches to list (N={n}, B={batch_size}); allowed 1..{max_terms}")
    combos = itertools.product(range(n), repeat=batch_size) if replace else itertools.combinations(range(n), batch_size)
    idx = torch.tensor(list(combos), dtype=torch.long, device=grads.device)
    return (grads[idx].mean(1) - grads.mean(0)).pow(2).sum(1).mean().item()


def minibatch_variance_theory(sigma2: float, batch_size: int, n: int, replace: bool) -> float:
    """σ²/B with replacement; (N − B)/(N − 1)·σ²/B without (the finite-population correction)."""
    check_positive_int("batch_size", batch_size)
    check_positive_int("n", n)
    if replace:
        return sigma2 / batch_size
    if batch_size > n:
        raise ValueError(f"cannot draw {batch_size} distinct examples out of {n}")
    if n == 1:
        return 0.0
    return (n - batch_size) / (n - 1) * sigma2 / batch_size


# --------------------------------------------------------------------------- noisy quadratic


class QuadraticRun(NamedTuple):
    """Averages over runs at k = 0..steps: E f(x_k) − f* and E g_k² (g_k the stochastic gradient at x_k)."""

    loss: Tensor
    grad_sq: Tensor


def _steps_tensor(lrs: Sequence[float] | Tensor | float, steps: int | None) -> Tensor:
    if isinstance(lrs, (int, float)) and not isinstance(lrs, bool):
        if steps is None:
            raise ValueError("a constant step needs the number of steps: pass steps=...")
        lrs = [float(lrs)] * check_positive_int("steps", steps)
    lrs = torch.as_tensor(lrs, dtype=torch.float64).flatten()
    if lrs.numel() == 0 or not torch.isfinite(lrs).all() or (lrs < 0).any():
        raise ValueError("step sizes must be a non-empty sequence of finite non-negative numbers")
    return lrs


def _check_quadratic(mu: float, noise: float) -> None:
    if not (math.isfinite(mu) and mu > 0):
        raise ValueError(f"mu must be a positive number, got {mu!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")


def noisy_quadratic_sgd(x0: float, lrs: Sequence[float] | Tensor | float, mu: float = 1.0, noise: float = 1.0,
                        runs: int = 10_000, steps: int | None = None,
                        generator: torch.Generator | None = None) -> QuadraticRun:
    """SGD on f(x) = μx²/2 with the stochastic gradient μx + noise·ξ, ``runs`` independent runs at once.

    ``lrs`` is the sequence of steps α_0, α_1, ... (or one number and ``steps``). Returns the run-averaged
    f(x_k) and g_k² for k = 0..len(lrs) — Monte-Carlo estimates of the expectations in the theorems.
    """
    _check_quadratic(mu, noise)
    lrs = _steps_tensor(lrs, steps)
    g = _generator(generator)
    x = torch.full((check_positive_int("runs", runs),), float(x0), dtype=torch.float64)
    loss, grad_sq = [], []
    for alpha in lrs.tolist() + [0.0]:
        grad = mu * x + noise * torch.randn(x.shape, generator=g, dtype=torch.float64)
        loss.append(0.5 * mu * x.pow(2).mean())
        grad_sq.append(grad.pow(2).mean())
        x = x - alpha * grad
    return QuadraticRun(torch.stack(loss), torch.stack(grad_sq))


def noisy_quadratic_exact(x0: float, lrs: Sequence[float] | Tensor | float, mu: float = 1.0, noise: float = 1.0,
                          steps: int | None = None) -> QuadraticRun:
    """The exact E f(x_k) and E g_k² of :func:`noisy_quadratic_sgd`, from the recursion for m_k = E x_k²:

    m_{k+1} = (1 − α_k μ)² m_k + α_k² s²,   E f = μ m_k / 2,   E g² = μ² m_k + s².
    """
    _check_quadratic(mu, noise)
    lrs = _steps_tensor(lrs, steps)
    m = torch.empty(lrs.numel() + 1, dtype=torch.float64)
    m[0] = float(x0) ** 2
    for k, alpha in enumerate(lrs.tolist()):
        m[k + 1] = (1 - alpha * mu) ** 2 * m[k] + alpha ** 2 * noise ** 2
    return QuadraticRun(0.5 * mu * m, mu ** 2 * m + noise ** 2)


def noisy_quadratic_plateau(lr: float, mu: float = 1.0, noise: float = 1.0) -> float:
    """The limit of E f(x_k) with a constant step α < 2/μ: αs² / (2(2 − αμ))."""
    _check_quadratic(mu, noise)
    if not 0 < lr < 2 / mu:
        raise ValueError(f"a plateau exists only for 0 < lr < 2/mu = {2 / mu}, got lr={lr}")
    return lr * noise ** 2 / (2 * (2 - lr * mu))


def noisy_quadratic_stationary_c2(lr: float, mu: float = 1.0, noise: float = 1.0) -> float:
    """The limit of E g_k² with a constant step: μ²·E x² + s² = 2s²/(2 − αμ)."""
    _check_quadratic(mu, noise)
    if not 0 < lr < 2 / mu:
        raise ValueError(f"a stationary regime exists only for 0 < lr < 2/mu = {2 / mu}, got lr={lr}")
    return 2 * noise ** 2 / (2 - lr * mu)


# --------------------------------------------------------------------------- Karimi–Nutini–Schmidt, Theorem 4


def _check_kns(mu: float, L: float, c2: float) -> None:
    if not (mu > 0 and L >= mu and c2 >= 0):
        raise ValueError(f"need mu > 0, L >= mu and C^2 >= 0; got mu={mu}, L={L}, C2={c2}")


def kns_constant_step_bound(k: Tensor | int, lr: float, mu: float, L: float, c2: float, gap0: float) -> Tensor:
    """E f(x_k) − f* ≤ (1 − 2αμ)^k·(f(x_0) − f*) + L·C²·α/(4μ) for α < 1/(2μ) (KNS 2016, Thm 4).

    Hypotheses (chapter 2, «Стохастический градиентный спуск»): f is L-smooth and μ-PL, the stochastic
    gradient is unbiased and its SECOND MOMENT (not its variance) satisfies E‖g_k‖² ≤ C² at every step.
    """
    _check_kns(mu, L, c2)
    if not 0 < lr < 1 / (2 * mu):
        raise ValueError(f"the theorem needs 0 < lr < 1/(2 mu) = {1 / (2 * mu)}, got lr={lr}")
    k = torch.as_tensor(k, dtype=torch.float64)
    if (k < 0).any():
        raise ValueError("the step number k must be >= 0")
    return (1 - 2 * lr * mu) ** k * gap0 + L * c2 * lr / (4 * mu)


def kns_decreasing_steps(steps: int, mu: float) -> Tensor:
    """α_k = (2k + 1) / (2μ(k + 1)²), k = 0..steps−1: the steps of the O(1/k) part of KNS Theorem 4."""
    check_positive_int("steps", steps)
    if not mu > 0:
        raise ValueError(f"mu must be positive, got {mu}")
    k = torch.arange(steps, dtype=torch.float64)
    return (2 * k + 1) / (2 * mu * (k + 1) ** 2)


def kns_decreasing_step_bound(k: Tensor | int, mu: float, L: float, c2: float) -> Tensor:
    """E f(x_k) − f* ≤ L·C² / (2μ²k) for k ≥ 1 with the steps of :func:`kns_decreasing_steps`.

    Same hypotheses as :func:`kns_constant_step_bound` (E‖g_k‖² ≤ C² at every step, KNS 2016, Thm 4).
    """
    _check_kns(mu, L, c2)
    k = torch.as_tensor(k, dtype=torch.float64)
    if (k < 1).any():
        raise ValueError("the O(1/k) bound is stated for k >= 1")
    return L * c2 / (2 * mu ** 2 * k)


# --------------------------------------------------------------------------- Bottou–Curtis–Nocedal, Assumption 4.3


def _check_bcn(lr: float, mu: float, L: float, M: float, M_G: float) -> float:
    """Check the hypotheses and return the contraction ρ = αμ(2 − LαM_G) of one step."""
    if not (mu > 0 and L >= mu and M >= 0 and M_G >= 1):
        raise ValueError(f"need mu > 0, L >= mu, M >= 0 and M_G >= 1; got mu={mu}, L={L}, M={M}, M_G={M_G}")
    if not 0 < lr < 2 / (L * M_G):
        raise ValueError(f"the bound needs 0 < lr < 2/(L M_G) = {2 / (L * M_G)}, got lr={lr}")
    return lr * mu * (2 - L * lr * M_G)


def bcn_noise_floor(lr: float, mu: float, L: float, M: float, M_G: float) -> float:
    """The limit L·M·α / (2μ(2 − L·α·M_G)) of :func:`bcn_constant_step_bound` as k → ∞.

    For α ≤ 1/(L·M_G) it is at most L·M·α/(2μ), the floor of Bottou, Curtis & Nocedal's Theorem 4.6.
    """
    _check_bcn(lr, mu, L, M, M_G)
    return L * M * lr / (2 * mu * (2 - L * lr * M_G))


def bcn_constant_step_bound(k: Tensor | int, lr: float, mu: float, L: float, M: float, M_G: float,
                            gap0: float) -> Tensor:
    """E f(x_k) − f* ≤ F + (1 − ρ)^k·(f(x_0) − f* − F),  F = L·M·α/(2μ(2 − LαM_G)),  ρ = αμ(2 − LαM_G).

    Hypotheses (chapter 2, «Стохастический градиентный спуск»): f is L-smooth and μ-PL, the
    stochastic gradient is unbiased and E[‖g‖² | x] ≤ M + M_G‖∇f(x)‖² at EVERY x (Bottou, Curtis &
    Nocedal 2018, Assumption 4.3, with M_G ≥ 1), constant step 0 < α < 2/(L·M_G). Unlike a uniform
    bound E‖g‖² ≤ C², this assumption can hold on all of ℝᵈ together with the PL condition.
    """
    rho = _check_bcn(lr, mu, L, M, M_G)
    k = torch.as_tensor(k, dtype=torch.float64)
    if (k < 0).any():
        raise ValueError("the step number k must be >= 0")
    floor = bcn_noise_floor(lr, mu, L, M, M_G)
    return floor + (1 - rho) ** k * (gap0 - floor)


# --------------------------------------------------------------------------- least squares and training


def least_squares_loss(X: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """f(w) = (1/2N)·‖Xw − y‖²; ``w`` may carry leading run dimensions: (..., d) → (...)."""
    return 0.5 * (w @ X.T - y).pow(2).mean(-1)


def sgd_least_squares(X: Tensor, y: Tensor, w0: Tensor, lr: float, idx: Tensor, record_every: int = 1) -> Tensor:
    """Plain SGD on least squares for several independent runs at once.

    ``idx`` has shape (runs, steps, B): the mini-batch of every run at every step (e.g. stacked
    :func:`index_schedule` outputs). Returns the full loss f(w) of every run every ``record_every``
    steps, shape (runs, steps // record_every + 1).
    """
    if idx.ndim != 3:
        raise ValueError(f"idx must have shape (runs, steps, batch), got {tuple(idx.shape)}")
    check_positive_int("record_every", record_every)
    runs, steps, _ = idx.shape
    w = w0.to(X.dtype).expand(runs, -1).clone()
    out = [least_squares_loss(X, y, w)]
    for t in range(steps):
        xb, yb = X[idx[:, t]], y[idx[:, t]]  # (runs, B, d), (runs, B)
        resid = (xb @ w[:, :, None]).squeeze(-1) - yb
        w = w - lr * (resid[:, :, None] * xb).mean(1)
        if (t + 1) % record_every == 0:
            out.append(least_squares_loss(X, y, w))
    return torch.stack(out, dim=1)


def least_squares_excess(X: Tensor, y: Tensor, lr: float, batch_size: int, epochs: int, scheme: str,
                         runs: int, seed: int) -> Tensor:
    """Mean excess f(w) − f* of ``runs`` independent SGD runs on least squares, after every epoch.

    Every run starts at w = 0 and takes ``epochs · (N // batch_size)`` steps of size ``lr`` with
    batches from :func:`index_schedule` (``scheme``), all drawn from one generator seeded with
    ``seed``; f* comes from an exact least-squares solve. Returns a tensor of ``epochs + 1`` values
    (the first one at w = 0).
    """
    n = len(X)
    batch_size, epochs, runs = (check_positive_int(k, v) for k, v in
                                (("batch_size", batch_size), ("epochs", epochs), ("runs", runs)))
    per_epoch = n // batch_size
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([index_schedule(n, batch_size, epochs * per_epoch, scheme, g) for _ in range(runs)])
    w_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    f_star = least_squares_loss(X, y, w_star)
    w0 = torch.zeros(X.shape[1], dtype=X.dtype)
    return (sgd_least_squares(X, y, w0, lr, idx, record_every=per_epoch) - f_star).mean(0)


def train_epochs(model: torch.nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], X: Tensor, y: Tensor,
                 optimizer: torch.optim.Optimizer, batch_size: int, epochs: int,
                 generator: torch.Generator | None = None, progress: bool = False) -> list[float]:
    """Mini-batch training with reshuffling every epoch; returns the loss of every step.

    The batches come from ``generator`` only, so two optimizers given equal generators see the same data.
    """
    from .data import batches

    check_positive_int("epochs", epochs)
    g = _generator(generator)
    losses: list[float] = []
    epoch_iter = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        epoch_iter = tqdm(epoch_iter, desc="эпохи", leave=False)
    for _ in epoch_iter:
        for xb, yb in batches(X, y, batch_size, generator=g):
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return losses


def time_per_batch(model: torch.nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], X: Tensor, y: Tensor,
                   batch_sizes: Sequence[int], repeat: int = 20, warmup: int = 3) -> list[float]:
    """Median wall-clock seconds of one forward and backward pass on the first B rows, for each B.

    The sizes are timed in interleaved rounds (``repeat`` rounds; in each, every size gets one
    untimed pass, so that caches hold its data, and then one timed pass), so that a slow spell of
    a busy machine falls on all sizes alike instead of on one.
    The parameters' gradients are zeroed before every pass (as a training step does); the model
    is not updated, so every pass does the same work.
    """
    import time

    sizes = [check_positive_int("batch size", b) for b in batch_sizes]
    if not sizes or max(sizes) > len(X) or len(X) != len(y):
        raise ValueError(f"need 1 <= batch size <= {len(X)} rows (and as many labels), got {sizes}")
    check_positive_int("repeat", repeat)
    if warmup < 0:
        raise ValueError(f"warmup must be non-negative, got {warmup}")
    params = [p for p in model.parameters() if p.requires_grad]
    sync = torch.cuda.synchronize if X.is_cuda else (lambda: None)

    def run(b: int) -> None:
        for p in params:
            p.grad = None
        loss_fn(model(X[:b]), y[:b]).backward()

    for _ in range(warmup):
        for b in sizes:
            run(b)
    sync()
    times: list[list[float]] = [[] for _ in sizes]
    for _ in range(repeat):
        for j, b in enumerate(sizes):
            run(b)
            sync()
            start = time.perf_counter()
            run(b)
            sync()
            times[j].append(time.perf_counter() - start)
    return [sorted(t)[len(t) // 2] for t in times]
