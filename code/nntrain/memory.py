"""What a training step keeps in memory: a ledger, and the measurements that check it (chapter 3).

The ledger counts, for a model (or a config), an optimizer, a precision mode and a batch:

* **weights**, **gradients**, the fp32 **master** copy of mixed precision, **optimizer states**
  (ZeRO, arXiv 1910.02054: mixed-precision Adam costs 2 + 2 + 4 + 4 + 4 = 16 bytes per parameter);
* **activations** saved for backward: per transformer layer sbh(34 + 5as/h) bytes in the setting of
  Korthikanti et al. (arXiv 2205.05198), derived term by term in :func:`transformer_layer_terms`.

Measurements check it: :class:`SavedTensors` counts the storages autograd saves for backward
(on any device, also ``meta``), :func:`optimizer_state_bytes` sums a real ``optimizer.state``,
:func:`cuda_peak_step` reads ``torch.cuda.max_memory_allocated`` around a real step.

Later chapters plug in: a new optimizer's state size with :func:`register_optimizer`
(Adafactor, 8-bit Adam), a new precision with :func:`register_precision`, activation
checkpointing through ``checkpointing=``, gradient accumulation through ``micro_batch``.

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
    "PRECISIONS",
    "TARGETS",
    "Ledger",
    "Precision",
    "SavedRecord",
    "SavedTensors",
    "TimelinePoint",
    "activation_rules",
    "bytes_per_parameter",
    "cuda_peak_step",
    "estimate_activation_bytes",
    "format_bytes",
    "gpt_activation_terms",
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


def format_bytes(n: float, unit: str = "auto") -> str:
    """Human-readable decimal bytes: ``format_bytes(3.1e9) == '3.10 GB'``."""
    units = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
    if unit == "auto":
        unit = next((u for u in ("TB", "GB", "MB", "KB") if abs(n) >= units[u]), "B")
    check_choice("unit", unit, units)
    return f"{n:.0f} B" if unit == "B" else f"{n / units[unit]:.2f} {unit}"


# ------------------------------------------------------------------------------ precision modes


@dataclass(frozen=True)
class Precision:
    """Bytes of one number of each kind in a precision mode."""

    weights: int  # the weights the forward pass uses
    grads: int  # the gradients backward writes
    master: int  # an extra fp32 copy of the weights (mixed precision), 0 if none
    states: int  # one optimizer-state number
    activations: int  # one saved activation
    description: str = ""


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision(4, 4, 0, 4, 4, "everything in float32"),
    "mixed": Precision(2, 2, 4, 4, 2, "fp16/bf16 weights, grads, activations + fp32 master and states (ZeRO)"),
    "amp": Precision(4, 4, 0, 4, 2, "torch.autocast: fp32 weights and states, 16-bit activations"),
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


OPTIMIZER_STATES: dict[str, StateFn] = {
    "sgd": lambda shape, nb: 0,
    "momentum": lambda shape, nb: _numel(shape) * nb,
    "adam": lambda shape, nb: 2 * _numel(shape) * nb + STEP_BYTES,
    "adamw": lambda shape, nb: 2 * _numel(shape) * nb + STEP_BYTES,
}


def register_optimizer(name: str, state_fn: StateFn, overwrite: bool = False) -> None:
    """Teach the ledger a new optimizer: ``state_fn(shape, bytes_per_number) -> state bytes``.

    Chapter 4 registers Adafactor (rows + columns of each matrix) and 8-bit Adam this way.
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
) -> dict[str, int]:
    """Bytes one GPT-2 layer saves for backward, term by term (Korthikanti et al. 2022, section 4.1).

    With 16-bit activations, 1-byte dropout masks and explicit attention the sum of the paper's
    terms is sbh(34 + 5as/h). ``attention="sdpa"`` (a fused kernel) keeps no s×s matrix but the
    row log-sum-exp; ``ln_stat_bytes`` counts LayerNorm's mean and 1/σ, which the paper omits.
    """
    for name, v in dict(s=s, b=b, h=h, a=a, act_bytes=act_bytes).items():
        check_positive_int(name, v)
    check_choice("attention", attention, ("math", "sdpa"))
    sbh, ab, mb = s * b * h, act_bytes, mask_bytes if dropout else 0
    terms = {
        "LN1: input": ab * sbh,
        "QKV projection: input": ab * sbh,
        "Q, K (for QKᵀ)": 2 * ab * sbh,
        "V": ab * sbh,
        "output projection: input": ab * sbh,
        "output projection: dropout mask": mb * sbh,
        "LN2: input": ab * sbh,
        "MLP fc: input": ab * sbh,
        "GeLU: input (4h)": 4 * ab * sbh,
        "MLP proj: input (4h)": 4 * ab * sbh,
        "MLP dropout mask": mb * sbh,
    }
    if attention == "math":
        terms["softmax: output (as²b)"] = ab * a * s * s * b
        terms["softmax dropout: mask (as²b)"] = mb * a * s * s * b
        terms["softmax dropout: output (as²b)"] = ab * a * s * s * b if dropout else 0
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
) -> dict[str, int]:
    """Activation bytes of a whole GPT step: the layers, the embedding and the output layer with its loss.

    ``target`` sets the dropout-mask size (bool on CUDA, the activation dtype on CPU) and LayerNorm
    statistics (fp32 on CUDA, the activation dtype on CPU). ``checkpointing``: "selective" drops the
    s² attention terms (recomputed, Korthikanti et al.); "full" keeps each layer's input plus the
    activations of one layer being recomputed during backward.
    """
    if not isinstance(cfg, GPTConfig):
        raise TypeError(f"expected a GPTConfig, got {type(cfg).__name__}")
    check_positive_int("batch", batch)
    check_positive_int("seq", seq)
    check_choice("target", target, TARGETS)
    check_choice("checkpointing", checkpointing, CHECKPOINTING)
    if seq > cfg.block_size:
        raise ValueError(f"seq={seq} is longer than block_size={cfg.block_size}")
    s, b, h, L = seq, batch, cfg.n_embd, cfg.n_layer
    dropout = cfg.dropout > 0
    mask_bytes = 1 if target == "cuda" else act_bytes
    stat_bytes = 4 if target == "cuda" else act_bytes
    layer = transformer_layer_terms(s, b, h, cfg.n_head, act_bytes, dropout, cfg.attention, mask_bytes, stat_bytes)
    per_layer = sum(layer.values())
    if checkpointing == "selective" and cfg.attention == "math":
        per_layer -= sum(v for k, v in layer.items() if "as²b" in k)
    sbh = s * b * h
    loss_bytes = act_bytes if loss_bytes is None else loss_bytes
    out = {
        "embedding: token ids": 8 * s * b + 8 * s,  # wte saves idx, wpe saves positions
        "embedding dropout mask": (mask_bytes if dropout else 0) * sbh,
        "final LayerNorm + output layer input": 2 * act_bytes * sbh + 2 * s * b * stat_bytes,
        "loss: log-softmax (s·b·V)": loss_bytes * s * b * cfg.vocab_size,
        "loss: targets": 8 * s * b,
    }
    if checkpointing == "full":
        out["layers: inputs kept (L·sbh)"] = L * act_bytes * sbh
        out["layers: one layer recomputed"] = per_layer
    else:
        out[f"layers: {L} × per-layer"] = L * per_layer
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

    def table(self) -> str:
        lines = [f"{'#':>3}  {'module':<28} {'shape':<22} {'dtype':<9} {'bytes':>12}  kind"]
        for r in self.records:
            lines.append(f"{r.order:>3}  {r.module[:28]:<28} {str(r.shape)[:22]:<22} "
                         f"{str(r.dtype).replace('torch.', ''):<9} {r.nbytes:>12,}  {r.kind}")
        lines.append(f"activations: {self.activation_bytes:,} B; parameters saved: {self.parameter_bytes:,} B")
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


@dataclass
class Ledger:
    """Bytes of one training step by kind; ``print(ledger)`` shows the table, ``asdict`` gives numbers."""

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

    @property
    def model_states(self) -> int:
        """Weights + gradients + master copy + optimizer states: what ZeRO partitions."""
        return self.weights + self.grads + self.master + self.optimizer_states

    @property
    def total(self) -> int:
        return self.model_states + self.activations

    def as_dict(self) -> dict[str, int]:
        return {"weights": self.weights, "grads": self.grads, "master": self.master,
                "optimizer_states": self.optimizer_states, "activations": self.activations,
                "model_states": self.model_states, "total": self.total}

    def table(self, unit: str = "auto", terms: bool = False) -> str:
        head = (f"{self.model}: {self.n_params:,} parameters | optimizer {self.optimizer} | "
                f"precision {self.precision} | batch {self.batch}" + (f" | seq {self.seq}" if self.seq else ""))
        rows = [("weights", self.weights), ("gradients", self.grads), ("fp32 master copy", self.master),
                ("optimizer states", self.optimizer_states), ("model states", self.model_states),
                ("activations", self.activations), ("total", self.total)]
        lines = [head, "-" * 44]
        for name, v in rows:
            if name in ("model states", "total"):
                lines.append("-" * 44)
            lines.append(f"{name:<22}{format_bytes(v, unit):>14}{v / max(self.n_params, 1):>7.1f} B/p")
            if terms and name == "activations":
                lines += [f"  {k[:36]:<36}{format_bytes(t, unit):>14}" for k, t in self.activation_terms.items()]
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
) -> Ledger:
    """The memory ledger of one naive training step.

    ``model``: a preset name ("gpt2-xl"), a ``GPTConfig``/``LlamaConfig`` (built on ``meta``, nothing is
    allocated), or any ``nn.Module`` (then ``example_input``, one micro-batch, is required: it gives the
    activation estimate by module rules, and without it the activations would be a silent zero).
    ``micro_batch``: with gradient accumulation only one micro-batch of activations is alive at a time.
    Activation bytes follow ``precision`` and ``target``.
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

    if isinstance(cfg, GPTConfig):
        seq = cfg.block_size if seq is None else seq
        terms = gpt_activation_terms(cfg, live_batch, seq, p.activations, target, checkpointing)
    elif isinstance(cfg, LlamaConfig):
        if checkpointing != "none":
            raise ValueError("checkpointing is modelled for GPT configs only")
        seq = cfg.block_size if seq is None else seq
        terms = llama_activation_terms(cfg, live_batch, seq, p.activations)
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
    """A simulated allocator: replay one step module by module from what ``saved`` recorded.

    Forward: each module adds the activations it saved. Backward (modules in reverse order): a
    module's saved tensors are freed and its parameters' gradients appear. Step: the optimizer
    states appear (on the first step), then ``zero_grad(set_to_none=True)`` frees the gradients.
    """
    if saved.model is not model:
        raise ValueError("saved must be recorded with SavedTensors(model) for this same model")
    params = list(model.parameters())
    w = sum(p.numel() * p.element_size() for p in params)
    modules = {(name or ROOT): m for name, m in model.named_modules()}
    states_total = state_bytes(_param_shapes(model), optimizer, state_number_bytes)
    states0 = 0 if first_step else states_total
    acts: dict[str, int] = {}
    for r in saved.records:
        if r.kind == "activation":
            acts[r.module] = acts.get(r.module, 0) + r.nbytes
    order = saved.module_order + ([""] if "" in acts else [])
    label = {m: (m or "loss") for m in order}
    points = [TimelinePoint("start", "forward", w, 0, states0, 0)]
    live = grads = 0
    for m in order:
        live += acts.get(m, 0)
        points.append(TimelinePoint(label[m], "forward", w, 0, states0, live))
    done: set[int] = set()  # parameter ids whose gradient exists (tied weights count once)
    for m in reversed(order):
        live -= acts.get(m, 0)
        if m in modules:
            for p in modules[m].parameters(recurse=False):
                if p.requires_grad and id(p) not in done:
                    done.add(id(p))
                    grads += p.numel() * p.element_size()
        points.append(TimelinePoint(label[m], "backward", w, grads, states0, live))
    grads += sum(p.numel() * p.element_size() for p in params if p.requires_grad and id(p) not in done)
    points.append(TimelinePoint("optimizer.step()", "step", w, grads, states_total, 0))
    points.append(TimelinePoint("zero_grad()", "step", w, 0, states_total, 0))
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
    ap.add_argument("--terms", action="store_true", help="also list the activation terms")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m nntrain.memory``."""
    ap = _parser()
    args = ap.parse_args(argv)
    for name in ("batch", "seq", "micro_batch"):
        v = getattr(args, name)
        if v is not None and v <= 0:
            ap.error(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
    try:
        led = ledger(args.model, args.optimizer, args.precision, args.batch, args.seq,
                     target=args.target, checkpointing=args.checkpointing, micro_batch=args.micro_batch)
    except ValueError as err:
        ap.error(str(err))
    print(led.table(args.unit, terms=args.terms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
