"""Tuning and comparing many optimizers on one task (chapter 2, «Сравнение оптимизаторов»;
chapter 11).

A comparison of optimizers is only as good as the tuning of each of them. The protocol here:

* every optimizer runs under the same budget (iterations and batch size of the ``Task``) and the same
  schedule: linear warmup, then a cosine decay to zero (``nntrain.schedules.warmup_cosine``);
* a seed fixes both the initialisation and the sequence of mini-batches, so two optimizers with the
  same seed start from the same weights and see the same batches;
* the learning rate is chosen on a **validation** split from a log grid that must **bracket** the
  optimum: :func:`lr_search` extends the grid past an edge when the best point lies there, and
  :func:`check_bracket` refuses a search whose best is still at an edge;
* the chosen rate is rerun on fresh seeds with held-out metrics recorded along the way
  (:func:`report`), and every number is given with an interval over seeds (:func:`interval`).

The training itself is :func:`nntrain.compare.train_steps`, the one training loop of the book's
comparisons; :func:`run` only calls it in chunks to evaluate between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import compare, schedules
from .models import mlp

__all__ = ["OPTIMIZERS", "TWINS", "NAMES", "GROUPS", "COLORS", "DEFAULTS", "make_optimizer", "Run", "Search",
           "classification_task", "holdout_splits", "run", "lr_search", "check_bracket", "side_margins",
           "report", "interval", "paired", "paired_test", "holm", "results_table", "table_lines", "plot_search", "plot_curves", "plot_final"]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "lamb",
              "shampoo", "muon")
NAMES = {"sgd": "SGD", "momentum": "импульс", "nesterov": "Нестеров", "adagrad": "AdaGrad",
         "rmsprop": "RMSProp", "adam": "Adam", "adamw": "AdamW", "lamb": "LAMB",
         "shampoo": "Shampoo", "muon": "Muon"}
# Three families, one panel each in the figures: SGD and its momentum, diagonal preconditioners,
# and the methods that look at whole layers or matrices.
GROUPS = {"SGD и импульс": ("sgd", "momentum", "nesterov"),
          "диагональные": ("adagrad", "rmsprop", "adam", "adamw"),
          "послойные и матричные": ("lamb", "shampoo", "muon")}
COLORS = {"sgd": "#0072B2", "momentum": "#D55E00", "nesterov": "#009E73", "adagrad": "#0072B2",
          "rmsprop": "#009E73", "adam": "#CC79A7", "adamw": "#E69F00", "lamb": "#0072B2",
          "shampoo": "#D55E00", "muon": "#E69F00"}
# Fixed (untuned) settings; only the learning rate is searched. Weight decay is decoupled
# (p <- p(1 - lr·wd)) for AdamW and Muon; LAMB adds it inside its trust ratio (You et al. 2020).
DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {},
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9, "nesterov": True},
    "adagrad": {},
    "rmsprop": {"alpha": 0.99},
    "adam": {"betas": (0.9, 0.999)},
    "adamw": {"betas": (0.9, 0.999), "weight_decay": 0.1},
    "lamb": {"betas": (0.9, 0.999), "weight_decay": 0.01},
    "shampoo": {"momentum": 0.9, "vector": "diagonal", "update_freq": 10},
    "muon": {"momentum": 0.95, "weight_decay": 0.1},
}


TWINS = {"sgd": "SGD", "momentum": "SGD", "nesterov": "SGD", "adagrad": "Adagrad",
         "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}


def make_optimizer(name: str, model: nn.Module, lr: float, aux_lr: float | None = None,
                   split: Callable[[nn.Module], tuple[list, list]] | None = None,
                   library: bool = False, **options: Any) -> torch.optim.Optimizer:
    """The optimizer ``name`` of :data:`OPTIMIZERS` on ``model`` with peak rate ``lr``.

    ``options`` override :data:`DEFAULTS`. ``library=True`` gives the ``torch.optim`` class of
    the same rule instead of the book's (:data:`TWINS`; LAMB, Shampoo and Muon have none here).
    Muon takes only the hidden matrices, given by
    ``split(model)`` (default: ``split_muon_params(model, input_layer=True)``, as in chapter 8);
    the rest — first layer, head and every 1-D parameter — goes to its AdamW group with rate
    ``aux_lr`` (the rate tuned for AdamW is the natural choice).
    """
    from . import optim

    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")
    _positive("lr", lr)
    kw = {**DEFAULTS[name], **options}
    params = model.parameters()
    if library:
        if name not in TWINS:
            raise ValueError(f"{name!r} has no torch.optim class to compare with; those that do: "
                             f"{tuple(TWINS)}")
        return getattr(torch.optim, TWINS[name])(params, lr=lr, **kw)
    if name in ("sgd", "momentum", "nesterov"):
        return optim.SGD(params, lr=lr, **kw)
    if name == "adagrad":
        return optim.Adagrad(params, lr=lr, **kw)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr, **kw)
    if name == "adam":
        return optim.Adam(params, lr=lr, **kw)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, **kw)
    if name == "lamb":
        return optim.LAMB(params, lr=lr, **kw)
    if name == "shampoo":
        return optim.Shampoo(params, lr=lr, **kw)
    if aux_lr is None:
        raise ValueError("Muon needs aux_lr, the learning rate of its AdamW group (1-D parameters, "
                         "first layer and head)")
    _positive("aux_lr", aux_lr)
    split = split or (lambda m: optim.split_muon_params(m, input_layer=True))
    hidden, other = split(model)
    wd = kw.pop("weight_decay", 0.0)
    return optim.Muon(hidden, lr=lr, weight_decay=wd, adamw_params=other, adamw_lr=aux_lr,
                      adamw_betas=kw.pop("adamw_betas", (0.9, 0.999)), adamw_weight_decay=wd, **kw)


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- the task


def holdout_splits(name: str = "fashion_mnist", val_fraction: float = 0.2, seed: int = 0,
                   device: str | torch.device | None = None) -> dict[str, Any]:
    """Train / validation / test tensors of a classification set of ``nntrain.data``.

    The validation part is cut from the training split (``val_fraction`` of it, seeded); the test
    split takes no part in any choice. ``"dataset"`` says what was actually loaded: the
    Fashion-MNIST loader falls back to digits offline, and the published numbers must name it.
    """
    from . import data

    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
    x, y = data.load(name, "train", seed=seed, device=device)
    x_test, y_test = data.load(name, "test", seed=seed, device=device)
    dataset = name
    if name == "fashion_mnist" and x.shape[1] != 28 * 28:
        dataset = "digits"
    if x.shape[1] != x_test.shape[1]:   # e.g. train files cached, test files not downloadable
        raise ValueError(f"the train and test splits of {name!r} come from different data sets "
                         f"({x.shape[1]} and {x_test.shape[1]} features): the loader fell back for one "
                         "split only; clear the cache or restore the network and load again")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).to(x.device)
    n_val = int(round(val_fraction * len(x)))
    return {"dataset": dataset, "train": (x[perm[n_val:]], y[perm[n_val:]]),
            "val": (x[perm[:n_val]], y[perm[:n_val]]), "test": (x_test, y_test)}


def classification_task(splits: Mapping[str, Any], hidden: Sequence[int], batch_size: int,
                        steps: int) -> compare.Task:
    """A ``compare.Task``: an MLP (``nntrain.models.mlp``) trained by cross-entropy on mini-batches
    drawn with replacement from ``splits["train"]``, scored on ``"val"`` and ``"test"``."""
    x, y = splits["train"]
    batch = compare.random_batches(x, y, batch_size)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    sizes = [x.shape[1], *hidden, int(y.max()) + 1]
    held = {k: splits[k] for k in ("val", "test")}
    return compare.Task(
        build_model=lambda: mlp(sizes).to(x.device, x.dtype), batch=batch,
        loss=lambda model, xb, yb: nn.functional.cross_entropy(model(xb), yb),
        evaluate=lambda model: compare.classification_metrics(model, held), steps=steps)


# --------------------------------------------------------------------------- one run


@dataclass
class Run:
    """One training run: settings, the training loss per iteration and the held-out metrics at the
    evaluation points ``steps`` (iterations done), with ``seconds`` of training (evaluation excluded)."""

    name: str
    lr: float
    seed: int
    train_loss: np.ndarray
    steps: np.ndarray
    seconds: np.ndarray
    metrics: dict[str, np.ndarray]

    def final(self, metric: str) -> float:
        """The metric at the end of training; a diverged run (nan) counts as +inf for losses."""
        v = float(self.metrics[metric][-1])
        if math.isnan(v) and metric.endswith("loss"):
            return math.inf
        return v

    @property
    def diverged(self) -> bool:
        return not bool(np.isfinite(self.train_loss).all())


def run(task: compare.Task, name: str, lr: float, seed: int, warmup: float = 0.1,
        eval_every: int | None = None, **opt_kw: Any) -> Run:
    """Train ``task`` with optimizer ``name`` at peak rate ``lr`` under warmup + cosine decay.

    The seed fixes the initialisation (``torch.manual_seed(seed)`` before ``build_model``) and the
    batches (a generator seeded with ``1000 + seed``, as in ``compare.train``). Held-out metrics
    are taken every ``eval_every`` iterations (default: only at the end); a run whose training loss
    stops being finite (or whose matrix roots fail on non-finite statistics) is stopped and its
    later metrics are nan.
    """
    steps = task.steps
    every = steps if eval_every is None else eval_every
    if isinstance(every, bool) or not isinstance(every, int) or not 0 < every <= steps:
        raise ValueError(f"eval_every must be an integer in [1, {steps}], got {eval_every!r}")
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup must be a fraction in [0, 1), got {warmup!r}")
    torch.manual_seed(seed)
    model = task.build_model()
    opt = make_optimizer(name, model, lr, split=opt_kw.pop("split", None), **opt_kw)
    sched = schedules.lambda_lr(opt, schedules.make("warmup_cosine", lr,
                                                    warmup=int(round(warmup * steps)), total=steps))
    gen = torch.Generator().manual_seed(1000 + seed)
    points = list(range(every, steps, every)) + [steps]
    losses, done, clock = [], 0, 0.0
    marks, seconds, metrics = [0], [0.0], _evaluate(task, model, {})
    for stop in points:
        if done < stop and (not losses or np.isfinite(losses[-1]).all()):
            model.train()
            try:
                part, sec = compare.train_steps(opt, sched, stop - done,
                                                lambda: task.loss(model, *task.batch(gen)))
            except torch.linalg.LinAlgError:  # a matrix root of non-finite statistics (Shampoo)
                part, sec = np.full(stop - done, np.nan), 0.0
            losses.append(part)
            clock += sec
            ok = bool(np.isfinite(part).all())
        else:
            losses.append(np.full(stop - done, np.nan))
            ok = False
        done = stop
        marks.append(done)
        seconds.append(clock)
        _evaluate(task, model, metrics, nan=not ok)
    return Run(name, float(lr), int(seed), np.concatenate(losses), np.array(marks),
               np.array(seconds), {k: np.array(v) for k, v in metrics.items()})


def _evaluate(task: compare.Task, model: nn.Module, into: dict, nan: bool = False) -> dict:
    model.eval()
    with torch.no_grad():
        values = task.evaluate(model)
    for k, v in values.items():
        into.setdefault(k, []).append(float("nan") if nan else float(v))
    return into


# --------------------------------------------------------------------------- the learning-rate search


@dataclass
class Search:
    """A learning-rate search of one optimizer: the runs on the selection seeds, the mean score per
    rate, the chosen rate, the grid as given and as extended, and whether the best is at an edge."""

    name: str
    metric: str
    runs: list[Run]
    scores: dict[float, float]
    best: float
    grid: list[float]
    initial: list[float] = field(default_factory=list)
    at_edge: bool = False

    def seeds_of(self, lr: float) -> list[float]:
        """The metric of every selection seed at rate ``lr``."""
        return [r.final(self.metric) for r in self.runs if r.lr == lr]


def lr_search(task: compare.Task, name: str, grid: Iterable[float], seeds: Sequence[int],
              metric: str = "val_loss", extend: int = 3, progress: bool = True,
              **run_kw: Any) -> Search:
    """Choose the peak learning rate of ``name`` on ``metric`` (lower is better) over ``seeds``.

    ``grid`` is a geometric grid of at least two rates. While the best mean lies at an edge, the
    grid grows by one point past that edge with the same ratio, at most ``extend`` times; if the
    best is still at an edge, ``Search.at_edge`` is True and :func:`check_bracket` raises. A
    diverged run scores +inf, so a rate that diverges is never the best.
    """
    grid = sorted(_positive("every rate of the grid", float(v)) for v in grid)
    if not grid:
        raise ValueError("the learning-rate grid is empty")
    if len(grid) < 2:
        raise ValueError("a grid of one rate cannot bracket an optimum: give at least two")
    if len(set(grid)) != len(grid):
        raise ValueError(f"the grid has repeated rates: {grid}")
    ratios = np.array(grid[1:]) / np.array(grid[:-1])
    if not np.allclose(ratios, ratios[0], rtol=1e-6):
        raise ValueError(f"the grid must be geometric (a log grid), got ratios {ratios.tolist()}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seeds")
    ratio = float(ratios[0])
    runs: list[Run] = []
    initial = list(grid)
    todo = list(grid)
    extended = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=NAMES.get(name, name), total=len(todo) * len(seeds), leave=False)
    while True:
        for lr in todo:
            for s in seeds:
                runs.append(run(task, name, lr, s, **run_kw))
                if bar is not None:
                    bar.update()
        scores = {lr: float(np.mean([r.final(metric) for r in runs if r.lr == lr])) for lr in grid}
        best = min(grid, key=lambda lr: scores[lr])
        edge = best in (grid[0], grid[-1]) and math.isfinite(scores[best])
        if not edge or extended >= extend:
            break
        new = grid[0] / ratio if best == grid[0] else grid[-1] * ratio
        grid = sorted(grid + [new])
        todo = [new]
        extended += 1
        if bar is not None:
            bar.total += len(seeds)
    if bar is not None:
        bar.close()
    if not math.isfinite(scores[best]):
        edge = True   # every rate diverged: nothing was bracketed
    return Search(name, metric, runs, scores, best, grid, initial, bool(edge))


def check_bracket(search: Search) -> float:
    """The chosen rate of ``search``; ValueError when it lies at an edge of the searched grid."""
    if search.at_edge:
        raise ValueError(f"{search.name}: the best learning rate {search.best:g} is at an edge of the "
                         f"grid {search.grid[0]:g}..{search.grid[-1]:g}: the optimum may lie outside it; "
                         "widen the grid")
    return search.best


def side_margins(search: Search) -> tuple[float, float]:
    """How much worse than the chosen rate the worst point on each side of it is, relatively:
    ``(max left score / best − 1, max right score / best − 1)``; ``inf`` on a side where a rate
    diverged, ``0.0`` on a side with no point (the best at that edge).

    A bracket is only as firm as its weaker side: a margin within the seed noise brackets the
    optimum formally, not in fact (chapter 2, «Сравнение оптимизаторов»). Scores must be positive.
    """
    best = search.scores[search.best]
    if not math.isfinite(best) or best <= 0:
        raise ValueError(f"side margins need a positive finite best score, got {best!r}")
    out = []
    for side in ([lr for lr in search.grid if lr < search.best],
                 [lr for lr in search.grid if lr > search.best]):
        out.append(max((search.scores[lr] / best - 1 for lr in side), default=0.0))
    return out[0], out[1]


def report(task: compare.Task, name: str, lr: float, seeds: Sequence[int],
           eval_every: int | None = None, progress: bool = True, **run_kw: Any) -> list[Run]:
    """Rerun the chosen rate on fresh ``seeds`` with metrics every ``eval_every`` iterations."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seeds")
    it: Iterable[int] = seeds
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(seeds, desc=NAMES.get(name, name), leave=False)
    return [run(task, name, lr, s, eval_every=eval_every, **run_kw) for s in it]


# --------------------------------------------------------------------------- intervals and the table


def interval(values: Iterable[float], method: str = "t") -> tuple[float, float, float]:
    """``(mean, low, high)`` over seeds: ``"t"`` is the 95 % t-interval of the mean,
    mean ± t_{n−1; 0.975}·s/√n; ``"minmax"`` is the range of the values. Needs two values or more."""
    x = np.asarray(list(values), dtype=float)
    if method not in ("t", "minmax"):
        raise ValueError(f"unknown interval {method!r}; expected 't' or 'minmax'")
    if x.size < 2:
        raise ValueError(f"an interval over seeds needs at least two values, got {x.size}")
    if method == "minmax":
        return float(x.mean()), float(x.min()), float(x.max())
    mean, half = compare.t_interval(x)
    return mean, mean - half, mean + half


def paired(runs_a: Sequence[Run], runs_b: Sequence[Run], metric: str,
           method: str = "t") -> tuple[float, float, float]:
    """:func:`interval` of ``metric(a) − metric(b)`` over the seeds both lists share: the same seed
    means the same initialisation and batches, so the difference cancels much of the seed noise."""
    a = {r.seed: r.final(metric) for r in runs_a}
    b = {r.seed: r.final(metric) for r in runs_b}
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("the two lists of runs share no seed")
    return interval([a[s] - b[s] for s in seeds], method)


def paired_test(runs_a: Sequence[Run], runs_b: Sequence[Run], metric: str) -> float:
    """Two-sided p-value of the paired t-test of ``metric(a) − metric(b)`` over the shared seeds:
    t = mean·√n / s with n − 1 degrees of freedom (the test dual to :func:`paired`'s interval)."""
    from scipy import stats   # scikit-learn's dependency, so always present with nntrain

    a = {r.seed: r.final(metric) for r in runs_a}
    b = {r.seed: r.final(metric) for r in runs_b}
    d = np.array([a[s] - b[s] for s in sorted(set(a) & set(b))], dtype=float)
    if d.size < 2:
        raise ValueError(f"a paired test needs at least two shared seeds, got {d.size}")
    sd = d.std(ddof=1)
    if sd == 0:
        return 1.0 if d.mean() == 0 else 0.0
    t = d.mean() * math.sqrt(d.size) / sd
    return float(2 * stats.t.sf(abs(t), d.size - 1))


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values (Holm 1979): sort p₍₁₎ ≤ … ≤ p₍ₘ₎, take
    (m − i + 1)·p₍ᵢ₎, make the sequence non-decreasing and cap it at 1. Rejecting where the adjusted
    value is below 0.05 keeps the chance of *any* false «significant» among the m comparisons
    at most 5 %, whatever their dependence."""
    items = sorted(pvalues.items(), key=lambda kv: kv[1])
    for k, p in items:
        if not 0 <= p <= 1:
            raise ValueError(f"p-value of {k!r} must lie in [0, 1], got {p!r}")
    m, out, running = len(items), {}, 0.0
    for i, (k, p) in enumerate(items):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return {k: out[k] for k in pvalues}


def results_table(finals: Mapping[str, Sequence[Run]], metrics: Sequence[str],
                  method: str = "t", lrs: Mapping[str, float] | None = None) -> list[dict]:
    """One row per optimizer: ``{"name", "lr", "seeds", metric: (mean, low, high), "seconds"}``;
    ``seconds`` is the mean training time of a run (of this machine, evaluation excluded)."""
    rows = []
    for name, runs in finals.items():
        runs = list(runs)
        if not runs:
            raise ValueError(f"no runs for {name!r}")
        row = {"name": name, "lr": lrs[name] if lrs else runs[0].lr, "seeds": len(runs),
               "seconds": float(np.mean([r.seconds[-1] for r in runs]))}
        for m in metrics:
            row[m] = interval([r.final(m) for r in runs], method)
        rows.append(row)
    return rows


def table_lines(rows: Sequence[Mapping], metrics: Sequence[str], headers: Sequence[str],
                digits: int | Mapping[str, int] = 3, scale: Mapping[str, float] | None = None,
                seconds: bool = False) -> list[str]:
    """Printable lines: optimizer, rate, then ``mean [low; high]`` of each metric (× ``scale``,
    ``digits`` decimals, per metric or for all) and, with ``seconds``, the mean seconds of a run."""
    scale = dict(scale or {})
    cells = []
    for row in rows:
        line = [NAMES.get(row["name"], row["name"]), f"{row['lr']:.3g}"]
        for m in metrics:
            c = scale.get(m, 1.0)
            d = digits.get(m, 3) if isinstance(digits, Mapping) else digits
            mean, lo, hi = (c * v for v in row[m])
            line.append(f"{mean:.{d}f} [{lo:.{d}f}; {hi:.{d}f}]")
        if seconds:
            line.append(f"{row['seconds']:.2f}")
        cells.append(line)
    head = ["оптимизатор", "lr", *headers] + (["с на запуск"] if seconds else [])
    widths = [max(len(str(r[i])) for r in [head, *cells]) for i in range(len(head))]
    return ["  ".join(str(v).rjust(w) for v, w in zip(r, widths)) for r in [head, *cells]]


# --------------------------------------------------------------------------- figures


def plot_search(ax, search: Search, label: str | None = None, **style: Any) -> None:
    """Mean selection score against the rate (log axis), min–max over seeds as bars, the chosen
    rate as a filled marker and points added past the first grid as open markers."""
    lrs = [lr for lr in search.grid if math.isfinite(search.scores[lr])]
    mean = np.array([search.scores[lr] for lr in lrs])
    vals = [search.seeds_of(lr) for lr in lrs]
    lo = mean - np.array([min(v) for v in vals])
    hi = np.array([max(v) for v in vals]) - mean
    color = style.pop("color", COLORS.get(search.name))
    ax.errorbar(lrs, mean, yerr=[lo, hi], marker="", capsize=2, color=color,
                label=label or NAMES.get(search.name, search.name), **style)
    first = [i for i, lr in enumerate(lrs) if lr in search.initial]
    added = [i for i, lr in enumerate(lrs) if lr not in search.initial]
    ax.plot([lrs[i] for i in first], mean[first], "o", ms=4, color=color)
    if added:
        ax.plot([lrs[i] for i in added], mean[added], "o", ms=5, mfc="white", color=color)
    ax.plot([search.best], [search.scores[search.best]], "*", ms=12, color=color)
    ax.set_xscale("log")


def plot_curves(ax, runs: Sequence[Run], metric: str, x: str = "steps", label: str | None = None,
                **style: Any) -> None:
    """Mean ``metric`` over seeds against iterations (``x="steps"``) or seconds of training
    (``x="seconds"``, the mean over seeds), with the 95 % t-band of the mean."""
    if x not in ("steps", "seconds"):
        raise ValueError(f"x must be 'steps' or 'seconds', got {x!r}")
    vals = np.array([r.metrics[metric] for r in runs])
    xs = np.mean([getattr(r, x) for r in runs], axis=0)
    mean = vals.mean(0)
    name = runs[0].name
    color = style.pop("color", COLORS.get(name))
    ax.plot(xs, mean, color=color, label=label or NAMES.get(name, name), **style)
    if len(runs) > 1:
        half = np.array([compare.t_interval(col)[1] for col in vals.T])
        ax.fill_between(xs, mean - half, mean + half, color=color, alpha=0.2, lw=0)


def plot_final(ax, rows: Sequence[Mapping], metric: str, scale: float = 1.0,
               higher_is_better: bool = True) -> None:
    """Mean and interval of ``metric`` per optimizer, one horizontal line each, the best at the top."""
    rows = sorted(rows, key=lambda r: r[metric][0], reverse=not higher_is_better)
    for i, row in enumerate(rows):
        mean, lo, hi = (scale * v for v in row[metric])
        ax.errorbar([mean], [i], xerr=[[mean - lo], [hi - mean]], fmt="o", capsize=3,
                    color=COLORS.get(row["name"], "k"))
    ax.set_yticks(range(len(rows)), [NAMES.get(r["name"], r["name"]) for r in rows])
