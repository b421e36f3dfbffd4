"""Grokking on modular arithmetic (chapter 10, «Гроккинг»).

A network trained on a fraction of the table ``(a, b) -> (a ∘ b) mod p`` first memorises the
training pairs and only much later generalises to the rest (Power et al. 2022). This module holds
what the section needs:

* the data: every pair of the table and a seeded train/test split (:func:`modular_split`);
* the models: Gromov's two-layer MLP with a quadratic activation (:class:`QuadraticMLP`) and
  Nanda et al.'s one-layer transformer (:class:`OneLayerTransformer`);
* full-batch training with AdamW and logging on a log-spaced schedule (:func:`train`,
  :func:`log_schedule`, :func:`grokking_step`), and seeded sweeps over the weight decay and the
  data fraction (:func:`grokking_sweep`), summarised per setting over seeds (:func:`summarize_runs`,
  :func:`describe_setting`, :func:`intervals_overlap`);
* what the network learned: the Fourier spectrum of an embedding, whole and per neuron
  (:func:`fourier_basis`, :func:`fourier_spectrum`, :func:`neuron_frequencies`,
  :func:`dominant_frequencies`);
* Gromov's analytic solution, built exactly (:func:`analytic_mlp`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ._checks import check_choice, check_positive_int
from .optim import AdamW

__all__ = ["OPERATIONS", "ModularSplit", "modular_table", "modular_split", "QuadraticMLP",
           "OneLayerTransformer", "log_schedule", "History", "train", "grokking_step", "GrokRun",
           "grokking_sweep", "summarize_runs", "describe_setting", "intervals_overlap",
           "weight_norm", "fourier_basis",
           "fourier_spectrum", "neuron_frequencies", "dominant_frequencies", "analytic_mlp"]

OPERATIONS: dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
}


def _check_modulus(p: int) -> int:
    if isinstance(p, bool) or not isinstance(p, int) or p < 2:
        raise ValueError(f"modulus p must be an int >= 2, got {p!r}")
    return p


def modular_table(p: int, op: str = "add") -> tuple[Tensor, Tensor]:
    """All ``p²`` pairs ``(a, b)`` (row ``a·p + b``) and their labels ``(a ∘ b) mod p``."""
    _check_modulus(p)
    check_choice("operation", op, OPERATIONS)
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    pairs = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)
    return pairs, OPERATIONS[op](pairs[:, 0], pairs[:, 1], p)


@dataclass
class ModularSplit:
    """A train/test split of the table: inputs are ``(a, b)`` rows, labels are residues."""

    p: int
    op: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)


def modular_split(p: int, fraction: float, seed: int = 0, op: str = "add") -> ModularSplit:
    """A seeded split of the whole table with ``round(fraction·p²)`` training pairs.

    Raises ValueError for ``p < 2``, a fraction outside ``(0, 1)`` and a split that leaves the
    training or the test part empty.
    """
    _check_modulus(p)
    if not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
    pairs, labels = modular_table(p, op)
    n = len(labels)
    n_train = round(fraction * n)
    if n_train == 0 or n_train == n:
        raise ValueError(f"fraction {fraction} of {n} pairs leaves an empty "
                         f"{'training' if n_train == 0 else 'test'} set")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=gen)
    tr, te = perm[:n_train], perm[n_train:]
    return ModularSplit(p, op, pairs[tr], labels[tr], pairs[te], labels[te])


class QuadraticMLP(nn.Module):
    """Gromov's MLP: ``logits = (E_a[a] + E_b[b])² W`` with no biases.

    ``E_a[a] + E_b[b]`` is the first layer applied to one-hot(a) ⊕ one-hot(b); the square is
    taken elementwise. ``init_scale`` multiplies every weight at initialisation (Omnigrok's knob).
    """

    def __init__(self, p: int, width: int, init_scale: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        _check_modulus(p)
        check_positive_int("width", width)
        if not init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {init_scale!r}")
        self.p, self.width = p, width
        std_in, std_out = init_scale * math.sqrt(0.5), init_scale / width
        self.emb_a = nn.Parameter(torch.randn(p, width, generator=generator) * std_in)
        self.emb_b = nn.Parameter(torch.randn(p, width, generator=generator) * std_in)
        self.readout = nn.Parameter(torch.randn(width, p, generator=generator) * std_out)

    def forward(self, x: Tensor) -> Tensor:
        h = self.emb_a[x[:, 0]] + self.emb_b[x[:, 1]]
        return (h * h) @ self.readout


class OneLayerTransformer(nn.Module):
    """Nanda et al.'s one-layer transformer for ``a ∘ b = ?`` (chapter 10, «Гроккинг»).

    Input tokens ``a, b, =`` (the token ``=`` has number ``p``), learned positional embeddings,
    one causal attention layer with ``heads`` heads, an optional ReLU MLP of width ``4·d_model``,
    no LayerNorm and no attention biases, as in the progress-measures paper; the logits are read
    at the last position. Initial scales follow 1/sqrt(fan-in): close to, not identical with,
    their code (which scales the MLP's output by 1/sqrt(d_model)). With one layer the other
    positions never influence the last one, so only its query, attention output and MLP are
    computed — the same function for a third of the cost. ``mlp=False`` gives the
    attention-only variant.
    """

    def __init__(self, p: int, d_model: int = 128, heads: int = 4, mlp: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        _check_modulus(p)
        check_positive_int("d_model", d_model)
        check_positive_int("heads", heads)
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by heads {heads}")
        self.p, self.d_model, self.heads, self.d_head = p, d_model, heads, d_model // heads

        def rand(*shape: int, scale: float) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=generator) * scale)

        s = 1 / math.sqrt(d_model)
        self.embed = rand(p + 1, d_model, scale=s)   # rows 0..p-1: residues; row p: "="
        self.pos = rand(3, d_model, scale=s)
        self.w_q, self.w_k, self.w_v = (rand(d_model, d_model, scale=s) for _ in range(3))
        self.w_o = rand(d_model, d_model, scale=s)
        self.mlp = mlp
        if mlp:
            self.w_in = rand(d_model, 4 * d_model, scale=s)
            self.b_in = nn.Parameter(torch.zeros(4 * d_model))
            self.w_out = rand(4 * d_model, d_model, scale=1 / math.sqrt(4 * d_model))
            self.b_out = nn.Parameter(torch.zeros(d_model))
        self.unembed = rand(d_model, p, scale=1 / math.sqrt(p))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != 2:
            raise ValueError(f"x must be a batch of pairs (B, 2), got shape {tuple(x.shape)}")
        eq = torch.full_like(x[:, :1], self.p)
        resid = self.embed[torch.cat([x, eq], 1)] + self.pos          # (B, 3, d)
        B, H, D = len(x), self.heads, self.d_head
        q = (resid[:, -1] @ self.w_q).view(B, H, 1, D)
        k = (resid @ self.w_k).view(B, 3, H, D).transpose(1, 2)        # (B, H, 3, D)
        v = (resid @ self.w_v).view(B, 3, H, D).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D), -1)  # the last query sees all
        h = resid[:, -1] + (att @ v).reshape(B, H * D) @ self.w_o
        if self.mlp:
            h = h + torch.relu(h @ self.w_in + self.b_in) @ self.w_out + self.b_out
        return h @ self.unembed

    def residue_embedding(self) -> Tensor:
        """The ``p × d_model`` embedding of the residues (without the ``=`` token)."""
        return self.embed[: self.p]


def log_schedule(steps: int, points: int = 60) -> list[int]:
    """Distinct integer steps from 0 to ``steps``, roughly evenly spaced on a log axis."""
    check_positive_int("steps", steps)
    check_positive_int("points", points)
    grid = np.unique(np.round(np.logspace(0, math.log10(steps), points)).astype(int))
    return [0] + [int(s) for s in grid if s <= steps]


def weight_norm(model: nn.Module) -> float:
    """The Euclidean norm of all parameters together."""
    return float(torch.sqrt(sum((q.detach() ** 2).sum() for q in model.parameters())))


@dataclass
class History:
    """What :func:`train` logged at each step of its schedule."""

    step: list[int] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    norm: list[float] = field(default_factory=list)

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.__dict__.items()}


@torch.no_grad()
def _evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    return float((logits.argmax(1) == y).float().mean()), float(loss)


def train(model: nn.Module, split: ModularSplit, steps: int, *, lr: float = 1e-3,
          weight_decay: float = 1.0, betas: tuple[float, float] = (0.9, 0.98),
          log_at: Sequence[int] | None = None, stop_at: float | None = None,
          warmup: int = 0, progress: bool = False) -> History:
    """Full-batch AdamW on cross-entropy; log accuracy, loss and weight norm at ``log_at`` steps.

    With ``stop_at`` the run ends at the first logged step where the test accuracy reaches it
    (the sweeps only need the grokking step). ``warmup`` steps ramp the step size linearly from
    ``lr/warmup`` to ``lr`` (Nanda et al. use 10). Settings of Power et al. and Nanda et al.
    """
    check_positive_int("steps", steps)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    log_set = set(log_schedule(steps) if log_at is None else log_at)
    dev = next(model.parameters()).device  # the split lives on the CPU; the model may not
    x_tr, y_tr, x_te, y_te = (t.to(dev) for t in (split.x_train, split.y_train,
                                                  split.x_test, split.y_test))
    opt = AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    hist = History()
    it = range(steps + 1)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, leave=False)
    for k in it:
        if k in log_set:
            tr_acc, tr_loss = _evaluate(model, x_tr, y_tr)
            te_acc, te_loss = _evaluate(model, x_te, y_te)
            for name, v in zip(hist.__dict__, (k, tr_acc, te_acc, tr_loss, te_loss,
                                               weight_norm(model))):
                getattr(hist, name).append(v)
            if stop_at is not None and te_acc >= stop_at:
                break
        if k == steps:
            break
        if warmup:
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (k + 1) / warmup)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x_tr), y_tr).backward()
        opt.step()
    return hist


def grokking_step(hist: History, threshold: float = 0.99, on: str = "test") -> int | None:
    """The first logged step where the ``on`` accuracy reaches ``threshold`` (None if never)."""
    check_choice("accuracy", on, ("train", "test"))
    accs = hist.test_acc if on == "test" else hist.train_acc
    for s, a in zip(hist.step, accs):
        if a >= threshold:
            return s
    return None


@dataclass
class GrokRun:
    """One seeded run of :func:`grokking_sweep`: when it memorised and when it generalised."""

    seed: int
    fraction: float
    weight_decay: float
    memorised: int | None
    grokked: int | None
    final_test: float
    history: History = field(repr=False, default_factory=History)


def grokking_sweep(p: int, width: int, fractions: Sequence[float], decays: Sequence[float],
                   seeds: Sequence[int], steps: int, *, threshold: float = 0.99, every: int = 25,
                   lr: float = 1e-3, device: torch.device | str | None = None,
                   progress: bool = False) -> list[GrokRun]:
    """Train the :class:`QuadraticMLP` for every (fraction, weight decay, seed) and record the
    memorisation and grokking steps (accuracy ≥ ``threshold``, checked every ``every`` steps).

    The seed draws both the train/test split and the initial weights, so the spread over seeds
    is the spread a reader sees by rerunning with another seed. A run stops once it groks; one
    that never does within ``steps`` has ``grokked = None``. ``device`` (e.g. CUDA) is where
    the networks train; the initial weights are drawn on the CPU, so they do not depend on it.
    """
    check_positive_int("every", every)
    if not seeds:
        raise ValueError("need at least one seed")
    runs = []
    for fraction in fractions:
        for wd in decays:
            for seed in seeds:
                split = modular_split(p, fraction, seed=seed)
                net = QuadraticMLP(p, width, generator=torch.Generator().manual_seed(seed))
                net = net.to(device) if device is not None else net
                hist = train(net, split, steps, lr=lr, weight_decay=wd, stop_at=threshold,
                             log_at=range(0, steps + 1, every), progress=progress)
                runs.append(GrokRun(seed, fraction, wd, grokking_step(hist, threshold, "train"),
                                    grokking_step(hist, threshold), hist.test_acc[-1], hist))
    return runs


def summarize_runs(runs: Sequence[GrokRun], key: str) -> dict[float, dict]:
    """Group runs by ``key`` (``"weight_decay"`` or ``"fraction"``) and summarise each group.

    For each value: ``steps`` (grokking steps of the runs that grokked), ``n`` (runs),
    ``mean`` and ``half`` (mean and half-width of the 95 % t-interval of those steps; nan when
    none grokked, half nan when one did), ``mem`` (memorisation steps) and ``final``
    (final test accuracies). Runs that never grokked are counted, not averaged in.
    """
    from .compare import t_interval

    check_choice("key", key, ("weight_decay", "fraction"))
    groups: dict[float, list[GrokRun]] = {}
    for r in runs:
        groups.setdefault(getattr(r, key), []).append(r)
    out = {}
    for v, rs in sorted(groups.items()):
        st = [r.grokked for r in rs if r.grokked is not None]
        mean, half = t_interval(st) if st else (math.nan, math.nan)
        out[v] = dict(steps=st, n=len(rs), mean=mean, half=half,
                      mem=[r.memorised for r in rs if r.memorised is not None],
                      final=[r.final_test for r in rs])
    return out


def describe_setting(value: float, summary: dict, symbol: str) -> str:
    """One setting of a sweep as a Russian phrase for the prose of chapter 10 («Гроккинг»).

    ``summary`` is one value of :func:`summarize_runs`. The phrase names the mean grokking step
    and the half-width of its 95 % t-interval over the runs that grokked, their range, and how
    many of the runs grokked — so a reader sees when the mean is over survivors only:
    ``"λ = 1: 1983 ± 143 (от 1950 до 2050), 3 из 3"``, ``"r = 0.4: 2975 (1 из 3)"``,
    ``"r = 0.3: нет (0 из 3)"``.
    """
    missing = {"steps", "n", "mean", "half"} - set(summary)
    if missing:
        raise ValueError(f"summary lacks {sorted(missing)}: pass a value of summarize_runs")
    steps, n = summary["steps"], summary["n"]
    if not steps:
        return f"{symbol} = {value:g}: нет (0 из {n})"
    if len(steps) == 1:
        return f"{symbol} = {value:g}: {steps[0]} (1 из {n})"
    half = "" if math.isnan(summary["half"]) else f" ± {summary['half']:.0f}"
    return (f"{symbol} = {value:g}: {summary['mean']:.0f}{half} "
            f"(от {min(steps)} до {max(steps)}), {len(steps)} из {n}")


def intervals_overlap(first: dict, second: dict) -> bool | None:
    """Whether the 95 % t-intervals of two :func:`summarize_runs` settings overlap.

    None when either setting has no interval (fewer than two runs grokked, or some run did not
    grok: then the mean is over survivors and an interval of it says nothing about the setting).
    The prose of chapter 10 glues this verdict instead of typing «перекрываются».
    """
    for s in (first, second):
        if len(s["steps"]) < 2 or len(s["steps"]) < s["n"] or math.isnan(s["half"]):
            return None
    lo1, hi1 = first["mean"] - first["half"], first["mean"] + first["half"]
    lo2, hi2 = second["mean"] - second["half"], second["mean"] + second["half"]
    return lo1 <= hi2 and lo2 <= hi1


def fourier_basis(p: int) -> tuple[Tensor, Tensor]:
    """An orthonormal real Fourier basis of ``R^p`` as rows, and the frequency of each row.

    Rows: the constant, then ``cos(2πka/p)`` and ``sin(2πka/p)`` for ``k = 1..⌊(p−1)/2⌋``
    (and the alternating vector for even ``p``), each scaled to unit norm.
    """
    _check_modulus(p)
    a = torch.arange(p, dtype=torch.float64)
    rows, freqs = [torch.ones(p, dtype=torch.float64)], [0]
    for k in range(1, (p - 1) // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * a / p), torch.sin(2 * math.pi * k * a / p)]
        freqs += [k, k]
    if p % 2 == 0:
        rows.append(torch.cos(math.pi * a))
        freqs.append(p // 2)
    basis = torch.stack(rows)
    return basis / basis.norm(dim=1, keepdim=True), torch.tensor(freqs)


def fourier_spectrum(embedding: Tensor) -> Tensor:
    """Share of the embedding's squared norm at each frequency ``k = 0..⌊p/2⌋``.

    ``embedding`` has one row per residue (``p × width``); cos and sin of one frequency are summed.
    The shares add up to one.
    """
    if embedding.dim() != 2:
        raise ValueError(f"embedding must be p × width, got shape {tuple(embedding.shape)}")
    p = embedding.shape[0]
    basis, freqs = fourier_basis(p)
    power = ((basis @ embedding.detach().double().cpu()) ** 2).sum(1)
    spec = torch.zeros(p // 2 + 1, dtype=torch.float64).index_add_(0, freqs, power)
    total = spec.sum()
    if total == 0:
        raise ValueError("the embedding is zero: its spectrum is undefined")
    return spec / total


def neuron_frequencies(embedding: Tensor) -> tuple[Tensor, Tensor]:
    """For each neuron (column of a ``p × width`` embedding): its strongest frequency and the share
    of the column's squared norm at it. A Fourier-feature neuron has a share near one."""
    if embedding.dim() != 2:
        raise ValueError(f"embedding must be p × width, got shape {tuple(embedding.shape)}")
    p = embedding.shape[0]
    basis, freqs = fourier_basis(p)
    power = (basis @ embedding.detach().double().cpu()) ** 2
    spec = torch.zeros(p // 2 + 1, embedding.shape[1], dtype=torch.float64).index_add_(0, freqs, power)
    total = spec.sum(0)
    if (total == 0).any():
        raise ValueError("a neuron's embedding column is zero: its spectrum is undefined")
    share, freq = (spec / total).max(0)
    return freq, share


def dominant_frequencies(spectrum: Tensor, mass: float = 0.9) -> list[int]:
    """The fewest frequencies whose shares add up to at least ``mass`` (largest first)."""
    if not 0 < mass <= 1:
        raise ValueError(f"mass must lie in (0, 1], got {mass!r}")
    order = torch.argsort(spectrum, descending=True)
    out, acc = [], 0.0
    for k in order.tolist():
        out.append(k)
        acc += float(spectrum[k])
        if acc >= mass - 1e-12:
            break
    return out


def analytic_mlp(p: int, freqs: Sequence[int] | None = None, phases: int = 3) -> QuadraticMLP:
    """Gromov's Fourier solution as a :class:`QuadraticMLP`, with the phases on a grid.

    For each frequency ``k`` and each phase pair ``(φ, ψ)`` from ``{2πi/phases}²`` one neuron has
    ``E_a[a] = cos(2πka/p + φ)``, ``E_b[b] = cos(2πkb/p + ψ)`` and readout
    ``W[n, q] = cos(2πkq/p + φ + ψ)``. The logits are then exactly
    ``(phases²/2) Σ_k cos(2πk(a + b − q)/p)`` (theorem of the section; needs ``phases ≥ 3``),
    whose argmax is ``(a + b) mod p`` when every ``k`` is coprime to ``p``.
    Gromov draws the phases at random; the grid makes the cancellation exact.
    """
    _check_modulus(p)
    if phases < 3:
        raise ValueError(f"phases must be >= 3 for the cross terms to cancel, got {phases!r}")
    freqs = list(range(1, (p - 1) // 2 + 1)) if freqs is None else list(freqs)
    if not freqs or any(not 1 <= k < p for k in freqs):
        raise ValueError(f"freqs must be a non-empty list of ints in [1, p), got {freqs!r}")
    a = torch.arange(p, dtype=torch.float64)
    grid = [2 * math.pi * i / phases for i in range(phases)]
    ea, eb, w = [], [], []
    for k in freqs:
        theta = 2 * math.pi * k * a / p
        for phi in grid:
            for psi in grid:
                ea.append(torch.cos(theta + phi))
                eb.append(torch.cos(theta + psi))
                w.append(torch.cos(theta + phi + psi))
    model = QuadraticMLP(p, len(ea)).double()
    with torch.no_grad():
        model.emb_a.copy_(torch.stack(ea, 1))
        model.emb_b.copy_(torch.stack(eb, 1))
        model.readout.copy_(torch.stack(w, 0))
    return model
