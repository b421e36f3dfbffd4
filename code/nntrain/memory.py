"""What a training step keeps in memory: a ledger, and the measurements that check it (chapter 3).

The ledger counts, for a model (or a config), an optimizer, a precision mode and a batch:

* **weights**, **gradients**, the fp32 **master** copy of mixed precision, **optimizer states**
  (ZeRO, arXiv 1910.02054: mixed-precision Adam costs 2 + 2 + 4 + 4 + 4 = 16 bytes per parameter);
* **activations** saved for backward: per transformer layer sbh(34 + 5as/h) bytes in the setting of
  Korthikanti et al. (arXiv 2205.05198), derived term by term in :func:`transformer_layer_terms`.

Measurements check it: :class:`SavedTensors` counts the storages autograd saves for backward
(on any device, also ``meta``), :func:`optimizer_state_bytes` sums a real ``optimizer.state``,
:func:`cuda_peak_step` reads ``torch.cuda.max_memory_allocated`` around a real step, and
:func:`cpu_peak_step` replays the CPU allocations of a step recorded by ``torch.profiler``.

The table of optimizer states knows SGD, momentum, Adam(W) and chapter 4's Adafactor and 8-bit Adam;
a new optimizer plugs in with :func:`register_optimizer`, a new precision with
:func:`register_precision`; activation checkpointing goes through ``checkpointing=`` and
``segments=`` (chapter 6), gradient accumulation through ``micro_batch`` (chapter 5).

The ledger's ``total`` (model states + saved activations) is an *estimate* of a step's memory,
neither an upper nor a lower bound of the peak: it leaves out the gradients of intermediate
tensors (the logits gradient s·b·V is listed in ``Ledger.transients``), other temporaries,
the cuBLAS workspace, ``foreach`` temporaries of the optimizer step, allocator fragmentation and
the CUDA context; and since the peak comes before all gradients exist, it also adds gradients
that do not coexist with all activations.

Command line: ``python -m nntrain.memory --model gpt2-xl --batch 32 --seq 1024 --optimizer adam --precision mixed``.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence, Union

import torch
from torch import nn

from ._checks import check_choice, check_positive_int
from .models import GPT, PRESETS, GPTConfig, Llama, LlamaConfig, build, count_params

__all__ = [
    "CHECKPOINTING",
    "OPTIMIZER_STATES",
    "adafactor_state_bytes",
    "adam8bit_state_bytes",
    "PRECISIONS",
    "TARGETS",
    "Ledger",
    "Precision",
    "SavedRecord",
    "SavedTensors",
    "TimelinePoint",
    "activation_rules",
    "bytes_per_parameter",
    "cpu_peak_step",
    "cuda_peak_step",
    "estimate_activation_bytes",
    "format_bytes",
    "gpt_activation_terms",
    "label",
    "ledger",
    "llama_activation_terms",
    "main",
    "optimizer_state_bytes",
    "register_optimizer",
    "register_precision",
    "simulate_step",
    "state_bytes",
    "transformer_layer_terms",
    "zero_stage_bytes",
]

ROOT = "(model)"  # how SavedTensors names the model itself; "" means outside the model (e.g. the loss)
GB = 1e9  # the ledger speaks decimal gigabytes, like the ZeRO paper


_UNITS_RU = {"B": "Б", "KB": "КБ", "MB": "МБ", "GB": "ГБ", "TB": "ТБ"}


def format_bytes(n: float, unit: str = "auto", lang: str = "en") -> str:
    """Human-readable decimal bytes: ``format_bytes(3.1e9) == '3.10 GB'`` ('3.10 ГБ' in ru)."""
    units = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
    if unit == "auto":
        unit = next((u for u in ("TB", "GB", "MB", "KB") if abs(n) >= units[u]), "B")
    check_choice("unit", unit, units)
    check_choice("lang", lang, ("ru", "en"))
    name = _UNITS_RU[unit] if lang == "ru" else unit
    return f"{n:.0f} {name}" if unit == "B" else f"{n / units[unit]:.2f} {name}"


# ------------------------------------------------------------------------------ precision modes


@dataclass(frozen=True)
class Precision:
    """Bytes of one number of each kind in a precision mode."""

    weights: int  # the weights the forward pass uses
    grads: int  # the gradients backward writes
    master: int  # an extra fp32 copy of the weights (mixed precision), 0 if none
    states: int  # one optimizer-state number
    activations: int  # one saved activation (the 16-bit inputs of matmuls under autocast)
    description: str = ""
    # torch.autocast only: the 16-bit copies of the weights that the forward pass casts (bytes per
    # weight, alive while the graph lives), and the fp32 tensors of autocast's fp32 ops.
    weight_copies: int = 0
    autocast: bool = False


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision(4, 4, 0, 4, 4, "everything in float32"),
    "mixed": Precision(2, 2, 4, 4, 2, "fp16/bf16 weights, grads, activations + fp32 master and states (ZeRO)"),
    "amp": Precision(4, 4, 0, 4, 2, "torch.autocast: fp32 weights, grads and states; 16-bit inputs of "
                     "matmuls and 16-bit weight copies saved; fp32 LayerNorm inputs (the residual "
                     "stream), fp32 log-softmax (and softmax on CUDA)", weight_copies=2, autocast=True),
    "bf16": Precision(2, 2, 0, 2, 2, "pure bf16: weights, grads, states and activations"),
}


def register_precision(name: str, precision: Precision, overwrite: bool = False) -> None:
    """Add a precision mode (e.g. fp8 activations) to the ledger and the command line."""
    if name in PRECISIONS and not overwrite:
        raise ValueError(f"precision {name!r} is already registered; pass overwrite=True to replace it")
    if not isinstance(precision, Precision):
        raise TypeError(f"expected a Precision, got {type(precision).__name__}")
    PRECISIONS[name] = precision


# ------------------------------------------------------------------------------ optimizer states

# A state function: (shape of one parameter tensor, bytes of one state number) -> bytes of its state.
StateFn = Callable[[tuple[int, ...], int], int]
STEP_BYTES = 4  # torch's Adam keeps a float32 scalar `step` tensor per parameter tensor


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def adafactor_state_bytes(shape: Sequence[int], number_bytes: int = 4) -> int:
    """Adafactor (chapter 4): a tensor of shape (…, n, m) keeps ∏(…)·(n + m) numbers (row and column
    statistics of its second moment), a vector or a scalar keeps all of its numbers; plus ``step``."""
    shape = tuple(shape)
    numbers = _numel(shape[:-2]) * (shape[-2] + shape[-1]) if len(shape) > 1 else _numel(shape)
    return numbers * number_bytes + STEP_BYTES


def adam8bit_state_bytes(shape: Sequence[int], number_bytes: int = 4, block_size: int = 256,
                         min_8bit_size: int = 4096) -> int:
    """8-bit Adam (chapter 4), without the two code books that all tensors share: two uint8 moments per
    value and two float32 absmax per block of ``block_size``; tensors with fewer than ``min_8bit_size``
    values keep float32 moments whatever ``number_bytes`` is (as bitsandbytes does); plus ``step``."""
    n = _numel(tuple(shape))
    if n < min_8bit_size:
        return 2 * 4 * n + STEP_BYTES
    return 2 * n + 2 * 4 * -(-n // block_size) + STEP_BYTES


OPTIMIZER_STATES: dict[str, StateFn] = {
    "sgd": lambda shape, nb: 0,
    "momentum": lambda shape, nb: _numel(shape) * nb,
    "adam": lambda shape, nb: 2 * _numel(shape) * nb + STEP_BYTES,
    "adamw": lambda shape, nb: 2 * _numel(shape) * nb + STEP_BYTES,
    "adafactor": adafactor_state_bytes,
    "adam8bit": adam8bit_state_bytes,
}


def register_optimizer(name: str, state_fn: StateFn, overwrite: bool = False) -> None:
    """Teach the ledger a new optimizer: ``state_fn(shape, bytes_per_number) -> state bytes``.

    The built-in table already holds Adafactor and 8-bit Adam (chapter 4); this is for the reader's own.
    """
    if name in OPTIMIZER_STATES and not overwrite:
        raise ValueError(f"optimizer {name!r} is already registered; pass overwrite=True to replace it")
    if not callable(state_fn):
        raise TypeError("state_fn must be callable as state_fn(shape, bytes_per_number) -> int")
    OPTIMIZER_STATES[name] = state_fn


def state_bytes(shapes: Iterable[Sequence[int]], optimizer: str, state_number_bytes: int = 4) -> int:
    """Optimizer-state bytes for parameter tensors of these shapes (what ``optimizer.state`` will hold)."""
    check_choice("optimizer", optimizer, OPTIMIZER_STATES)
    fn = OPTIMIZER_STATES[optimizer]
    return sum(fn(tuple(s), state_number_bytes) for s in shapes)


def bytes_per_parameter(optimizer: str = "adam", precision: str = "mixed") -> dict[str, int]:
    """Bytes per parameter by kind, scalar per-tensor state ignored.

    ``bytes_per_parameter("adam", "mixed") == {"weights": 2, "grads": 2, "master": 4, "optimizer": 8}``:
    16 bytes in total, the K = 12 of ZeRO being master + optimizer.
    """
    check_choice("optimizer", optimizer, OPTIMIZER_STATES)
    check_choice("precision", precision, PRECISIONS)
    p = PRECISIONS[precision]
    big = 1_000_000  # one large tensor: the per-tensor scalars vanish after integer division
    per_param = OPTIMIZER_STATES[optimizer]((big,), p.states) // big
    return {"weights": p.weights, "grads": p.grads, "master": p.master, "optimizer": per_param}


def zero_stage_bytes(n_params: float, n_gpus: int, stage: int, k: int = 12) -> float:
    """Model-state bytes per GPU under ZeRO data parallelism: stage 0 (plain DP) … 3 (ZeRO paper, Fig. 1).

    0: (2 + 2 + K)Ψ; 1 (P_os): 4Ψ + KΨ/N; 2 (P_os+g): 2Ψ + (2 + K)Ψ/N; 3 (P_os+g+p): (4 + K)Ψ/N.
    """
    check_positive_int("n_gpus", n_gpus)
    check_choice("stage", stage, (0, 1, 2, 3))
    psi, n = float(n_params), n_gpus
    return [(4 + k) * psi, 4 * psi + k * psi / n, 2 * psi + (2 + k) * psi / n, (4 + k) * psi / n][stage]


# ------------------------------------------------------------------------------ activations: formulas

TARGETS = ("cuda", "cpu")  # where the step runs: CPU dropout keeps masks in the activation dtype
CHECKPOINTING = ("none", "selective", "full")


def transformer_layer_terms(
    s: int,
    b: int,
    h: int,
    a: int,
    act_bytes: int = 2,
    dropout: bool = True,
    attention: str = "math",
    mask_bytes: int = 1,
    ln_stat_bytes: int = 4,
    ln_input_bytes: int | None = None,
    softmax_bytes: int | None = None,
) -> dict[str, int]:
    """Bytes one GPT-2 layer saves for backward, term by term (Korthikanti et al., 4.1).

    With 16-bit activations, 1-byte dropout masks and explicit attention the paper's
    terms sum to sbh(34 + 5as/h). ``attention="sdpa"`` (a fused kernel) keeps no s×s
    matrix, only the row log-sum-exp; ``ln_stat_bytes`` prices LayerNorm's mean and
    1/σ, which the paper omits. Under ``torch.autocast`` the LayerNorm inputs are the
    fp32 residual stream (``ln_input_bytes=4``) on any device; the LayerNorm output is not
    saved (the next Linear keeps its 16-bit copy). Only CUDA's fp32 list has ``softmax``
    (``softmax_bytes=4``): the product with V then saves a 16-bit copy of its output.
    """
    for name, v in dict(s=s, b=b, h=h, a=a, act_bytes=act_bytes).items():
        check_positive_int(name, v)
    check_choice("attention", attention, ("math", "sdpa"))
    ab = act_bytes
    ln = ab if ln_input_bytes is None else ln_input_bytes
    sm = ab if softmax_bytes is None else softmax_bytes
    mb = mask_bytes if dropout else 0
    sbh, as2b = s * b * h, a * s * s * b
    terms = {
        "LN1: input": ln * sbh,
        "QKV projection: input": ab * sbh,
        "Q, K (for QKᵀ)": 2 * ab * sbh,
        "V": ab * sbh,
        "output projection: input": ab * sbh,
        "output projection: dropout mask": mb * sbh,
        "LN2: input": ln * sbh,
        "MLP fc: input": ab * sbh,
        "GeLU: input (4h)": 4 * ab * sbh,
        "MLP proj: input (4h)": 4 * ab * sbh,
        "MLP dropout mask": mb * sbh,
    }
    if attention == "math":
        terms["softmax: output (as²b)"] = sm * as2b
        terms["softmax dropout: mask (as²b)"] = mb * as2b
        if dropout:  # the product with V saves the dropout output
            terms["softmax dropout: output (as²b)"] = ab * as2b
        elif sm != ab:  # ... or its own 16-bit copy of an fp32 softmax output
            terms["16-bit copy of the softmax output (as²b)"] = ab * as2b
    else:
        terms["fused attention: logsumexp"] = 4 * a * s * b
    terms["LayerNorm statistics (not in the paper)"] = 2 * 2 * s * b * ln_stat_bytes
    return terms


def gpt_activation_terms(
    cfg: GPTConfig,
    batch: int,
    seq: int,
    act_bytes: int = 2,
    target: str = "cuda",
    checkpointing: str = "none",
    loss_bytes: int | None = None,
    autocast: bool = False,
    weight_copy_bytes: int = 0,
    segments: int | None = None,
) -> dict[str, int]:
    """Activation bytes of a GPT step: layers, embedding, output layer and loss.

    ``target`` sets the dropout-mask size (bool on CUDA, the activation dtype on CPU)
    and LayerNorm statistics (fp32 on CUDA). ``checkpointing``: "selective" drops the
    s² attention terms (recomputed, Korthikanti et al.); "full" keeps each layer's input
    plus the activations of the one layer being recomputed during backward.
    ``autocast=True`` follows torch.autocast (torch 2.x op lists). The residual stream
    stays fp32, so each LayerNorm saves an fp32 input on any device (CUDA's fp32 list has
    layer_norm; CPU's does not, but the input is fp32 anyway). The loss's log-softmax is
    fp32: CUDA lists log_softmax and nll_loss, CPU lists cross_entropy_loss and nll_loss.
    softmax is fp32 on CUDA only (a bf16 input stays bf16 on CPU). ``weight_copy_bytes``
    prices the 16-bit copies of the Linear weights that the forward pass makes and the
    graph keeps. ``segments=k`` (with ``checkpointing="full"``, chapter 6) keeps the inputs
    of k segments instead of every layer's input, and one whole segment of at most ⌈L/k⌉
    layers is recomputed at a time (a balanced cut; ``checkpoint_sequential`` gives its last
    segment the remainder, which may be longer); None is k = L (the terms above).
    """
    if not isinstance(cfg, GPTConfig):
        raise TypeError(f"expected a GPTConfig, got {type(cfg).__name__}")
    check_positive_int("batch", batch)
    check_positive_int("seq", seq)
    check_choice("target", target, TARGETS)
    check_choice("checkpointing", checkpointing, CHECKPOINTING)
    if seq > cfg.block_size:
        raise ValueError(f"seq={seq} is longer than block_size={cfg.block_size}")
    if segments is not None:
        if checkpointing != "full":
            raise ValueError(f"segments needs checkpointing='full', got {checkpointing!r}")
        check_positive_int("segments", segments)
        if segments > cfg.n_layer:
            raise ValueError(f"segments={segments} is more than the {cfg.n_layer} layers")
    s, b, h, L, V = seq, batch, cfg.n_embd, cfg.n_layer, cfg.vocab_size
    dropout = cfg.dropout > 0
    cuda = target == "cuda"
    mask_bytes = 1 if cuda else act_bytes
    res = 4 if autocast else act_bytes  # the residual stream: fp32 under autocast
    stat_bytes = 4 if cuda or autocast else act_bytes
    softmax_bytes = 4 if autocast and cuda else act_bytes
    layer = transformer_layer_terms(s, b, h, cfg.n_head, act_bytes, dropout,
                                    cfg.attention, mask_bytes, stat_bytes, res,
                                    softmax_bytes)
    per_layer = sum(layer.values())
    if checkpointing == "selective" and cfg.attention == "math":
        per_layer -= sum(v for k, v in layer.items() if "as²b" in k)
    sbh = s * b * h
    if loss_bytes is None:
        loss_bytes = 4 if autocast else act_bytes
    emb_mask = (1 if cuda else res) if dropout else 0
    out = {
        "embedding: token ids": 8 * s * b + 8 * s,  # wte saves idx, wpe saves positions
        "embedding dropout mask": emb_mask * sbh,
        "final LayerNorm + output layer input": (res + act_bytes) * sbh
        + 2 * s * b * stat_bytes,
        "loss: log-softmax (s·b·V)": loss_bytes * s * b * V,
        "loss: targets": 8 * s * b,
    }
    if checkpointing == "full" and segments is not None:
        out["layers: segment inputs kept (k·sbh)"] = segments * res * sbh
        out["layers: one segment recomputed"] = -(-L // segments) * per_layer
    elif checkpointing == "full":
        out["layers: inputs kept (L·sbh)"] = L * res * sbh
        out["layers: one layer recomputed"] = per_layer
    else:
        out[f"layers: {L} × per-layer"] = L * per_layer
    if weight_copy_bytes:
        linear = L * 12 * h * h + V * h  # the Linear weights; the output layer's is wte
        out["autocast: 16-bit copies of the weights"] = weight_copy_bytes * linear
    return out


def llama_activation_terms(cfg: LlamaConfig, batch: int, seq: int, act_bytes: int = 2) -> dict[str, int]:
    """Activation bytes of a step of :class:`~nntrain.models.Llama` (fused attention, no dropout).

    Per layer: two RMSNorms (a float32 copy of the input, the normalised value, the output, 1/rms),
    q, k, v (k, v repeated to all heads for grouped KV), the attention output and its copy in
    (B, T, h) layout, the logsumexp, and SwiGLU's four s·b·f tensors (gate input, silu output,
    up output, product).
    """
    if not isinstance(cfg, LlamaConfig):
        raise TypeError(f"expected a LlamaConfig, got {type(cfg).__name__}")
    check_positive_int("batch", batch)
    check_positive_int("seq", seq)
    s, b, h, f, a, L = seq, batch, cfg.n_embd, cfg.intermediate_size, cfg.n_head, cfg.n_layer
    sbh, ab = s * b * h, act_bytes
    # RMSNorm in float32: the fp32 input (a copy when ab < 4), the normalised value, the output, 1/rms.
    norm = 4 * sbh + 2 * ab * sbh + 4 * s * b
    hs = h // a
    # cos/sin tables: slices of the fp32 buffers (whole storages) or one 16-bit copy of the used rows.
    rope = 2 * cfg.block_size * (hs // 2) * 4 if ab == 4 else 2 * s * (hs // 2) * ab
    # q, k, v (k, v repeated to all heads), the attention output and its (B, T, h) copy, logsumexp.
    attention = 5 * ab * sbh + 4 * a * s * b
    per_layer = 2 * norm + attention + 4 * ab * s * b * f
    return {
        "embedding: token ids": 8 * s * b,
        "rotary tables": rope,
        f"layers: {L} × per-layer": L * per_layer,
        "final RMSNorm": norm,
        "loss: log-softmax (s·b·V)": ab * s * b * cfg.vocab_size,
        "loss: targets": 8 * s * b,
    }


# ------------------------------------------------------------------------------ activations: rules per module

# A rule looks at one module call and says what autograd will keep: a list of
# (tensor or None, number of elements, kind); kinds are priced by ``_KIND_BYTES``.
Rule = Callable[[nn.Module, tuple, torch.Tensor], list]


def _linear_rule(m, inputs, output):
    return [(inputs[0], inputs[0].numel(), "act")]


def _save_output(m, inputs, output):
    return [(output, output.numel(), "act")]


def _save_input(m, inputs, output):
    return [(inputs[0], inputs[0].numel(), "act")]


def _layernorm_rule(m, inputs, output):
    x = inputs[0]
    rows = x.numel() // math.prod(m.normalized_shape)
    return [(x, x.numel(), "act"), (None, 2 * rows, "stat")]


def _dropout_rule(m, inputs, output):
    if not m.training or m.p == 0:
        return []
    return [(None, output.numel(), "mask")]


def _embedding_rule(m, inputs, output):
    return [(inputs[0], inputs[0].numel(), "index")]


def activation_rules() -> dict[type, Rule]:
    """The per-module-type rules of :func:`estimate_activation_bytes` (add your own to the dict you pass)."""
    return {
        nn.Linear: _linear_rule,
        nn.ReLU: _save_output,
        nn.Tanh: _save_output,
        nn.Sigmoid: _save_output,
        nn.GELU: _save_input,
        nn.SiLU: _save_input,
        nn.LayerNorm: _layernorm_rule,
        nn.Dropout: _dropout_rule,
        nn.Embedding: _embedding_rule,
    }


def estimate_activation_bytes(
    model: nn.Module,
    example_input: torch.Tensor,
    act_bytes: int = 4,
    target: str = "cuda",
    rules: dict[type, Rule] | None = None,
) -> int:
    """Saved-for-backward bytes predicted from module types (a tensor saved twice is counted once).

    The forward runs once under ``no_grad`` only to learn shapes (build the model and the input on
    ``meta`` to estimate a big model for free). A leaf module without a rule raises, naming it.
    """
    check_choice("target", target, TARGETS)
    rules = activation_rules() if rules is None else rules
    kind_bytes = {"act": act_bytes, "mask": 1 if target == "cuda" else act_bytes,
                  "stat": 4 if target == "cuda" else act_bytes, "index": 8}
    seen: dict[int, int] = {}
    keep: list = []  # holds the tensors so that their ids are not reused
    extra = 0
    handles = []

    def hook(module, inputs, output):
        nonlocal extra
        for tensor, numel, kind in rules[type(module)](module, inputs, output):
            if tensor is None:
                extra += numel * kind_bytes[kind]
            elif id(tensor) not in seen:
                keep.append(tensor)
                seen[id(tensor)] = numel * kind_bytes[kind]

    for name, module in model.named_modules():
        if type(module) in rules:
            handles.append(module.register_forward_hook(hook))
        elif not list(module.children()) and any(True for _ in module.parameters(recurse=False)):
            raise ValueError(f"no activation rule for module {name!r} of type {type(module).__name__}; "
                             f"rules exist for {sorted(t.__name__ for t in rules)}")
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for hd in handles:
            hd.remove()
    return sum(seen.values()) + extra


# ------------------------------------------------------------------------------ measurement: saved tensors


@dataclass(frozen=True)
class SavedRecord:
    """One storage that autograd keeps for backward (views of it are not counted again)."""

    order: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int
    kind: str  # "activation" or "parameter"
    module: str  # the innermost module running when it was saved: "(model)" for the model, "" outside it


def _storage_key(t: torch.Tensor) -> tuple:
    storage = t.untyped_storage()
    if t.device.type == "meta":  # every meta tensor has data_ptr 0: use the storage object's address
        return ("meta", storage._cdata)
    return (str(t.device), storage.data_ptr())


class SavedTensors:
    """Record what autograd saves for backward, one entry per storage.

    ``with SavedTensors(model) as saved: loss = model(x, y)[1]`` then ``saved.activation_bytes``.
    Parameters saved for backward (a Linear saves its weight) are listed as ``kind="parameter"``:
    they are in memory anyway and are not added to ``activation_bytes``. Passing ``model`` also
    records which module saved what (``saved.by_module()``). Works on CPU, CUDA and ``meta``.
    """

    def __init__(self, model: nn.Module | None = None, params: Iterable[torch.Tensor] | None = None) -> None:
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        chosen = list(params) if params is not None else (list(model.parameters()) if model is not None else [])
        self._param_keys = {_storage_key(p) for p in chosen}
        self._guess_params = model is None and params is None
        self.records: list[SavedRecord] = []
        self.n_saves = 0
        self._seen: dict[tuple, SavedRecord] = {}
        self._alive: list = []
        self._stack: list[str] = []
        self._called: dict[str, None] = {}  # module names in the order of their first call
        self._handles: list = []
        self._ctx = None

    # hooks --------------------------------------------------------------------------------
    def _is_param(self, t: torch.Tensor, key: tuple) -> bool:
        if key in self._param_keys:
            return True
        if self._guess_params:
            base = t._base if t._base is not None else t
            return base.is_leaf and base.requires_grad
        return False

    def _pack(self, t: torch.Tensor):
        self.n_saves += 1
        key = _storage_key(t)
        if key not in self._seen:
            kind = "parameter" if self._is_param(t, key) else "activation"
            rec = SavedRecord(len(self.records), tuple(t.shape), t.dtype, t.untyped_storage().nbytes(), kind,
                              self._stack[-1] if self._stack else "")
            self._seen[key] = rec
            self.records.append(rec)
            self._alive.append(t.untyped_storage())  # keeps the address from being reused inside the block
        return t

    def _enter_module(self, name: str):
        def pre_hook(module, inputs) -> None:
            self._stack.append(name)
            if name not in self._called:
                self._called[name] = None
        return pre_hook

    def _leave_module(self, module, inputs, output) -> None:
        self._stack.pop()  # returns None: a forward hook that returns a value replaces the output

    def __enter__(self) -> "SavedTensors":
        if self.model is not None:
            for name, module in self.model.named_modules():
                self._handles.append(module.register_forward_pre_hook(self._enter_module(name or ROOT)))
                self._handles.append(module.register_forward_hook(self._leave_module))
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)
        for hd in self._handles:
            hd.remove()
        self._handles.clear()
        self._alive.clear()

    # results ------------------------------------------------------------------------------
    @property
    def activation_bytes(self) -> int:
        return sum(r.nbytes for r in self.records if r.kind == "activation")

    @property
    def parameter_bytes(self) -> int:
        return sum(r.nbytes for r in self.records if r.kind == "parameter")

    @property
    def total_bytes(self) -> int:
        return self.activation_bytes + self.parameter_bytes

    @property
    def module_order(self) -> list[str]:
        """Names of the modules in the order they were first called (needs ``SavedTensors(model)``)."""
        return list(self._called)

    def by_module(self, depth: int | None = None) -> dict[str, int]:
        """Activation bytes per module name (truncated to ``depth`` dotted parts), in forward order."""
        out: dict[str, int] = {}
        for r in self.records:
            if r.kind != "activation":
                continue
            name = r.module if depth is None else ".".join(r.module.split(".")[:depth])
            out[name] = out.get(name, 0) + r.nbytes
        return out

    def table(self, lang: str = "en") -> str:
        """One line per saved storage; ``lang="ru"`` prints the book's Russian headers."""
        check_choice("lang", lang, ("ru", "en"))
        if lang == "en":
            lines = [f"{'#':>3}  {'module':<28} {'shape':<22} {'dtype':<9} {'bytes':>12}  kind"]
            kinds = {"activation": "activation", "parameter": "parameter"}
        else:
            lines = [f"{'#':>3}  {'модуль':<16} {'форма':<18} {'тип':<9} {'байт':>10}  вид"]
            kinds = {"activation": "активация", "parameter": "параметр"}
        wide = lang == "en"
        for r in self.records:
            mod = r.module[:28] if wide else r.module[-16:]
            lines.append(f"{r.order:>3}  {mod:<{28 if wide else 16}} "
                         f"{str(r.shape)[:22]:<{22 if wide else 18}} "
                         f"{str(r.dtype).replace('torch.', ''):<9} "
                         f"{r.nbytes:>{12 if wide else 10},}  {kinds[r.kind]}")
        if wide:
            lines.append(f"activations: {self.activation_bytes:,} B; "
                         f"parameters saved: {self.parameter_bytes:,} B")
        else:
            lines.append(f"активации: {self.activation_bytes:,} Б; "
                         f"сохранённые параметры: {self.parameter_bytes:,} Б")
        return "\n".join(lines)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the tensors of a real ``optimizer.state`` (storages counted once)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    seen: dict[tuple, int] = {}
    for state in optimizer.state.values():
        for v in state.values():
            if torch.is_tensor(v):
                seen[_storage_key(v)] = v.untyped_storage().nbytes()
    return sum(seen.values())


def cpu_peak_step(step: Callable[[], None]) -> dict[str, int]:
    """Run ``step()`` under ``torch.profiler`` and report the CPU memory it allocates.

    Returns ``{"peak": the most bytes allocated above the start, "net": allocated at the end
    minus at the start}``; what was allocated before the call (weights, optimizer states) is
    not included. The CPU counterpart of :func:`cuda_peak_step`; it replays the profiler's
    allocation events in time order, so it sees every temporary, not only saved tensors.
    """
    from torch.profiler import ProfilerActivity, profile

    from .measure import silenced_stderr_fd

    with silenced_stderr_fd(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")]
    events.sort(key=lambda e: e.start_ns())
    now = peak = 0
    for e in events:
        now += e.nbytes()
        peak = max(peak, now)
    return {"peak": peak, "net": now}


def cuda_peak_step(step: Callable[[], None], device: Union[str, torch.device] = "cuda") -> dict[str, int]:
    """Run ``step()`` (forward, backward, optimizer step) and report CUDA memory around it.

    Returns ``{"before": allocated before, "peak": max allocated during, "after": allocated after}``.
    Raises RuntimeError without CUDA: guard the call with ``torch.cuda.is_available()``.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("cuda_peak_step needs a CUDA GPU; on CPU count saved tensors with SavedTensors instead")
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return {"before": before, "peak": torch.cuda.max_memory_allocated(device),
            "after": torch.cuda.memory_allocated(device)}


# ------------------------------------------------------------------------------ the ledger


# Russian names of the ledger's rows and activation terms, for the book's printed tables.
LABELS_RU = {
    "weights": "веса",
    "gradients": "градиенты",
    "fp32 master copy": "мастер-веса fp32",
    "gradient accumulation": "буфер накопления градиентов",
    "optimizer states": "состояния оптимизатора",
    "model states": "состояния модели",
    "activations": "активации",
    "total": "итог (оценка)",
    "not in the total": "не входит в итог",
    "LN1: input": "LN1: вход",
    "QKV projection: input": "проекция QKV: вход",
    "Q, K (for QKᵀ)": "Q, K (для QKᵀ)",
    "V": "V",
    "output projection: input": "выходная проекция: вход",
    "output projection: dropout mask": "маска dropout после проекции",
    "LN2: input": "LN2: вход",
    "MLP fc: input": "MLP, первый слой: вход",
    "GeLU: input (4h)": "GeLU: вход (4h)",
    "MLP proj: input (4h)": "MLP, второй слой: вход (4h)",
    "MLP dropout mask": "маска dropout в MLP",
    "softmax: output (as²b)": "softmax: выход (as²b)",
    "softmax dropout: mask (as²b)": "dropout после softmax: маска (as²b)",
    "softmax dropout: output (as²b)": "dropout после softmax: выход (as²b)",
    "16-bit copy of the softmax output (as²b)": "16-битная копия выхода softmax (as²b)",
    "fused attention: logsumexp": "слитное внимание: logsumexp",
    "LayerNorm statistics (not in the paper)": "статистики LayerNorm (нет в статье)",
    "embedding: token ids": "эмбеддинг: номера токенов",
    "embedding dropout mask": "маска dropout после эмбеддинга",
    "final LayerNorm + output layer input": "финальный LayerNorm, вход выходного слоя",
    "loss: log-softmax (s·b·V)": "потери: log-softmax (s·b·V)",
    "loss: targets": "потери: правильные ответы",
    "layers: inputs kept (L·sbh)": "слои: хранимые входы (L·sbh)",
    "layers: one layer recomputed": "слои: один пересчитываемый слой",
    "layers: segment inputs kept (k·sbh)": "слои: хранимые входы сегментов (k·sbh)",
    "layers: one segment recomputed": "слои: один пересчитываемый сегмент",
    "autocast: 16-bit copies of the weights": "autocast: 16-битные копии весов",
    "rotary tables": "таблицы поворотных кодирований",
    "final RMSNorm": "финальный RMSNorm",
    "saved by modules (rules)": "сохранено модулями (по правилам)",
    "logits gradient (s·b·V)": "градиент по логитам (s·b·V)",
}


def label(key: str, lang: str = "ru") -> str:
    """The printed name of a ledger row or an activation term: ``label("weights") == "веса"``."""
    check_choice("lang", lang, ("ru", "en"))
    if lang == "en":
        return key
    if key.startswith("layers: ") and key.endswith(" × per-layer"):
        return f"слои: {key.split()[1]} × один слой"
    return LABELS_RU.get(key, key)


@dataclass
class Ledger:
    """Bytes of one training step by kind; ``print(ledger)`` shows the table.

    ``total`` = model states + saved activations is an estimate, neither an upper nor a lower
    bound of the peak (see the module docstring for what it leaves out). ``transients`` lists
    short-lived buffers that are known but not in ``total`` (the logits gradient).
    """

    model: str
    n_params: int
    optimizer: str
    precision: str
    batch: int
    seq: int | None
    weights: int
    grads: int
    master: int
    optimizer_states: int
    activations: int
    activation_terms: dict[str, int] = field(default_factory=dict)
    accumulation: int = 0  # a separate (fp32) buffer that sums micro-batch gradients
    transients: dict[str, int] = field(default_factory=dict)

    @property
    def model_states(self) -> int:
        """Weights + gradients (+ accumulation buffer) + master copy + optimizer states."""
        return (self.weights + self.grads + self.accumulation + self.master
                + self.optimizer_states)

    @property
    def total(self) -> int:
        """Model states + saved activations: an estimate, not a bound (see the class doc)."""
        return self.model_states + self.activations

    def as_dict(self) -> dict[str, int]:
        return {"weights": self.weights, "grads": self.grads, "accumulation": self.accumulation,
                "master": self.master, "optimizer_states": self.optimizer_states,
                "activations": self.activations, "model_states": self.model_states,
                "total": self.total}

    def table(self, unit: str = "auto", terms: bool = False, lang: str = "ru") -> str:
        """The ledger as a text table (≤ 60 characters wide), in Russian or English."""
        check_choice("lang", lang, ("ru", "en"))
        ru = lang == "ru"
        head = (f"{self.model}: {self.n_params:,} " + ("параметров" if ru else "parameters"))
        head2 = (f"оптимизатор {self.optimizer} | точность {self.precision} | батч {self.batch}"
                 if ru else f"optimizer {self.optimizer} | precision {self.precision} | "
                 f"batch {self.batch}") + (f" | s = {self.seq}" if self.seq else "")
        per = "Б/параметр" if ru else "B/param"
        rows = [("weights", self.weights), ("gradients", self.grads),
                ("gradient accumulation", self.accumulation), ("fp32 master copy", self.master),
                ("optimizer states", self.optimizer_states), ("model states", self.model_states),
                ("activations", self.activations), ("total", self.total)]
        rule = "-" * 50
        lines = [head, head2, rule]
        for name, v in rows:
            if name == "gradient accumulation" and not v:
                continue
            if name in ("model states", "total"):
                lines.append(rule)
            # bytes per parameter only where the memory is proportional to Ψ
            per_param = ("" if name in ("activations", "total")
                         else f"{v / max(self.n_params, 1):>6.1f} {per}")
            lines.append(f"{label(name, lang)[:28]:<28}{format_bytes(v, unit, lang):>12}"
                         f"{per_param}".rstrip())
            if terms and name == "activations":
                lines += [f"  {label(k, lang)[:40]:<40}{format_bytes(t, unit, lang):>12}"
                          for k, t in self.activation_terms.items()]
        if self.transients:
            lines.append(label("not in the total", lang) + ":")
            lines += [f"  {label(k, lang)[:40]:<40}{format_bytes(t, unit, lang):>12}"
                      for k, t in self.transients.items()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


ModelLike = Union[str, GPTConfig, LlamaConfig, nn.Module]


def _param_shapes(model: nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in model.parameters() if p.requires_grad]


@functools.lru_cache(maxsize=64)
def _config_params(cfg: Union[GPTConfig, LlamaConfig]) -> tuple[int, tuple[tuple[int, ...], ...]]:
    """Parameter count and shapes of a config, from a model built on ``meta`` (cached: configs are frozen)."""
    net = build(cfg, device="meta")
    return count_params(net, trainable_only=True), tuple(_param_shapes(net))


def ledger(
    model: ModelLike,
    optimizer: str = "adam",
    precision: str = "mixed",
    batch: int = 1,
    seq: int | None = None,
    example_input: torch.Tensor | None = None,
    target: str = "cuda",
    checkpointing: str = "none",
    micro_batch: int | None = None,
    grad_accum_bytes: int | None = None,
    segments: int | None = None,
) -> Ledger:
    """The memory ledger of one naive training step.

    ``model``: a preset name ("gpt2-xl"), a ``GPTConfig``/``LlamaConfig`` (built on ``meta``, nothing is
    allocated), or any ``nn.Module`` (then ``example_input``, one micro-batch, is required: it gives the
    activation estimate by module rules, and without it the activations would be a silent zero).
    ``micro_batch``: with gradient accumulation only one micro-batch of activations is alive at a time,
    and the micro-batch gradients are summed in a buffer of ``grad_accum_bytes`` per parameter: by
    default 4 (fp32) when the gradients themselves are 16-bit (summing in 16 bits loses the small
    contributions), 0 when they are fp32 already (they accumulate in ``.grad``).
    Activation bytes follow ``precision`` and ``target``; ``precision="amp"`` (torch.autocast)
    is modelled for GPT configs, whose op lists are known. ``segments`` (GPT configs,
    ``checkpointing="full"``): checkpoint k segments of layers instead of every layer (chapter 6).
    """
    check_choice("optimizer", optimizer, OPTIMIZER_STATES)
    check_choice("precision", precision, PRECISIONS)
    check_choice("target", target, TARGETS)
    check_choice("checkpointing", checkpointing, CHECKPOINTING)
    check_positive_int("batch", batch)
    if micro_batch is not None:
        check_positive_int("micro_batch", micro_batch)
        if batch % micro_batch:
            raise ValueError(f"batch={batch} is not a multiple of micro_batch={micro_batch}")
    live_batch = micro_batch or batch
    p = PRECISIONS[precision]
    accumulating = micro_batch is not None and micro_batch < batch
    if grad_accum_bytes is None:
        grad_accum_bytes = 4 if accumulating and p.grads < 4 else 0
    elif not isinstance(grad_accum_bytes, int) or grad_accum_bytes < 0:
        raise ValueError(f"grad_accum_bytes must be a non-negative int, got {grad_accum_bytes!r}")
    name = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        check_choice("model", model, PRESETS)
        model = PRESETS[model]
    cfg = model.config if isinstance(model, (GPT, Llama)) else model
    if isinstance(cfg, (GPTConfig, LlamaConfig)):
        n, shapes = _config_params(cfg)
    elif isinstance(model, nn.Module):
        n, shapes = count_params(model, trainable_only=True), _param_shapes(model)
    else:
        raise TypeError(f"model must be a preset name, a GPTConfig/LlamaConfig or an nn.Module, got {name}")

    if p.autocast and not isinstance(cfg, GPTConfig):
        raise ValueError(f"precision {precision!r} (torch.autocast) is modelled for GPT configs only")
    transients: dict[str, int] = {}
    if segments is not None and not isinstance(cfg, GPTConfig):
        raise ValueError("segments is modelled for GPT configs only")
    if isinstance(cfg, GPTConfig):
        seq = cfg.block_size if seq is None else seq
        terms = gpt_activation_terms(cfg, live_batch, seq, p.activations, target, checkpointing,
                                     autocast=p.autocast, weight_copy_bytes=p.weight_copies,
                                     segments=segments)
        # dL/dlogits has the dtype of the log-softmax (fp32 under autocast), s·b·V numbers
        transients["logits gradient (s·b·V)"] = terms["loss: log-softmax (s·b·V)"]
    elif isinstance(cfg, LlamaConfig):
        if checkpointing != "none":
            raise ValueError("checkpointing is modelled for GPT configs only")
        seq = cfg.block_size if seq is None else seq
        terms = llama_activation_terms(cfg, live_batch, seq, p.activations)
        transients["logits gradient (s·b·V)"] = terms["loss: log-softmax (s·b·V)"]
    else:
        if example_input is None:
            raise ValueError(f"ledger({name}) cannot estimate activations of a plain nn.Module without "
                             "example_input (one micro-batch of inputs); pass it, or a GPTConfig/LlamaConfig/preset name")
        if checkpointing != "none":
            raise ValueError("checkpointing is modelled for GPT configs only")
        terms = {"saved by modules (rules)": estimate_activation_bytes(model, example_input, p.activations, target)}
    return Ledger(
        model=name, n_params=n, optimizer=optimizer, precision=precision, batch=batch, seq=seq,
        weights=p.weights * n, grads=p.grads * n, master=p.master * n,
        optimizer_states=state_bytes(shapes, optimizer, p.states),
        activations=sum(terms.values()), activation_terms=terms,
        accumulation=grad_accum_bytes * n, transients=transients,
    )


# ------------------------------------------------------------------------------ the timeline of a step


@dataclass(frozen=True)
class TimelinePoint:
    """Live bytes by kind after one event of a training step."""

    event: str
    phase: str  # "forward", "backward", "step"
    weights: int
    grads: int
    states: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.grads + self.states + self.activations


def simulate_step(
    saved: SavedTensors,
    model: nn.Module,
    optimizer: str = "adam",
    state_number_bytes: int = 4,
    first_step: bool = True,
) -> list[TimelinePoint]:
    """A simulated allocator: replay one step from what ``saved`` recorded.

    Forward: the saves of each module (a run of consecutive saves) add activations.
    Backward, in reverse order: those activations are freed and the module's parameters
    get their gradients. Step: the optimizer states appear (on the first step), then
    ``zero_grad(set_to_none=True)`` frees the gradients. Gradients of intermediate
    tensors (the logits gradient, for one) are not modelled.
    """
    if saved.model is not model:
        raise ValueError("record saved with SavedTensors(model) for this model")
    nbytes = lambda p: p.numel() * p.element_size()  # noqa: E731
    w = sum(nbytes(p) for p in model.parameters())
    modules = {(name or ROOT): m for name, m in model.named_modules()}
    states = state_bytes(_param_shapes(model), optimizer, state_number_bytes)
    states0 = 0 if first_step else states
    runs: list[list] = []  # [module, activation bytes]: consecutive saves of one module
    for r in saved.records:
        if not runs or runs[-1][0] != r.module:
            runs.append([r.module, 0])
        if r.kind == "activation":
            runs[-1][1] += r.nbytes
    points = [TimelinePoint("start", "forward", w, 0, states0, 0)]
    live = grads = 0
    for m, act in runs:  # forward: saved tensors pile up
        live += act
        points.append(TimelinePoint(m or "loss", "forward", w, 0, states0, live))
    done: set[int] = set()  # parameters with a gradient (a tied weight counts once)
    for m, act in reversed(runs):  # backward: free what m saved, add its gradients
        live -= act
        own = modules[m].parameters(recurse=False) if m in modules else []
        for p in own:
            if p.requires_grad and id(p) not in done:
                done.add(id(p))
                grads += nbytes(p)
        points.append(TimelinePoint(m or "loss", "backward", w, grads, states0, live))
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in done]
    grads += sum(nbytes(p) for p in rest)  # parameters whose module saved nothing
    points.append(TimelinePoint("optimizer.step()", "step", w, grads, states, 0))
    points.append(TimelinePoint("zero_grad()", "step", w, 0, states, 0))
    return points


# ------------------------------------------------------------------------------ command line


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m nntrain.memory",
        description="Print the memory ledger of one naive training step (weights, gradients, "
                    "fp32 master copy, optimizer states, activations) for a model of the book.",
        epilog="Example: python -m nntrain.memory --model gpt2-xl --batch 32 --seq 1024 "
               "--optimizer adam --precision mixed",
    )
    ap.add_argument("--model", default="gpt2", choices=sorted(PRESETS),
                    help="preset model, built on the meta device (nothing is allocated)")
    ap.add_argument("--batch", type=int, default=1, help="sequences per optimizer step (default 1)")
    ap.add_argument("--seq", type=int, default=None, help="sequence length (default: the model's block size)")
    ap.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZER_STATES),
                    help="optimizer whose states are counted: " + ", ".join(sorted(OPTIMIZER_STATES)))
    ap.add_argument("--precision", default="mixed", choices=sorted(PRECISIONS),
                    help="; ".join(f"{k}: {v.description}" for k, v in PRECISIONS.items()))
    ap.add_argument("--target", default="cuda", choices=TARGETS,
                    help="where the step runs: on CPU dropout masks take the activation dtype (default cuda)")
    ap.add_argument("--checkpointing", default="none", choices=CHECKPOINTING,
                    help="activation checkpointing: none, selective (recompute attention scores), "
                         "full (keep layer inputs only)")
    ap.add_argument("--micro-batch", type=int, default=None,
                    help="gradient accumulation: sequences per micro-batch (activations of one are alive)")
    ap.add_argument("--unit", default="auto", choices=["auto", "B", "KB", "MB", "GB", "TB"],
                    help="unit of the table (decimal; default auto)")
    ap.add_argument("--grad-accum-bytes", type=int, default=None,
                    help="bytes per parameter of the buffer that sums micro-batch gradients "
                         "(default: 4 with 16-bit gradients, 0 with fp32 ones)")
    ap.add_argument("--terms", action="store_true", help="also list the activation terms")
    ap.add_argument("--lang", default="ru", choices=["ru", "en"],
                    help="language of the printed table (default ru, the book's language)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m nntrain.memory``."""
    ap = _parser()
    args = ap.parse_args(argv)
    if args.grad_accum_bytes is not None and args.grad_accum_bytes < 0:
        ap.error(f"--grad-accum-bytes must be >= 0, got {args.grad_accum_bytes}")
    for name in ("batch", "seq", "micro_batch"):
        v = getattr(args, name)
        if v is not None and v <= 0:
            ap.error(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    try:
        led = ledger(args.model, args.optimizer, args.precision, args.batch, args.seq,
                     target=args.target, checkpointing=args.checkpointing,
                     micro_batch=args.micro_batch, grad_accum_bytes=args.grad_accum_bytes)
    except ValueError as err:
        ap.error(str(err))
    print(led.table(args.unit, terms=args.terms, lang=args.lang))
    return 0


if __name__ == "__main__":
    sys.exit(main())
