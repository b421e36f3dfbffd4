"""Plain data across the sandbox boundary: a strict JSON encoding, never pickle.

Why: the trusted grader must never unpickle (or otherwise run) anything the student's process
made. Only numbers, strings, lists, tuples, dicts, ``numpy.ndarray`` / numpy scalars and dense
``torch.Tensor`` cross; arrays travel as base64 ``.npy`` read back with ``allow_pickle=False``,
tensors keep their dtype, NaN and infinities are kept. Anything else is refused with a message.

This module is loaded by the sandbox harness straight from its file (no ``nntrain`` import), so
it depends only on the standard library, with numpy and torch imported when first needed.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import select
import struct
import time
from typing import Any

MAX_FRAME = 64 * 2**20  # bytes of one message
MAX_DEPTH = 32  # nesting of lists/tuples/dicts
MAX_ITEMS = 1_000_000  # containers' elements in one message
_HEADER = struct.Struct(">I")
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_NUMPY_KINDS = set("biufc")  # bool, int, uint, float, complex: no objects, no structs
_TORCH_VIA_FLOAT32 = {"bfloat16", "float8_e4m3fn", "float8_e5m2"}  # no numpy twin


class WireError(ValueError):
    """Raised for data that is not plain, too large, or malformed."""


def _np():
    import numpy

    return numpy


def _torch():
    import torch

    return torch


def _is_tensor(x: Any) -> bool:
    mod = type(x).__module__ or ""
    return mod.startswith("torch") and type(x).__name__ in {"Tensor", "Parameter"}


def _npy(array: Any) -> str:
    if array.nbytes > MAX_FRAME // 2:  # base64 grows it by 4/3: refuse before copying
        raise WireError(f"array of {array.nbytes} bytes is too large to send")
    buf = io.BytesIO()
    _np().save(buf, array, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _from_npy(text: Any) -> Any:
    if not isinstance(text, str):
        raise WireError("array payload must be a string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        array = _np().load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError) as err:  # a header may claim any shape
        raise WireError(f"bad array payload: {type(err).__name__}: {err}") from None
    if type(array) is not _np().ndarray or array.dtype.kind not in _NUMPY_KINDS:
        raise WireError(f"array dtype {array.dtype} is not plain numeric data")
    return array


def encode(x: Any, _depth: int = 0) -> Any:
    """Turn plain data into a JSON-able tree; raise WireError for anything else."""
    if _depth > MAX_DEPTH:
        raise WireError("data nested too deeply")
    if x is None or type(x) in (bool, str):
        return x
    if isinstance(x, str):
        return str(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        x = float(x)
        return {"$f": repr(x)} if not math.isfinite(x) else x
    if isinstance(x, complex):
        return {"$c": [encode(x.real), encode(x.imag)]}
    if isinstance(x, (list, tuple)):
        items = [encode(v, _depth + 1) for v in x]
        return {"$tuple": items} if isinstance(x, tuple) else items
    if isinstance(x, dict):
        return {"$dict": [[encode(k, _depth + 1), encode(v, _depth + 1)] for k, v in x.items()]}
    if _is_tensor(x):
        return _encode_tensor(x)
    np = _np() if "numpy" in (type(x).__module__ or "") else None
    if np is not None and isinstance(x, np.ndarray):
        if x.dtype.kind not in _NUMPY_KINDS:
            raise WireError(f"array dtype {x.dtype} is not plain numeric data")
        return {"$nd": _npy(np.ascontiguousarray(np.asarray(x)))}
    if np is not None and isinstance(x, np.generic):
        if x.dtype.kind not in _NUMPY_KINDS:
            raise WireError(f"numpy scalar of dtype {x.dtype} is not plain data")
        return {"$np": _npy(np.asarray(x))}
    raise WireError(f"not plain data: an object of type {type(x).__name__}")


def _encode_tensor(t: Any) -> dict:
    torch = _torch()
    if t.layout != torch.strided:
        raise WireError(f"only dense tensors cross, not {t.layout}")
    dtype = str(t.dtype).removeprefix("torch.")
    t = t.detach().cpu()
    if dtype in _TORCH_VIA_FLOAT32:
        t = t.float()
    return {"$torch": _npy(t.contiguous().numpy()), "dtype": dtype}


def decode(tree: Any) -> Any:
    """Rebuild plain data from a tree made by :func:`encode`, checking every node."""
    budget = [MAX_ITEMS]
    return _decode(tree, 0, budget)


def _decode(tree: Any, depth: int, budget: list[int]) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("data nested too deeply")
    budget[0] -= 1
    if budget[0] < 0:
        raise WireError("too many items")
    if tree is None or type(tree) in (bool, int, float, str):
        return tree
    if type(tree) is list:
        return [_decode(v, depth + 1, budget) for v in tree]
    if type(tree) is not dict or len(tree) not in (1, 2):
        raise WireError("malformed data")
    return _decode_tagged(tree, depth, budget)


def _decode_tagged(tree: dict, depth: int, budget: list[int]) -> Any:
    keys = set(tree)
    if keys == {"$f"} and tree["$f"] in _FLOATS:
        return _FLOATS[tree["$f"]]
    if keys == {"$c"} and type(tree["$c"]) is list and len(tree["$c"]) == 2:
        re_, im = (_decode(v, depth + 1, budget) for v in tree["$c"])
        if type(re_) is not float or type(im) is not float:
            raise WireError("malformed complex number")
        return complex(re_, im)
    if keys == {"$tuple"} and type(tree["$tuple"]) is list:
        return tuple(_decode(v, depth + 1, budget) for v in tree["$tuple"])
    if keys == {"$dict"} and type(tree["$dict"]) is list:
        return _decode_dict(tree["$dict"], depth, budget)
    if keys == {"$nd"}:
        return _from_npy(tree["$nd"])
    if keys == {"$np"}:
        array = _from_npy(tree["$np"])
        if array.ndim != 0:
            raise WireError("numpy scalar payload is not 0-d")
        return array[()]
    if keys == {"$torch", "dtype"}:
        return _decode_tensor(tree)
    raise WireError("malformed data")


def _decode_dict(pairs: list, depth: int, budget: list[int]) -> dict:
    out = {}
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2:
            raise WireError("malformed dict")
        key = _decode(pair[0], depth + 1, budget)
        try:
            hash(key)
        except TypeError:
            raise WireError("unhashable dict key") from None
        out[key] = _decode(pair[1], depth + 1, budget)
    return out


def _decode_tensor(tree: dict) -> Any:
    torch = _torch()
    dtype = getattr(torch, str(tree["dtype"]), None) if type(tree["dtype"]) is str else None
    if not isinstance(dtype, torch.dtype):
        raise WireError(f"unknown tensor dtype {tree['dtype']!r}")
    array = _from_npy(tree["$torch"])
    return torch.from_numpy(array.copy()).to(dtype)


# ---- frames: a 4-byte length, then one JSON object ------------------------------------------


def _reject_constant(name: str) -> Any:
    raise WireError(f"bare {name} in JSON")


def dumps(message: dict) -> bytes:
    """One frame: length header + strict JSON (no NaN literals: floats are tagged)."""
    try:
        body = json.dumps(message, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (ValueError, TypeError, RecursionError) as err:  # e.g. an int of > 4300 digits
        raise WireError(f"cannot encode: {err}"[:300]) from None
    if len(body) > MAX_FRAME:
        raise WireError(f"message of {len(body)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


def loads(body: bytes) -> dict:
    """Parse one frame's body; only a JSON object is a message."""
    try:
        message = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError, JSONDecodeError, and
        # the plain ValueError of an integer of over 4300 digits
        raise WireError(f"not JSON: {err}") from None
    if type(message) is not dict:
        raise WireError("a message must be a JSON object")
    return message


def send(fd: int, message: dict) -> None:
    """Write one whole frame to a file descriptor."""
    data = memoryview(dumps(message))
    while data:
        data = data[os.write(fd, data):]


class Reader:
    """Read frames from a file descriptor with a deadline (the peer may be hostile or hung)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()

    def _fill(self, n: int, deadline: float | None) -> None:
        while len(self.buffer) < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                    raise TimeoutError("no reply in time")
            chunk = os.read(self.fd, max(65536, n - len(self.buffer)))
            if not chunk:
                raise EOFError("the other side closed the channel")
            self.buffer += chunk

    def read(self, deadline: float | None = None) -> dict:
        """The next message; TimeoutError, EOFError or WireError otherwise."""
        self._fill(_HEADER.size, deadline)
        (size,) = _HEADER.unpack(self.buffer[: _HEADER.size])
        if size > MAX_FRAME:
            raise WireError(f"frame of {size} bytes exceeds {MAX_FRAME}")
        self._fill(_HEADER.size + size, deadline)
        body = bytes(self.buffer[_HEADER.size : _HEADER.size + size])
        del self.buffer[: _HEADER.size + size]
        return loads(body)
