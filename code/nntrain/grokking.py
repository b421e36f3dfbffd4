"""Grokking on modular arithmetic (chapter 10, «Гроккинг»).

A network trained on a fraction of the table ``(a, b) -> (a ∘ b) mod p`` first memorises the
training pairs and only much later generalises to the rest (Power et al. 2022). This module holds
what the section needs:

* the data: every pair of the table and a seeded train/test split (:func:`modular_split`);
* the model: Gromov's two-layer MLP with a quadratic activation (:class:`QuadraticMLP`);
* full-batch training with AdamW and logging on a log-spaced schedule (:func:`train`,
  :func:`log_schedule`, :func:`grokking_step`);
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
           "log_schedule", "History", "train", "grokking_step", "weight_norm", "fourier_basis",
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
          progress: bool = False) -> History:
    """Full-batch AdamW on cross-entropy; log accuracy, loss and weight norm at ``log_at`` steps.

    With ``stop_at`` the run ends at the first logged step where the test accuracy reaches it
    (the sweeps only need the grokking step). Settings of Power et al. and Nanda et al.
    """
    check_positive_int("steps", steps)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    log_set = set(log_schedule(steps) if log_at is None else log_at)
    opt = AdamW(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    hist = History()
    it = range(steps + 1)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, leave=False)
    for k in it:
        if k in log_set:
            tr_acc, tr_loss = _evaluate(model, split.x_train, split.y_train)
            te_acc, te_loss = _evaluate(model, split.x_test, split.y_test)
            for name, v in zip(hist.__dict__, (k, tr_acc, te_acc, tr_loss, te_loss,
                                               weight_norm(model))):
                getattr(hist, name).append(v)
            if stop_at is not None and te_acc >= stop_at:
                break
        if k == steps:
            break
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(split.x_train), split.y_train).backward()
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
    power = ((basis @ embedding.detach().double()) ** 2).sum(1)
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
    power = (basis @ embedding.detach().double()) ** 2
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
