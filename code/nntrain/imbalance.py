"""Heavy-tailed class imbalance and why Adam beats gradient descent on it (chapter 11,
«Adam и SGD: несбалансированные классы с тяжёлым хвостом»).

Kunstner et al. (2024, arXiv 2402.19449) reproduce the Adam–GD gap of language models on a linear
softmax classifier whose only special property is that class frequencies follow Zipf's law,
π_k ∝ 1/k. This module builds such problems and measures them:

* :func:`zipf_frequencies`, :func:`zipf_counts` — the class frequencies and integer counts;
* :func:`frequency_groups` — classes grouped by frequency (octaves of the rank: 1, 2–3, 4–7, …),
  so that under π_k ∝ 1/k every group holds about the same share of the samples;
* :func:`linear_problem` — their toy: inputs independent of the labels, Zipf counts, a linear
  model started at zero; :func:`bigram_problem` — a language-model-like task: next-token
  prediction over a Zipf vocabulary with an embedding–unembedding (bigram) model, whose full-batch
  loss is computed from the bigram count table, so it is cheap;
* :class:`SignDescent` — the update ``p ← p − lr·sign(g)``, Adam's limit without momentum and
  without noise (defined in :mod:`nntrain.optim.sign`, re-exported here under its old name);
* :func:`train` — one run of ``"gd"``, ``"sgd"``, ``"adam"`` or ``"sign"`` at a constant rate with
  the per-group training loss recorded; :func:`tune` — the rate of one method chosen on a log grid
  that is extended past an edge while the best lies there (as ``nntrain.tuning.lr_search`` does;
  that one schedules the rate by warmup–cosine and scores on a validation split, which is not
  the paper's protocol: the paper measures optimisation, the training loss at a constant rate);
* :func:`class_gradient_norms`, :func:`hessian_blocks` — the quantities behind the mechanism.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ._checks import check_choice, check_positive_int
from .optim.sign import SignDescent

__all__ = ["METHODS", "NAMES", "zipf_frequencies", "zipf_counts", "frequency_groups", "Problem",
           "linear_problem", "bigram_problem", "SignDescent", "make_optimizer", "Trace", "train",
           "Tuned", "tune", "check_bracket", "group_shares", "class_gradient_norms",
           "hessian_blocks", "per_class_loss"]

METHODS = ("gd", "sgd", "adam", "sign")
NAMES = {"gd": "GD", "sgd": "SGD", "adam": "Adam", "sign": "знаковый спуск"}


# --------------------------------------------------------------------------- frequencies and groups


def _check_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 2:
        raise ValueError(f"need at least 2 classes (an integer), got {num_classes!r}")
    return int(num_classes)


def _check_exponent(exponent: Any) -> float:
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) \
            or not math.isfinite(exponent) or exponent <= 0:
        raise ValueError(f"the Zipf exponent must be a positive finite number, got {exponent!r}")
    return float(exponent)


def zipf_frequencies(num_classes: int, exponent: float = 1.0) -> np.ndarray:
    """π_k = k^(−s) / Σ_j j^(−s) for k = 1..``num_classes``: Zipf's law with exponent ``s``.

    ``s = 1`` is the heavy tail of word frequencies; a non-positive exponent is refused (it is not a
    decaying law), as is a single class (nothing to be imbalanced).
    """
    c = _check_classes(num_classes)
    s = _check_exponent(exponent)
    w = np.arange(1, c + 1, dtype=float) ** (-s)
    return w / w.sum()


def zipf_counts(num_classes: int, n: int, exponent: float = 1.0) -> np.ndarray:
    """Integer sample counts ≈ n·π_k, at least one per class, summing to exactly ``n``.

    The largest remainders get the leftover samples; ``n`` must be at least ``num_classes``.
    """
    c = _check_classes(num_classes)
    n = check_positive_int("n", n)
    if n < c:
        raise ValueError(f"n = {n} samples cannot give each of {c} classes one sample")
    pi = zipf_frequencies(c, exponent)
    extra = n - c                      # one sample each, the rest by frequency
    raw = pi * extra
    counts = np.floor(raw).astype(int)
    left = extra - counts.sum()
    counts[np.argsort(-(raw - counts), kind="stable")[:left]] += 1
    return counts + 1


def frequency_groups(num_classes: int) -> list[np.ndarray]:
    """Class indices (0-based, most frequent first) grouped by octave of the rank k = index + 1:
    {1}, {2, 3}, {4..7}, … — under π_k ∝ 1/k each full group carries about ln 2 / H_c of the
    samples, so a group of rare classes weighs as much in the mean loss as the most frequent class."""
    c = _check_classes(num_classes)
    groups, lo = [], 1
    while lo <= c:
        hi = min(2 * lo, c + 1)
        groups.append(np.arange(lo - 1, hi - 1))
        lo = hi
    return groups


def group_shares(counts: Sequence[int], groups: Sequence[np.ndarray]) -> np.ndarray:
    """The fraction of the samples that falls into each group."""
    counts = np.asarray(counts, dtype=float)
    return np.array([counts[g].sum() for g in groups]) / counts.sum()


# --------------------------------------------------------------------------- problems


@dataclass
class Problem:
    """A classification problem for :func:`train`.

    ``build_model(seed)`` makes a fresh model; ``class_loss(model)`` is the vector over classes of
    the summed cross-entropy of each class's samples divided by the number of samples n (its sum is
    the full-batch mean loss); ``batch_loss(model, gen, b)`` is the mean loss on ``b`` samples drawn
    with replacement; ``counts`` are the samples per class and ``groups`` the frequency groups.
    """

    name: str
    build_model: Callable[[int], nn.Module]
    class_loss: Callable[[nn.Module], Tensor]
    batch_loss: Callable[[nn.Module, torch.Generator, int], Tensor]
    counts: np.ndarray
    groups: list[np.ndarray]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.counts)

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def group_losses(self, class_loss: Tensor | np.ndarray) -> np.ndarray:
        """Mean loss over the samples of each group, from a :attr:`class_loss` vector."""
        s = np.asarray(torch.as_tensor(class_loss).detach().cpu(), dtype=float) * self.n
        return np.array([s[g].sum() / self.counts[g].sum() for g in self.groups])


def per_class_loss(logits: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """Σ over the samples of class k of their cross-entropy, divided by n, for every k."""
    ce = nn.functional.cross_entropy(logits, y, reduction="none")
    out = torch.zeros(num_classes, dtype=ce.dtype, device=ce.device)
    return out.index_add(0, y, ce) / len(y)


def linear_problem(num_classes: int = 63, n: int = 512, dim: int = 512, exponent: float = 1.0,
                   centre: bool = False, seed: int = 0, dtype: torch.dtype = torch.float32,
                   device: str | torch.device | None = None) -> Problem:
    """A variant of Kunstner et al.'s (2024) toy: class k has ≈ n·π_k samples (:func:`zipf_counts`),
    the inputs are x ~ U[0, 1)^dim independent of the label, as in their code, and the model is
    linear, ``x ↦ Wx`` without bias, started at W = 0 (initial loss ln c on every sample).

    Their code uses d > n (n = m·2^m, d = (m+1)·2^m, c = 2^m − 1, classes in blocks of 2^j classes
    with 2^(m−j) samples each); here the counts follow 1/k exactly and ``dim`` is free. With
    ``dim ≥ n`` the samples can be fitted exactly and the loss can reach zero; chapter 11 takes
    ``dim < n`` so that a huge, spiking GD step cannot win the learning-rate search.
    The mean of U[0, 1) gives the inputs a common direction of large curvature, which caps GD's
    stable rate; ``centre=True`` subtracts the empirical mean of the features, and then the
    gradient at W = 0 with respect to the row w_k is exactly −π̂_k·x̄_k (x̄_k the class mean).
    """
    c = _check_classes(num_classes)
    dim = check_positive_int("dim", dim)
    counts = zipf_counts(c, n, exponent)
    gen = torch.Generator().manual_seed(seed)
    y = torch.repeat_interleave(torch.arange(c), torch.as_tensor(counts))
    x = torch.rand(len(y), dim, generator=gen, dtype=torch.float64)
    if centre:
        x = x - x.mean(0)
    x, y = x.to(dtype).to(device), y.to(device)

    def build(model_seed: int) -> nn.Module:
        model = nn.Linear(dim, c, bias=False)
        nn.init.zeros_(model.weight)
        return model.to(x.device, x.dtype)

    def class_loss(model: nn.Module) -> Tensor:
        return per_class_loss(model(x), y, c)

    def batch_loss(model: nn.Module, g: torch.Generator, b: int) -> Tensor:
        idx = torch.randint(len(y), (b,), generator=g).to(x.device)
        return nn.functional.cross_entropy(model(x[idx]), y[idx])

    return Problem("linear", build, class_loss, batch_loss, counts, frequency_groups(c),
                   {"x": x, "y": y})


class _Bigram(nn.Module):
    """Next-token logits E[x]·Uᵀ: the one-layer (bigram) language model, no bias."""

    def __init__(self, vocab: int, width: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.unembed = nn.Linear(width, vocab, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.unembed(self.embed(tokens))


def bigram_problem(vocab: int = 255, n_tokens: int = 200_000, width: int = 32, rank: int = 8,
                   strength: float = 8.0, exponent: float = 1.0, seed: int = 0,
                   dtype: torch.dtype = torch.float32,
                   device: str | torch.device | None = None) -> Problem:
    """Next-token prediction over a synthetic vocabulary whose token frequencies follow Zipf's law.

    Contexts x are drawn from π (Zipf) and the next token from P(y | x) ∝ π_y·exp(strength·a_x·b_y)
    with random a, b ∈ R^rank of unit norm: the targets stay heavy-tailed and the context matters.
    The model is an embedding of width ``width`` followed by an unembedding (``_Bigram``); the
    full-batch loss is computed once per context from the V×V table of pair counts, so a step costs
    V² · width operations whatever ``n_tokens`` is. Classes (and groups) are the target tokens,
    ranked by their frequency in the sample. ``data["floor_class_loss"]`` is :attr:`Problem.class_loss`
    of the empirical conditional n_xy / n_x, the best any bigram model can do on this sample: no
    model's full-batch training loss goes below its sum (one group's part can, by a little, when a
    model over-predicts that group at the others' expense).
    """
    v = _check_classes(vocab)
    n_tokens = check_positive_int("n_tokens", n_tokens)
    width = check_positive_int("width", width)
    rank = check_positive_int("rank", rank)
    gen = torch.Generator().manual_seed(seed)
    pi = torch.as_tensor(zipf_frequencies(v, exponent))
    a = nn.functional.normalize(torch.randn(v, rank, generator=gen, dtype=torch.float64), dim=1)
    b = nn.functional.normalize(torch.randn(v, rank, generator=gen, dtype=torch.float64), dim=1)
    cond = torch.log(pi)[None, :] + strength * a @ b.T
    cond = torch.softmax(cond, dim=1)
    ctx = torch.multinomial(pi, n_tokens, replacement=True, generator=gen)
    nxt = torch.multinomial(cond[ctx], 1, generator=gen).squeeze(1)
    # rank the target tokens by sample frequency so that class 0 is the most frequent
    freq = torch.bincount(nxt, minlength=v)
    order = torch.argsort(-freq, stable=True)
    relabel = torch.empty_like(order)
    relabel[order] = torch.arange(v)
    nxt = relabel[nxt]
    table = torch.zeros(v, v, dtype=torch.float64)
    table.index_put_((ctx, nxt), torch.ones(n_tokens, dtype=torch.float64), accumulate=True)
    counts = table.sum(0).long().numpy()
    if (counts == 0).any():
        raise ValueError(f"{int((counts == 0).sum())} tokens never occur as targets: raise n_tokens "
                         "or lower the vocabulary")
    # the floor: the training loss of the best unconstrained bigram table, P(y | x) = n_xy / n_x
    emp = table / table.sum(1, keepdim=True).clamp_min(1.0)
    floor = -(table * torch.log(torch.where(table > 0, emp, torch.ones_like(emp)))).sum(0) / n_tokens
    table = (table / n_tokens).to(dtype).to(device)
    ctx, nxt = ctx.to(device), nxt.to(device)
    contexts = torch.arange(v, device=table.device)

    def build(model_seed: int) -> nn.Module:
        torch.manual_seed(model_seed)
        model = _Bigram(v, width)
        nn.init.normal_(model.embed.weight, std=1.0)
        nn.init.zeros_(model.unembed.weight)   # uniform prediction at the start, as the toy
        return model.to(table.device, table.dtype)

    def class_loss(model: nn.Module) -> Tensor:
        logp = torch.log_softmax(model(contexts), dim=1)
        return -(table * logp).sum(0)

    def batch_loss(model: nn.Module, g: torch.Generator, bsz: int) -> Tensor:
        idx = torch.randint(n_tokens, (bsz,), generator=g).to(ctx.device)
        return nn.functional.cross_entropy(model(ctx[idx]), nxt[idx])

    return Problem("bigram", build, class_loss, batch_loss, counts, frequency_groups(v),
                   {"table": table, "contexts": ctx, "targets": nxt,
                    "floor_class_loss": floor.to(dtype)})


# --------------------------------------------------------------------------- optimizers and runs


def make_optimizer(method: str, params: Iterable[Tensor], lr: float) -> torch.optim.Optimizer:
    """GD and SGD are ``nntrain.optim.SGD`` without momentum (they differ in the batch), Adam is
    ``nntrain.optim.Adam`` with β = (0.9, 0.999), sign descent is ``nntrain.optim.SignDescent``."""
    from . import optim

    check_choice("method", method, METHODS)
    if method in ("gd", "sgd"):
        return optim.SGD(params, lr=lr)
    if method == "adam":
        return optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    return SignDescent(params, lr=lr)


@dataclass
class Trace:
    """One run: full-batch training loss and per-group losses at the iterations ``steps``."""

    method: str
    lr: float
    steps: np.ndarray
    loss: np.ndarray
    groups: np.ndarray          # len(steps) × number of groups
    diverged: bool

    @property
    def final(self) -> float:
        """The last full-batch loss; +inf for a run that diverged."""
        return math.inf if self.diverged else float(self.loss[-1])


def train(problem: Problem, method: str, lr: float, steps: int, batch_size: int | None = None,
          seed: int = 0, every: int | None = None) -> Trace:
    """Run ``method`` at the constant rate ``lr`` for ``steps`` iterations.

    GD, Adam and sign descent use the full-batch gradient (the deterministic setting of Kunstner
    et al. 2023, 2024); SGD uses mini-batches of ``batch_size`` drawn with a generator seeded by
    ``seed``. The full-batch loss of every group is recorded every ``every`` iterations (default:
    about 50 points). A run whose loss stops being finite is stopped and marked diverged.
    """
    check_choice("method", method, METHODS)
    steps = check_positive_int("steps", steps)
    if method == "sgd":
        if batch_size is None:
            raise ValueError("SGD needs batch_size")
        batch_size = check_positive_int("batch_size", batch_size)
    every = every or max(1, steps // 50)
    every = check_positive_int("every", every)
    model = problem.build_model(seed)
    opt = make_optimizer(method, model.parameters(), lr)
    gen = torch.Generator().manual_seed(1000 + seed)
    marks, losses, groups = [], [], []

    def record(k: int, cl: Tensor) -> bool:
        marks.append(k)
        losses.append(float(cl.sum()))
        groups.append(problem.group_losses(cl))
        return math.isfinite(losses[-1])

    ok = True
    for k in range(steps + 1):
        opt.zero_grad(set_to_none=True)
        if method == "sgd":
            if k % every == 0 or k == steps:
                with torch.no_grad():
                    ok = record(k, problem.class_loss(model))
            if k == steps or not ok:
                break
            loss = problem.batch_loss(model, gen, batch_size)
        else:
            cl = problem.class_loss(model)
            loss = cl.sum()
            if k % every == 0 or k == steps:
                ok = record(k, cl.detach())
            if k == steps or not ok:
                break
        if not torch.isfinite(loss):
            ok = False
            break
        loss.backward()
        opt.step()
    return Trace(method, float(lr), np.array(marks), np.array(losses), np.array(groups),
                 not ok)


@dataclass
class Tuned:
    """A learning-rate search: the final loss per rate, the chosen rate, the grid as given and as
    extended, whether the best is still at an edge, and the run at the best rate."""

    method: str
    scores: dict[float, float]
    best: float
    grid: list[float]
    initial: list[float]
    at_edge: bool
    trace: Trace


def tune(problem: Problem, method: str, grid: Sequence[float], steps: int, extend: int = 3,
         **train_kw: Any) -> Tuned:
    """Choose the rate of ``method`` minimising the final full-batch training loss.

    ``grid`` is a geometric grid of at least two rates; while the best lies at an edge the grid
    grows past that edge with the same ratio, at most ``extend`` times. A diverged run scores
    +inf. :func:`check_bracket` refuses a search whose best is still at an edge.
    """
    grid = sorted(float(v) for v in grid)
    if len(grid) < 2 or any(not (math.isfinite(v) and v > 0) for v in grid):
        raise ValueError(f"need a grid of at least two positive rates, got {grid}")
    ratios = np.array(grid[1:]) / np.array(grid[:-1])
    if not np.allclose(ratios, ratios[0], rtol=1e-6) or ratios[0] <= 1:
        raise ValueError(f"the grid must be geometric without repeats, got ratios {ratios.tolist()}")
    ratio = float(ratios[0])
    initial = list(grid)
    traces = {lr: train(problem, method, lr, steps, **train_kw) for lr in grid}
    for _ in range(extend + 1):
        best = min(grid, key=lambda lr: traces[lr].final)
        edge = best in (grid[0], grid[-1])
        if not edge or _ == extend:
            break
        new = grid[0] / ratio if best == grid[0] else grid[-1] * ratio
        traces[new] = train(problem, method, new, steps, **train_kw)
        grid = sorted(grid + [new])
    scores = {lr: traces[lr].final for lr in grid}
    if not math.isfinite(scores[best]):
        edge = True
    return Tuned(method, scores, best, grid, initial, bool(edge), traces[best])


def check_bracket(tuned: Tuned) -> float:
    """The chosen rate; ValueError when it lies at an edge of the searched grid."""
    if tuned.at_edge:
        raise ValueError(f"{tuned.method}: the best rate {tuned.best:g} is at an edge of the grid "
                         f"{tuned.grid[0]:g}..{tuned.grid[-1]:g}: widen the grid")
    return tuned.best


# --------------------------------------------------------------------------- the mechanism


def class_gradient_norms(problem: Problem, model: nn.Module) -> np.ndarray:
    """‖∂L/∂w_k‖ for every class k, w_k the row of the last layer that produces logit k."""
    last = model.unembed if hasattr(model, "unembed") else model
    model.zero_grad(set_to_none=True)
    problem.class_loss(model).sum().backward()
    g = last.weight.grad.detach()
    model.zero_grad(set_to_none=True)
    return g.norm(dim=1).cpu().double().numpy()


def hessian_blocks(model: nn.Linear, x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Traces of the Hessian blocks of the mean cross-entropy of a linear model ``x ↦ Wx``.

    With p_i = softmax(W x_i), the block of rows (k, l) is (1/n) Σ_i (p_ik δ_kl − p_ik p_il) x_i x_iᵀ
    (it does not depend on the labels). Returns the c×c matrix of |tr| of all blocks and the c
    diagonal traces (1/n) Σ_i p_ik (1 − p_ik) ‖x_i‖².
    """
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1).double()
        sq = (x.double() ** 2).sum(1)
        n = len(x)
        off = (p * sq[:, None]).T @ p / n                    # Σ_i p_ik p_il ‖x_i‖² / n
        diag = (p * sq[:, None]).sum(0) / n - torch.diagonal(off)
        full = off.clone()
        full.fill_diagonal_(0.0)
        full = full + torch.diag(diag)
    return full.abs().cpu().numpy(), diag.cpu().numpy()
