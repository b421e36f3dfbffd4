"""Comparing two optimizers so that a sceptical reader accepts the result (chapter 8: Muon vs AdamW).

The protocol that the functions below implement:

* every run uses the same **schedule** (linear warmup, then cosine decay to zero: :func:`warmup_cosine`),
  the same initialisation and the same sequence of mini-batches for a given seed;
* hyper-parameters are chosen on a **validation** split and the result is reported on a **test**
  split that took no part in the choice (:func:`best_setting`);
* a learning-rate grid must **bracket** the optimum: the best value is not at an edge of the grid
  (:func:`at_edge`);
* every number is a mean over seeds with a **t-interval** (:func:`t_interval`); two methods run on
  the same seeds are compared by the paired interval of their difference (:func:`paired_gap`).

:func:`train` is one run; :func:`sweep` runs a grid. ``Task`` bundles a model builder, a batch
sampler, a loss and an evaluation on held-out data. :func:`char_splits` and :func:`lm_loss` make the
held-out splits of a character corpus; :func:`classification_metrics` evaluates a classifier.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .optim import AdamW, Muon, split_muon_params
from .plot import moving_average

__all__ = ["KINDS", "SCHEDULES", "Task", "Run", "Comparison", "random_batches", "warmup_cosine", "make_optimizer", "train_steps", "train", "sweep",
           "tune_and_report", "sensitivity", "t_quantile", "t_interval", "t_intervals_overlap", "summarize", "best_setting",
           "at_edge", "geometric_grid", "paired_gap",
           "char_splits", "lm_loss", "classification_metrics", "value", "table_lines", "plot_lr_curve",
           "plot_training_curve", "plot_study"]

KINDS = ("adamw", "muon")
SCHEDULES = ("cosine", "constant")

# Two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (a 95 % interval).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


@dataclass
class Task:
    """What a comparison trains and how it scores a trained model.

    ``build_model()`` makes a fresh model (called after ``torch.manual_seed(seed)``); ``batch(gen)``
    draws a training mini-batch ``(x, y)`` with the generator ``gen``; ``loss(model, x, y)`` is the
    training loss; ``evaluate(model)`` returns held-out metrics, e.g. ``{"val_loss": …, "test_loss": …}``;
    ``split(model)`` gives ``(muon_params, adamw_params)`` for Muon.
    """

    build_model: Callable[[], nn.Module]
    batch: Callable[[torch.Generator], tuple]
    loss: Callable[..., torch.Tensor]
    evaluate: Callable[[nn.Module], dict]
    steps: int
    split: Callable[[nn.Module], tuple[list, list]] = field(default=split_muon_params)


@dataclass
class Run:
    """One training run: its settings, the training loss per iteration, wall-clock seconds, held-out metrics."""

    kind: str
    lr: float
    weight_decay: float
    seed: int
    train_loss: np.ndarray
    seconds: float
    metrics: dict


def random_batches(x: torch.Tensor, y: torch.Tensor,
                   batch_size: int) -> Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """A ``Task.batch``: ``batch_size`` rows of ``(x, y)`` drawn with replacement by the given
    (CPU) generator, so that a seed fixes the sequence of mini-batches of a run."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

    def batch(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(x), (batch_size,), generator=gen).to(x.device)
        return x[idx], y[idx]

    return batch


def warmup_cosine(k: int, total: int, warmup: float = 0.1) -> float:
    """Learning-rate multiplier at iteration ``k`` (0-based) of ``total``: linear warmup, then cosine to 0.

    The first ``round(warmup*total)`` iterations go up linearly to 1; the rest follow
    ``(1 + cos(pi t)) / 2`` with ``t`` running from 0 to 1 over the remaining iterations.
    """
    if total < 1 or not 0 <= warmup < 1:
        raise ValueError(f"need total >= 1 and 0 <= warmup < 1, got {total!r}, {warmup!r}")
    if not 0 <= k < total:
        raise ValueError(f"iteration {k!r} is outside [0, {total})")
    w = round(warmup * total)
    if k < w:
        return (k + 1) / w
    rest = total - w
    return 0.5 * (1 + math.cos(math.pi * (k - w) / rest))


def make_optimizer(kind: str, model: nn.Module, lr: float, weight_decay: float = 0.0,
                   betas: tuple[float, float] = (0.9, 0.95), aux_lr: float | None = None,
                   split: Callable = split_muon_params, **muon_kw) -> torch.optim.Optimizer:
    """AdamW on every parameter (``kind="adamw"``), or Muon on ``split(model)[0]`` plus AdamW on the rest.

    For Muon, ``aux_lr`` is the AdamW learning rate of the auxiliary group (the tuned AdamW rate is the
    natural choice); both groups get the same ``weight_decay`` (decoupled: ``p <- p (1 - lr wd)``).
    ``muon_kw`` go to :class:`~nntrain.optim.Muon` (``method``, ``momentum``, ``shape_scaling`` …).
    """
    if kind == "adamw":
        if muon_kw:
            raise TypeError(f"AdamW takes no Muon options, got {sorted(muon_kw)}")
        return AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    if kind == "muon":
        if aux_lr is None:
            raise ValueError("Muon needs aux_lr, the learning rate of its AdamW group")
        hidden, other = split(model)
        return Muon(hidden, lr=lr, weight_decay=weight_decay, adamw_params=other, adamw_lr=aux_lr,
                    adamw_betas=betas, adamw_weight_decay=weight_decay, **muon_kw)
    raise ValueError(f"unknown optimizer {kind!r}; expected one of {KINDS}")


def train_steps(opt: torch.optim.Optimizer, sched, steps: int,
                loss_fn: Callable[[], torch.Tensor]) -> tuple[np.ndarray, float]:
    """``steps`` optimizer steps on the loss of ``loss_fn()`` (a fresh mini-batch each call), with the
    scheduler stepped after each; returns the training losses and the wall-clock seconds.

    The one training loop of the optimizer comparisons (chapters 4 and 8)."""
    losses = np.empty(steps)
    start = time.perf_counter()
    for k in range(steps):
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses[k] = loss.item()
    return losses, time.perf_counter() - start


def train(task: Task, kind: str, lr: float, seed: int, weight_decay: float = 0.0, schedule: str = "cosine",
          warmup: float = 0.1, **opt_kw) -> Run:
    """Train ``task.build_model()`` for ``task.steps`` iterations and evaluate it on held-out data.

    The seed fixes both the initialisation (``torch.manual_seed(seed)``) and the mini-batches
    (a generator seeded with ``1000 + seed``), so two optimizers with the same seed see the same
    batches. ``schedule="cosine"`` is :func:`warmup_cosine`; ``"constant"`` keeps ``lr`` fixed.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    torch.manual_seed(seed)
    model = task.build_model()
    opt = make_optimizer(kind, model, lr, weight_decay, split=task.split, **opt_kw)
    if schedule == "cosine":
        factor = lambda k: warmup_cosine(min(k, task.steps - 1), task.steps, warmup)  # noqa: E731
    else:
        factor = lambda k: 1.0  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    gen = torch.Generator().manual_seed(1000 + seed)
    model.train()
    losses, seconds = train_steps(opt, sched, task.steps, lambda: task.loss(model, *task.batch(gen)))
    model.eval()
    with torch.no_grad():
        metrics = {k: float(v) for k, v in task.evaluate(model).items()}
    return Run(kind, float(lr), float(weight_decay), int(seed), losses, seconds, metrics)


def sweep(task: Task, kind: str, lrs: Iterable[float], seeds: Iterable[int],
          weight_decays: Iterable[float] = (0.0,), progress: bool = True, **train_kw) -> list[Run]:
    """:func:`train` on every (lr, weight decay, seed) of the grid, with a progress bar."""
    jobs = [(lr, wd, s) for lr in lrs for wd in weight_decays for s in seeds]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc=kind, leave=False)
    return [train(task, kind, lr, s, wd, **train_kw) for lr, wd, s in jobs]


@dataclass
class Comparison:
    """The two stages of :func:`tune_and_report` and what they chose.

    ``select``: the learning-rate grids (weight decay 0) on the selection seeds; ``report``: the weight-decay
    grid at the chosen learning rate on fresh seeds; ``lr``, ``weight_decay``: ``{kind: chosen value}``;
    ``aux_lr``: the learning rate of Muon's AdamW group (AdamW's chosen rate).
    """

    select: list
    report: list
    lr: dict
    weight_decay: dict
    aux_lr: float
    lr_grids: dict

    def final(self, kind: str) -> list:
        """The report runs of ``kind`` at its chosen (lr, weight decay): the numbers to publish."""
        return [r for r in self.report if r.kind == kind and r.lr == self.lr[kind]
                and r.weight_decay == self.weight_decay[kind]]


def tune_and_report(task: Task, lr_grids: dict, select_seeds: Sequence[int], report_seeds: Sequence[int],
                    weight_decays: Sequence[float] = (0.0, 0.1), metric: str = "val_loss",
                    progress: bool = True, **train_kw) -> Comparison:
    """Tune AdamW, then Muon, on validation data; rerun the chosen settings on fresh seeds.

    Stage 1: every learning rate of ``lr_grids[kind]`` with weight decay 0 on ``select_seeds``; the rate
    with the best mean ``metric`` is chosen. AdamW goes first: its chosen rate becomes the rate of Muon's
    AdamW group (``aux_lr``). Stage 2: the chosen rate with every ``weight_decays`` on ``report_seeds``;
    the weight decay is chosen by the same ``metric``. Held-out *test* metrics play no part in a choice.
    """
    if set(lr_grids) - set(KINDS):
        raise ValueError(f"unknown optimizers {sorted(set(lr_grids) - set(KINDS))}; expected {KINDS}")
    select, report, lr, wd = [], [], {}, {}
    aux_lr = None
    for kind in [k for k in KINDS if k in lr_grids]:
        extra = dict(train_kw)
        if kind == "muon":
            if aux_lr is None and "aux_lr" not in extra:
                raise ValueError("tune AdamW first (put 'adamw' in lr_grids) or pass aux_lr")
            extra.setdefault("aux_lr", aux_lr)
            aux_lr = extra["aux_lr"]
        runs = sweep(task, kind, lr_grids[kind], select_seeds, (0.0,), progress, **extra)
        select += runs
        lr[kind], _ = best_setting(runs, kind, metric)
        if kind == "adamw":
            aux_lr = lr[kind]
        runs = sweep(task, kind, [lr[kind]], report_seeds, weight_decays, progress, **extra)
        report += runs
        _, wd[kind] = best_setting(runs, kind, metric)
    return Comparison(select, report, lr, wd, aux_lr, {k: list(v) for k, v in lr_grids.items()})


def t_quantile(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (1.96 beyond the table)."""
    if df < 1:
        raise ValueError(f"need at least one degree of freedom, got {df!r}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def t_interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval of the mean: ``t_{n-1} · s / sqrt(n)``.

    With one value the half-width is ``nan`` (no interval can be given).
    """
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        raise ValueError("no values")
    if x.size == 1:
        return float(x[0]), float("nan")
    return float(x.mean()), float(t_quantile(x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))


def t_intervals_overlap(first: Sequence[float], second: Sequence[float]) -> bool:
    """Whether the 95 % t-intervals (:func:`t_interval`) of the means of two samples overlap.

    The intervals are closed: ``|m1 − m2| <= h1 + h2``. Disjoint intervals are the book's (rough)
    sign that two settings differ; overlapping ones leave the difference unsettled. Each sample
    needs two values or more (one value has no interval).
    """
    parts = []
    for name, values in (("first", first), ("second", second)):
        x = np.asarray(list(values), dtype=float)
        if x.size < 2:
            raise ValueError(f"the {name} sample needs at least two values for an interval, got {x.size}")
        if not np.isfinite(x).all():
            raise ValueError(f"the {name} sample has a non-finite value: {x.tolist()}")
        parts.append(t_interval(x))
    (m1, h1), (m2, h2) = parts
    return bool(abs(m1 - m2) <= h1 + h2)


def summarize(runs: Sequence[Run], metric: str) -> dict:
    """``{(kind, lr, weight_decay): (mean, half-width, n)}`` of ``metric`` over the seeds of each setting.

    ``metric`` is a key of ``Run.metrics`` or ``"tail"``: the mean training loss of the last 10 % of iterations.
    """
    groups: dict = {}
    for r in runs:
        groups.setdefault((r.kind, r.lr, r.weight_decay), []).append(_value(r, metric))
    return {k: (*t_interval(v), len(v)) for k, v in sorted(groups.items())}


def value(run: Run, metric: str) -> float:
    """``run.metrics[metric]``, or for ``"tail"`` the mean training loss of the last 10 % of iterations."""
    return _value(run, metric)


def _value(run: Run, metric: str) -> float:
    if metric == "tail":
        n = max(1, len(run.train_loss) // 10)
        return float(np.mean(run.train_loss[-n:]))
    if metric not in run.metrics:
        raise KeyError(f"run has no metric {metric!r}; it has {sorted(run.metrics)} and 'tail'")
    return run.metrics[metric]


def best_setting(runs: Sequence[Run], kind: str, metric: str = "val_loss") -> tuple[float, float]:
    """The ``(lr, weight_decay)`` of ``kind`` with the smallest mean ``metric`` (choose on validation data)."""
    table = {k: v for k, v in summarize(runs, metric).items() if k[0] == kind}
    if not table:
        raise ValueError(f"no runs of {kind!r}")
    _, lr, wd = min(table, key=lambda k: table[k][0])
    return lr, wd


def sensitivity(runs: Sequence[Run], kind: str, metric: str = "val_loss") -> float:
    """How much worse the grid neighbours of the best learning rate are: max(neighbour) / best (means).

    1 means a flat optimum; a large value, a sharp one. ``nan`` when the best rate is at an edge of
    the grid (then one neighbour is missing and the optimum may lie outside the grid).
    """
    table = {k[1]: v[0] for k, v in summarize(runs, metric).items() if k[0] == kind and k[2] == 0.0}
    lrs = sorted(table)
    best = min(lrs, key=table.get)
    i = lrs.index(best)
    if i in (0, len(lrs) - 1):
        return float("nan")
    return max(table[lrs[i - 1]], table[lrs[i + 1]]) / table[best]


def geometric_grid(start: float, n: int, ratio: float = 2) -> list[float]:
    """``[start, start·ratio, …, start·ratio^(n−1)]``: a learning-rate grid with a fixed ratio (×2 by default)."""
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start) or start <= 0:
        raise ValueError(f"start must be a positive finite number, got {start!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 1:
        raise ValueError(f"ratio must be a finite number > 1, got {ratio!r}")
    return [start * ratio**i for i in range(n)]


def at_edge(grid: Sequence[float], value: float) -> bool:
    """True when ``value`` is the smallest or largest point of ``grid``: the optimum may lie outside it."""
    g = sorted(grid)
    return bool(np.isclose(value, g[0]) or np.isclose(value, g[-1]))


def paired_gap(runs_a: Sequence[Run], runs_b: Sequence[Run], metric: str) -> tuple[float, float, int]:
    """Mean and 95 % t half-width of ``metric(a) - metric(b)`` over the seeds both lists share."""
    a = {r.seed: _value(r, metric) for r in runs_a}
    b = {r.seed: _value(r, metric) for r in runs_b}
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("the two lists of runs share no seed")
    return (*t_interval([a[s] - b[s] for s in seeds]), len(seeds))


def char_splits(ids: torch.Tensor, chunk: int = 512, fractions: tuple[float, float] = (0.1, 0.1),
                seed: int = 0) -> dict[str, torch.Tensor]:
    """Cut a token stream into chunks and deal them at random into ``train``, ``val`` and ``test``.

    ``fractions`` are the shares of validation and test chunks (at least one chunk each). Each split is
    the concatenation of its chunks in their original order; a held-out chunk never overlaps training text.
    """
    ids = torch.as_tensor(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be a 1-D token stream, got shape {tuple(ids.shape)}")
    n_chunks = len(ids) // chunk
    n_val, n_test = (max(1, round(f * n_chunks)) for f in fractions)
    if n_chunks < n_val + n_test + 1:
        raise ValueError(f"{len(ids)} tokens make only {n_chunks} chunks of {chunk}: too few to split")
    order = np.random.default_rng(seed).permutation(n_chunks)
    parts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    return {name: torch.cat([ids[i * chunk:(i + 1) * chunk] for i in sorted(idx)]) for name, idx in parts.items()}


def lm_loss(model: nn.Module, stream: torch.Tensor, ctx: int, chunk: int = 512) -> float:
    """Mean next-token cross-entropy of a ``model(x, y) -> (logits, loss)`` over held-out chunks.

    Every ``chunk`` of ``stream`` (as made by :func:`char_splits`) is cut into non-overlapping windows of
    ``ctx`` inputs and their ``ctx`` targets; windows do not cross chunk borders.
    """
    xs, ys = [], []
    for c0 in range(0, len(stream) - chunk + 1, chunk):
        for s in range(c0, c0 + chunk - ctx, ctx):
            xs.append(stream[s:s + ctx])
            ys.append(stream[s + 1:s + ctx + 1])
    if not xs:
        raise ValueError("the stream is shorter than one chunk")
    with torch.no_grad():
        return float(model(torch.stack(xs), torch.stack(ys))[1])


def classification_metrics(model: nn.Module, splits: dict) -> dict[str, float]:
    """``{name}_loss`` (cross-entropy) and ``{name}_acc`` for every ``name: (x, y)`` of ``splits``."""
    out = {}
    with torch.no_grad():
        for name, (x, y) in splits.items():
            logits = model(x)
            out[f"{name}_loss"] = float(nn.functional.cross_entropy(logits, y))
            out[f"{name}_acc"] = float((logits.argmax(1) == y).float().mean())
    return out


def plot_lr_curve(ax, runs: Sequence[Run], kind: str, metric: str = "val_loss", **style) -> None:
    """Mean ``metric`` against the learning rate (log axis) with 95 % t-intervals, for the runs of ``kind``."""
    table = {k: v for k, v in summarize(runs, metric).items() if k[0] == kind}
    lrs = sorted({k[1] for k in table})
    means = [np.mean([table[k][0] for k in table if k[1] == lr]) for lr in lrs]
    halves = [max((0.0 if math.isnan(table[k][1]) else table[k][1]) for k in table if k[1] == lr)
              for lr in lrs]                                    # one seed: no interval to draw
    ax.errorbar(lrs, means, yerr=halves, marker="o", capsize=3, **style)
    ax.set_xscale("log")


def plot_training_curve(ax, runs: Sequence[Run], smooth: int = 10, **style) -> None:
    """Training loss per iteration, averaged over the runs and smoothed by a moving mean of ``smooth``."""
    mean = np.mean([r.train_loss for r in runs], axis=0)
    smooth = max(1, min(smooth, len(mean)))
    curve = moving_average(mean, smooth)
    ax.plot(np.arange(len(curve)) + smooth, curve, **style)


def table_lines(comp: Comparison, metrics: Sequence[str], names: Sequence[str], width: int = 19) -> list[str]:
    """Rows ``kind: mean ± 95 % half-width`` of each metric over the final runs of ``comp`` (for printing)."""
    lines = [" " * 6 + "".join(f"{name:>{width}}" for name in names)]
    for kind in [k for k in KINDS if k in comp.lr]:
        cells = [t_interval([value(r, mt) for r in comp.final(kind)]) for mt in metrics]
        lines.append(f"{kind:>6}" + "".join(f"{f'{m:.3f} ± {h:.3f}':>{width}}" for m, h in cells))
    return lines


def plot_study(comp: Comparison, ylabel: str, metric: str = "val_loss", smooth: int = 10):
    """Two panels: ``metric`` against the learning rate (selection runs) and the training loss of the final runs."""
    from . import plot

    fig, (ax1, ax2) = plot.subplots(2, height=3.4)
    names = {"adamw": "AdamW", "muon": "Muon"}
    for kind in [k for k in KINDS if k in comp.lr]:
        plot_lr_curve(ax1, comp.select, kind, metric, color=plot.COLORS[kind], label=names[kind])
        plot_training_curve(ax2, comp.final(kind), smooth, color=plot.COLORS[kind],
                            label=f"{names[kind]}, lr = {comp.lr[kind]:g}")
    plot.label(ax1, "скорость обучения", ylabel, "подбор по валидации")
    ax1.legend(fontsize=9)
    ax2.set_yscale("log")
    lo, hi = ax2.get_ylim()
    if hi / lo < 10:  # less than a decade: plain tick labels instead of 3×10^0
        import matplotlib.ticker as mticker

        ax2.yaxis.set_major_formatter(mticker.FormatStrFormatter("%.1f"))
        ax2.yaxis.set_minor_formatter(mticker.FormatStrFormatter("%.1f"))
    plot.label(ax2, "итерация", "потери на обучении", "выбранные настройки")
    ax2.legend(fontsize=9)
    return fig
