"""Experiments of chapter 4 («Оптимизаторы, экономящие память: Adafactor и 8-битный Adam»).

* The ledger's state sizes of Adafactor and 8-bit Adam live in :mod:`nntrain.memory` (its built-in
  table has ``"adafactor"`` and ``"adam8bit"``); :func:`adafactor_state_bytes` and
  :func:`adam8bit_state_bytes` are re-exported here, and :data:`CODE_BOOK_BYTES` is the one
  per-optimizer term that the per-tensor ledger leaves out.
* A small language-modelling task that ships with the package: tokens of a random Markov chain of
  order 1 or 2 (:class:`MarkovTokens`), whose entropy rate — the lowest loss any model can reach —
  is computed exactly; a small GPT from :mod:`nntrain.models` learns it (the chapter uses order 1
  and one layer).
* One training run per optimizer ``kind`` (:func:`train_lm`): ``"adam"`` (torch.optim.Adam,
  float32 states), ``"adam8bit"`` (ours), ``"bnb8bit"`` (bitsandbytes, when installed),
  ``"adafactor"`` (ours).
* Quantization error of real Adam states against the block size (:func:`block_size_errors`), the
  error of 8-bit moments that shadow a float32 Adam run step by step (:func:`shadow_errors`), and the
  median step time of each optimizer (:func:`step_times`). The error of the *direction* is always
  that of the step 8-bit Adam really takes: the fresh gradient is added to the dequantized moments
  before the division, so a v rounded to zero costs the memory of v, not a division by ε.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from . import memory
from .memory import adafactor_state_bytes, adam8bit_state_bytes
from ._checks import check_choice, check_positive_int
from .models import GPT, GPTConfig
from .optim.adafactor import Adafactor
from .optim.adam8bit import Adam8bit
from .compare import train_steps
from .quant import dequantize_blockwise, dynamic_code, quantize_blockwise

__all__ = ["CODE_BOOK_BYTES", "KINDS", "adafactor_state_bytes", "adam8bit_state_bytes", "bnb_available", "make_optimizer", "MarkovTokens",
           "lm_config", "LMRun", "train_lm", "block_size_errors", "shadow_errors", "step_times",
           "adam_states"]

CODE_BOOK_BYTES = 2 * 256 * 4  # two float32 code books of 256 entries, shared by all tensors
KINDS = ("adam", "adam8bit", "bnb8bit", "adafactor")


def bnb_available() -> bool:
    """Whether bitsandbytes can be imported (it is an optional dependency of the book)."""
    return importlib.util.find_spec("bitsandbytes") is not None


def make_optimizer(kind: str, params, lr: float) -> torch.optim.Optimizer:
    """The optimizer ``kind`` of chapter 4 at learning rate ``lr``, other options at their defaults.

    ``"adafactor"``'s ``lr`` is the cap of its relative step size ρ (torch's meaning).
    ``"bnb8bit"`` needs bitsandbytes (ImportError with the install line otherwise).
    """
    check_choice("optimizer kind", kind, KINDS)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    if kind == "adam8bit":
        return Adam8bit(params, lr=lr)
    if kind == "adafactor":
        return Adafactor(params, lr=lr)
    if not bnb_available():
        raise ImportError("kind 'bnb8bit' needs bitsandbytes: pip install bitsandbytes")
    import bitsandbytes as bnb

    return bnb.optim.Adam8bit(params, lr=lr)


# ------------------------------------------------------------------------------ the task


class MarkovTokens:
    """Token sequences of a random Markov chain of ``order`` 1 or 2 over ``vocab`` symbols.

    The next token depends on the previous ``order`` tokens through a table of distributions drawn
    from a symmetric Dirichlet with parameter ``concentration`` (small: peaked, predictable rows).
    :meth:`entropy_rate` is the exact lower bound of the mean cross-entropy of any model, in nats
    (for the tokens after the first ``order`` of a sequence).
    """

    def __init__(self, vocab: int = 32, concentration: float = 0.1, seed: int = 0, order: int = 1) -> None:
        check_positive_int("vocab", vocab)
        check_choice("order", order, (1, 2))
        if not concentration > 0:
            raise ValueError(f"concentration must be > 0, got {concentration!r}")
        rng = np.random.default_rng(seed)
        self.vocab, self.order = vocab, order
        self.table = torch.tensor(rng.dirichlet(np.full(vocab, concentration), size=(vocab,) * order))

    def sample(self, batch: int, seq: int, gen: torch.Generator) -> Tensor:
        """A (batch, seq + 1) int64 tensor: each row starts from ``order`` uniform tokens."""
        check_positive_int("batch", batch)
        check_positive_int("seq", seq)
        out = torch.empty(batch, seq + 1, dtype=torch.long)
        o = self.order
        out[:, :o] = torch.randint(self.vocab, (batch, o), generator=gen)
        for t in range(o, seq + 1):
            probs = self.table[out[:, t - 1]] if o == 1 else self.table[out[:, t - 2], out[:, t - 1]]
            out[:, t] = torch.multinomial(probs, 1, generator=gen).squeeze(1)
        return out

    def entropy_rate(self, iterations: int = 2000) -> float:
        """H(x_t | previous ``order`` tokens) under the stationary law (power iteration), in nats."""
        V = self.vocab
        p = self.table.clamp_min(1e-300)
        h_rows = -(self.table * p.log()).sum(-1)
        law = torch.full((V,) * self.order, float(V) ** -self.order, dtype=torch.float64)
        for _ in range(iterations):
            law = law @ self.table if self.order == 1 else torch.einsum("ab,abc->bc", law, self.table)
        return float((law * h_rows).sum())


def lm_config(vocab: int = 32, seq: int = 32, n_layer: int = 2, n_embd: int = 64, n_head: int = 4) -> GPTConfig:
    """The small GPT of the chapter's loss curves (54 208 parameters with ``n_layer=1``, 104 192 with 2)."""
    return GPTConfig(vocab_size=vocab, block_size=seq, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                     dropout=0.0, bias=True)


@dataclass
class LMRun:
    """One run: training loss per iteration, held-out loss at the end, seconds, state bytes."""

    kind: str
    lr: float
    seed: int
    train_loss: np.ndarray
    val_loss: float
    seconds: float
    state_bytes: int


def train_lm(kind: str, lr: float, seed: int, data: MarkovTokens, cfg: GPTConfig, steps: int,
             batch: int = 32, val_batches: int = 4, warmup: int = 20,
             device: str | torch.device = "cpu") -> LMRun:
    """Train a fresh GPT with optimizer ``kind``; linear warm-up over ``warmup`` steps, then constant.

    The seed fixes the initialisation and the training batches (the same for every optimizer);
    the held-out batches come from a separate generator (seed 10⁶), the same for all runs.
    """
    check_positive_int("steps", steps)
    torch.manual_seed(seed)
    model = GPT(cfg).to(device)
    opt = make_optimizer(kind, model.parameters(), lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / max(warmup, 1)))
    gen = torch.Generator().manual_seed(1000 + seed)

    def loss_fn() -> Tensor:
        xy = data.sample(batch, cfg.block_size, gen).to(device)
        return model(xy[:, :-1], xy[:, 1:])[1]

    losses, seconds = train_steps(opt, sched, steps, loss_fn)
    vgen = torch.Generator().manual_seed(10 ** 6)
    with torch.no_grad():
        val = [model(xy[:, :-1], xy[:, 1:])[1].item() for xy in
               (data.sample(batch, cfg.block_size, vgen).to(device) for _ in range(val_batches))]
    return LMRun(kind, float(lr), int(seed), losses, float(np.mean(val)), seconds,
                 memory.optimizer_state_bytes(opt))


# ------------------------------------------------------------------------------ quantization error


def adam_states(model: nn.Module, data: MarkovTokens, steps: int, lr: float = 3e-3, batch: int = 32,
                seed: int = 0) -> dict[str, tuple[Tensor, Tensor]]:
    """Train ``model`` with float32 Adam for ``steps`` and return ``{name: (m, v)}`` of its tensors."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(1000 + seed)
    seq = model.config.block_size
    for _ in range(steps):
        xy = data.sample(batch, seq, gen)
        _, loss = model(xy[:, :-1], xy[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {name: (opt.state[p]["exp_avg"].clone(), opt.state[p]["exp_avg_sq"].clone())
            for name, p in model.named_parameters() if p in opt.state}


def _update_error(m: Tensor, v: Tensor, m_hat: Tensor, v_hat: Tensor, eps: float = 1e-8) -> tuple[float, float]:
    """(‖u − û‖², ‖u‖²) of the Adam direction u = m/(√v + ε), in float64 (the bias corrections
    cancel in the ratio, up to where ε sits)."""
    u = m.double() / (v.double().sqrt() + eps)
    u_hat = m_hat.double() / (v_hat.double().sqrt() + eps)
    return float((u - u_hat).norm() ** 2), float(u.norm() ** 2)


def _sq_err(a: Tensor, b: Tensor) -> tuple[float, float]:
    """(‖a − b‖², ‖a‖²) in float64."""
    return float((a.double() - b.double()).norm() ** 2), float(a.double().norm() ** 2)


def _zeroed(v: Tensor, v_hat: Tensor) -> int:
    """How many positive entries of v decode to exactly zero (the zero point of the code)."""
    return int(((v > 0) & (v_hat == 0)).sum())


def block_size_errors(states: dict[str, tuple[Tensor, ...]], block_sizes: Sequence[int | None],
                      code_m: Tensor, code_v: Tensor, betas: tuple[float, float] = (0.9, 0.999),
                      eps: float = 1e-8) -> dict[str, list[float]]:
    """Relative L2 errors of m, v and of the next step's direction after one round trip, per block size.

    ``states`` maps a name to ``(m, v)`` or ``(m, v, g)``. The direction is the one 8-bit Adam really
    takes at the next step: the gradient g is first added to the (dequantized) moments,
    (β₁m + (1 − β₁)g)/(√(β₂v + (1 − β₂)g²) + ε); without g it is the step after a zero gradient.
    ``"v_zero"`` is the share of positive v entries that decode to 0. ``None`` in ``block_sizes`` is
    one absmax per tensor. Only tensors of ≥ 4096 values are used (8-bit Adam keeps the small ones
    in float32); the errors are over all of them together.
    """
    big = [s for s in states.values() if s[0].numel() >= 4096]
    if not big:
        raise ValueError("no tensor of >= 4096 values among the states")
    b1, b2 = betas
    out: dict[str, list[float]] = {"m": [], "v": [], "update": [], "v_zero": []}
    for bs in block_sizes:
        acc = {k: [0.0, 0.0] for k in ("m", "v", "update")}
        zeros, total = 0, 0
        for s in big:
            m, v = s[0].float(), s[1].float()
            g = s[2].float() if len(s) > 2 else torch.zeros_like(m)
            b = m.numel() if bs is None else bs
            mh = dequantize_blockwise(*quantize_blockwise(m, code_m, b), code_m, b)
            vh = dequantize_blockwise(*quantize_blockwise(v, code_v, b), code_v, b)
            step = [(a.mul(b1).add(g, alpha=1 - b1), c.mul(b2).addcmul(g, g, value=1 - b2))
                    for a, c in ((m, v), (mh, vh))]  # float32 and 8-bit moments of the next step
            for name, (e, n) in (("m", _sq_err(m, mh)), ("v", _sq_err(v, vh)),
                                 ("update", _update_error(*step[0], *step[1], eps))):
                acc[name][0] += e
                acc[name][1] += n
            zeros, total = zeros + _zeroed(v, vh), total + v.numel()
        for name, (e, n) in acc.items():
            out[name].append(math.sqrt(e / max(n, 1e-300)))
        out["v_zero"].append(zeros / total)
    return out


def shadow_errors(model: nn.Module, data: MarkovTokens, steps: int, lr: float = 3e-3, batch: int = 32,
                  block_size: int = 256, seed: int = 0, betas: tuple[float, float] = (0.9, 0.999),
                  codes: tuple[Tensor, Tensor] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Train with float32 Adam and keep, beside it, 8-bit moments fed the same gradients.

    Every step, the 8-bit moments are dequantized, updated with the gradient and quantized again,
    exactly as 8-bit Adam does. Recorded per step, against float32 Adam: the relative errors of the
    stored (dequantized) m and v; of the direction m/√v *of this step*, computed as 8-bit Adam
    computes it, from the dequantized previous state plus this gradient (so it is 0 at step 1); and
    ``"v_zero"``, the share of positive v entries that the stored state decodes to 0. The trajectory
    is float32 Adam's, so the errors measure how far the quantized states drift, not how a different
    trajectory would look. Returns ``(errors, states)``: the per-step errors and ``{name: (m, v, g)}``
    — float32 Adam's moments at the end and the gradient of one more batch at the final weights (the
    gradient the next step would add), real optimizer states for the other experiments of the chapter.
    """
    code_m, code_v = codes if codes is not None else (dynamic_code(True), dynamic_code(False))
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=betas)
    params = [p for p in model.parameters() if p.numel() >= 4096]
    q = {p: None for p in params}
    gen = torch.Generator().manual_seed(1000 + seed)
    seq = model.config.block_size
    out = {k: np.empty(steps) for k in ("m", "v", "update", "v_zero")}
    b1, b2 = betas

    def backward() -> None:
        xy = data.sample(batch, seq, gen)
        _, loss = model(xy[:, :-1], xy[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()

    for k in range(steps):
        backward()
        fresh = {}
        for p in params:
            g = p.grad.detach().float()
            if q[p] is None:
                m8, v8 = torch.zeros_like(g), torch.zeros_like(g)
            else:
                m8 = dequantize_blockwise(*q[p][0], code_m, block_size)
                v8 = dequantize_blockwise(*q[p][1], code_v, block_size)
            m8.mul_(b1).add_(g, alpha=1 - b1)
            v8.mul_(b2).addcmul_(g, g, value=1 - b2)
            fresh[p] = (m8, v8)  # what this step of 8-bit Adam divides
            q[p] = (quantize_blockwise(m8, code_m, block_size), quantize_blockwise(v8, code_v, block_size))
        opt.step()
        err = {name: [0.0, 0.0] for name in ("m", "v", "update")}
        zeros, total = 0, 0
        for p in params:
            m, v = opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"]
            # the state the next step will read: dequantized
            mh = dequantize_blockwise(*q[p][0], code_m, block_size)
            vh = dequantize_blockwise(*q[p][1], code_v, block_size)
            for name, (e, n) in (("m", _sq_err(m, mh)), ("v", _sq_err(v, vh)),
                                 ("update", _update_error(m, v, *fresh[p]))):
                err[name][0] += e
                err[name][1] += n
            zeros, total = zeros + _zeroed(fresh[p][1], vh), total + v.numel()
        for name, (e, n) in err.items():
            out[name][k] = math.sqrt(e / max(n, 1e-300))
        out["v_zero"][k] = zeros / total
    backward()  # one more gradient at the final weights, for the next-step direction
    states = {name: (opt.state[p]["exp_avg"].clone(), opt.state[p]["exp_avg_sq"].clone(),
                     p.grad.detach().clone())
              for name, p in model.named_parameters() if p in opt.state}
    return out, states


# ------------------------------------------------------------------------------ speed


def step_times(kinds: Sequence[str], make_params: Callable[[], list[Tensor]], repeat: int = 20,
               warmup: int = 3) -> dict[str, float]:
    """Median seconds of one ``optimizer.step()`` for each kind, on fresh parameters with fixed gradients.

    ``make_params()`` returns leaf tensors with ``.grad`` set. On CUDA, the clock is read after
    ``torch.cuda.synchronize()``. Learning rates are small so that the parameters barely move.
    """
    check_positive_int("repeat", repeat)
    out = {}
    for kind in kinds:
        params = make_params()
        opt = make_optimizer(kind, params, 1e-4)
        cuda = params[0].is_cuda
        times = []
        for i in range(warmup + repeat):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            opt.step()
            if cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        out[kind] = statistics.median(times)
    return out
