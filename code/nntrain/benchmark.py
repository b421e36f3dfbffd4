"""A small benchmark of training algorithms in the spirit of AlgoPerf (chapter 11,
«Как честно сравнивать оптимизаторы»).

Four cheap **workloads** (:data:`WORKLOADS`), each a :class:`nntrain.compare.Task` with a fixed step
budget, an evaluation every ``eval_every`` steps on a validation split (the one that sets and meets
the targets) and a test split that plays no part in any choice:

* ``mlp``: an MLP on scikit-learn's 8×8 digits, validation cross-entropy;
* ``cnn``: a small ConvNet on the same digits seen as 1×8×8 images, validation cross-entropy;
* ``gpt``: a one-layer character-level GPT on the source of ``textwrap`` and ``string`` (chapter 8's
  corpus), validation cross-entropy per character;
* ``reg``: teacher–student regression: a student MLP fits a random tanh teacher plus noise,
  validation mean squared error.

Every **optimizer** of :data:`SOLVERS` has ONE search space for all workloads (:data:`SPACES`, the
AlgoPerf rule): a log-uniform peak learning rate over three decades and one more log-uniform
hyperparameter. The points are a scrambled Sobol sequence (:func:`search_points`), the same number
for every optimizer; every point runs with every seed (:func:`run_benchmark`).

The **target** of a workload is a pure function of the curves (:func:`set_target`): the best
median-over-seeds validation value that any trial of the reference optimizers (AlgoPerf: its
baselines; default: all) reaches within ``fraction`` of the step budget (the chapter's main rule:
half of it). A trial's **time to target** is the first evaluation step at which its curve reaches it
(:func:`trial_times`); the scores come from :mod:`nntrain.profiles`.
"""

from __future__ import annotations

import inspect
import math
import string
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import compare, data, profiles, tuning
from ._checks import check_choice, check_positive_int
from .models import GPT, GPTConfig, mlp
from .optim import split_muon_params

__all__ = ["WORKLOADS", "SOLVERS", "SPACES", "MUON_AUX_RATIO", "Workload", "Space", "make_workload",
           "search_points", "options", "Results", "run_benchmark", "set_target", "targets",
           "trial_times", "pools", "time_table", "seed_median", "best_points", "bracketing",
           "seconds_per_step",
           "combine", "teacher_regression", "DigitsCNN", "BUDGETS"]

WORKLOADS = ("mlp", "cnn", "gpt", "reg")
SOLVERS = ("momentum", "nesterov", "adam", "adamw", "muon")
MUON_AUX_RATIO = 0.1  # Muon's AdamW group (embeddings, first layer, head, 1-D) runs at 0.1 × lr


@dataclass(frozen=True)
class Space:
    """A box of hyperparameters, each log-uniform on ``[low, high]``.

    ``params`` maps a name to ``(low, high)``; the first one is the peak learning rate ``lr``;
    ``fixed`` are the settings that are not searched (passed as they are to the optimizer).
    """

    params: Mapping[str, tuple[float, float]]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.params or next(iter(self.params)) != "lr":
            raise ValueError("the first searched hyperparameter must be 'lr'")
        for name, (lo, hi) in self.params.items():
            if not (0 < lo < hi < math.inf):
                raise ValueError(f"bounds of {name!r} must satisfy 0 < low < high, got {(lo, hi)}")


# One space per optimizer, for every workload. "one_minus_momentum" is 1 − μ (heavy ball, Nesterov,
# Muon), "one_minus_beta1" is 1 − β₁ (Adam); AdamW searches its decoupled weight decay instead.
SPACES: dict[str, Space] = {
    "momentum": Space({"lr": (1e-3, 1.0), "one_minus_momentum": (0.01, 0.3)}),
    "nesterov": Space({"lr": (1e-3, 1.0), "one_minus_momentum": (0.01, 0.3)}),
    "adam": Space({"lr": (3e-4, 0.3), "one_minus_beta1": (0.01, 0.3)}, {"beta2": 0.999}),
    "adamw": Space({"lr": (3e-4, 0.3), "weight_decay": (1e-3, 1.0)},
                   {"beta1": 0.9, "beta2": 0.999}),
    "muon": Space({"lr": (1e-3, 1.0), "one_minus_momentum": (0.01, 0.3)},
                  {"weight_decay": 0.0}),
}


def search_points(solver: str, n: int, seed: int = 0) -> list[dict[str, float]]:
    """``n`` points of ``solver``'s space: a scrambled Sobol sequence (fixed ``seed``) mapped to the
    log-uniform box. The same ``(n, seed)`` gives the same points on every machine."""
    check_choice("solver", solver, SOLVERS)
    check_positive_int("n", n)
    space = SPACES[solver]
    names = list(space.params)
    engine = torch.quasirandom.SobolEngine(len(names), scramble=True, seed=seed)
    u = engine.draw(n, dtype=torch.float64).numpy()
    out = []
    for row in u:
        point = {}
        for name, v in zip(names, row):
            lo, hi = space.params[name]
            point[name] = float(math.exp(math.log(lo) + v * (math.log(hi) - math.log(lo))))
        out.append(point)
    return out


def options(solver: str, point: Mapping[str, float]) -> dict[str, Any]:
    """The keyword arguments of :func:`nntrain.tuning.run` for one point (``lr`` included)."""
    check_choice("solver", solver, SOLVERS)
    space = SPACES[solver]
    if set(point) != set(space.params):
        raise ValueError(f"a point of {solver!r} must give {sorted(space.params)}, got {sorted(point)}")
    lr = point["lr"]
    if solver in ("momentum", "nesterov"):
        return {"lr": lr, "momentum": 1 - point["one_minus_momentum"]}
    if solver == "adam":
        return {"lr": lr, "betas": (1 - point["one_minus_beta1"], space.fixed["beta2"])}
    if solver == "adamw":
        return {"lr": lr, "betas": (space.fixed["beta1"], space.fixed["beta2"]),
                "weight_decay": point["weight_decay"]}
    return {"lr": lr, "momentum": 1 - point["one_minus_momentum"], "aux_lr": MUON_AUX_RATIO * lr,
            "weight_decay": space.fixed["weight_decay"]}


# --------------------------------------------------------------------------- the workloads


@dataclass
class Workload:
    """A task with its budget: ``task.steps`` steps, validation every ``eval_every`` steps;
    ``metric`` (lower is better) sets and meets the target, ``test_metric`` is only reported."""

    name: str
    title: str
    task: compare.Task
    eval_every: int
    metric: str
    test_metric: str
    description: str
    muon_split: Any = None  # (muon_params, adamw_params) of a model; None: tuning's default

    @property
    def steps(self) -> int:
        return self.task.steps

    def eval_steps(self) -> np.ndarray:
        """The steps at which the validation metric is recorded (the initial evaluation excluded)."""
        return np.array(list(range(self.eval_every, self.steps, self.eval_every)) + [self.steps])


def _digits_splits(seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Digits: a seeded fifth of the training split for validation, the test split untouched.

    Same recipe as :func:`nntrain.tuning.holdout_splits`, but with a numpy permutation; kept
    because the chapter's published numbers come from this split.
    """
    x, y = data.digits_arrays("train", seed)
    xt, yt = data.digits_arrays("test", seed)
    perm = np.random.default_rng(seed).permutation(len(x))
    n_val = len(x) // 5

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return {"train": (t(x[perm[n_val:]]), t(y[perm[n_val:]])),
            "val": (t(x[perm[:n_val]]), t(y[perm[:n_val]])), "test": (t(xt), t(yt))}


def _classifier(name: str, title: str, build: Callable[[], nn.Module], shape: tuple[int, ...],
                steps: int, eval_every: int, batch_size: int, description: str) -> Workload:
    splits = _digits_splits()
    x, y = splits["train"]
    held = {k: (splits[k][0].reshape(-1, *shape), splits[k][1]) for k in ("val", "test")}
    batch = compare.random_batches(x.reshape(-1, *shape), y, batch_size)
    task = compare.Task(build_model=build, batch=batch,
                        loss=lambda m, xb, yb: nn.functional.cross_entropy(m(xb), yb),
                        evaluate=lambda m: compare.classification_metrics(m, held), steps=steps)
    return Workload(name, title, task, eval_every, "val_loss", "test_loss", description)


class DigitsCNN(nn.Module):
    """Two 3×3 convolutions (8 and 16 channels, ReLU, 2×2 max-pool after the second), a linear head.

    Not :class:`nntrain.landscape.SmallCNN`: that one keeps one width in every block (with
    optional shortcuts and BatchNorm) and ends in global average pooling; this one widens the
    channels, max-pools and flattens into the head, a plain ConvNet of the LeNet kind, so the two
    cannot share a class without changing either chapter's model.
    """

    def __init__(self, channels: tuple[int, int] = (8, 16), classes: int = 10) -> None:
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.head = nn.Linear(c2 * 16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = nn.functional.max_pool2d(torch.relu(self.conv2(h)), 2)
        return self.head(h.flatten(1))


def _text_ids() -> tuple[torch.Tensor, int]:
    text = inspect.getsource(textwrap) + inspect.getsource(string)
    vocab = sorted(set(text))
    index = {ch: i for i, ch in enumerate(vocab)}
    return torch.tensor([index[ch] for ch in text]), len(vocab)


def _gpt(steps: int, eval_every: int, ctx: int = 32, batch_size: int = 16) -> Workload:
    ids, vocab = _text_ids()
    parts = compare.char_splits(ids, chunk=512, fractions=(0.1, 0.1), seed=0)
    cfg = GPTConfig(vocab_size=vocab, block_size=ctx, n_layer=1, n_head=2, n_embd=32, bias=False)
    train_ids = parts["train"]

    def batch(gen: torch.Generator):
        starts = torch.randint(len(train_ids) - ctx - 1, (batch_size,), generator=gen)
        xb = torch.stack([train_ids[s:s + ctx] for s in starts])
        return xb, torch.stack([train_ids[s + 1:s + ctx + 1] for s in starts])

    task = compare.Task(
        build_model=lambda: GPT(cfg), batch=batch, loss=lambda m, xb, yb: m(xb, yb)[1],
        evaluate=lambda m: {"val_loss": compare.lm_loss(m, parts["val"], ctx),
                            "test_loss": compare.lm_loss(m, parts["test"], ctx)},
        steps=steps)
    desc = (f"GPT, 1 слой, d = 32, контекст {ctx}, батч {batch_size}; "
            f"{len(ids)} символов, словарь {vocab}")
    return Workload("gpt", "символьный GPT", task, eval_every, "val_loss", "test_loss", desc,
                    muon_split=split_muon_params)  # embeddings and head to AdamW, every block to Muon


def teacher_regression(n: int = 1200, dim: int = 16, hidden: int = 32, noise: float = 0.1,
                       seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A random teacher ``y = tanh(x W1) w2 + noise`` (``x`` standard normal, the output scaled to unit
    variance before the noise), split 60/20/20 into train, val and test."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((dim, hidden)) / math.sqrt(dim)
    w2 = rng.standard_normal((hidden, 1)) / math.sqrt(hidden)
    x = rng.standard_normal((n, dim))
    f = np.tanh(x @ w1) @ w2
    y = f / f.std() + noise * rng.standard_normal((n, 1))
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    a, b = int(0.6 * n), int(0.8 * n)
    return {"train": (x[:a], y[:a]), "val": (x[a:b], y[a:b]), "test": (x[b:], y[b:])}


def _regression(steps: int, eval_every: int, batch_size: int = 32) -> Workload:
    splits = teacher_regression()
    x, y = splits["train"]
    held = {k: v for k, v in splits.items() if k != "train"}

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {f"{k}_mse": float(nn.functional.mse_loss(m(xh), yh)) for k, (xh, yh) in held.items()}

    task = compare.Task(build_model=lambda: mlp([x.shape[1], 64, 64, 1], activation="tanh"),
                        batch=compare.random_batches(x, y, batch_size),
                        loss=lambda m, xb, yb: nn.functional.mse_loss(m(xb), yb),
                        evaluate=evaluate, steps=steps)
    desc = f"MLP 16–64–64–1 (tanh), учитель tanh-MLP + шум 0.1; {len(x)} примеров, батч {batch_size}"
    return Workload("reg", "регрессия", task, eval_every, "val_mse", "test_mse", desc)


# Full budgets (steps, eval_every); quick mode of the notebook passes smaller ones.
BUDGETS = {"mlp": (200, 10), "cnn": (150, 10), "gpt": (150, 10), "reg": (200, 10)}


def make_workload(name: str, steps: int | None = None, eval_every: int | None = None) -> Workload:
    """The workload ``name`` of :data:`WORKLOADS` with its budget (default :data:`BUDGETS`)."""
    check_choice("workload", name, WORKLOADS)
    s0, e0 = BUDGETS[name]
    steps = check_positive_int("steps", s0 if steps is None else steps)
    every = check_positive_int("eval_every", e0 if eval_every is None else eval_every)
    if every > steps:
        raise ValueError(f"eval_every ({every}) must not exceed steps ({steps})")
    if name == "mlp":
        return _classifier("mlp", "MLP на цифрах", lambda: mlp([64, 64, 64, 10]), (64,), steps, every,
                           32, "MLP 64–64–64–10 (ReLU) на цифрах 8×8, батч 32")
    if name == "cnn":
        return _classifier("cnn", "CNN на цифрах", DigitsCNN, (1, 8, 8), steps, every, 32,
                           "CNN: свёртки 3×3 (8, 16 каналов), пулинг, линейная голова; батч 32")
    if name == "gpt":
        return _gpt(steps, every)
    return _regression(steps, every)


# --------------------------------------------------------------------------- running


@dataclass
class Results:
    """Everything the benchmark measured.

    ``curves[solver][workload]``: validation metric, array ``(points, seeds, evals)`` at
    ``eval_steps[workload]`` (NaN after a divergence); ``test[solver][workload]``: the final test
    metric ``(points, seeds)``; ``wall`` and ``cpu``: seconds of each run ``(points, seeds)``
    (training and evaluation; ``cpu`` from ``time.process_time``); ``train_wall``: training seconds
    only; ``points[solver]``: the hyperparameter points; ``steps[workload]``: the budget.
    """

    solvers: tuple[str, ...]
    workloads: tuple[str, ...]
    seeds: tuple[int, ...]
    points: dict[str, list[dict[str, float]]]
    steps: dict[str, int]
    eval_steps: dict[str, np.ndarray]
    curves: dict[str, dict[str, np.ndarray]]
    test: dict[str, dict[str, np.ndarray]]
    wall: dict[str, dict[str, np.ndarray]]
    cpu: dict[str, dict[str, np.ndarray]]
    train_wall: dict[str, dict[str, np.ndarray]]


def run_benchmark(workloads: Sequence[Workload], solvers: Sequence[str] = SOLVERS, n_points: int = 16,
                  seeds: Sequence[int] = (0, 1, 2), sobol_seed: int = 0,
                  progress: bool = True) -> Results:
    """Run every point of every solver with every seed on every workload (warmup + cosine)."""
    workloads = list(workloads)
    if not workloads:
        raise ValueError("no workloads")
    for w in workloads:
        if not isinstance(w, Workload):
            raise ValueError(f"workloads must be Workload objects (make_workload), got {type(w).__name__}")
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise ValueError(f"workload names must be unique, got {names}")
    solvers = tuple(solvers)
    if not solvers:
        raise ValueError("no solvers")
    for s in solvers:
        check_choice("solver", s, SOLVERS)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("no seeds")
    points = {s: search_points(s, n_points, sobol_seed) for s in solvers}
    shape = (n_points, len(seeds))
    curves, test, wall, cpu, train_wall = ({s: {} for s in solvers} for _ in range(5))
    jobs = [(w, s, p, k) for w in workloads for s in solvers for p in range(n_points)
            for k in range(len(seeds))]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="benchmark")
    for w in workloads:
        for s in solvers:
            curves[s][w.name] = np.empty((*shape, len(w.eval_steps())))
            for d in (test, wall, cpu, train_wall):
                d[s][w.name] = np.empty(shape)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster and the runs are reproducible
    try:
        for job in jobs:
            _one(job, points, seeds, curves, test, wall, cpu, train_wall)
            if bar is not None:
                bar.update()
    finally:
        torch.set_num_threads(threads)
    if bar is not None:
        bar.close()
    return Results(solvers, tuple(names), seeds, points, {w.name: w.steps for w in workloads},
                   {w.name: w.eval_steps() for w in workloads}, curves, test, wall, cpu, train_wall)


_Arrays = dict[str, dict[str, np.ndarray]]


def _one(job: tuple[Workload, str, int, int], points: Mapping[str, list[dict[str, float]]],
         seeds: tuple[int, ...], curves: _Arrays, test: _Arrays, wall: _Arrays, cpu: _Arrays,
         train_wall: _Arrays) -> None:
    """One run of the benchmark: fill its slot of every array of :class:`Results`."""
    w, s, p, k = job
    kw = options(s, points[s][p])
    lr = kw.pop("lr")
    if s == "muon" and w.muon_split is not None:
        kw["split"] = w.muon_split
    c0, t0 = time.process_time(), time.perf_counter()
    r = tuning.run(w.task, s, lr, seeds[k], eval_every=w.eval_every, **kw)
    wall[s][w.name][p, k] = time.perf_counter() - t0
    cpu[s][w.name][p, k] = time.process_time() - c0
    train_wall[s][w.name][p, k] = r.seconds[-1]
    curves[s][w.name][p, k] = r.metrics[w.metric][1:]
    test[s][w.name][p, k] = r.metrics[w.test_metric][-1]


# --------------------------------------------------------------------------- targets and times


def seed_median(curves: np.ndarray) -> np.ndarray:
    """Median over seeds (axis 1) of ``(points, seeds, ...)`` values, a NaN (a diverged run) counted as
    ``+inf``: with three seeds the median is finite only if two runs are."""
    c = np.asarray(curves, dtype=float)
    if c.ndim < 2:
        raise ValueError(f"need a (points, seeds, ...) array, got shape {c.shape}")
    return np.median(np.where(np.isnan(c), np.inf, c), axis=1)


def set_target(curves: Sequence[np.ndarray], eval_steps: Sequence[float], budget: float,
               fraction: float = 0.5) -> float:
    """The target of one workload: the best (lowest) median-over-seeds validation value that any
    trial reaches at an evaluation step ``<= fraction * budget``.

    ``curves`` are arrays ``(points, seeds, evals)`` (one per solver, or one for all); a NaN (a
    diverged run) counts as ``+inf``, so a median over three seeds needs two finite runs.
    """
    steps = np.asarray(eval_steps, dtype=float)
    if steps.ndim != 1 or steps.size == 0:
        raise ValueError("eval_steps must be a non-empty 1-D array")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    keep = steps <= fraction * budget
    if not keep.any():
        raise ValueError(f"no evaluation at or before {fraction} × {budget} steps")
    best = math.inf
    arrays = [curves] if isinstance(curves, np.ndarray) else list(curves)
    if not arrays:
        raise ValueError("no curves")
    for c in arrays:
        c = np.asarray(c, dtype=float)
        if c.ndim != 3 or c.shape[2] != steps.size:
            raise ValueError(f"curves must be (points, seeds, {steps.size}) arrays, got {c.shape}")
        best = min(best, float(seed_median(c)[:, keep].min()))  # seed_median: (points, evals)
    if not math.isfinite(best):
        raise ValueError("every trial diverged before the target-setting budget")
    return best


def targets(results: Results, fraction: float = 0.5,
            reference: Sequence[str] | None = None) -> dict[str, float]:
    """:func:`set_target` of every workload over the trials of the ``reference`` solvers (default:
    all solvers of ``results``). AlgoPerf's targets come from a fixed set of baselines."""
    ref = tuple(results.solvers if reference is None else reference)
    if not ref:
        raise ValueError("no reference solvers")
    for s in ref:
        check_choice("reference solver", s, results.solvers)
    return {w: set_target([results.curves[s][w] for s in ref], results.eval_steps[w],
                          results.steps[w], fraction) for w in results.workloads}


def trial_times(curve: np.ndarray, eval_steps: Sequence[float], target: float) -> np.ndarray:
    """Steps to ``target`` of every run in ``curve`` ``(points, seeds, evals)``: ``(points, seeds)``."""
    c = np.asarray(curve, dtype=float)
    if c.ndim != 3:
        raise ValueError(f"curve must be a (points, seeds, evals) array, got shape {c.shape}")
    out = np.empty(c.shape[:2])
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            out[i, j] = profiles.time_to_target(eval_steps, c[i, j], target, "min")
    return out


def seconds_per_step(results: Results) -> dict[str, dict[str, float]]:
    """Median training wall seconds per step of each solver on each workload (this machine)."""
    return {s: {w: float(np.median(results.train_wall[s][w]) / results.steps[w])
                for w in results.workloads} for s in results.solvers}


def pools(results: Results, target: Mapping[str, float], unit: str = "steps"
          ) -> dict[str, dict[str, np.ndarray]]:
    """Trial times ``pools[solver][workload]`` ``(points, seeds)`` for :func:`profiles.budget_scores`:
    in steps, or (``unit="seconds"``) steps × :func:`seconds_per_step` of that solver there."""
    check_choice("unit", unit, ("steps", "seconds"))
    sps = seconds_per_step(results) if unit == "seconds" else None
    out: dict[str, dict[str, np.ndarray]] = {}
    for s in results.solvers:
        out[s] = {}
        for w in results.workloads:
            t = trial_times(results.curves[s][w], results.eval_steps[w], target[w])
            out[s][w] = t * sps[s][w] if sps else t
    return out


def time_table(pool: Mapping[str, Mapping[str, np.ndarray]], trials: int, studies: int = 3,
               seed: int = 0) -> profiles.TimeTable:
    """The AlgoPerf time table of one deal of the studies: :func:`profiles.deal_table` with a
    generator seeded by ``seed``, i.e. the first draw of :func:`profiles.budget_scores` with the
    same ``seed``."""
    return profiles.deal_table(pool, trials, studies, np.random.default_rng(seed))


def best_points(results: Results) -> dict[str, dict[str, int]]:
    """Index of each solver's best point per workload: the lowest median-over-seeds final validation
    value (a NaN counts as ``+inf``)."""
    out: dict[str, dict[str, int]] = {}
    for s in results.solvers:
        out[s] = {}
        for w in results.workloads:
            out[s][w] = int(np.argmin(seed_median(results.curves[s][w][:, :, -1])))
    return out


def bracketing(results: Results) -> dict[str, dict[str, dict[str, float | bool]]]:
    """Where each best point (:func:`best_points`: best final validation value, not the fastest to
    the target) lies in its learning-rate range: ``position`` in ``[0, 1]`` on the log scale of the
    space, and ``edge`` = the best lr is the smallest or the largest sampled lr (then the optimum may
    lie outside the searched range). A best point inside is weak evidence only: the search is 2-D and
    has few points."""
    best = best_points(results)
    out: dict[str, dict[str, dict[str, float | bool]]] = {}
    for s in results.solvers:
        lo, hi = SPACES[s].params["lr"]
        lrs = np.array([p["lr"] for p in results.points[s]])
        out[s] = {}
        for w in results.workloads:
            lr = lrs[best[s][w]]
            out[s][w] = {"lr": float(lr), "position": float(math.log(lr / lo) / math.log(hi / lo)),
                         "edge": bool(lr == lrs.min() or lr == lrs.max())}
    return out


def combine(parts: Sequence[Results]) -> Results:
    """One :class:`Results` from runs of the same solvers, points and seeds on different workloads
    (so that a long benchmark can be run a few workloads at a time)."""
    parts = list(parts)
    if not parts:
        raise ValueError("nothing to combine")
    first = parts[0]
    names = [w for p in parts for w in p.workloads]
    if len(set(names)) != len(names):
        raise ValueError(f"a workload appears in two parts: {names}")
    for p in parts[1:]:
        if p.solvers != first.solvers or p.seeds != first.seeds or p.points != first.points:
            raise ValueError("the parts must have the same solvers, seeds and search points")

    def merged(attr: str) -> dict:
        if attr in ("steps", "eval_steps"):
            return {w: getattr(p, attr)[w] for p in parts for w in p.workloads}
        return {s: {w: getattr(p, attr)[s][w] for p in parts for w in p.workloads}
                for s in first.solvers}

    return Results(first.solvers, tuple(names), first.seeds, first.points, merged("steps"),
                   merged("eval_steps"), merged("curves"), merged("test"), merged("wall"),
                   merged("cpu"), merged("train_wall"))
