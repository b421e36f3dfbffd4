"""Performance profiles and the AlgoPerf score (chapter 11, «Как честно сравнивать оптимизаторы»).

A benchmark of training algorithms ends with a table of times ``t[s, w]``: how long algorithm ``s``
took to reach the target of workload ``w`` (``inf`` when it never did). This module turns such a table
into the quantities of Dolan & Moré (2002) and of the AlgoPerf benchmark (Dahl et al. 2023):

* the **performance ratio** ``r[s, w] = t[s, w] / min_s' t[s', w]`` (:func:`performance_ratios`);
* the **performance profile** ``rho_s(tau) = |{w : r[s, w] <= tau}| / n`` (:func:`performance_profile`);
* the **AlgoPerf score** ``B_s = (r_max - 1)^{-1} * integral_1^{r_max} rho_s(tau) dtau`` with
  ``r_max = 4`` (:func:`algoperf_score`). Because ``rho_s`` is a step function, the integral has a
  closed form: ``B_s`` is the mean over workloads of ``clip((r_max - r[s, w]) / (r_max - 1), 0, 1)``
  (proved in the chapter); :func:`algoperf_score_trapz` is the trapezoidal rule of the AlgoPerf
  scoring code, kept to show that both agree.

A time to target comes from an evaluation curve (:func:`time_to_target`); a per-workload time from
a tuning budget of ``trials`` hyperparameter points in each of ``studies`` independent studies
(:func:`workload_time`: the median over studies of the fastest trial, as in AlgoPerf's external
tuning ruleset); :func:`deal_table` deals the studies from a pool of finished trials, and
:func:`budget_scores` deals them many times to show how the score and the ranking move with the
tuning budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ._checks import check_choice, check_positive_int

__all__ = ["R_MAX", "TimeTable", "time_to_target", "performance_ratios", "capped_ratios",
           "performance_profile", "algoperf_score", "algoperf_score_trapz", "ranking",
           "geometric_mean_speedup", "study_time", "workload_time", "draw_studies",
           "deal_table", "budget_scores", "fastest_counts", "plot_profiles"]

R_MAX = 4.0  # AlgoPerf's upper integration limit: slower than 4x the fastest earns nothing


@dataclass(frozen=True)
class TimeTable:
    """Times to target: ``times[i, j]`` for solver ``solvers[i]`` on workload ``workloads[j]``.

    A time is a positive number or ``inf`` (the target was not reached within the budget). Zero,
    negative and NaN times are refused: a ratio to them means nothing.
    """

    solvers: tuple[str, ...]
    workloads: tuple[str, ...]
    times: np.ndarray

    def __post_init__(self) -> None:
        solvers, workloads = tuple(self.solvers), tuple(self.workloads)
        times = np.array(self.times, dtype=float)
        if times.shape != (len(solvers), len(workloads)):
            raise ValueError(f"times must have shape (solvers, workloads) = "
                             f"{(len(solvers), len(workloads))}, got {times.shape}")
        if not solvers or not workloads:
            raise ValueError("a time table needs at least one solver and one workload")
        for kind, names in (("solver", solvers), ("workload", workloads)):
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names must be unique, got {list(names)}")
        if np.isnan(times).any():
            i, j = np.argwhere(np.isnan(times))[0]
            raise ValueError(f"time of {solvers[i]!r} on {workloads[j]!r} is NaN; "
                             "use inf for a target that was not reached")
        if (times <= 0).any():
            i, j = np.argwhere(times <= 0)[0]
            raise ValueError(f"times must be positive, got {times[i, j]!r} for "
                             f"{solvers[i]!r} on {workloads[j]!r}")
        times.setflags(write=False)
        object.__setattr__(self, "solvers", solvers)
        object.__setattr__(self, "workloads", workloads)
        object.__setattr__(self, "times", times)

    @classmethod
    def from_dict(cls, table: Mapping[str, Mapping[str, float]]) -> "TimeTable":
        """Build from ``{solver: {workload: time}}``; every solver must list the same workloads."""
        solvers = tuple(table)
        if not solvers:
            raise ValueError("a time table needs at least one solver")
        workloads = tuple(table[solvers[0]])
        for s in solvers:
            if set(table[s]) != set(workloads):
                raise ValueError(f"solver {s!r} lists workloads {sorted(table[s])}, "
                                 f"expected {sorted(workloads)}")
        return cls(solvers, workloads, np.array([[table[s][w] for w in workloads] for s in solvers]))

    def without(self, solver: str) -> "TimeTable":
        """The same table with one solver removed (the ratios of the others may change)."""
        check_choice("solver", solver, self.solvers)
        keep = [i for i, s in enumerate(self.solvers) if s != solver]
        return TimeTable(tuple(self.solvers[i] for i in keep), self.workloads, self.times[keep])

    def unsolved(self) -> list[str]:
        """Workloads on which no solver reached the target."""
        return [w for j, w in enumerate(self.workloads) if not np.isfinite(self.times[:, j]).any()]


def time_to_target(times: Sequence[float], values: Sequence[float], target: float,
                   mode: str = "min") -> float:
    """The first evaluation time at which ``values`` reaches ``target``; ``inf`` if it never does.

    ``mode="min"`` for a loss or an error (reached when ``value <= target``), ``"max"`` for an
    accuracy. A NaN value (a diverged run) never reaches the target. Times must increase.
    """
    check_choice("mode", mode, ("min", "max"))
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.ndim != 1 or t.shape != v.shape:
        raise ValueError(f"times and values must be 1-D of one length, got {t.shape} and {v.shape}")
    if not math.isfinite(target):
        raise ValueError(f"target must be finite, got {target!r}")
    if t.size and (not np.isfinite(t).all() or (np.diff(t) <= 0).any()):
        raise ValueError("evaluation times must be finite and strictly increasing")
    with np.errstate(invalid="ignore"):
        hit = v <= target if mode == "min" else v >= target
    idx = np.flatnonzero(hit)
    return float(t[idx[0]]) if idx.size else math.inf


def performance_ratios(table: TimeTable) -> np.ndarray:
    """``r[s, w] = t[s, w] / min_s' t[s', w]``; ``inf`` where ``s`` failed or every solver failed."""
    best = table.times.min(axis=0)
    with np.errstate(invalid="ignore"):
        ratios = table.times / best
    ratios[:, ~np.isfinite(best)] = math.inf  # no solver reached it: no one is within any factor
    return ratios


def capped_ratios(table: TimeTable, r_max: float = R_MAX) -> np.ndarray:
    """Ratios with every failure and every ratio above ``r_max`` set to ``r_max``.

    On ``[1, r_max)`` the cap plays the part of Dolan–Moré's ``r_M`` (which marks failures only and
    exceeds every finite ratio); at ``r_max`` itself the two differ, but the score does not see it.

    Past ``r_max`` the profile is not looked at, so a solver four times slower than the best and a
    solver that never finished are worth the same: nothing.
    """
    _check_r_max(r_max)
    return np.minimum(performance_ratios(table), r_max)


def performance_profile(table: TimeTable, taus: Sequence[float]) -> np.ndarray:
    """``rho[s, k]``: the share of workloads on which solver ``s`` is within ``taus[k]`` of the best."""
    taus = np.asarray(taus, dtype=float)
    if taus.ndim != 1 or not np.isfinite(taus).all() or (taus < 1).any():
        raise ValueError("taus must be a 1-D array of finite values >= 1")
    r = performance_ratios(table)
    return (r[:, :, None] <= taus[None, None, :]).mean(axis=1)


def algoperf_score(table: TimeTable, r_max: float = R_MAX) -> dict[str, float]:
    """The normalised area under each solver's profile on ``[1, r_max]``, computed exactly.

    ``B_s = mean_w (r_max - min(r[s, w], r_max)) / (r_max - 1)``: a workload where ``s`` is the
    fastest adds ``1/n``, one where it is ``r`` times slower adds ``(r_max - r) / ((r_max - 1) n)``.
    """
    r = capped_ratios(table, r_max)
    scores = ((r_max - r) / (r_max - 1)).mean(axis=1)
    return {s: float(b) for s, b in zip(table.solvers, scores)}


def algoperf_score_trapz(table: TimeTable, r_max: float = R_MAX, num_points: int = 100) -> dict[str, float]:
    """The AlgoPerf scoring code's way: the profile on ``num_points`` equispaced taus, trapezoids.

    Each workload's step of the profile is smeared over one grid cell, so it differs from
    :func:`algoperf_score` by at most ``1 / (2 (num_points - 1))``; the exact value is its limit.
    """
    _check_r_max(r_max)
    if check_positive_int("num_points", num_points) < 2:
        raise ValueError(f"num_points must be at least 2, got {num_points}")
    taus = np.linspace(1.0, r_max, num_points)
    rho = performance_profile(table, taus)
    widths = np.diff(taus)
    area = ((rho[:, 1:] + rho[:, :-1]) / 2 * widths).sum(axis=1)
    return {s: float(a / (r_max - 1)) for s, a in zip(table.solvers, area)}


def ranking(scores: Mapping[str, float]) -> list[str]:
    """Solvers from the best score to the worst (ties keep the given order)."""
    return sorted(scores, key=lambda s: -scores[s])


def geometric_mean_speedup(table: TimeTable, reference: str) -> dict[str, float]:
    """AlgoPerf's alternative score: the geometric mean over workloads of ``t_ref / t_s``.

    A failure makes a factor zero (``t_s = inf``) or infinite (``t_ref = inf``); workloads the
    reference failed are left out, and a solver that failed any other workload gets 0.
    """
    check_choice("reference", reference, table.solvers)
    ref = table.times[table.solvers.index(reference)]
    keep = np.isfinite(ref)
    if not keep.any():
        raise ValueError(f"the reference {reference!r} reached no target")
    out = {}
    for s, row in zip(table.solvers, table.times):
        row = row[keep]
        out[s] = 0.0 if not np.isfinite(row).all() else float(np.exp(np.mean(np.log(ref[keep] / row))))
    return out


def study_time(trial_times: Sequence[float]) -> float:
    """One study's time: the fastest of its trials (``inf`` if none reached the target)."""
    t = np.asarray(trial_times, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"a study needs a 1-D, non-empty list of trial times, got shape {t.shape}")
    if np.isnan(t).any() or (t <= 0).any():
        raise ValueError("trial times must be positive or inf")
    return float(t.min())


def workload_time(study_times: Sequence[float]) -> float:
    """The per-workload time: the median of the studies' times (an ``inf`` takes part in it)."""
    t = np.asarray(study_times, dtype=float)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"need a 1-D, non-empty list of study times, got shape {t.shape}")
    if t.size % 2 == 0:
        raise ValueError(f"use an odd number of studies, so that the median is one of them; got {t.size}")
    return float(np.median(t))


def draw_studies(n_points: int, trials: int, studies: int, rng: np.random.Generator) -> np.ndarray:
    """Indices ``(studies, trials)`` of hyperparameter points, distinct within each study.

    As in AlgoPerf, where ``trials * studies`` distinct points are dealt out to the studies: if the
    pool has that many points, no point is used twice; otherwise each study draws its own
    ``trials`` points without replacement.
    """
    for name, value in (("n_points", n_points), ("trials", trials), ("studies", studies)):
        check_positive_int(name, value)
    if trials > n_points:
        raise ValueError(f"a study of {trials} trials needs at least {trials} points, the pool has {n_points}")
    if trials * studies <= n_points:
        return rng.permutation(n_points)[:trials * studies].reshape(studies, trials)
    return np.stack([rng.permutation(n_points)[:trials] for _ in range(studies)])


def _pool_arrays(pools: Mapping[str, Mapping[str, np.ndarray]]
                 ) -> tuple[tuple[str, ...], tuple[str, ...], dict[tuple[str, str], np.ndarray]]:
    solvers = tuple(pools)
    if not solvers:
        raise ValueError("pools is empty")
    workloads = tuple(pools[solvers[0]])
    arrays = {}
    for s in solvers:
        if set(pools[s]) != set(workloads):
            raise ValueError(f"solver {s!r} has workloads {sorted(pools[s])}, expected {sorted(workloads)}")
        for w in workloads:
            a = np.asarray(pools[s][w], dtype=float)
            if a.ndim != 2 or a.size == 0:
                raise ValueError(f"pool of {s!r} on {w!r} must be a non-empty 2-D array (points, seeds), "
                                 f"got shape {a.shape}")
            arrays[s, w] = a
    return solvers, workloads, arrays


def _deal(solvers, workloads, arrays, trials: int, studies: int, rng: np.random.Generator) -> TimeTable:
    times = np.empty((len(solvers), len(workloads)))
    for i, s in enumerate(solvers):
        for j, w in enumerate(workloads):
            a = arrays[s, w]
            idx = draw_studies(a.shape[0], trials, studies, rng)
            per_study = [study_time(a[idx[k], k % a.shape[1]]) for k in range(studies)]
            times[i, j] = workload_time(per_study)
    return TimeTable(solvers, workloads, times)


def deal_table(pools: Mapping[str, Mapping[str, np.ndarray]], trials: int, studies: int = 3,
               rng: np.random.Generator | None = None) -> TimeTable:
    """One AlgoPerf time table dealt from a pool of finished trials.

    ``pools[solver][workload]`` is an array ``(points, seeds)`` of trial times: hyperparameter point
    ``p`` run with seed ``k``. For every solver and workload (in this order) ``studies`` studies of
    ``trials`` points are drawn (:func:`draw_studies`); study ``j`` runs its points with seed
    ``j % seeds``, so the studies differ in both points and seeds; its time is its fastest trial,
    and the workload's time is the median over studies.
    """
    check_positive_int("trials", trials)
    check_positive_int("studies", studies)
    solvers, workloads, arrays = _pool_arrays(pools)
    return _deal(solvers, workloads, arrays, trials, studies,
                 np.random.default_rng(0) if rng is None else rng)


def _deals(pools: Mapping[str, Mapping[str, np.ndarray]], trials: int, studies: int, draws: int,
           seed: int):
    """``draws`` deals (:func:`deal_table`) from one generator seeded with ``seed``."""
    check_positive_int("draws", draws)
    check_positive_int("trials", trials)
    check_positive_int("studies", studies)
    solvers, workloads, arrays = _pool_arrays(pools)
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        yield _deal(solvers, workloads, arrays, trials, studies, rng)


def budget_scores(pools: Mapping[str, Mapping[str, np.ndarray]], trials: int, studies: int = 3,
                  draws: int = 200, seed: int = 0, r_max: float = R_MAX) -> dict[str, np.ndarray]:
    """AlgoPerf scores of each solver over ``draws`` deals of the studies (:func:`deal_table`).

    The deals share one generator seeded with ``seed``, so the first deal is
    ``deal_table(pools, trials, studies, np.random.default_rng(seed))``. The result maps each
    solver to its ``draws`` scores.
    """
    out = np.array([list(algoperf_score(table, r_max).values())
                    for table in _deals(pools, trials, studies, draws, seed)])
    return {s: out[:, i] for i, s in enumerate(pools)}


def fastest_counts(pools: Mapping[str, Mapping[str, np.ndarray]], trials: int, studies: int = 3,
                   draws: int = 200, seed: int = 0) -> dict[str, float]:
    """Mean number of workloads per deal on which each solver is *strictly* the fastest.

    The deals are those of :func:`budget_scores` with the same arguments. Only such a solver moves
    the others' ratios when it leaves the field (chapter 11, the exercise on the field); a workload
    that nobody solved, or where the best time is shared, counts for no one.
    """
    counts = np.zeros(len(pools))
    for table in _deals(pools, trials, studies, draws, seed):
        t = table.times
        best = t.min(axis=0)
        alone = np.isfinite(best) & ((t == best).sum(axis=0) == 1)
        for j in np.flatnonzero(alone):
            counts[int(np.argmin(t[:, j]))] += 1
    return {s: float(c / draws) for s, c in zip(pools, counts)}


def plot_profiles(ax, table: TimeTable, r_max: float = R_MAX, names: Mapping[str, str] | None = None,
                  colors: Mapping[str, str] | None = None) -> None:
    """Draw every solver's profile as a right-continuous step function on ``[1, r_max]``."""
    _check_r_max(r_max)
    r = performance_ratios(table)
    for i, s in enumerate(table.solvers):
        jumps = np.sort(r[i][r[i] <= r_max])
        xs = np.concatenate([[1.0], jumps, [r_max]])
        ys = np.concatenate([[np.mean(r[i] <= 1.0)], np.searchsorted(jumps, jumps, side="right") / r.shape[1],
                             [np.mean(r[i] <= r_max)]])
        label = (names or {}).get(s, s)
        style = {"color": colors[s]} if colors and s in colors else {}
        ax.step(xs, ys, where="post", label=label, **style)
    ax.set_xlim(1.0, r_max)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(r"$\tau$")
    ax.set_ylabel(r"$\rho_s(\tau)$")


def _check_r_max(r_max: float) -> None:
    if not (isinstance(r_max, (int, float)) and math.isfinite(r_max) and r_max > 1):
        raise ValueError(f"r_max must be a finite number > 1, got {r_max!r}")
