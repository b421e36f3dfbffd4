"""Floating-point formats and mixed-precision training from scratch (chapter 7).

What is here, in the order the chapter teaches it:

* formats: ``FORMATS`` (fp32, tf32, fp16, bf16, fp8 e4m3 / e5m2), ``format_limits`` (from ``torch.finfo``),
  ``to_bits`` / ``split_bits`` / ``value_of_fields`` / ``decode`` / ``decode_bits`` (a float → its sign,
  exponent and mantissa), ``largest_finite`` (from the bit patterns), ``round_to`` (round to a format,
  tf32 included), ``draw_bit_layout`` (the figure of the bit layouts);
* rounding: ``ulp``, ``gap_toward`` and ``absorption_bound`` (when ``a + b`` rounds back to ``a``),
  ``lost_in_addition``, ``sequential_sum`` (naive, Kahan and pairwise sums in a given dtype);
* loss scaling: ``underflow_census`` (what becomes zero, subnormal or inf at a loss scale),
  ``stored_census`` (the same for a tensor already in low precision), ``ActivationGrads`` (tensor
  hooks that keep the gradients of module outputs in a real backward pass), ``StaticLossScaler``,
  ``DynamicLossScaler`` and its pure rule ``dynamic_scale_update``;
* master weights (Micikevicius et al. 2018): ``MasterWeights`` (normalisations and softmax kept in fp32),
  ``master_weights_step`` and the reference it is compared with, ``autocast_step`` (``torch.amp``);
  ``draw_mixed_precision_flow`` (the data-flow figure);
* forward overflow: ``NonFiniteFinder`` (forward hooks that name the first module with inf/NaN output);
* fp8: ``fp8_roundtrip`` (per-tensor or block-wise amax scaling);
* speed: ``matmul_seconds``, ``train_step_seconds`` in fp32 / TF32 / bf16 / fp16, ``tf32_matmul``,
  ``torch_threads`` (bytes per parameter live in ``nntrain.memory.bytes_per_parameter``).

The functional core works on plain numbers and tensors; the classes are thin wrappers around it.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

__all__ = [
    "FORMATS", "FloatFormat", "FloatFields", "get_format", "format_limits", "to_bits", "split_bits",
    "value_of_fields", "decode", "round_to", "draw_bit_layout", "ulp", "lost_in_addition",
    "sequential_sum", "SUM_METHODS", "underflow_census", "dynamic_scale_update", "StaticLossScaler",
    "DynamicLossScaler", "MasterWeights", "StepResult", "master_weights_step", "autocast_step",
    "train_master_weights", "decode_bits", "largest_finite", "gap_toward", "absorption_bound",
    "stored_census", "ActivationGrads", "FP32_MODULES", "LOW_PRECISION_MODULES", "NonFiniteFinder",
    "fp8_roundtrip", "draw_mixed_precision_flow", "torch_threads",
    "matmul_seconds", "TIMING_MODES", "tf32_matmul", "train_step_seconds", "train_step_profile",
    "PROFILE_GROUPS",
]


# --------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format: 1 sign bit, ``exponent_bits``, ``mantissa_bits`` (stored, no hidden 1).

    ``ieee_specials`` is False for fp8 e4m3 ("fn": finite, no infinities; the all-ones exponent holds
    normal numbers, and only S.1111.111 is NaN: two codes, one per sign).
    ``dtype_name`` names the torch dtype, or None where torch has no storage type (tf32 is a math mode).
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    dtype_name: str | None
    ieee_specials: bool = True

    @property
    def bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def dtype(self) -> torch.dtype | None:
        """The torch dtype, or None (tf32; fp8 on a torch that lacks it)."""
        return getattr(torch, self.dtype_name, None) if self.dtype_name else None


FORMATS: dict[str, FloatFormat] = {
    "fp32": FloatFormat("fp32", 8, 23, "float32"),
    "tf32": FloatFormat("tf32", 8, 10, None),
    "fp16": FloatFormat("fp16", 5, 10, "float16"),
    "bf16": FloatFormat("bf16", 8, 7, "bfloat16"),
    "fp8_e4m3": FloatFormat("fp8_e4m3", 4, 3, "float8_e4m3fn", ieee_specials=False),
    "fp8_e5m2": FloatFormat("fp8_e5m2", 5, 2, "float8_e5m2"),
}


def get_format(fmt: str | FloatFormat) -> FloatFormat:
    """The ``FloatFormat`` called ``fmt`` (a clear error names the known ones)."""
    if isinstance(fmt, FloatFormat):
        return fmt
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ValueError(f"unknown float format {fmt!r}; expected one of {list(FORMATS)}")
    return FORMATS[fmt]


def _storage_dtype(fmt: FloatFormat) -> torch.dtype:
    dt = fmt.dtype
    if dt is None:
        why = "it is a matmul mode, not a storage type" if fmt.name == "tf32" else "this torch has no such dtype"
        raise ValueError(f"format {fmt.name!r} has no torch dtype ({why})")
    return dt


def format_limits(fmt: str | FloatFormat) -> dict[str, float]:
    """Max, smallest normal, smallest subnormal and machine epsilon of a format, from ``torch.finfo``.

    ``torch.finfo`` has no field for the smallest subnormal: it is ``smallest_normal · eps``
    (the last mantissa bit at the smallest exponent), i.e. ``2**(1 - bias - mantissa_bits)``.
    tf32 has no dtype: its limits are those of fp32 with a 10-bit mantissa.
    """
    f = get_format(fmt)
    if f.dtype is None and f.name == "tf32":
        info = torch.finfo(torch.float32)
        eps = 2.0 ** -f.mantissa_bits
        return {"max": float(info.max), "min_normal": float(info.smallest_normal),
                "min_subnormal": float(info.smallest_normal) * eps, "eps": eps, "bits": f.bits}
    info = torch.finfo(_storage_dtype(f))
    return {"max": float(info.max), "min_normal": float(info.smallest_normal),
            "min_subnormal": float(info.smallest_normal) * float(info.eps), "eps": float(info.eps), "bits": f.bits}


_INT_VIEW = {32: torch.int32, 16: torch.int16, 8: torch.uint8}


def _round_fp32_bits_to_tf32(bits: int) -> int:
    """Round an fp32 bit pattern to 10 mantissa bits, to nearest, ties to even (inf/NaN kept)."""
    if (bits >> 23) & 0xFF == 0xFF:
        return bits
    drop = 23 - 10
    lsb = (bits >> drop) & 1
    bits = bits + (1 << (drop - 1)) - 1 + lsb
    return bits & ~((1 << drop) - 1) & 0xFFFFFFFF


def to_bits(x: float, fmt: str | FloatFormat) -> int:
    """The bit pattern (an unsigned int of ``fmt.bits`` bits) of ``x`` rounded to the format.

    Rounding is torch's own cast (to nearest, ties to even); tf32 keeps the fp32 layout, so its
    pattern is given as the 19 bits 1+8+10 after rounding the fp32 mantissa.
    """
    f = get_format(fmt)
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        raise TypeError(f"x must be a Python float or int, got {type(x).__name__}")
    if f.name == "tf32":
        b32 = int(torch.tensor([float(x)], dtype=torch.float32).view(torch.int32).item()) & 0xFFFFFFFF
        return _round_fp32_bits_to_tf32(b32) >> 13
    t = torch.tensor([float(x)], dtype=torch.float32).to(_storage_dtype(f))
    raw = int(t.view(_INT_VIEW[f.bits]).item())
    return raw & ((1 << f.bits) - 1)


def split_bits(bits: int, fmt: str | FloatFormat) -> tuple[int, int, int]:
    """(sign, biased exponent, stored mantissa) fields of a bit pattern."""
    f = get_format(fmt)
    if not isinstance(bits, int) or not 0 <= bits < (1 << f.bits):
        raise ValueError(f"bits must be an int in [0, 2**{f.bits}) for {f.name}, got {bits!r}")
    mantissa = bits & ((1 << f.mantissa_bits) - 1)
    exponent = (bits >> f.mantissa_bits) & ((1 << f.exponent_bits) - 1)
    sign = bits >> (f.bits - 1)
    return sign, exponent, mantissa


def _kind(exponent: int, mantissa: int, f: FloatFormat) -> str:
    top = (1 << f.exponent_bits) - 1
    if exponent == 0:
        return "zero" if mantissa == 0 else "subnormal"
    if exponent == top:
        if f.ieee_specials:
            return "inf" if mantissa == 0 else "nan"
        if mantissa == (1 << f.mantissa_bits) - 1:
            return "nan"
    return "normal"


def value_of_fields(sign: int, exponent: int, mantissa: int, fmt: str | FloatFormat) -> float:
    """The number the fields encode: the formula of the chapter.

    normal:    (-1)^s · 2^(e - bias) · (1 + m / 2^M)
    subnormal: (-1)^s · 2^(1 - bias) · (m / 2^M)
    """
    f = get_format(fmt)
    kind = _kind(exponent, mantissa, f)
    s = -1.0 if sign else 1.0
    if kind == "nan":
        return math.nan
    if kind == "inf":
        return s * math.inf
    frac = mantissa / 2 ** f.mantissa_bits
    if kind in ("zero", "subnormal"):
        return s * 2.0 ** (1 - f.bias) * frac
    return s * 2.0 ** (exponent - f.bias) * (1.0 + frac)


@dataclass(frozen=True)
class FloatFields:
    """A float as its format stores it (see ``decode``)."""

    fmt: str
    sign: int
    exponent: int  # biased, as stored
    mantissa: int  # stored bits, without the hidden 1
    kind: str  # "normal", "subnormal", "zero", "inf" or "nan"
    value: float  # the number these bits mean (x after rounding)
    bitstring: str  # e.g. "0 01111 0000000000"

    @property
    def unbiased_exponent(self) -> int:
        f = get_format(self.fmt)
        return 1 - f.bias if self.kind in ("zero", "subnormal") else self.exponent - f.bias


def decode(x: float, fmt: str | FloatFormat) -> FloatFields:
    """Round ``x`` to ``fmt`` and show how the format stores it: sign, exponent and mantissa fields."""
    f = get_format(fmt)
    bits = to_bits(x, f)
    sign, exponent, mantissa = split_bits(bits, f)
    text = format(bits, f"0{f.bits}b")
    bitstring = f"{text[0]} {text[1:1 + f.exponent_bits]} {text[1 + f.exponent_bits:]}"
    return FloatFields(f.name, sign, exponent, mantissa, _kind(exponent, mantissa, f),
                       value_of_fields(sign, exponent, mantissa, f), bitstring)


def decode_bits(bits: int, fmt: str | FloatFormat) -> FloatFields:
    """The fields, kind and value of a bit pattern (``decode`` starts from a number instead)."""
    f = get_format(fmt)
    sign, exponent, mantissa = split_bits(bits, f)
    text = format(bits, f"0{f.bits}b")
    bitstring = f"{text[0]} {text[1:1 + f.exponent_bits]} {text[1 + f.exponent_bits:]}"
    return FloatFields(f.name, sign, exponent, mantissa, _kind(exponent, mantissa, f),
                       value_of_fields(sign, exponent, mantissa, f), bitstring)


def largest_finite(fmt: str | FloatFormat) -> float:
    """The largest finite number of a format, read off its bit patterns (no ``torch.finfo``).

    IEEE-like formats: exponent field 1…10, mantissa all ones: ``(2 - 2**-M) * 2**bias``.
    fp8 e4m3 ("fn"): exponent field all ones is normal and only mantissa 1…1 is NaN, so the
    largest is 1111.110: ``(2 - 2**(1 - M)) * 2**(bias + 1) = 1.75 * 2**8 = 448``.
    """
    f = get_format(fmt)
    top = (1 << f.exponent_bits) - 1
    full = (1 << f.mantissa_bits) - 1
    if f.ieee_specials:
        return value_of_fields(0, top - 1, full, f)
    return value_of_fields(0, top, full - 1, f)


def round_to(x: torch.Tensor, fmt: str | FloatFormat) -> torch.Tensor:
    """``x`` (float32) rounded to ``fmt`` and returned as float32; tf32 is rounded bit by bit."""
    f = get_format(fmt)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    x = x.to(torch.float32)
    if f.name == "tf32":
        bits = x.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
        special = ((bits >> 23) & 0xFF) == 0xFF
        lsb = (bits >> 13) & 1
        rounded = ((bits + 0xFFF + lsb) & ~0x1FFF) & 0xFFFFFFFF
        rounded = torch.where(special, bits, rounded)
        rounded = torch.where(rounded >= 2 ** 31, rounded - 2 ** 32, rounded)
        return rounded.to(torch.int32).view(torch.float32)
    return x.to(_storage_dtype(f)).to(torch.float32)


_FIELD_COLORS = {"sign": "#CC79A7", "exponent": "#56B4E9", "mantissa": "#E69F00"}


def draw_bit_layout(ax, formats: Sequence[str] = ("fp32", "tf32", "bf16", "fp16", "fp8_e5m2", "fp8_e4m3"),
                    value: float | None = None) -> None:
    """Draw each format as a row of bit cells (sign, exponent, mantissa), aligned at the sign bit.

    With ``value``, every cell shows the bit of ``value`` rounded to that format.
    """
    from matplotlib.patches import Patch, Rectangle

    fmts = [get_format(name) for name in formats]
    for row, f in enumerate(fmts):
        y = len(fmts) - 1 - row
        bits = format(to_bits(value, f), f"0{f.bits}b") if value is not None else None
        for i in range(f.bits):
            field = "sign" if i == 0 else "exponent" if i <= f.exponent_bits else "mantissa"
            ax.add_patch(Rectangle((i, y + 0.1), 0.92, 0.8, facecolor=_FIELD_COLORS[field], edgecolor="white"))
            if bits is not None:
                ax.text(i + 0.46, y + 0.5, bits[i], ha="center", va="center", fontsize=7)
        ax.text(-0.6, y + 0.5, f.name, ha="right", va="center", fontsize=10)
        ax.text(f.bits + 0.4, y + 0.5, f"1+{f.exponent_bits}+{f.mantissa_bits}", ha="left", va="center", fontsize=9)
    ax.set_xlim(-6, 38)
    ax.set_ylim(-0.2, len(fmts) + 0.1)
    ax.set_yticks([])
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_xticks([0, 8, 16, 24, 31])
    ax.legend(handles=[Patch(color=_FIELD_COLORS[k], label=lab) for k, lab in
                       (("sign", "знак"), ("exponent", "порядок"), ("mantissa", "мантисса"))],
              loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)


# --------------------------------------------------------------------------- rounding


def ulp(x: float, fmt: str | FloatFormat) -> float:
    """The gap between ``x`` (rounded to ``fmt``) and the next representable number away from zero."""
    f = get_format(fmt)
    fields = decode(x, f)
    if fields.kind in ("inf", "nan"):
        raise ValueError(f"ulp of {x!r} is undefined in {f.name} (it is {fields.kind})")
    return 2.0 ** (fields.unbiased_exponent - f.mantissa_bits)


def gap_toward(a: float, direction: float, fmt: str | FloatFormat) -> float:
    """Distance from ``a`` (a finite number of ``fmt``) to its representable neighbour towards ``direction``.

    Away from zero it is ``ulp(a)``; towards zero it is ``ulp(a)/2`` when ``|a|`` is a power of two
    of the normal range (the grid below ``2^k`` is twice as fine), else ``ulp(a)``.
    """
    f = get_format(fmt)
    fields = decode(a, f)
    if fields.kind in ("inf", "nan"):
        raise ValueError(f"{a!r} is not a finite number of {f.name}")
    if fields.value != a:
        raise ValueError(f"{a!r} is not representable in {f.name} (it rounds to {fields.value!r})")
    if direction == 0:
        raise ValueError("direction must be non-zero: its sign says which neighbour")
    step = ulp(a, f)
    towards_zero = a != 0 and (direction > 0) != (a > 0)
    if towards_zero and fields.kind == "normal" and fields.mantissa == 0 and fields.exponent > 1:
        return step / 2
    return step


def absorption_bound(a: float, b: float, fmt: str | FloatFormat) -> float:
    """Half the gap from ``a`` to its neighbour in the direction of ``b``.

    Rounding to nearest: ``|b|`` below it gives ``fl(a + b) == a``, above it never; at equality
    the sum is a tie, decided by the even mantissa. For ``a = 2^k`` and ``b < 0`` it is ``ulp(a)/4``.
    """
    return gap_toward(a, b, fmt) / 2


def lost_in_addition(weight: float, update: float, fmt: str | FloatFormat) -> bool:
    """True when ``weight + update``, computed in ``fmt``, equals ``weight``: the update is lost."""
    f = get_format(fmt)
    dt = _storage_dtype(f)
    w = torch.tensor([weight], dtype=dt)
    return bool(((w + torch.tensor([update], dtype=dt)) == w).item())


SUM_METHODS = ("naive", "kahan", "pairwise")


def sequential_sum(values: torch.Tensor, dtype: torch.dtype, method: str = "naive",
                   running: bool = False) -> torch.Tensor:
    """Sum ``values`` along dim 0 with every operation in ``dtype`` (``torch.sum`` would accumulate wider).

    * ``naive``: s ← s + x_i, one term at a time (error grows like n·eps);
    * ``kahan``: compensated summation (Kahan 1965): the rounding error of each addition is kept in
      c and fed back, so the error stays O(eps) independent of n;
    * ``pairwise``: add neighbours in a tree (error O(eps·log n)).

    The trailing dims are independent sums, so many trials run at once. ``running=True`` returns
    every partial sum (shape of ``values``) instead of the last one (not for ``pairwise``).
    """
    if method not in SUM_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {SUM_METHODS}")
    if running and method == "pairwise":
        raise ValueError("running partial sums exist only for 'naive' and 'kahan', not for 'pairwise'")
    if not isinstance(values, torch.Tensor) or values.dim() == 0:
        raise ValueError("values must be a tensor with at least one dimension (the one that is summed)")
    x = values.to(dtype)
    if method == "pairwise":
        while x.shape[0] > 1:
            if x.shape[0] % 2:
                x = torch.cat([x, torch.zeros_like(x[:1])])
            x = x[0::2] + x[1::2]
        return x[0]
    s = torch.zeros_like(x[0])
    c = torch.zeros_like(x[0])
    partial = []
    for xi in x:
        if method == "naive":
            s = s + xi
        else:
            y = xi - c
            t = s + y
            c = (t - s) - y
            s = t
        if running:
            partial.append(s)
    return torch.stack(partial) if running else s


# --------------------------------------------------------------------------- loss scaling


def underflow_census(grads: torch.Tensor | Iterable[torch.Tensor], scale: float = 1.0,
                     dtype: torch.dtype = torch.float16) -> dict[str, float]:
    """What happens to gradients ``g`` (fp32) when ``scale · g`` is stored in ``dtype``.

    Returns the shares, among the non-zero gradients, that become zero (lost), subnormal
    (kept with fewer significant bits), or overflow to inf; and the share that survives.
    """
    if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    g = grads if isinstance(grads, torch.Tensor) else torch.cat([t.reshape(-1) for t in grads])
    g = g.detach().reshape(-1).to(torch.float64)
    g = g[g != 0]
    if g.numel() == 0:
        raise ValueError("no non-zero gradients to count")
    stored = (g * scale).to(dtype)
    mag = stored.abs().to(torch.float64)
    tiny = torch.finfo(dtype).smallest_normal
    n = g.numel()
    zero = (mag == 0).sum().item() / n
    sub = ((mag > 0) & (mag < tiny)).sum().item() / n
    inf = torch.isinf(mag).sum().item() / n
    return {"zero": zero, "subnormal": sub, "overflow": inf, "kept": 1.0 - zero - inf}


def stored_census(tensors: torch.Tensor | Iterable[torch.Tensor],
                  reference: torch.Tensor | Iterable[torch.Tensor] | None = None) -> dict[str, float]:
    """Shares of the entries of low-precision ``tensors`` that are zero, subnormal, normal or inf/NaN.

    With ``reference`` (the same tensors computed in fp32), ``underflow`` is the share, among the
    entries that are non-zero in the reference, of those that are exactly zero here: values lost to
    the format's range (zeros that are zero in fp32 too, such as ReLU's, are not counted).
    """
    def flat(ts) -> list[torch.Tensor]:
        return [ts] if isinstance(ts, torch.Tensor) else list(ts)

    low = flat(tensors)
    if not low:
        raise ValueError("no tensors to count")
    dtype = low[0].dtype
    if not dtype.is_floating_point or any(t.dtype != dtype for t in low):
        raise ValueError("tensors must share one floating dtype")
    tiny = torch.finfo(dtype).smallest_normal
    mags = torch.cat([t.detach().reshape(-1).abs().to(torch.float64) for t in low])
    n = mags.numel()
    finite = torch.isfinite(mags)
    out = {"zero": (mags == 0).sum().item() / n,
           "subnormal": ((mags > 0) & (mags < tiny)).sum().item() / n,
           "normal": ((mags >= tiny) & finite).sum().item() / n,
           "nonfinite": (~finite).sum().item() / n}
    if reference is not None:
        ref = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in flat(reference)])
        if ref.numel() != n:
            raise ValueError(f"reference has {ref.numel()} entries, tensors have {n}")
        nonzero = ref != 0
        out["underflow"] = (nonzero & (mags == 0)).sum().item() / max(int(nonzero.sum()), 1)
    return out


class ActivationGrads:
    """Keep the gradient of the loss with respect to each chosen module's output (tensor hooks).

    ``with ActivationGrads(model) as ag: loss(model(x)).backward()``; then ``ag.grads[name]`` is the
    gradient tensor as backward produced it (fp16 in an fp16 backward pass). By default every leaf
    module is watched. These are the activation gradients that loss scaling protects.
    """

    def __init__(self, model: nn.Module, names: Sequence[str] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        modules = dict(model.named_modules())
        if names is None:
            names = [n for n, m in modules.items() if n and not any(True for _ in m.children())]
        unknown = [n for n in names if n not in modules]
        if unknown:
            raise ValueError(f"no such modules: {unknown}")
        self._modules = {n: modules[n] for n in names}
        self.grads: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def _forward_hook(self, name: str):
        def hook(module, inputs, output) -> None:
            if isinstance(output, torch.Tensor) and output.requires_grad:
                def keep(grad: torch.Tensor) -> None:
                    self.grads[name] = grad.detach().clone()
                output.register_hook(keep)
        return hook

    def __enter__(self) -> "ActivationGrads":
        self.grads = {}
        for name, module in self._modules.items():
            self._handles.append(module.register_forward_hook(self._forward_hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def dynamic_scale_update(scale: float, growth_tracker: int, found_inf: bool, growth_factor: float = 2.0,
                         backoff_factor: float = 0.5, growth_interval: int = 2000) -> tuple[float, int]:
    """The dynamic loss-scale rule (the one of ``torch.amp.GradScaler.update``), a pure function.

    Overflow: the step was skipped; multiply the scale by ``backoff_factor`` and restart the count.
    Otherwise count the clean step; after ``growth_interval`` clean steps in a row multiply the scale
    by ``growth_factor`` (unless that overflows fp32) and restart the count.
    Returns (new scale, new growth tracker). Scales are kept as fp32 numbers, as torch does.
    """
    if found_inf:
        return float(torch.tensor(scale * backoff_factor, dtype=torch.float32)), 0
    successful = growth_tracker + 1
    if successful == growth_interval:
        grown = float(torch.tensor(scale * growth_factor, dtype=torch.float32))
        return (grown if math.isfinite(grown) else scale), 0
    return scale, successful


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _found_inf(tensors: Iterable[torch.Tensor | None]) -> bool:
    return any(not bool(torch.isfinite(t).all()) for t in tensors if t is not None)


class StaticLossScaler:
    """A constant loss scale S: backward of S·L, gradients divided by S before the update.

    A step whose gradients overflow is skipped (as the dynamic scaler does), but S never changes.
    """

    def __init__(self, scale: float = 1.0) -> None:
        _check_positive("scale", scale)
        self.value = float(scale)
        self.skipped = 0

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.value

    def unscale_(self, grads: Iterable[torch.Tensor | None]) -> bool:
        """Divide the gradients in place by the scale; return True when some of them is inf/NaN."""
        grads = [g for g in grads if g is not None]
        found = _found_inf(grads)
        inv = 1.0 / self.value
        for g in grads:
            g.mul_(inv)
        return found

    def update(self, found_inf: bool) -> None:
        self.skipped += int(found_inf)


class DynamicLossScaler(StaticLossScaler):
    """Dynamic loss scaling (NVIDIA's mixed-precision recipe; the defaults of ``torch.amp.GradScaler``).

    Start high (2^16); on overflow skip the step and halve; after ``growth_interval`` clean steps double.
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000) -> None:
        super().__init__(init_scale)
        _check_positive("growth_factor", growth_factor)
        _check_positive("backoff_factor", backoff_factor)
        if growth_factor <= 1.0:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor!r}")
        if backoff_factor >= 1.0:
            raise ValueError(f"backoff_factor must be < 1, got {backoff_factor!r}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, int) or growth_interval < 1:
            raise ValueError(f"growth_interval must be a positive int, got {growth_interval!r}")
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = growth_interval
        self.growth_tracker = 0

    def update(self, found_inf: bool) -> None:
        super().update(found_inf)
        self.value, self.growth_tracker = dynamic_scale_update(
            self.value, self.growth_tracker, found_inf, self.growth_factor, self.backoff_factor, self.growth_interval)


# --------------------------------------------------------------------------- master weights

_LOW = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def _low_dtype(precision: str) -> torch.dtype:
    if precision not in _LOW:
        raise ValueError(f"unknown precision {precision!r}; expected one of {list(_LOW)}")
    return _LOW[precision]


# Modules that torch.autocast on CUDA runs in fp32 (layer_norm, group_norm, batch_norm, softmax and
# log_softmax are on its fp32 list; embedding is on no list and runs in the fp32 weight's dtype).
FP32_MODULES: tuple[type, ...] = tuple(m for m in (
    nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, getattr(nn, "RMSNorm", None),
    nn.Softmax, nn.LogSoftmax, nn.Embedding) if m is not None)
# Modules that autocast runs in low precision: their inputs are cast down.
LOW_PRECISION_MODULES: tuple[type, ...] = (nn.Linear, nn.modules.conv._ConvNd)


def _cast_inputs(dtype: torch.dtype):
    def pre_hook(module, inputs):
        return tuple(t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in inputs)
    return pre_hook


class MasterWeights:
    """fp32 master weights and a low-precision working copy of a model (Micikevicius et al. 2018).

    The optimizer owns the fp32 parameters of ``model``; forward and backward run on ``work``, a
    copy refreshed from the master before every step. Its gradients are converted to fp32, unscaled,
    and handed to the master parameters.

    Precision-sensitive modules (``fp32_modules``: normalisations, softmax, embeddings by default)
    keep fp32 parameters in the copy; with ``fp32_inputs=True`` they also run on fp32 inputs, as
    CUDA autocast does (its fp32 list), with ``False`` on the low-precision input they receive, as
    CPU autocast does for ``layer_norm`` in torch 2.13. Linear layers and convolutions
    (``LOW_PRECISION_MODULES``) get low-precision weights and inputs; other modules (ReLU, GELU,
    dropout) run in the dtype they receive. ``fp32_modules=()`` casts the whole copy.
    """

    def __init__(self, model: nn.Module, precision: str = "fp16",
                 fp32_modules: tuple[type, ...] = FP32_MODULES, fp32_inputs: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.dtype = _low_dtype(precision)
        self.master = model.float()
        self.work = copy.deepcopy(self.master)
        self.fp32_modules = tuple(fp32_modules)
        keep = {id(p) for m in self.work.modules() if isinstance(m, self.fp32_modules)
                for p in list(m.parameters()) + list(m.buffers())}
        for m in self.work.modules():
            if isinstance(m, self.fp32_modules):
                if fp32_inputs:
                    m.register_forward_pre_hook(_cast_inputs(torch.float32))
            elif isinstance(m, LOW_PRECISION_MODULES):
                m.register_forward_pre_hook(_cast_inputs(self.dtype))
            for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
                if id(t) not in keep and t.is_floating_point():
                    t.data = t.data.to(self.dtype)
        self._pairs = list(zip(self.master.parameters(), self.work.parameters()))

    @torch.no_grad()
    def sync(self) -> None:
        """Work copy ← master weights rounded to the low precision."""
        for master, work in self._pairs:
            work.copy_(master)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass in low precision; the output is returned in fp32 for the loss."""
        return self.work(x.to(self.dtype) if x.is_floating_point() else x).float()

    def zero_share(self) -> float:
        """Share of the working copy's gradient entries that are exactly zero."""
        grads = [w.grad for _, w in self._pairs if w.grad is not None]
        total = sum(g.numel() for g in grads)
        return sum(int((g == 0).sum()) for g in grads) / max(total, 1)

    @torch.no_grad()
    def grads_to_master(self) -> None:
        """master.grad ← fp32 copy of work.grad (still scaled); the work gradients are cleared."""
        for master, work in self._pairs:
            master.grad = None if work.grad is None else work.grad.float()
            work.grad = None


@dataclass(frozen=True)
class StepResult:
    loss: float  # the unscaled loss of this step
    skipped: bool  # the update was skipped because a gradient overflowed
    scale: float  # the loss scale used in this step
    zero_share: float  # share of low-precision gradient entries that are exactly zero


def master_weights_step(mw: MasterWeights, optimizer: torch.optim.Optimizer,
                        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                        x: torch.Tensor, y: torch.Tensor, scaler: StaticLossScaler | None = None) -> StepResult:
    """One step of mixed-precision training by hand.

    fp32 master → fp16/bf16 copy → forward (loss in fp32) → backward of S·L in low precision →
    gradients to fp32 → divide by S → skip on inf/NaN, else the optimizer updates the fp32 master.
    """
    scaler = scaler or StaticLossScaler(1.0)
    scale = scaler.value
    mw.sync()
    loss = loss_fn(mw.forward(x), y)
    scaler.scale(loss).backward()
    zeros = mw.zero_share()
    mw.grads_to_master()
    found_inf = scaler.unscale_(p.grad for p in mw.master.parameters())
    if not found_inf:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scaler.update(found_inf)
    return StepResult(float(loss.detach()), found_inf, scale, zeros)


def autocast_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                  loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                  precision: str = "bf16", scaler: "torch.amp.GradScaler | None" = None) -> float:
    """The library twin of ``master_weights_step``: ``torch.amp.autocast`` (+ ``GradScaler`` for fp16).

    The model stays in fp32 (its parameters are the master weights); autocast casts to low precision
    inside the ops that profit from it (matmuls) and keeps reductions such as the loss in fp32.
    """
    dtype = _low_dtype(precision)
    with torch.autocast(device_type=x.device.type, dtype=dtype, enabled=dtype != torch.float32):
        loss = loss_fn(model(x).float(), y)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def train_master_weights(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, precision: str = "fp16",
                         scaler: StaticLossScaler | None = None, lr: float = 0.05, momentum: float = 0.9,
                         batch_size: int = 64, loss_weight: float = 1.0, seed: int = 0,
                         progress: bool = False) -> tuple[MasterWeights, dict[str, list]]:
    """Train a classifier with SGD + momentum through ``master_weights_step``; return it and its history.

    ``loss_weight`` c multiplies the cross-entropy and divides the step size (lr / c). For c a power
    of two this changes nothing in fp32 (both scalings are exact), but it moves every gradient
    log2(c) binades down the exponent scale: the way a larger model's small gradients look.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    _check_positive("loss_weight", loss_weight)
    mw = MasterWeights(model, precision)
    opt = torch.optim.SGD(mw.master.parameters(), lr=lr / loss_weight, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    scaler = scaler or StaticLossScaler(1.0)

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return loss_weight * nn.functional.cross_entropy(out, target)

    history: dict[str, list] = {"loss": [], "skipped": [], "scale": [], "zero_share": []}
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=f"{precision}, S={scaler.value:g}", leave=False)
    for _ in it:
        idx = torch.randint(0, len(x), (batch_size,), generator=gen).to(x.device)
        r = master_weights_step(mw, opt, loss_fn, x[idx], y[idx], scaler)
        history["loss"].append(r.loss / loss_weight)
        history["skipped"].append(r.skipped)
        history["scale"].append(r.scale)
        history["zero_share"].append(r.zero_share)
    return mw, history


# --------------------------------------------------------------------------- forward overflow


class NonFiniteFinder:
    """Forward hooks that record the modules whose output holds inf or NaN, in call order.

    ``with NonFiniteFinder(model) as nf: model(x)``; ``nf.first`` names the first module (the place
    where the overflow happened), ``nf.bad`` lists all of them. Backward problems:
    ``torch.autograd.detect_anomaly()``.
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.bad: list[str] = []
        self._handles: list = []

    @property
    def first(self) -> str | None:
        return self.bad[0] if self.bad else None

    def __enter__(self) -> "NonFiniteFinder":
        self.bad = []
        for name, module in self.model.named_modules():
            def hook(module, inputs, output, name=name or "(model)") -> None:
                outs = output if isinstance(output, (tuple, list)) else (output,)
                if any(isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
                       for t in outs):
                    self.bad.append(name)
            self._handles.append(module.register_forward_hook(hook))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


# --------------------------------------------------------------------------- fp8 scaling


def fp8_roundtrip(x: torch.Tensor, fmt: str = "fp8_e4m3", block: int | None = None) -> torch.Tensor:
    """``x`` scaled by its amax, cast to fp8, cast back and unscaled (float32, same shape).

    ``block=None``: one scale for the whole tensor (per-tensor scaling). ``block=k``: one scale per
    k consecutive entries of the last dimension (1×k tiles, as DeepSeek-V3 does for activations with
    k = 128; MX formats use k = 32). Each scale maps the block's amax exactly to the format's largest
    number: an arbitrary fp32 scale. MX formats instead store a power-of-two scale (E8M0) per block;
    that rounding of the scale is not modelled here.
    """
    f = get_format(fmt)
    if not f.name.startswith("fp8"):
        raise ValueError(f"fmt must be an fp8 format, got {f.name!r}")
    dt = _storage_dtype(f)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor")
    x = x.to(torch.float32)
    top = largest_finite(f)
    if block is None:
        amax = x.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
        scale = top / amax
        return (x * scale).to(dt).to(torch.float32) / scale
    if isinstance(block, bool) or not isinstance(block, int) or block < 1 or x.shape[-1] % block:
        raise ValueError(f"block must be a positive int dividing the last dimension {x.shape[-1]}, got {block!r}")
    tiles = x.reshape(*x.shape[:-1], x.shape[-1] // block, block)
    amax = tiles.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    scale = top / amax
    return ((tiles * scale).to(dt).to(torch.float32) / scale).reshape(x.shape)


# --------------------------------------------------------------------------- the data-flow figure


def draw_mixed_precision_flow(ax) -> None:
    """The data flow of one mixed-precision step (Micikevicius et al. 2018, Fig. 1), Russian labels."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch

    fp32, low = "#56B4E9", "#E69F00"
    dx = 3.5
    boxes = {  # name: (x, y, text, colour)
        "master": (0.0, 2.0, "мастер-веса $w$\nfp32", fp32),
        "copy": (dx, 2.0, "рабочая копия\n$\\hat w = \\mathrm{fl}_{16}(w)$", low),
        "fwd": (2 * dx, 2.0, "прямой проход\nfp16 / bf16", low),
        "loss": (3 * dx, 2.0, "потери $\\mathcal{L}$ в fp32,\nумножить на $S$", fp32),
        "bwd": (3 * dx, 0.0, "обратный проход\n$\\nabla_{\\hat w}(S\\mathcal{L})$ в fp16", low),
        "unscale": (2 * dx, 0.0, "градиент в fp32,\nделить на $S$", fp32),
        "step": (dx, 0.0, "шаг оптимизатора\n(моменты в fp32)", fp32),
    }
    w, h = 2.8, 1.1
    for x, y, text, colour in boxes.values():
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05",
                                    facecolor=colour, alpha=0.35, edgecolor=colour))
        ax.text(x, y, text, ha="center", va="center", fontsize=9)

    def arrow(start, end, text="", at=None, **kwargs):
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12,
                                     color="#333333", **kwargs))
        if text:
            ax.text(*at, text, ha="center", va="center", fontsize=8)

    top, bottom = 2.0 + h / 2 + 0.05, 0.0 - h / 2 - 0.05
    for a, b, text in [("master", "copy", ""), ("copy", "fwd", ""), ("fwd", "loss", "")]:
        xa, xb = boxes[a][0], boxes[b][0]
        arrow((xa + w / 2, 2.0), (xb - w / 2, 2.0), text, at=((xa + xb) / 2, 2.0 + h / 2 + 0.12))
    arrow((3 * dx, 2.0 - h / 2), (3 * dx, h / 2), "$S\\cdot\\mathcal{L}$", at=(3 * dx + 0.45, 1.0))
    for a, b in [("bwd", "unscale"), ("unscale", "step")]:
        xa, xb = boxes[a][0], boxes[b][0]
        arrow((xa - w / 2, 0.0), (xb + w / 2, 0.0))
    arrow((dx - w / 2, 0.0), (0.0, 2.0 - h / 2), "$w \\leftarrow w - \\alpha g$", at=(-0.75, 0.8),
          connectionstyle="angle,angleA=180,angleB=-90,rad=0")
    ax.text(1.5 * dx, bottom - 0.35, "если в градиенте есть inf/NaN, шаг пропускается и $S \\leftarrow S/2$",
            ha="center", fontsize=8.5)
    ax.set_xlim(-1.8, 3 * dx + 1.6)
    ax.set_ylim(bottom - 1.5, top + 0.4)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.legend(handles=[Patch(facecolor=fp32, alpha=0.35, label="fp32"),
                       Patch(facecolor=low, alpha=0.35, label="fp16 / bf16")],
              loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=9)


# --------------------------------------------------------------------------- speed

TIMING_MODES = ("fp32", "tf32", "bf16", "fp16")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous number.

    A timing on one thread depends less on what else the CPU is doing; the context manager makes
    sure that re-running one cell never leaves the session on one thread.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def tf32_matmul(enabled: bool) -> Iterator[None]:
    """Switch CUDA's TF32 mode for matmuls and convolutions inside the block, then restore it.

    TF32 is a math mode, not a dtype (chapter 7): fp32 tensors stay fp32, but tensor cores round the
    matmul inputs to 10 mantissa bits. The flags are process-wide, so a timing must not leak them.
    """
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _check_mode(mode: str) -> None:
    if mode not in TIMING_MODES:
        raise ValueError(f"unknown precision mode {mode!r}; expected one of {TIMING_MODES}")


def matmul_seconds(n: int, dtype: torch.dtype, device: torch.device | str = "cpu", tf32: bool = False,
                   repeats: int = 5) -> float:
    """Median wall time of one n×n @ n×n matmul (``tf32`` switches CUDA's TF32 matmul mode for the call)."""
    from .measure import time_fn

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    with tf32_matmul(tf32):
        return time_fn(lambda: a @ b, repeat=repeats, warmup=1)


def _training_step(model: nn.Module, compute_loss: Callable[[nn.Module], torch.Tensor], mode: str,
                   lr: float) -> Callable[[], None]:
    """One AdamW step (forward, backward, update) in a precision mode, as a closure."""
    _check_mode(mode)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device = next(model.parameters()).device
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=low or torch.float32, enabled=low is not None):
            loss = compute_loss(model)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        opt.zero_grad(set_to_none=True)

    return step


def train_step_seconds(model: nn.Module, compute_loss: Callable[[nn.Module], torch.Tensor], mode: str = "fp32",
                       repeats: int = 5, warmup: int = 2, lr: float = 1e-4) -> float:
    """Median wall time of one AdamW training step (forward, backward, update) in a precision mode.

    Why (chapter 7): a matmul sweep shows the peak, a whole step shows what a user gets, since
    elementwise ops, the optimizer and the loss do not profit from tensor cores.

    * ``fp32``: strict fp32 (TF32 off);   * ``tf32``: fp32 tensors, TF32 matmuls (CUDA only);
    * ``bf16``: ``torch.autocast`` to bf16; * ``fp16``: autocast to fp16 with a ``GradScaler``.

    ``compute_loss(model)`` returns the scalar loss of a fixed batch. The model is trained by the
    timed steps (its weights change); the optimizer is created here and thrown away.
    """
    from .measure import time_fn

    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    step = _training_step(model, compute_loss, mode, lr)
    with tf32_matmul(mode == "tf32"):
        return time_fn(step, repeat=repeats, warmup=warmup)


PROFILE_GROUPS = ("attention", "matmul", "casts", "other")


def _profile_group(name: str) -> str:
    if "scaled_dot_product" in name or "attention" in name:
        return "attention"
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv"):
        return "matmul"
    if name in ("aten::copy_", "aten::_to_copy", "aten::to"):
        return "casts"
    return "other"


def train_step_profile(model: nn.Module, compute_loss: Callable[[nn.Module], torch.Tensor], mode: str = "fp32",
                       repeats: int = 3, warmup: int = 2, lr: float = 1e-4) -> dict[str, float]:
    """Where the time of one training step goes: shares of the operators' own time by group.

    Why (chapter 7): a step in bf16 can be slower than in fp32; the profile says which operators
    take the extra time. Runs the step of :func:`train_step_seconds` under ``torch.profiler`` and
    sums each operator's *self* time (CPU time on CPU, kernel time on CUDA) into
    :data:`PROFILE_GROUPS`: attention kernels (``scaled_dot_product_attention`` and its backward),
    matrix products (``mm``, ``addmm``, ``bmm``), casts (``copy_``, ``_to_copy``) and the rest.
    Returns the shares (summing to 1) and ``"ms"``, the profiled time per step in milliseconds.
    """
    from torch.profiler import ProfilerActivity, profile

    from .measure import silenced_stderr_fd

    for name, value in (("repeats", repeats), ("warmup", warmup)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "repeats" else 0):
            raise ValueError(f"{name} must be a {'positive' if name == 'repeats' else 'non-negative'} int, "
                             f"got {value!r}")
    step = _training_step(model, compute_loss, mode, lr)
    cuda = next(model.parameters()).device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with tf32_matmul(mode == "tf32"):
        for _ in range(warmup):
            step()
        if cuda:
            torch.cuda.synchronize()
        with silenced_stderr_fd(), profile(activities=activities) as prof:
            for _ in range(repeats):
                step()
            if cuda:
                torch.cuda.synchronize()
    events = prof.key_averages()
    # On CUDA the time of an operator is the kernel time it launched (self_device_time_total of the
    # CPU-side aten events; the kernel rows themselves are skipped so nothing is counted twice).
    own = [(e.key, float(e.self_device_time_total)) for e in events
           if cuda and e.device_type == torch.autograd.DeviceType.CPU]
    if sum(t for _, t in own) <= 0:
        own = [(e.key, float(e.self_cpu_time_total)) for e in events]
    totals = dict.fromkeys(PROFILE_GROUPS, 0.0)
    for key, t in own:
        totals[_profile_group(key)] += t
    whole = sum(totals.values())
    if whole <= 0:
        raise RuntimeError("the profiler recorded no operator time")
    shares = {k: v / whole for k, v in totals.items()}
    shares["ms"] = whole / repeats / 1e3
    return shares
