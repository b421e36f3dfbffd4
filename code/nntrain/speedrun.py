"""The NanoGPT speedrun record table as data (chapter 11, «Рекорды nanoGPT как учебный пример»).

The speedrun (github.com/KellerJordan/modded-nanogpt) asks for the shortest wall-clock time in
which 8 H100 GPUs train a language model to ≤ 3.28 cross-entropy on the FineWeb validation set.
Its README keeps the record history; the book ships a transcription of that table
(``assets/speedrun_records.csv``, the commit is named in the file's header) and computes
everything from it, so that the chapter's plots can be checked and redone by the reader:

* :func:`load_records` — read and validate the table (clear errors for a missing file, a
  non-positive time, dates out of order, a broken column);
* :func:`speedups` — the speed-up of every row over the row before it and its logarithm, whose
  sum over all rows is the logarithm of the total speed-up;
* :func:`categorize`, :func:`category_shares` — *our* rule that sorts the described changes into
  kinds (systems, optimizer, attention, data, schedule, architecture) by keywords, and the share of
  the total log-speed-up that each kind received; the rule is explicit so that it can be argued
  with and changed (``mode="split"`` shares a row among all kinds that match);
* :func:`one_sided_ttest`, :func:`ttest_pass_rate` (Monte Carlo), :func:`ttest_pass_exact`
  (non-central t), :func:`best_of_k_pass_rate` — the
  significance test the rules ask for and what happens to «≤ 3.28» when one keeps the best of
  ``k`` runs instead.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from ._checks import check_choice, check_positive_int

__all__ = ["Record", "TARGET_LOSS", "POLAR_EXPRESS_LOSSES", "CATEGORY_RULES", "CATEGORIES",
           "default_path", "load_records", "speedups", "categorize", "matching_categories",
           "reordered_rules",
           "category_shares", "one_sided_ttest", "ttest_pass_rate", "best_of_k_pass_rate",
           "best_of_k_exact", "ttest_pass_exact", "date_axis"]

TARGET_LOSS = 3.28
"""The speedrun's target: mean FineWeb validation loss ≤ 3.28 (README «Rules»)."""

# The seven final validation losses of record 38 (Polar Express, 2025-09-29), as listed in
# records/track_1_short/2025-09-29_PolarExpress/README.md at commit f411b3d3.
POLAR_EXPRESS_LOSSES = (3.2789, 3.2792, 3.2796, 3.2776, 3.2797, 3.2787, 3.2792)

KINDS = ("baseline", "record", "retime")
COLUMNS = ("record", "date", "minutes", "kind", "change", "folder")

# Our categorisation: the first kind whose pattern matches the change's description (lower-cased)
# wins (systems before optimizer: «distributed Muon» is a systems change); a record that
# matches none is counted as architecture. Baseline and re-timing rows are
# not changes of the method and get the kinds "baseline" and "rules".
CATEGORY_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("systems", (r"fp8", r"kernel", r"triton", r"pytorch", r"\btorch\b", r"bfloat16", r"\bbf16\b",
                 r"all[-_ ]?reduce", r"reduce[-_ ]scatter", r"communication", r"comms",
                 r"distributed", r"overlap", r"compile", r"\bgpu\b", r"\bcpu\b",
                 r"code optimizations", r"faster", r"\bfuse", r"precision", r"hooks?\b",
                 r"asynchronous", r"rewrite", r"flash attention", r"speed up", r"transpose")),
    ("optimizer", (r"muon", r"polar express", r"\badam\b", r"weight decay",
                   r"optimizer", r"newton")),
    ("attention", (r"attention", r"\battn\b", r"window", r"yarn", r"\bxsa\b", r"\bmha\b",
                   r"key offset", r"block mask")),
    ("data", (r"batch size", r"batch starts", r"\beos\b", r"max_doc_len", r"max_num_docs",
              r"seq_len", r"data batches")),
    ("architecture", (r"embed", r"skip", r"relu", r"softcap", r"\binit\b", r"zero-init",
                      r"layer", r"gate", r"\bhead\b", r"logit", r"token prediction",
                      r"hyperconnection", r"smear", r"mudd", r"rotary", r"backout", r"lambda",
                      r"qk", r"u-net")),
    ("schedule", (r"schedule", r"warmup", r"cooldown", r"\blr\b", r"learning rate",
                  r"hyperparameter", r"lr decay")),
)
CATEGORIES = tuple(name for name, _ in CATEGORY_RULES)
FALLBACK = "architecture"


@dataclass(frozen=True)
class Record:
    """One row of the record table: a record (or a re-timing of one) and what it changed."""

    record: int
    date: _dt.date
    minutes: float
    kind: str
    change: str
    folder: str

    @property
    def url(self) -> str:
        """The record's folder in the repository (empty when the table links none)."""
        if not self.folder:
            return ""
        return ("https://github.com/KellerJordan/modded-nanogpt/tree/master/records/"
                f"track_1_short/{self.folder}")


def default_path() -> Path:
    """The table shipped inside the package (found the same way in a clone and in Colab)."""
    return Path(str(resources.files("nntrain").joinpath("assets", "speedrun_records.csv")))


def load_records(path: str | Path | None = None) -> list[Record]:
    """Read the record table and check it, so that a typo fails loudly rather than bends a plot.

    Lines starting with ``#`` are comments. Raises FileNotFoundError for a missing file and
    ValueError for a wrong header, an unknown kind, a non-positive time, or dates out of order.
    """
    path = default_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"speedrun record table not found: {path}")
    with path.open(encoding="utf-8", newline="") as fh:
        lines = [line for line in fh if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"{path}: expected columns {COLUMNS}, got {reader.fieldnames}")
    rows: list[Record] = []
    for n, row in enumerate(reader, start=1):
        try:
            date = _dt.date.fromisoformat(row["date"])
            minutes = float(row["minutes"])
            number = int(row["record"])
        except ValueError as err:
            raise ValueError(f"{path}, row {n}: {err}") from None
        if not math.isfinite(minutes) or minutes <= 0:
            raise ValueError(f"{path}, row {n} (record {number}): time must be positive, "
                             f"got {minutes!r} minutes")
        check_choice("kind", row["kind"], KINDS)
        if rows and date < rows[-1].date:
            raise ValueError(f"{path}, row {n} (record {number}): date {date} is earlier than "
                             f"the previous row's {rows[-1].date}; rows must be in date order")
        rows.append(Record(number, date, minutes, row["kind"], row["change"], row["folder"]))
    if not rows:
        raise ValueError(f"{path}: the table has no rows")
    return rows


def speedups(records: Sequence[Record]) -> tuple[np.ndarray, np.ndarray]:
    """Speed-up of every row over the previous one, ``t_{i-1}/t_i``, and its natural log.

    The first row (the baseline) gets 1 and 0. The logs add up to ``ln(t_0/t_last)``, which is
    why the chapter splits the total speed-up as a sum of logs. A re-timing row that is slower
    than the row before has a speed-up below 1.
    """
    if len(records) == 0:
        raise ValueError("no records")
    t = np.array([r.minutes for r in records], dtype=float)
    s = np.ones_like(t)
    s[1:] = t[:-1] / t[1:]
    return s, np.log(s)


Rules = Sequence[tuple[str, Sequence[str]]]


def reordered_rules(first: str, rules: Rules | None = None) -> Rules:
    """The rules with kind ``first`` moved to the front: how much does the order decide?"""
    rules = CATEGORY_RULES if rules is None else rules
    check_choice("kind", first, [name for name, _ in rules])
    return tuple([r for r in rules if r[0] == first] + [r for r in rules if r[0] != first])


def matching_categories(change: str, rules: Rules | None = None) -> list[str]:
    """All kinds of ``rules`` (default :data:`CATEGORY_RULES`) that match ``change``, in order."""
    rules = CATEGORY_RULES if rules is None else rules
    text = change.lower()
    return [name for name, patterns in rules if any(re.search(p, text) for p in patterns)]


def categorize(record: Record, rules: Rules | None = None) -> str:
    """Our kind for one row: first matching rule, else architecture; baseline and re-timings apart."""
    if record.kind == "baseline":
        return "baseline"
    if record.kind == "retime":
        return "rules"
    found = matching_categories(record.change, rules)
    return found[0] if found else FALLBACK


def category_shares(records: Sequence[Record], mode: str = "first",
                    rules: Rules | None = None) -> dict[str, float]:
    """Sum of log-speed-ups per kind (natural log), over all rows; the values add up to the total.

    ``mode="first"`` gives each row to its first matching kind (:func:`categorize`);
    ``mode="split"`` divides a row's log-speed-up equally among all kinds that match it, which
    shows how much the picture depends on the rule's order.
    """
    check_choice("mode", mode, ("first", "split"))
    _, logs = speedups(records)
    out = {name: 0.0 for name in CATEGORIES + ("rules",)}
    for rec, ell in zip(records, logs):
        first = categorize(rec, rules)
        if first == "baseline":
            continue
        if mode == "first" or first == "rules":
            out[first] += float(ell)
            continue
        kinds = matching_categories(rec.change, rules) or [FALLBACK]
        for k in kinds:
            out[k] += float(ell) / len(kinds)
    return out


def one_sided_ttest(losses: Sequence[float], target: float = TARGET_LOSS) -> tuple[float, float]:
    """Student's one-sample t statistic and p-value for H0: mean ≥ target against mean < target.

    This is what the speedrun's rules ask a record to show (p < 0.01): that the mean loss of the
    method, not just of the runs submitted, is below the target, if runs are independent and
    roughly normal.
    """
    from scipy import stats

    x = np.asarray(losses, dtype=float)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"need at least two losses, got {x.size}")
    sd = x.std(ddof=1)
    if sd == 0:
        raise ValueError("all losses are equal: the t statistic is undefined")
    t = (x.mean() - target) / (sd / math.sqrt(x.size))
    return float(t), float(stats.t.cdf(t, df=x.size - 1))


def _check_sigma(sigma: float) -> None:
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")


def best_of_k_exact(mu: float, sigma: float, k: int, target: float = TARGET_LOSS) -> float:
    """P(min of k independent N(mu, sigma²) losses ≤ target) = 1 − (1 − Φ((target − mu)/sigma))^k."""
    _check_sigma(sigma)
    check_positive_int("k", k)
    p1 = 0.5 * math.erfc(-(target - mu) / (sigma * math.sqrt(2)))
    return 1.0 - (1.0 - p1) ** k


def best_of_k_pass_rate(mu: float, sigma: float, k: int, n_sims: int = 20000,
                        target: float = TARGET_LOSS, seed: int = 0) -> float:
    """Monte Carlo: how often the best of ``k`` runs reaches the target when one run's loss is
    N(mu, sigma²). It shows what a «best run» criterion would accept that the mean criterion does not.
    """
    _check_sigma(sigma)
    check_positive_int("k", k)
    check_positive_int("n_sims", n_sims)
    rng = np.random.default_rng(seed)
    losses = rng.normal(mu, sigma, size=(n_sims, k))
    return float((losses.min(axis=1) <= target).mean())


def _check_n_alpha(n: int, alpha: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int ≥ 2, got {n!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")


def ttest_pass_exact(mu: float, sigma: float, n: int, alpha: float = 0.01,
                     target: float = TARGET_LOSS) -> float:
    """Exact probability that ``n`` independent N(mu, sigma²) runs pass the one-sided t-test.

    T = (x̄ − target)/(s/√n) has the non-central t distribution with n − 1 degrees of freedom and
    non-centrality √n (mu − target)/sigma, so P(p < alpha) = P(T < t_alpha): the power of the
    rules' test (its level when mu = target). The chapter uses it to check the Monte Carlo.
    """
    from scipy import stats

    _check_sigma(sigma)
    _check_n_alpha(n, alpha)
    delta = math.sqrt(n) * (mu - target) / sigma
    crit = stats.t.ppf(alpha, n - 1)
    p = float(stats.nct.cdf(crit, n - 1, delta))
    if not math.isfinite(p):  # SciPy's series can fail far in the tail; use the mirror form
        p = float(stats.nct.sf(-crit, n - 1, -delta))
    if not math.isfinite(p):
        raise ValueError(f"non-central t failed for mu={mu!r}, sigma={sigma!r}, n={n!r}")
    return min(max(p, 0.0), 1.0)


def ttest_pass_rate(mu: float, sigma: float, n: int, alpha: float = 0.01, n_sims: int = 20000,
                    target: float = TARGET_LOSS, seed: int = 0, bad_prob: float = 0.0,
                    bad_shift: float = 0.0) -> float:
    """Monte Carlo: how often ``n`` runs pass the rules' test (one-sided t-test, p < alpha).

    With ``bad_prob > 0`` a run is «bad» with that probability and its loss is ``bad_shift``
    higher; the normal part is moved down so that the mean loss of a run stays ``mu``. This is
    the right-skewed case of exercise 5 (a rare failed run), where the normal theory fails.
    """
    from scipy import stats

    _check_sigma(sigma)
    check_positive_int("n_sims", n_sims)
    _check_n_alpha(n, alpha)
    if not 0 <= bad_prob < 1:
        raise ValueError(f"bad_prob must lie in [0, 1), got {bad_prob!r}")
    rng = np.random.default_rng(seed)
    x = rng.normal(mu - bad_prob * bad_shift, sigma, size=(n_sims, n))
    if bad_prob > 0:
        x += bad_shift * (rng.random(size=(n_sims, n)) < bad_prob)
    t = (x.mean(axis=1) - target) / (x.std(axis=1, ddof=1) / math.sqrt(n))
    return float((stats.t.cdf(t, df=n - 1) < alpha).mean())


def date_axis(ax) -> None:
    """Ticks every January and July as «мм.гггг», rotated: the chapter's date axes stay legible."""
    import matplotlib.dates as mdates

    ax.xaxis.set_major_locator(mdates.MonthLocator(bymonth=(1, 7)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m.%Y"))
    ax.tick_params(axis="x", labelrotation=30)
