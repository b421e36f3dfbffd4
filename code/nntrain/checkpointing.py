"""Activation checkpointing: store some activations, recompute the rest in backward (chapter 6).

Why: a naive step keeps every activation that backward needs (chapter 3's ledger); for n layers
that is n layers' worth of memory. Cutting the network into k segments and keeping only the
segment inputs costs k inputs plus one segment's activations while it is recomputed, about
k + n/k layers, least at k = √n (Chen et al., arXiv 1604.06174), for one extra forward pass.

What is here:

* :func:`segment_sizes` and :func:`check_segments` — how n layers are cut into k segments, the
  way ``torch.utils.checkpoint.checkpoint_sequential`` cuts them (the last segment takes the
  remainder and is not recomputed);
* :func:`checkpoint_segment` / :func:`checkpointed_sequential` — a from-scratch runner built on
  ``torch.autograd.Function``: forward under ``no_grad`` saving only the segment input (and the
  RNG state), backward recomputes the segment with grad enabled and differentiates it;
* :class:`SavedPeak` — the most bytes saved for backward that are alive at once during a step
  (forward *and* the recomputations inside backward), and :func:`predicted_peak_bytes`, the
  ledger's prediction of it for k segments;
* :func:`sqrt_rule_units`, :func:`best_segments` — the √n rule in integers;
* :func:`revolve_advances`, :func:`revolve_closed_form`, :func:`binomial_steps` — optimal
  binomial checkpointing (Griewank and Walther, ACM TOMS 26(1), 2000): the recurrence and its
  closed form;
* :func:`selective_context` — a policy for ``torch.utils.checkpoint``'s selective checkpointing
  (save the outputs of chosen ops, recompute the others).
"""

from __future__ import annotations

import contextlib
import functools
import math
import weakref
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from ._checks import check_positive_int
from .memory import _storage_key, activation_rules, estimate_activation_bytes

__all__ = [
    "CheckpointedSequential",
    "SavedPeak",
    "best_segments",
    "binomial_steps",
    "check_recomputable",
    "check_segments",
    "gpt_forward",
    "interleaved_times",
    "checkpoint_segment",
    "checkpointed_sequential",
    "predicted_peak_bytes",
    "repetition_number",
    "revolve_closed_form",
    "revolve_repetitions",
    "revolve_advances",
    "save_ops_policy",
    "selective_context",
    "segment_bounds",
    "segment_sizes",
    "sequential_step",
    "sqrt_rule_units",
]


# ------------------------------------------------------------------------------ segments


def check_segments(n_layers: int, segments: int) -> int:
    """Return ``segments`` if 1 ≤ segments ≤ n_layers, else raise a ValueError that says why."""
    check_positive_int("n_layers", n_layers)
    if isinstance(segments, bool) or not isinstance(segments, int):
        raise ValueError(f"segments must be an int, got {segments!r}")
    if segments <= 0:
        raise ValueError(f"segments must be at least 1, got {segments}: a network has at least one segment")
    if segments > n_layers:
        raise ValueError(f"segments={segments} is more than the {n_layers} layers: "
                         "a segment needs at least one layer")
    return segments


def segment_sizes(n_layers: int, segments: int) -> list[int]:
    """Layers per segment, as ``checkpoint_sequential`` cuts them: n//k each, the last one the rest."""
    check_segments(n_layers, segments)
    size = n_layers // segments
    return [size] * (segments - 1) + [n_layers - size * (segments - 1)]


def segment_bounds(n_layers: int, segments: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` of each segment (end excluded)."""
    out, start = [], 0
    for m in segment_sizes(n_layers, segments):
        out.append((start, start + m))
        start += m
    return out


def sqrt_rule_units(n_layers: int, segments: int) -> int:
    """Peak saved memory in layer units of the runner: max over segments j of j + m_j.

    Units: one layer saves one tensor the size of its input (an MLP layer Linear → ReLU).
    While segment j is recomputed, the inputs of segments 1..j and its m_j layers are alive.
    ``segments=1`` is the plain network: n + 1 (the input and n layer outputs).
    """
    sizes = segment_sizes(n_layers, segments)
    return max(j + m for j, m in enumerate(sizes, start=1))


def best_segments(n_layers: int) -> int:
    """The smallest k that minimises :func:`sqrt_rule_units` (near √n)."""
    check_positive_int("n_layers", n_layers)
    return min(range(1, n_layers + 1), key=lambda k: (sqrt_rule_units(n_layers, k), k))


# ------------------------------------------------------------------------------ in-place checks


def check_recomputable(module: nn.Module) -> None:
    """Refuse modules that work in place (``nn.ReLU(inplace=True)`` and the like).

    An in-place op at the start of a segment overwrites the stored segment input, and the
    recomputation then starts from a different tensor; rather than reason case by case, the
    runner refuses every module with ``inplace=True``.
    """
    for name, m in module.named_modules():
        if getattr(m, "inplace", False) is True:
            raise ValueError(f"module {name or type(module).__name__!r} ({type(m).__name__}) works in place "
                             "(inplace=True): checkpointing recomputes from stored inputs, which an in-place "
                             "op may overwrite; build it with inplace=False")


# ------------------------------------------------------------------------------ the runner


def _autocast_states(x: torch.Tensor) -> dict:
    """The autocast settings in force now, for the devices a segment may run on (CPU, and x's CUDA)."""
    devices = ["cpu"] + (["cuda"] if x.is_cuda else [])
    return {d: {"enabled": torch.is_autocast_enabled(d), "dtype": torch.get_autocast_dtype(d),
                "cache_enabled": torch.is_autocast_cache_enabled()} for d in devices}


class _Segment(torch.autograd.Function):
    """Forward: run without a graph, keep the input. Backward: rerun with a graph, differentiate.

    The recomputation must repeat the forward exactly: the same random numbers (the RNG state is
    saved and restored) and the same autocast settings (backward usually runs outside
    ``torch.autocast``; without them the recomputation would run in fp32 and the gradients differ).
    """

    @staticmethod
    def forward(ctx, run: Callable, preserve_rng_state: bool, x: torch.Tensor, *params: torch.Tensor):
        ctx.run, ctx.run_params = run, run.params
        ctx.preserve = preserve_rng_state
        ctx.autocast = _autocast_states(x)
        if preserve_rng_state:
            ctx.cpu_state = torch.get_rng_state()
            ctx.cuda_state = torch.cuda.get_rng_state(x.device) if x.is_cuda else None
        version = x._version
        with torch.no_grad():
            y = run(x)
        if x._version != version:
            raise RuntimeError("a checkpointed segment modified its input in place; the recomputation "
                               "in backward would start from the modified tensor")
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        (x,) = ctx.saved_tensors
        params = list(ctx.run_params)
        devices = [x.device] if ctx.preserve and x.is_cuda else []
        with torch.random.fork_rng(devices=devices, enabled=ctx.preserve):
            if ctx.preserve:
                torch.set_rng_state(ctx.cpu_state)
                if ctx.cuda_state is not None:
                    torch.cuda.set_rng_state(ctx.cuda_state, x.device)
            with torch.enable_grad(), contextlib.ExitStack() as stack:
                for device, state in ctx.autocast.items():
                    stack.enter_context(torch.autocast(device_type=device, **state))
                x2 = x.detach().requires_grad_(ctx.needs_input_grad[2])
                y = ctx.run(x2)
        wrt = ([x2] if ctx.needs_input_grad[2] else []) + params
        grads = list(torch.autograd.grad(y, wrt, grad_y, allow_unused=True)) if wrt else []
        gx = grads.pop(0) if ctx.needs_input_grad[2] else None
        return (None, None, gx, *grads)


def checkpoint_segment(run: nn.Module, x: torch.Tensor, preserve_rng_state: bool = True) -> torch.Tensor:
    """``run(x)`` that keeps only ``x`` for backward and recomputes ``run`` there.

    ``preserve_rng_state=True`` replays the same random numbers (dropout masks) in the
    recomputation; with False the recomputed masks differ and the gradient is wrong.
    """
    if not isinstance(run, nn.Module):
        raise TypeError(f"run must be an nn.Module, got {type(run).__name__}")
    check_recomputable(run)
    params = tuple(p for p in run.parameters() if p.requires_grad)
    # the parameters travel through apply() so that autograd returns their gradients
    return _Segment.apply(_Bound(run, params), preserve_rng_state, x, *params)


class _Bound:
    """The segment's callable plus its parameters (so backward knows what to differentiate)."""

    def __init__(self, run: nn.Module, params: tuple) -> None:
        self.run, self.params = run, params

    def __call__(self, x):
        return self.run(x)


def checkpointed_sequential(
    layers: nn.Sequential | Sequence[nn.Module],
    segments: int,
    x: torch.Tensor,
    preserve_rng_state: bool = True,
) -> torch.Tensor:
    """Run ``layers`` in ``segments`` segments; all but the last are checkpointed.

    Same cut and same choice as ``torch.utils.checkpoint.checkpoint_sequential``: the last
    segment runs normally, since its activations are needed at once when backward starts.
    """
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty")
    check_segments(len(layers), segments)
    for i, m in enumerate(layers):
        if not isinstance(m, nn.Module):
            raise TypeError(f"layers[{i}] is a {type(m).__name__}, not an nn.Module")
        check_recomputable(m)
    bounds = segment_bounds(len(layers), segments)
    for start, end in bounds[:-1]:
        x = checkpoint_segment(nn.Sequential(*layers[start:end]), x, preserve_rng_state)
    start, end = bounds[-1]
    for m in layers[start:end]:
        x = m(x)
    return x


class CheckpointedSequential(nn.Module):
    """An ``nn.Sequential`` that runs in ``segments`` checkpointed segments in training mode."""

    def __init__(self, layers: nn.Sequential, segments: int, preserve_rng_state: bool = True) -> None:
        super().__init__()
        if not isinstance(layers, nn.Sequential):
            raise TypeError(f"layers must be an nn.Sequential, got {type(layers).__name__}")
        check_segments(len(layers), segments)
        check_recomputable(layers)
        self.layers, self.segments, self.preserve_rng_state = layers, segments, preserve_rng_state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return self.layers(x)
        return checkpointed_sequential(self.layers, self.segments, x, self.preserve_rng_state)


# ------------------------------------------------------------------------------ measuring the peak


class _Held:
    __slots__ = ("t", "__weakref__")

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t


class SavedPeak:
    """The most saved-for-backward bytes alive at once during a step (forward and backward).

    Chapter 3's :class:`~nntrain.memory.SavedTensors` sums what forward saves; with
    checkpointing, backward saves again while it recomputes a segment, and frees each
    segment when done. Here every saved storage is counted while autograd holds it
    (a storage saved twice is counted once); parameters are not counted.
    ``with SavedPeak(model) as sp: loss.backward()`` then ``sp.peak``.
    Tensors saved inside ``torch.utils.checkpoint`` regions are invisible here (that
    function installs its own hooks); measure those with ``memory.cpu_peak_step``.
    """

    def __init__(self, model: nn.Module | None = None) -> None:
        params = list(model.parameters()) if model is not None else []
        self._params = {_storage_key(p) for p in params}
        self._refs: dict[tuple, int] = {}
        self._size: dict[tuple, int] = {}
        self.live = 0
        self.peak = 0
        self._ctx = None

    def _release(self, key: tuple) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.live -= self._size.pop(key)

    def _pack(self, t: torch.Tensor):
        key = _storage_key(t)
        if key in self._params:
            return t
        if key not in self._refs:
            self._refs[key] = 0
            self._size[key] = t.untyped_storage().nbytes()
            self.live += self._size[key]
            self.peak = max(self.peak, self.live)
        self._refs[key] += 1
        held = _Held(t)
        weakref.finalize(held, self._release, key)
        return held

    @staticmethod
    def _unpack(h):
        return h.t if isinstance(h, _Held) else h

    def __enter__(self) -> "SavedPeak":
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)


class _KeepInput(nn.Identity):
    """A marker for :func:`predicted_peak_bytes`: the checkpoint keeps the segment input."""


def _keep_input_rule(m, inputs, output):
    return [(inputs[0], inputs[0].numel(), "act")]


def predicted_peak_bytes(layers: nn.Sequential, x: torch.Tensor, segments: int) -> int:
    """The ledger's prediction of :class:`SavedPeak` for :func:`checkpointed_sequential`.

    While segment j < k is recomputed, the inputs of segments 1..j are kept and segment j
    saves its activations (module rules of chapter 3, ``memory.estimate_activation_bytes``);
    the last segment is not recomputed: during forward all k − 1 kept inputs and its own
    saves are alive. The peak is the largest of these sums.
    """
    layers = list(layers)
    check_segments(len(layers), segments)
    rules = activation_rules()
    rules[_KeepInput] = _keep_input_rule
    target = "cuda" if x.is_cuda else "cpu"
    nb = x.element_size()
    bounds = segment_bounds(len(layers), segments)
    kept, peak = 0, 0
    with torch.no_grad():
        for j, (start, end) in enumerate(bounds):
            seg = nn.Sequential(*layers[start:end])
            last = j == len(bounds) - 1
            body = seg if last else nn.Sequential(_KeepInput(), *layers[start:end])
            own = estimate_activation_bytes(body, x, nb, target, rules)
            inp = x.untyped_storage().nbytes()
            peak = max(peak, kept + own)
            kept += 0 if last else inp
            x = seg(x)
    return peak


# ------------------------------------------------------------------------------ Revolve


def binomial_steps(s: int, r: int) -> int:
    """β(s, r) = C(s + r, s): the most steps reversible with s checkpoints and r repetitions."""
    if not (isinstance(s, int) and isinstance(r, int)) or s < 0 or r < 0:
        raise ValueError(f"s and r must be non-negative ints, got {s!r}, {r!r}")
    return math.comb(s + r, s)


def _check_revolve(steps: int, snaps: int) -> None:
    check_positive_int("steps", steps)
    check_positive_int("snaps", snaps)


@functools.lru_cache(maxsize=None)
def revolve_advances(steps: int, snaps: int) -> int:
    """Fewest advances (untaped forward steps) that reverse ``steps`` steps with ``snaps`` checkpoints.

    Griewank and Walther's recurrence (ACM TOMS 26(1), 2000, eq. 2). One checkpoint holds
    the initial state: step i is reached by i − 1 advances, l(l − 1)/2 in all. With more,
    advance i steps, store that state, reverse the l − i steps after it with one checkpoint
    fewer, then the first i steps with all of them: p(l, s) = min_i [i + p(l − i, s − 1) + p(i, s)].
    The count includes the first forward sweep; each step is run once more, taped, when reversed.
    """
    _check_revolve(steps, snaps)
    if steps == 1:
        return 0
    if snaps == 1:
        return steps * (steps - 1) // 2
    return min(i + revolve_advances(steps - i, snaps - 1) + revolve_advances(i, snaps)
               for i in range(1, steps))


@functools.lru_cache(maxsize=None)
def revolve_repetitions(steps: int, snaps: int) -> int:
    """Least possible number of advances of the busiest step (DP over the first checkpoint i).

    The first i steps are advanced once to reach the new checkpoint x_i, then as often as
    reversing them with all ``snaps`` slots needs; the l − i steps after it, as often as
    reversing them with one slot fewer needs. Griewank and Walther: the largest l with
    r advances per step is β(s, r); the tests check it against this recurrence.
    """
    _check_revolve(steps, snaps)
    if steps == 1:
        return 0
    if snaps == 1:
        return steps - 1
    return min(max(1 + revolve_repetitions(i, snaps), revolve_repetitions(steps - i, snaps - 1))
               for i in range(1, steps))


def repetition_number(steps: int, snaps: int) -> int:
    """The r with β(s, r − 1) < l ≤ β(s, r): how many times the busiest step is advanced."""
    _check_revolve(steps, snaps)
    r = 0
    while binomial_steps(snaps, r) < steps:
        r += 1
    return r


def revolve_closed_form(steps: int, snaps: int) -> int:
    """Closed form of :func:`revolve_advances`: r·l − β(s + 1, r − 1), r the repetition number."""
    r = repetition_number(steps, snaps)
    return 0 if r == 0 else r * steps - binomial_steps(snaps + 1, r - 1)


# ------------------------------------------------------------------------------ selective checkpointing


def save_ops_policy(save: Iterable) -> Callable:
    """A policy for ``create_selective_checkpoint_contexts``: keep the outputs of ``save``, recompute the rest."""
    from torch.utils.checkpoint import CheckpointPolicy

    keep = frozenset(save)

    def policy(ctx, op, *args, **kwargs):
        return CheckpointPolicy.MUST_SAVE if op in keep else CheckpointPolicy.PREFER_RECOMPUTE

    return policy


MATMULS = ("mm", "addmm", "bmm", "baddbmm")


def selective_context(ops: Sequence[str] = MATMULS) -> Callable:
    """``context_fn`` for ``torch.utils.checkpoint.checkpoint``: save the named aten ops' outputs.

    The default saves the matrix products (the costly ops) and recomputes the pointwise ones;
    ``ops=("mm", "addmm")`` saves only the Linear layers and recomputes the attention scores too.
    """
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    aten = torch.ops.aten
    unknown = [o for o in ops if not hasattr(aten, o)]
    if unknown:
        raise ValueError(f"unknown aten ops {unknown}")
    policy = save_ops_policy([getattr(aten, o).default for o in ops])
    return functools.partial(create_selective_checkpoint_contexts, policy)


# ------------------------------------------------------------------------------ a checkpointed GPT

GPT_MODES = ("none", "nntrain", "torch", "selective")


def gpt_forward(
    model: nn.Module,
    idx: torch.Tensor,
    targets: torch.Tensor,
    mode: str = "none",
    segments: int | None = None,
    ops: Sequence[str] = MATMULS,
) -> torch.Tensor:
    """The loss of ``nntrain.models.GPT`` with its layers checkpointed (the model is not changed).

    ``mode``: "none" (plain), "nntrain" (:func:`checkpointed_sequential` over the layers, k =
    ``segments``, default one layer a segment), "torch" (``checkpoint_sequential``,
    ``use_reentrant=False``), "selective" (each layer under ``checkpoint`` with
    :func:`selective_context` (``ops``)). Same arithmetic as ``GPT.forward``.
    """
    from torch.nn import functional as F
    from torch.utils.checkpoint import checkpoint, checkpoint_sequential

    from ._checks import check_choice

    check_choice("mode", mode, GPT_MODES)
    tr = model.transformer
    blocks = list(tr.h)
    k = len(blocks) if segments is None else check_segments(len(blocks), segments)
    pos = torch.arange(idx.shape[1], device=idx.device)
    x = tr.drop(tr.wte(idx) + tr.wpe(pos))
    if mode == "none":
        for block in blocks:
            x = block(x)
    elif mode == "nntrain":
        x = checkpointed_sequential(blocks, k, x)
    elif mode == "torch":
        x = checkpoint_sequential(nn.Sequential(*blocks), k, x, use_reentrant=False)
    else:
        ctx = selective_context(ops)
        for block in blocks:
            x = checkpoint(block, x, use_reentrant=False, context_fn=ctx)
    logits = model.lm_head(tr.ln_f(x))
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)


def interleaved_times(fns: dict, repeat: int = 5, warmup: int = 1,
                      reference=None, clock: str | None = None, quartiles: bool = False) -> dict:
    """Seconds of each ``fn`` (see ``clock``), the calls interleaved round by round in shuffled order.

    Why: on a shared machine the load drifts; interleaving exposes every variant to the same
    drift (chapter 6's time-versus-k curves). Without ``reference``: the fastest time of each
    fn. With ``reference`` (a key of ``fns``): the median over rounds of each fn's time divided
    by the reference's time in the same round — a ratio that slow drifts of the load cancel.
    ``clock``: "wall" (``perf_counter``, CUDA synchronised) or "cpu" (``process_time``: the CPU
    time of this process, which other processes on a shared machine do not inflate); None
    picks "wall" with CUDA (kernels run asynchronously) and "cpu" without. ``quartiles=True``
    (with ``reference``): (first quartile, median, third quartile) of the ratios, for error bars.
    """
    import random
    import statistics
    import time

    check_positive_int("repeat", repeat)
    from ._checks import check_choice

    clock = clock or ("wall" if torch.cuda.is_available() else "cpu")
    check_choice("clock", clock, ("wall", "cpu"))
    now = time.perf_counter if clock == "wall" else time.process_time
    if reference is not None and reference not in fns:
        raise ValueError(f"reference {reference!r} is not one of the timed functions")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    rounds: list[dict] = []
    order = list(fns)
    for r in range(repeat):
        random.Random(r).shuffle(order)
        times = {}
        for name in order:
            sync()
            start = now()
            fns[name]()
            sync()
            times[name] = now() - start
        rounds.append(times)
    if reference is None:
        return {name: min(t[name] for t in rounds) for name in fns}
    ratios = {name: [t[name] / t[reference] for t in rounds] for name in fns}
    if quartiles:
        if repeat < 2:
            return {name: (r[0], r[0], r[0]) for name, r in ratios.items()}
        out = {}
        for name, r in ratios.items():
            q1, q2, q3 = statistics.quantiles(r, n=4, method="inclusive")
            out[name] = (q1, q2, q3)
        return out
    return {name: statistics.median(r) for name, r in ratios.items()}


def sequential_step(net: nn.Sequential, x: torch.Tensor, grad_out: torch.Tensor, segments: int,
                    impl: str = "nntrain") -> None:
    """One forward and backward of ``net`` cut into ``segments`` (1: the plain network).

    ``impl``: "nntrain" (:func:`checkpointed_sequential`) or "torch"
    (``checkpoint_sequential(..., use_reentrant=False)``); the output's gradient is
    ``grad_out``, so no loss saves anything. Gradients are set to None first.
    """
    from torch.utils.checkpoint import checkpoint_sequential

    from ._checks import check_choice

    check_choice("impl", impl, ("nntrain", "torch"))
    check_segments(len(net), segments)
    net.zero_grad(set_to_none=True)
    if segments == 1:
        y = net(x)
    elif impl == "nntrain":
        y = checkpointed_sequential(net, segments, x)
    else:
        y = checkpoint_sequential(net, segments, x, use_reentrant=False)
    y.backward(grad_out)
