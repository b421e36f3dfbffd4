"""Block-wise 8-bit quantization of optimizer states (chapter 4, «Оптимизаторы, экономящие память»).

Dettmers et al. (arXiv 2110.02861) keep Adam's moments in 8 bits. A tensor is cut into blocks of
``block_size`` consecutive numbers; each block is divided by its absolute maximum (one float32
``absmax`` per block), so the scaled values lie in [−1, 1]; each scaled value is replaced by the
index of the nearest entry of a sorted 256-entry **code book** (one uint8 per number).
Dequantization multiplies the code-book value back by the block's absmax.

Two code books are offered:

* :func:`linear_code` — 256 equally spaced values: fine for values of one magnitude;
* :func:`dynamic_code` — the «dynamic tree» code of Dettmers (arXiv 1511.04561, 2110.02861):
  a decade 10^(−e), e = 0 … 6, chosen by the exponent bits, and a linear fraction in [0.1, 1]
  with as many points as the remaining bits allow. Small numbers keep their *relative*
  precision, which is what Adam's second moment (spread over many decades) needs. The unsigned
  variant spends the sign bit on the fraction (for v ≥ 0).

Rounding is to the nearest code-book entry (ties go to the lower entry), as bitsandbytes does on
the CPU; with ``dynamic_code`` the code books equal bitsandbytes' ``create_dynamic_map``.
All functions are pure: they return new tensors and never modify their inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_positive_int

__all__ = ["linear_code", "dynamic_code", "quantize_blockwise", "dequantize_blockwise",
           "roundtrip", "relative_error", "n_blocks", "max_half_gap", "nearest_index"]


def _check_bits(exponent_bits: int, total_bits: int) -> None:
    check_positive_int("total_bits", total_bits)
    check_positive_int("exponent_bits", exponent_bits)
    if exponent_bits > total_bits - 1:
        raise ValueError(f"exponent_bits={exponent_bits} leaves no room in {total_bits} bits "
                         "(one bit is the sign or the extra fraction bit)")


def linear_code(signed: bool = True, bits: int = 8) -> Tensor:
    """Equally spaced values, float32, sorted: 2**bits on [0, 1] (unsigned), or on [−1, 1] (signed).

    The signed code has 2**bits − 1 values k/(2**(bits−1) − 1), symmetric with an exact 0, and the
    last entry repeats 1.0 (a code book must have 2**bits entries).
    """
    check_positive_int("bits", bits)
    if not signed:
        return torch.linspace(0.0, 1.0, 2 ** bits, dtype=torch.float64).float()
    half = 2 ** (bits - 1) - 1
    vals = torch.arange(-half, half + 1, dtype=torch.float64) / half
    return torch.cat([vals, vals.new_ones(1)]).float()


def dynamic_code(signed: bool = True, exponent_bits: int = 7, total_bits: int = 8) -> Tensor:
    """The dynamic (tree) code book: 2**total_bits sorted float32 values in [−1, 1] (or [0, 1]).

    For the decade i = 0 … exponent_bits − 1 (scale 10^(i − exponent_bits + 1)), the fraction
    interval [0.1, 1] is cut into 2^(i + total_bits − 1 − exponent_bits) equal pieces (twice as
    many when unsigned: the sign bit becomes a fraction bit) and the midpoint of each piece is a
    code value; the signed code has the negatives too. 0 and 1 are added, and the list is padded
    with zeros to 2**total_bits entries. With the defaults this is bitsandbytes'
    ``create_dynamic_map(signed)``: 254 non-trivial values, from about 10⁻⁶ to about 0.993.
    """
    _check_bits(exponent_bits, total_bits)
    values: list[float] = []
    free = total_bits - 1 - exponent_bits  # fraction bits that are always there
    for i in range(exponent_bits):
        pieces = 2 ** (i + free + (0 if signed else 1))
        edges = torch.linspace(0.1, 1.0, pieces + 1, dtype=torch.float32)
        mids = (edges[:-1] + edges[1:]) / 2
        scale = 10.0 ** (i - exponent_bits + 1)
        values += (scale * mids).tolist()  # the product in float32, as bitsandbytes does
        if signed:
            values += (-scale * mids).tolist()
    extra = 2 ** free - 1  # codes with all exponent bits zero and no indicator bit
    if extra > 0:
        edges = torch.linspace(0.1, 1.0, extra + 1, dtype=torch.float32)
        mids = (edges[:-1] + edges[1:]) / 2  # in the top decade (scale 1), like bitsandbytes
        values += mids.tolist() + ((-mids).tolist() if signed else [])
    values += [0.0, 1.0]
    if len(values) > 2 ** total_bits:
        raise ValueError(f"{len(values)} code values do not fit in {total_bits} bits")
    values += [0.0] * (2 ** total_bits - len(values))
    return torch.tensor(sorted(values), dtype=torch.float32)


def n_blocks(numel: int, block_size: int) -> int:
    """How many blocks (and absmax numbers) a tensor of ``numel`` values needs: ⌈numel / block_size⌉."""
    check_positive_int("block_size", block_size)
    if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
        raise ValueError(f"numel must be a non-negative int, got {numel!r}")
    return -(-numel // block_size)


def _check_code(code: Tensor) -> None:
    if not isinstance(code, Tensor) or code.dim() != 1 or not 2 <= code.numel() <= 256:
        raise ValueError("code must be a 1-D tensor of 2 … 256 values (a code book of uint8 indices)")
    if not bool((code[1:] >= code[:-1]).all()):
        raise ValueError("code must be sorted in ascending order")


def _blocks(x: Tensor, block_size: int) -> Tensor:
    """``x`` flattened to float32, zero-padded to whole blocks, as a (blocks, block_size) matrix."""
    flat = x.detach().reshape(-1).float()
    pad = n_blocks(flat.numel(), block_size) * block_size - flat.numel()
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return flat.view(-1, block_size)


def quantize_blockwise(x: Tensor, code: Tensor, block_size: int = 2048) -> tuple[Tensor, Tensor]:
    """Quantize ``x`` to uint8 indices into ``code``, one float32 absmax per block of ``block_size``.

    Returns ``(codes, absmax)``: ``codes`` has the shape of ``x`` (dtype uint8), ``absmax`` has
    ⌈numel / block_size⌉ entries. The last block may be shorter. A block of zeros gets absmax 0
    and decodes to zeros. Non-finite values are refused (ValueError): a NaN would make the absmax
    of its block NaN and silently destroy every value of the block.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    check_positive_int("block_size", block_size)
    _check_code(code)
    if x.is_complex() or not x.is_floating_point():
        raise ValueError(f"x must be a real floating-point tensor, got {x.dtype}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError("cannot quantize non-finite values (NaN or ∞): the block's absmax would "
                         "be non-finite and every value of the block would be lost")
    if x.numel() == 0:
        return torch.zeros(x.shape, dtype=torch.uint8, device=x.device), \
            torch.zeros(0, dtype=torch.float32, device=x.device)
    b = _blocks(x, block_size)
    absmax = b.abs().amax(dim=1)
    scaled = (b / absmax.clamp(min=torch.finfo(torch.float32).tiny)[:, None]).clamp(-1.0, 1.0)
    idx = nearest_index(scaled.reshape(-1)[: x.numel()], code)
    codes = idx.to(torch.uint8).reshape(x.shape)
    return codes, absmax


# ------------------------------------------------------------------------------ nearest code entry
#
# The index of the nearest code value is the number of midpoints between neighbouring code values
# that lie below x: ``torch.bucketize(x, mids)``. A binary search costs about 100 ns per value on a
# CPU (unpredictable branches). Instead we use a monotone integer key: the bit pattern of a
# non-negative float32, read as an int32, grows with the value and almost linearly with its log2.
# Cut into uniform bins (256 per octave), the key spreads the code books evenly enough that a table
# gives, for each bin, the number of midpoints certainly below it, and one to three comparisons
# with the next midpoints finish the count. The result is exactly bucketize's (the tests check
# it); the work is a few integer operations per value.

_TINY = 1e-7  # |x| below this share one bin (no code value of the book's books is that small)
_SHIFT = 15  # keep 8 of the 23 mantissa bits: 256 bins per octave
_LOW = int(torch.tensor(_TINY, dtype=torch.float32).view(torch.int32))
_HALF = ((int(torch.tensor(1.0, dtype=torch.float32).view(torch.int32)) - _LOW) >> _SHIFT) + 1
_SEARCH: dict[tuple, tuple[Tensor, Tensor, int]] = {}


def _bin(t: Tensor) -> Tensor:
    """A monotone bin index of float32 values in [−1, 1]: 0 … 2·_HALF − 1."""
    k = (t.abs().clamp_(min=_TINY).view(torch.int32) - _LOW) >> _SHIFT
    return torch.where(t < 0, (_HALF - 1) - k, _HALF + k).long()


def _search_table(code: Tensor, device: torch.device) -> tuple[Tensor, Tensor, int]:
    key = (tuple(code.tolist()), str(device))
    if key not in _SEARCH:
        c = code.double().cpu()
        mids = ((c[:-1] + c[1:]) / 2).float()
        n_bins = 2 * _HALF
        counts = torch.bincount(_bin(mids.clone()), minlength=n_bins)
        cum = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])  # cum[b] = # in bins < b
        # midpoints in bins below b are certainly below any x of bin b; those of bin b are checked
        b = torch.arange(n_bins)
        lo, hi = cum[b], cum[b + 1]
        width = int((hi - lo).max())
        padded = torch.cat([mids, torch.full((width + 1,), math.inf)])
        _SEARCH[key] = (padded.to(device), lo.to(device), width)
    return _SEARCH[key]


def nearest_index(x: Tensor, code: Tensor) -> Tensor:
    """Index of the nearest entry of the sorted ``code`` for each value of ``x`` (ties: the lower).

    Equal to ``torch.bucketize(x, midpoints)``; values outside [−1, 1] are clamped first.
    """
    _check_code(code)
    x = x.detach().float().clamp(-1.0, 1.0).contiguous()
    mids, lo, width = _search_table(code, x.device)
    start = lo[_bin(x.clone())]
    idx = start.clone()
    for k in range(width):
        idx += (mids[start + k] < x).long()
    return idx


def dequantize_blockwise(codes: Tensor, absmax: Tensor, code: Tensor, block_size: int = 2048,
                         dtype: torch.dtype = torch.float32) -> Tensor:
    """The inverse map: ``code[codes]`` times the absmax of each value's block, in ``dtype``."""
    check_positive_int("block_size", block_size)
    _check_code(code)
    if not isinstance(codes, Tensor) or codes.dtype != torch.uint8:
        raise TypeError("codes must be a uint8 tensor (from quantize_blockwise)")
    if absmax.dim() != 1 or absmax.numel() != n_blocks(codes.numel(), block_size):
        raise ValueError(f"absmax has {absmax.numel()} entries, but {codes.numel()} values in blocks "
                         f"of {block_size} need {n_blocks(codes.numel(), block_size)}")
    c = code.to(device=codes.device, dtype=torch.float32)
    vals = c[codes.reshape(-1).long()]
    pad = absmax.numel() * block_size - vals.numel()
    if pad:
        vals = torch.cat([vals, vals.new_zeros(pad)])
    out = (vals.view(-1, block_size) * absmax.float()[:, None]).reshape(-1)[: codes.numel()]
    return out.reshape(codes.shape).to(dtype)


def roundtrip(x: Tensor, code: Tensor, block_size: int = 2048) -> Tensor:
    """``dequantize(quantize(x))`` in the dtype of ``x``: what the optimizer reads back next step."""
    codes, absmax = quantize_blockwise(x, code, block_size)
    return dequantize_blockwise(codes, absmax, code, block_size, dtype=x.dtype)


def relative_error(x: Tensor, code: Tensor, block_size: int = 2048) -> float:
    """‖x − roundtrip(x)‖₂ / ‖x‖₂ (0 for a zero tensor), computed in float64."""
    x64 = x.detach().double()
    norm = float(x64.norm())
    if norm == 0.0:
        return 0.0
    return float((x64 - roundtrip(x, code, block_size).double()).norm()) / norm


def max_half_gap(code: Tensor) -> float:
    """The worst rounding error of a value of [−1, 1] (signed code) or [0, 1] (unsigned code).

    Half the largest gap between neighbouring code values, or the distance from an end of the
    interval to the nearest code value if that is larger (the signed dynamic code stops at −0.993,
    so −1 is rounded by 0.007). Per element, |x − x̂| ≤ absmax(block) · max_half_gap(code).
    """
    _check_code(code)
    c = code.double()
    low = -1.0 if float(c[0]) < 0 else 0.0
    gaps = float((c[1:] - c[:-1]).max()) / 2
    return max(gaps, float(c[0]) - low, 1.0 - float(c[-1]))
