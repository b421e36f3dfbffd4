"""Gradient accumulation done right, with its pitfalls as explicit options (chapter 5).

One optimizer step on a batch of B examples can be computed as k backward passes over
micro-batches of size b = B/k: gradients are linear in the loss, so summing the micro-batch
gradients with the right weights gives the gradient of the whole batch (exactly in real
arithmetic, up to the summation order in floating point). :func:`accumulate_step` is that step.
Its options name the ways the identity breaks, so that the chapter can show each failure and
its fix with the same function:

* ``normalize``: how each micro-batch's loss is weighted (``"mean"`` over all units of the
  whole batch — examples or tokens —, ``"micro_mean"`` the usual per-micro-batch mean weighted by
  its share of rows, ``"sum"``, and ``"unscaled"``, the forgotten 1/k);
* ``remainder``: what happens when k does not divide B (an error, or sizes that differ by one
  and weights by size, which stays exact);
* ``clip`` / ``clip_per_micro``: clip the accumulated gradient once, or (a different method)
  each micro-batch's contribution;
* ``scaler``: ``torch.amp.GradScaler`` — scale every backward, unscale/step/update once;
* ``l2`` / ``l2_per_micro`` and ``schedule_per``: a penalty and a learning-rate schedule are
  counted per optimizer step, not per micro-batch;
* ``no_sync``: under ``DistributedDataParallel`` skip the all-reduce of all but the last micro-batch.

The loss function returns ``(sum of the losses of the units, number of units)`` for one
micro-batch, so that the step can normalise by the count of the whole batch.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_positive_int
from .memory import bytes_per_parameter

__all__ = [
    "NORMALIZE",
    "REMAINDER",
    "SCHEDULE_PER",
    "AccumulationResult",
    "IndexedDropout",
    "LossFn",
    "accumulate_step",
    "bytes_per_parameter_accumulating",
    "cross_entropy_sum",
    "ddp_allreduce_count",
    "flat_grad",
    "grad_gap",
    "per_example_abs_sum",
    "split_sizes",
    "sum_in_dtype",
    "summation_bound",
    "token_cross_entropy_sum",
    "variable_length_tokens",
]

NORMALIZE = ("mean", "micro_mean", "sum", "unscaled")
REMAINDER = ("error", "weighted")
SCHEDULE_PER = ("step", "micro")

# loss_fn(model, *micro_batch_tensors) -> (sum of the losses of the units, number of units)
LossFn = Callable[..., tuple[torch.Tensor, int]]


# ------------------------------------------------------------------------------ loss functions


def cross_entropy_sum(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per-example cross-entropy summed over the micro-batch, and the number of examples."""
    return F.cross_entropy(model(x), y, reduction="sum"), len(y)


def token_cross_entropy_sum(model: nn.Module, idx: torch.Tensor,
                            targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per-token cross-entropy of a GPT summed over the real tokens (targets -1 are padding)."""
    logits, _ = model(idx)
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=-1, reduction="sum")
    return loss, int((targets != -1).sum())


def variable_length_tokens(n_seq: int, max_len: int, vocab: int, min_len: int = 1,
                           generator: torch.Generator | None = None,
                           sort: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences of unequal lengths, padded: ``(idx, targets)``, padding target -1.

    ``sort=True`` orders them by length, as length-bucketing data loaders do: then micro-batches
    hold very different numbers of tokens, which is what makes per-micro-batch means biased.
    """
    check_positive_int("n_seq", n_seq)
    check_positive_int("max_len", max_len)
    check_positive_int("vocab", vocab)
    check_positive_int("min_len", min_len)
    if min_len > max_len:
        raise ValueError(f"min_len={min_len} is larger than max_len={max_len}")
    lengths = torch.randint(min_len, max_len + 1, (n_seq,), generator=generator)
    if sort:
        lengths = lengths.sort().values
    idx = torch.randint(0, vocab, (n_seq, max_len), generator=generator)
    targets = torch.roll(idx, -1, dims=1)
    pad = torch.arange(max_len)[None, :] >= lengths[:, None]
    idx = idx.masked_fill(pad, 0)
    targets = targets.masked_fill(pad, -1)
    return idx, targets


# ------------------------------------------------------------------------------ splitting a batch


def split_sizes(n: int, micro_batches: int, remainder: str = "error") -> list[int]:
    """Sizes of the ``micro_batches`` parts of a batch of ``n`` rows, in order.

    ``remainder="error"`` refuses a count that does not divide ``n``; ``"weighted"`` makes the
    first ``n % k`` parts one row longer (as ``torch.tensor_split``), and the step then weights
    each part by its size, which keeps the gradient exact.
    """
    check_positive_int("n", n)
    check_positive_int("micro_batches", micro_batches)
    check_choice("remainder", remainder, REMAINDER)
    if micro_batches > n:
        raise ValueError(f"micro_batches={micro_batches} is larger than the batch ({n} rows): "
                         "a micro-batch would be empty")
    q, r = divmod(n, micro_batches)
    if r and remainder == "error":
        raise ValueError(f"micro_batches={micro_batches} does not divide the batch of {n} rows; "
                         "pick a divisor or pass remainder='weighted' (parts weighted by size)")
    return [q + 1] * r + [q] * (micro_batches - r)


# ------------------------------------------------------------------------------ dropout with fixed masks


class IndexedDropout(nn.Module):
    """Dropout whose mask for example i depends only on (seed, i, call number), not on the RNG stream.

    Ordinary dropout draws its masks from the global generator, so k micro-batches see the same
    masks as one big batch only if the stream is consumed in the same order (one dropout layer:
    yes; two: no). This module makes the masks a function of the example's index in the whole
    batch, like a counter-based generator: :func:`accumulate_step` tells it which rows are running
    (``set_rows``). ``new_step()`` advances to fresh masks for the next optimizer step.
    """

    def __init__(self, p: float, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p!r}")
        self.p, self.seed, self.step = p, int(seed), 0
        self.rows: range | None = None

    def set_rows(self, start: int, stop: int) -> None:
        self.rows = range(start, stop)

    def new_step(self) -> None:
        self.step += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        rows = self.rows if self.rows is not None else range(len(x))
        if len(rows) != len(x):
            raise ValueError(f"set_rows gave {len(rows)} rows, the input has {len(x)}")
        g = torch.Generator()
        masks = []
        for i in rows:
            g.manual_seed((self.seed * 1_000_003 + self.step) * 1_000_033 + i)
            masks.append(torch.rand(x.shape[1:], generator=g) >= self.p)
        mask = torch.stack(masks).to(device=x.device, dtype=x.dtype)
        return x * mask / (1.0 - self.p)


# ------------------------------------------------------------------------------ the step


@dataclass
class AccumulationResult:
    """What one accumulating step did."""

    loss: float  # the batch loss in the chosen normalisation (mean over units for "mean")
    units: int  # examples or tokens in the whole batch
    sizes: list[int]  # rows of each micro-batch
    grad_norm: float | None = None  # norm of the accumulated gradient before clipping (if clip)
    stepped: bool = False  # an optimizer step was taken (GradScaler may skip one on inf/NaN)
    lrs: list[float] = field(default_factory=list)  # learning rate after the step (if scheduler)


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def flat_grad(model: nn.Module) -> torch.Tensor:
    """All parameter gradients as one vector (zeros where a gradient is missing)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                      for p in _params(model)])


def _clip_(grads: Sequence[torch.Tensor], max_norm: float) -> float:
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    factor = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    for g in grads:
        g.mul_(factor)
    return float(norm)


def accumulate_step(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Sequence[torch.Tensor],
    micro_batches: int,
    normalize: str = "mean",
    remainder: str = "error",
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    schedule_per: str = "step",
    clip: float | None = None,
    clip_per_micro: bool = False,
    scaler: torch.amp.GradScaler | None = None,
    l2: float = 0.0,
    l2_per_micro: bool = False,
    no_sync: bool = True,
    autocast_dtype: torch.dtype | None = None,
    divide_by: float | None = None,
) -> AccumulationResult:
    """One training step on ``batch`` computed in ``micro_batches`` forward/backward passes.

    ``batch``: tensors that share the first (row) dimension, split in order. ``loss_fn(model,
    *micro)`` returns the sum of the losses of the micro-batch's units and their number.
    The gradients are zeroed first; without ``optimizer`` they are left in ``.grad``
    (``micro_batches=1`` is then the big-batch reference). Options (see the module docstring):
    ``normalize``, ``remainder``, ``clip`` (after accumulation; ``clip_per_micro`` is the other
    method), ``scaler`` (needs ``optimizer``), ``l2`` (penalty (l2/2)·‖w‖² once per step;
    ``l2_per_micro`` adds it with every micro-batch), ``scheduler`` stepped per optimizer step
    (``schedule_per="micro"``: per micro-batch, the pitfall), ``no_sync`` for DDP models.

    ``divide_by`` (``normalize="mean"`` only): the divisor of the summed gradient instead of the
    units counted here. Under DDP the last backward already *averages* over the P processes and
    the division comes after it, so each process would divide by its own count: with unequal
    token counts the replicas would get different gradients. Pass ``N_global / P`` there, with
    ``N_global`` the all-reduced number of units, and every process divides alike.
    ``result.stepped`` under a ``GradScaler`` is read from the scale: it did not shrink.
    """
    check_choice("normalize", normalize, NORMALIZE)
    check_choice("schedule_per", schedule_per, SCHEDULE_PER)
    if not batch:
        raise ValueError("batch is empty: pass a tuple of tensors, e.g. (x, y)")
    n = len(batch[0])
    if any(len(t) != n for t in batch):
        raise ValueError(f"the tensors of batch have different numbers of rows: {[len(t) for t in batch]}")
    sizes = split_sizes(n, micro_batches, remainder)
    if scaler is not None and optimizer is None:
        raise ValueError("a GradScaler needs the optimizer: it unscales and steps it once per step")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be a positive max norm, got {clip!r}")
    if clip_per_micro and clip is None:
        raise ValueError("clip_per_micro=True needs clip=max_norm")
    if scheduler is not None and optimizer is None:
        raise ValueError("a scheduler needs the optimizer")
    if l2 < 0:
        raise ValueError(f"l2 must be non-negative, got {l2!r}")
    if divide_by is not None:
        if normalize != "mean":
            raise ValueError("divide_by is the divisor of normalize='mean'")
        if not divide_by > 0:
            raise ValueError(f"divide_by must be positive, got {divide_by!r}")
    if l2_per_micro and normalize == "mean":
        raise ValueError("l2_per_micro (the pitfall) is defined for per-micro-batch losses: "
                         "use normalize='micro_mean', 'sum' or 'unscaled'")
    params = _params(model)
    for p in params:
        p.grad = None
    k = len(sizes)
    starts = [sum(sizes[:j]) for j in range(k)]
    indexed = [m for m in model.modules() if hasattr(m, "set_rows")]
    total_units, total_loss = 0, 0.0
    can_skip_sync = no_sync and hasattr(model, "no_sync")
    for j, (start, size) in enumerate(zip(starts, sizes)):
        micro = [t[start:start + size] for t in batch]
        for m in indexed:
            m.set_rows(start, start + size)
        last = j == k - 1
        skip = can_skip_sync and not last  # DDP: all-reduce only in the last backward
        with model.no_sync() if skip else contextlib.nullcontext():
            amp = (torch.autocast(micro[0].device.type, dtype=autocast_dtype)
                   if autocast_dtype is not None else contextlib.nullcontext())
            with amp:
                loss_sum, units = loss_fn(model, *micro)
            if units <= 0:
                raise ValueError(f"micro-batch {j} has no units to average")
            total_units += units
            weight = {"mean": 1.0, "sum": 1.0, "micro_mean": size / n / units,
                      "unscaled": 1.0 / units}[normalize]
            # 16-bit losses (autocast) are promoted; fp32/fp64 ones keep their dtype
            if loss_sum.dtype not in (torch.float32, torch.float64):
                loss_sum = loss_sum.float()
            loss = loss_sum * weight
            if l2 and l2_per_micro:  # the pitfall: the penalty once per micro-batch
                loss = loss + 0.5 * l2 * sum((p ** 2).sum() for p in params)
            total_loss += float(loss.detach())
            before = ([p.grad.clone() if p.grad is not None else None for p in params]
                      if clip_per_micro else None)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            if clip_per_micro:  # clip this micro-batch's mean gradient on its own
                deltas = [p.grad - (b if b is not None else 0) for p, b in zip(params, before)]
                # the contribution is (mean gradient of micro-batch j) × this factor
                factor = {"mean": units, "sum": units, "micro_mean": size / n,
                          "unscaled": 1.0}[normalize]
                scale = scaler.get_scale() if scaler is not None else 1.0
                _clip_(deltas, clip * factor * scale)
                for p, b, d in zip(params, before, deltas):
                    p.grad = d if b is None else b + d
    for m in indexed:
        m.rows = None
    if scaler is not None:
        scaler.unscale_(optimizer)  # once: the accumulated gradient carries the factor S once
    if normalize == "mean":  # Σ_j S_j / N: the same as scaling each backward by 1/N
        divisor = total_units if divide_by is None else divide_by
        for p in params:
            if p.grad is not None:
                p.grad.div_(divisor)
        total_loss /= divisor
    if l2 and not l2_per_micro:
        for p in params:
            p.grad = p.grad + l2 * p.detach() if p.grad is not None else l2 * p.detach().clone()
        total_loss += 0.5 * l2 * float(sum((p.detach() ** 2).sum() for p in params))
    result = AccumulationResult(loss=total_loss, units=total_units, sizes=sizes)
    if clip is not None and not clip_per_micro:
        result.grad_norm = _clip_([p.grad for p in params if p.grad is not None], clip)
    if optimizer is not None:
        if scaler is not None:
            before_scale = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            result.stepped = scaler.get_scale() >= before_scale
        else:
            optimizer.step()
            result.stepped = True
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            for _ in range(k if schedule_per == "micro" else 1):
                scheduler.step()
            result.lrs = [g["lr"] for g in optimizer.param_groups]
    for m in indexed:
        m.new_step()
    return result


# ------------------------------------------------------------------------------ float error


def per_example_abs_sum(model: nn.Module, loss_fn: LossFn, batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ_i |∂ℓ_i/∂w| / N per coordinate, in float64: the scale of the float summation error bound.

    Computed one example at a time on a float64 copy of the model (small models only).
    """
    ref = copy.deepcopy(model).double()
    n = len(batch[0])
    acc = torch.zeros(sum(p.numel() for p in _params(ref)), dtype=torch.float64)
    units = 0
    for i in range(n):
        row = [t[i:i + 1].double() if t.is_floating_point() else t[i:i + 1] for t in batch]
        for p in _params(ref):
            p.grad = None
        loss, u = loss_fn(ref, *row)
        loss.backward()
        acc += flat_grad(ref).abs()
        units += u
    return acc / units


def summation_bound(batch: int, micro_batches: int, eps: float) -> float:
    """Bound on |ĝ_big − ĝ_acc| / Σ|x_i| for the two float orders of one gradient entry.

    A weight-gradient entry is an inner product Σ_i a_i·c_i over the examples (x_i = a_i·c_i),
    computed inside a matrix product, perhaps with fused multiply-adds. An inner product of n
    terms errs by at most γ_n·Σ|x_i|, γ_m = m·u/(1 − m·u), u = eps/2 (Higham, Accuracy and
    Stability, §3.1; §4.2 for sums): one rounding of the product, at most n − 1 of additions.
    One batch of B terms: γ_B; k micro-batches of b = B/k: γ_b inside each, then k − 1
    additions of the partial sums, at most γ_{b+k−1}. Both approximate the same exact value,
    so they differ by at most γ_B + γ_{b+k−1}.
    """
    check_positive_int("batch", batch)
    check_positive_int("micro_batches", micro_batches)
    if batch % micro_batches:
        raise ValueError(f"micro_batches={micro_batches} does not divide batch={batch}")
    u = eps / 2

    def gamma(m: int) -> float:
        if m * u >= 1:
            raise ValueError("the bound needs m·u < 1")
        return m * u / (1 - m * u)

    b = batch // micro_batches
    return gamma(batch) + gamma(b + micro_batches - 1)


def sum_in_dtype(parts: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Add the rows of ``parts`` one after another in an accumulator of ``dtype`` (an accumulation buffer)."""
    acc = torch.zeros(parts.shape[1:], dtype=dtype)
    for row in parts:
        acc = acc + row.to(dtype)
    return acc


# ------------------------------------------------------------------------------ memory


def bytes_per_parameter_accumulating(optimizer: str = "adam", precision: str = "mixed",
                                     micro_batches: int = 1,
                                     buffer_bytes: int | None = None) -> dict[str, int]:
    """Chapter 3's bytes per parameter plus the accumulation buffer of k micro-batches.

    With 16-bit gradients (``precision="mixed"``) and k > 1 the micro-batch gradients are summed
    in a separate fp32 buffer: 4 more bytes per parameter, 16Ψ → 20Ψ for mixed-precision Adam.
    With fp32 gradients they accumulate in ``.grad`` itself and nothing is added.
    """
    check_positive_int("micro_batches", micro_batches)
    per = dict(bytes_per_parameter(optimizer, precision))
    if buffer_bytes is None:
        buffer_bytes = 4 if micro_batches > 1 and per["grads"] < 4 else 0
    elif not isinstance(buffer_bytes, int) or buffer_bytes < 0:
        raise ValueError(f"buffer_bytes must be a non-negative int, got {buffer_bytes!r}")
    per["accumulation"] = buffer_bytes
    return per


# ------------------------------------------------------------------------------ DDP with gloo


def _ddp_worker(rank: int, world: int, port: int, micro_batches: int, out_dir: str,
                rows: int, dim: int, classes: int, seed: int) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    if world == 1:  # in the calling process: a store in memory, no port, no environment
        dist.init_process_group("gloo", rank=0, world_size=1, store=dist.HashStore())
    else:
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
        torch.set_num_threads(1)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        results = {}
        for use_no_sync in (False, True):
            torch.manual_seed(seed)
            net = nn.Sequential(nn.Linear(dim, 32), nn.Tanh(), nn.Linear(32, classes)).double()
            model = DDP(net)
            calls = {"n": 0, "bytes": 0}

            def hook(state, bucket):
                calls["n"] += 1
                calls["bytes"] += bucket.buffer().numel() * bucket.buffer().element_size()
                fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
                return fut.then(lambda f: f.value()[0] / world)

            model.register_comm_hook(None, hook)
            g = torch.Generator().manual_seed(seed + 1)
            x = torch.randn(world * rows, dim, generator=g, dtype=torch.float64)
            y = torch.randint(0, classes, (world * rows,), generator=g)
            mine = slice(rank * rows, (rank + 1) * rows)
            accumulate_step(model, cross_entropy_sum, (x[mine], y[mine]), micro_batches,
                            no_sync=use_no_sync)
            results["no_sync" if use_no_sync else "sync"] = {
                "calls": calls["n"], "bytes": calls["bytes"], "grad": flat_grad(net)}
        if rank == 0:
            torch.manual_seed(seed)
            ref = nn.Sequential(nn.Linear(dim, 32), nn.Tanh(), nn.Linear(32, classes)).double()
            accumulate_step(ref, cross_entropy_sum, (x, y), 1)
            results["single"] = {"grad": flat_grad(ref),
                                 "params": sum(p.numel() for p in ref.parameters())}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_allreduce_count(micro_batches: int = 4, world: int = 2, rows: int = 16, dim: int = 8,
                        classes: int = 3, seed: int = 0) -> dict:
    """Run real DDP (gloo backend, ``world`` CPU processes) with and without ``no_sync``.

    Each process accumulates ``micro_batches`` micro-batches of its ``rows`` examples; a
    communication hook counts the all-reduce calls and bytes. Returns, per rank, the counts and
    the gradients, and a single-process gradient of the whole ``world·rows`` batch to compare.
    ``world >= 2`` spawns fresh processes: each imports torch and builds DDP, which takes
    several seconds. ``world=1`` runs the same DDP code in the calling process (the all-reduce
    has one participant; the counts of calls and bytes are the same), in about a second once
    DDP has been imported: the chapter's quick mode uses it.
    """
    import torch.multiprocessing as mp

    check_positive_int("world", world)
    check_positive_int("rows", rows)
    split_sizes(rows, micro_batches)
    with tempfile.TemporaryDirectory() as out:
        if world == 1:
            import torch.distributed as dist

            if dist.is_initialized():
                raise RuntimeError("a process group is already initialized in this process")
            with torch.random.fork_rng(devices=[]):  # leave the caller's generator alone
                _ddp_worker(0, 1, 0, micro_batches, out, rows, dim, classes, seed)
        else:
            args = (world, _free_port(), micro_batches, out, rows, dim, classes, seed)
            mp.spawn(_ddp_worker, args=args, nprocs=world, join=True)
        ranks = [torch.load(os.path.join(out, f"rank{r}.pt")) for r in range(world)]
    single = ranks[0].pop("single")
    return {"ranks": ranks, "single_grad": single["grad"], "params": single["params"],
            "micro_batches": micro_batches, "world": world}


def grad_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b|: the relative gap between two gradient vectors."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(torch.finfo(b.dtype).tiny))

