"""Reverse-mode automatic differentiation from scratch, on NumPy arrays (chapter 1).

Why it is here: to see that ``loss.backward()`` is nothing magic. Every operation returns a new
:class:`Tensor` that remembers its parents and a *vector-Jacobian product* (VJP): a function that
turns the gradient of the loss with respect to the output into gradients with respect to the
inputs. ``backward()`` sorts the graph topologically and calls the VJPs from the loss back to the
leaves, adding up the contributions of nodes that are used several times.

The functional core is a table of rules: for each operation, a pure function
``(arrays, params) -> (output, vjp, saved)``. :func:`register_op` adds a rule to the table (and
:func:`override_op` swaps one in for a ``with`` block), so a reader can extend the engine. ``saved`` lists the arrays that the VJP keeps alive:
it is what a real framework stores between the forward and the backward pass (chapter 3 counts
those bytes). The :class:`Tensor` class is a thin wrapper around the rules.

The same module holds the reference implementation used to check it: the very same programs
run with ``torch`` (see :func:`random_program` and :func:`run_program`), and a small
:class:`MLP` trained with :func:`train_mlp` next to ``torch.optim.SGD`` (:func:`train_torch_reference`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

ArrayLike = Any  # a number, a nested list or an np.ndarray
Vjp = Callable[[np.ndarray], tuple]

# --------------------------------------------------------------------------- helpers


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` down to ``shape``: the VJP of NumPy broadcasting.

    If ``x`` of shape ``(1, n)`` was broadcast to ``(m, n)``, each of its entries was
    used ``m`` times, so its gradient is the sum of the ``m`` copies' gradients.
    """
    extra = grad.ndim - len(shape)
    if extra < 0:
        raise ValueError(f"cannot unbroadcast a gradient of shape {grad.shape} "
                         f"to the larger shape {shape}")
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _broadcast_shape(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{op}: shapes {' and '.join(map(str, shapes))} cannot be broadcast together") from None


def _normalize_axis(axis: int | Sequence[int] | None, ndim: int, op: str) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for an array with {ndim} dimensions")
        out.append(int(a) % max(ndim, 1))
    return tuple(sorted(set(out)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # two branches so that exp never overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)  # the max-trick: exp never overflows
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


# --------------------------------------------------------------------------- the rules (functional core)
# Each rule: (list of input arrays, params) -> (output array, vjp, saved arrays).
# vjp(g) returns one gradient per input, already of the input's shape.


def _add(xs, p):
    a, b = xs
    _broadcast_shape("add", a.shape, b.shape)
    return a + b, lambda g: (unbroadcast(g, a.shape), unbroadcast(g, b.shape)), ()


def _sub(xs, p):
    a, b = xs
    _broadcast_shape("sub", a.shape, b.shape)
    return a - b, lambda g: (unbroadcast(g, a.shape), unbroadcast(-g, b.shape)), ()


def _mul(xs, p):
    a, b = xs
    _broadcast_shape("mul", a.shape, b.shape)
    return a * b, lambda g: (unbroadcast(g * b, a.shape), unbroadcast(g * a, b.shape)), (a, b)


def _div(xs, p):
    a, b = xs
    _broadcast_shape("div", a.shape, b.shape)
    return a / b, lambda g: (unbroadcast(g / b, a.shape), unbroadcast(-g * a / b**2, b.shape)), (a, b)


def _neg(xs, p):
    return -xs[0], lambda g: (-g,), ()


def _pow(xs, p):
    (a,), k = xs, p["exponent"]
    return a**k, lambda g: (g * k * a ** (k - 1),), (a,)


def _exp(xs, p):
    out = np.exp(xs[0])
    return out, lambda g: (g * out,), (out,)


def _log(xs, p):
    (a,) = xs
    return np.log(a), lambda g: (g / a,), (a,)


def _matmul(xs, p):
    a, b = xs
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: both operands need at least 2 dimensions, "
                         f"got shapes {a.shape} and {b.shape}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match "
                         f"(inner dimensions {a.shape[-1]} != {b.shape[-2]})")
    _broadcast_shape("matmul (batch dimensions)", a.shape[:-2], b.shape[:-2])

    def vjp(g):
        # dL/dA = G Bᵀ, dL/dB = Aᵀ G (summed over broadcast batch dimensions)
        return (unbroadcast(g @ np.swapaxes(b, -1, -2), a.shape),
                unbroadcast(np.swapaxes(a, -1, -2) @ g, b.shape))

    return a @ b, vjp, (a, b)


def _sum(xs, p):
    (a,) = xs
    axes, keep = _normalize_axis(p["axis"], a.ndim, "sum"), p["keepdims"]
    out = a.sum(axis=axes, keepdims=keep)

    def vjp(g):
        g = g if keep else np.expand_dims(g, axes)
        return (np.broadcast_to(g, a.shape).copy(),)

    return out, vjp, ()


def _mean(xs, p):
    (a,) = xs
    axes, keep = _normalize_axis(p["axis"], a.ndim, "mean"), p["keepdims"]
    count = int(np.prod([a.shape[i] for i in axes])) if a.ndim else 1
    out = a.mean(axis=axes, keepdims=keep)

    def vjp(g):
        g = g if keep else np.expand_dims(g, axes)
        return (np.broadcast_to(g / count, a.shape).copy(),)

    return out, vjp, ()


def _reshape(xs, p):
    (a,) = xs
    try:
        out = a.reshape(p["shape"])
    except ValueError:
        raise ValueError(f"reshape: cannot reshape an array of shape {a.shape} ({a.size} entries) "
                         f"into shape {tuple(p['shape'])}") from None
    return out, lambda g: (g.reshape(a.shape),), ()


def _transpose(xs, p):
    (a,) = xs
    axes = p["axes"] if p["axes"] is not None else tuple(reversed(range(a.ndim)))
    if sorted(axes) != list(range(a.ndim)):
        raise ValueError(f"transpose: axes {tuple(axes)} are not a permutation of the {a.ndim} axes of shape {a.shape}")
    inverse = tuple(np.argsort(axes))
    return a.transpose(axes), lambda g: (g.transpose(inverse),), ()


def _relu(xs, p):
    (a,) = xs
    mask = a > 0  # one byte per entry is all that backward needs
    return a * mask, lambda g: (g * mask,), (mask,)


def _sigmoid_rule(xs, p):
    out = _sigmoid(xs[0])
    return out, lambda g: (g * out * (1.0 - out),), (out,)


def _tanh(xs, p):
    out = np.tanh(xs[0])
    return out, lambda g: (g * (1.0 - out**2),), (out,)


def _log_softmax_rule(xs, p):
    (a,), axis = xs, p["axis"]
    _normalize_axis(axis, a.ndim, "log_softmax")
    out = _log_softmax(a, axis)

    def vjp(g):
        # J = I - 1 softmaxᵀ row by row, so gᵀJ = g - softmax · Σg
        return (g - np.exp(out) * g.sum(axis=axis, keepdims=True),)

    return out, vjp, (out,)


def _cross_entropy(xs, p):
    (z,), y = xs, p["targets"]
    if z.ndim != 2:
        raise ValueError(f"cross_entropy: logits must have shape (batch, classes), got {z.shape}")
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"cross_entropy: targets must be integer class indices of shape ({z.shape[0]},), "
                         f"got {y.dtype} array of shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"cross_entropy: targets must lie in [0, {z.shape[1] - 1}], got [{y.min()}, {y.max()}]")
    batch = z.shape[0]
    logp = _log_softmax(z, axis=1)
    out = -logp[np.arange(batch), y].mean()
    probs = np.exp(logp)

    def vjp(g):
        # the famous (softmax(Z) - Y) / B
        delta = probs.copy()
        delta[np.arange(batch), y] -= 1.0
        return (g * delta / batch,)

    return np.asarray(out), vjp, (probs, y)


@dataclass(frozen=True)
class OpRule:
    """One operation: its arity, its rule, and the keyword parameters it accepts."""
    arity: int
    rule: Callable
    params: tuple[str, ...] = ()


_RULES: dict[str, OpRule] = {
    "add": OpRule(2, _add),
    "sub": OpRule(2, _sub),
    "mul": OpRule(2, _mul),
    "div": OpRule(2, _div),
    "matmul": OpRule(2, _matmul),
    "neg": OpRule(1, _neg),
    "pow": OpRule(1, _pow, ("exponent",)),
    "exp": OpRule(1, _exp),
    "log": OpRule(1, _log),
    "sum": OpRule(1, _sum, ("axis", "keepdims")),
    "mean": OpRule(1, _mean, ("axis", "keepdims")),
    "reshape": OpRule(1, _reshape, ("shape",)),
    "transpose": OpRule(1, _transpose, ("axes",)),
    "relu": OpRule(1, _relu),
    "sigmoid": OpRule(1, _sigmoid_rule),
    "tanh": OpRule(1, _tanh),
    "log_softmax": OpRule(1, _log_softmax_rule, ("axis",)),
    "cross_entropy": OpRule(1, _cross_entropy, ("targets",)),
}
OPS = tuple(_RULES)  # the built-in operations (the random programs use exactly these)


def ops() -> tuple[str, ...]:
    """The names of all operations the engine knows now: the built-in ones and the registered ones."""
    return tuple(_RULES)


def register_op(name: str, rule: Callable, arity: int = 1, params: Sequence[str] = (),
                replace: bool = False) -> OpRule | None:
    """Add operation ``name`` to the engine; ``Tensor.apply(name, *inputs, **params)`` then runs it.

    ``rule(arrays, params) -> (output, vjp, saved)``: ``arrays`` is the list of the ``arity`` input
    arrays, ``params`` a dict of the keyword parameters named in ``params``; ``vjp(g)`` returns one
    gradient per input (a tuple); ``saved`` is the tuple of arrays the VJP keeps for the backward pass.
    An existing operation is replaced only with ``replace=True``. Returns the rule it replaced (or None),
    so that a caller can put it back; :func:`override_op` does that for a ``with`` block.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"an operation name is a Python identifier, got {name!r}")
    if not callable(rule):
        raise TypeError(f"rule must be callable as rule(arrays, params), got {type(rule).__name__}")
    if not isinstance(arity, int) or isinstance(arity, bool) or arity < 1:
        raise ValueError(f"arity must be a positive integer, got {arity!r}")
    params = tuple(params)
    if not all(isinstance(p, str) and p.isidentifier() for p in params):
        raise ValueError(f"params must be names of keyword parameters, got {params!r}")
    previous = _RULES.get(name)
    if previous is not None and not replace:
        raise ValueError(f"operation {name!r} exists already; pass replace=True to replace its rule")
    _RULES[name] = OpRule(arity, rule, params)
    return previous


@contextmanager
def override_op(name: str, rule: Callable, arity: int | None = None,
                params: Sequence[str] | None = None) -> Iterator[None]:
    """Use ``rule`` for the existing operation ``name`` inside a ``with`` block, then restore the old rule.

    Arity and parameters default to those of the rule being replaced.
    """
    if name not in _RULES:
        raise ValueError(f"unknown operation {name!r}; supported: {', '.join(ops())}")
    old = _RULES[name]
    register_op(name, rule, old.arity if arity is None else arity,
                old.params if params is None else params, replace=True)
    try:
        yield
    finally:
        _RULES[name] = old

# --------------------------------------------------------------------------- the Tensor


class Tensor:
    """A node of the computational graph: a NumPy array plus what is needed to differentiate.

    ``data`` — the value; ``grad`` — dL/d(data) after ``backward()`` (``None`` before);
    ``op`` — the operation that made it (``"leaf"`` for inputs and parameters);
    ``parents`` — its inputs; ``saved`` — the arrays its VJP keeps for the backward pass.
    """

    def __init__(self, data: ArrayLike, requires_grad: bool = False, name: str = "", dtype=None):
        array = np.array(data, dtype=dtype, copy=True)
        if dtype is None and not np.issubdtype(array.dtype, np.floating):
            if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
                raise TypeError(f"Tensor needs real numbers, got an array of dtype {array.dtype}")
            array = array.astype(np.float64)
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"Tensor needs a floating dtype (float32 or float64), got {array.dtype}")
        self.data: np.ndarray = array
        self.requires_grad = bool(requires_grad)
        self.grad: np.ndarray | None = None
        self.name = name
        self.op = "leaf"
        self.parents: tuple[Tensor, ...] = ()
        self.saved: tuple[np.ndarray, ...] = ()
        self._vjp: Vjp | None = None

    # ---- basic properties
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    def item(self) -> float:
        return float(self.data)

    def numpy(self) -> np.ndarray:
        return self.data

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"Tensor{label}(shape={self.shape}, op={self.op!r}, requires_grad={self.requires_grad})"

    def __len__(self) -> int:
        return len(self.data)

    # ---- building the graph
    @staticmethod
    def apply(op: str, *inputs: "Tensor | ArrayLike", **params) -> "Tensor":
        """Run operation ``op`` on ``inputs`` and record it in the graph."""
        if op not in _RULES:
            raise ValueError(f"unknown operation {op!r}; supported: {', '.join(ops())}")
        spec = _RULES[op]
        if len(inputs) != spec.arity:
            raise TypeError(f"{op} takes {spec.arity} tensor argument(s), got {len(inputs)}")
        unknown = set(params) - set(spec.params)
        if unknown:
            raise TypeError(f"{op} got unexpected parameter(s) {sorted(unknown)}; it accepts {list(spec.params)}")
        tensors = tuple(_as_tensor(x) for x in inputs)
        dtypes = {t.dtype for t in tensors}
        if len(dtypes) > 1:
            raise TypeError(f"{op}: inputs have different dtypes {sorted(map(str, dtypes))}; convert them first")
        value, vjp, saved = spec.rule([t.data for t in tensors], {k: params.get(k) for k in spec.params})
        out = Tensor.__new__(Tensor)
        out.data = np.asarray(value, dtype=tensors[0].dtype)
        out.grad, out.name, out.op = None, "", op
        out.requires_grad = any(t.requires_grad for t in tensors)
        # only a node that leads to a parameter keeps its parents, VJP and saved arrays
        out.parents = tensors if out.requires_grad else ()
        out._vjp = vjp if out.requires_grad else None
        out.saved = tuple(saved) if out.requires_grad else ()
        return out

    # ---- operators and methods (thin wrappers around ``apply``)
    def __add__(self, other): return Tensor.apply("add", self, other)
    def __radd__(self, other): return Tensor.apply("add", other, self)
    def __sub__(self, other): return Tensor.apply("sub", self, other)
    def __rsub__(self, other): return Tensor.apply("sub", other, self)
    def __mul__(self, other): return Tensor.apply("mul", self, other)
    def __rmul__(self, other): return Tensor.apply("mul", other, self)
    def __truediv__(self, other): return Tensor.apply("div", self, other)
    def __rtruediv__(self, other): return Tensor.apply("div", other, self)
    def __matmul__(self, other): return Tensor.apply("matmul", self, other)
    def __rmatmul__(self, other): return Tensor.apply("matmul", other, self)
    def __neg__(self): return Tensor.apply("neg", self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor) or not isinstance(exponent, (int, float, np.integer, np.floating)):
            raise TypeError(f"pow supports a constant real exponent only, got {type(exponent).__name__}")
        return Tensor.apply("pow", self, exponent=float(exponent))

    def exp(self): return Tensor.apply("exp", self)
    def log(self): return Tensor.apply("log", self)
    def relu(self): return Tensor.apply("relu", self)
    def sigmoid(self): return Tensor.apply("sigmoid", self)
    def tanh(self): return Tensor.apply("tanh", self)
    def log_softmax(self, axis: int = -1): return Tensor.apply("log_softmax", self, axis=axis)

    def sum(self, axis=None, keepdims: bool = False):
        return Tensor.apply("sum", self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        return Tensor.apply("mean", self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return Tensor.apply("reshape", self, shape=shape)

    def transpose(self, *axes):
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None)
        return Tensor.apply("transpose", self, axes=axes)

    @property
    def T(self):
        return self.transpose()

    # ---- the backward pass
    def backward(self, grad: ArrayLike | None = None) -> None:
        """Fill ``.grad`` of every node that leads to this one: reverse-mode AD.

        ``grad`` is the initial gradient dL/d(self) (the "seed"); it may be omitted only
        for a scalar, then it is dL/dL = 1. Leaves accumulate gradients across calls
        (like torch: zero them between steps).
        """
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not depend on any tensor "
                               "with requires_grad=True")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward() without a seed gradient works only for "
                                   f"a scalar; this tensor has shape {self.shape}: "
                                   f"pass grad= of that shape (e.g. np.ones)")
            seed = np.ones_like(self.data)
        else:
            seed = np.asarray(grad, dtype=self.dtype)
            if seed.shape != self.shape:
                raise ValueError(f"backward(): seed gradient has shape {seed.shape}, "
                                 f"the tensor has shape {self.shape}")
        order = topological_order(self)
        grads: dict[int, np.ndarray] = {id(self): seed}
        for node in reversed(order):  # from the output back to the inputs
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node.op == "leaf":
                node.grad = g.copy() if node.grad is None else node.grad + g
                continue
            node.grad = g  # intermediate nodes keep this call's gradient (retain_grad)
            for parent, pg in zip(node.parents, node._vjp(g)):
                if parent.requires_grad:
                    # a node used several times receives the sum of its gradients
                    key = id(parent)
                    grads[key] = grads[key] + pg if key in grads else pg

    def zero_grad(self) -> None:
        self.grad = None


def _as_tensor(x: "Tensor | ArrayLike") -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def tensor(data: ArrayLike, requires_grad: bool = False, name: str = "", dtype=None) -> Tensor:
    """Make a leaf tensor (float64 unless ``dtype`` says otherwise)."""
    return Tensor(data, requires_grad=requires_grad, name=name, dtype=dtype)


def topological_order(root: Tensor) -> list[Tensor]:
    """Nodes that ``root`` depends on, each after all of its parents (iterative DFS: no recursion limit)."""
    order, visited = [], set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in node.parents if id(p) not in visited)
    return order


def _key(a: np.ndarray) -> tuple[int, int]:
    base = a if a.base is None else a.base
    return base.__array_interface__["data"][0], base.nbytes


def saved_arrays(root: Tensor, exclude: Iterable[Tensor] = ()) -> list[np.ndarray]:
    """Distinct arrays kept for the backward pass of ``root`` (shared memory counted once).

    ``exclude``: tensors whose data is not to be counted (e.g. the parameters, alive anyway).
    """
    seen = {_key(t.data) for t in exclude}
    out = []
    for node in topological_order(root):
        for a in node.saved:
            key = _key(a)
            if key not in seen:
                seen.add(key)
                out.append(a if a.base is None else a.base)
    return out


def saved_bytes(root: Tensor, exclude: Iterable[Tensor] = ()) -> int:
    """Bytes that our engine keeps between forward and backward for ``root`` (chapter 3's question)."""
    return int(sum(a.nbytes for a in saved_arrays(root, exclude)))


# --------------------------------------------------------------------------- functional API


def cross_entropy(logits: Tensor, targets: ArrayLike) -> Tensor:
    """Mean cross-entropy of integer ``targets`` under ``softmax(logits)``; the VJP is (softmax − Y)/B."""
    return Tensor.apply("cross_entropy", logits, targets=np.asarray(targets))


def relu(x: Tensor) -> Tensor: return _as_tensor(x).relu()
def sigmoid(x: Tensor) -> Tensor: return _as_tensor(x).sigmoid()
def tanh(x: Tensor) -> Tensor: return _as_tensor(x).tanh()
def exp(x: Tensor) -> Tensor: return _as_tensor(x).exp()
def log(x: Tensor) -> Tensor: return _as_tensor(x).log()
def log_softmax(x: Tensor, axis: int = -1) -> Tensor: return _as_tensor(x).log_softmax(axis)


# --------------------------------------------------------------------------- random programs: the check


@dataclass(frozen=True)
class Instruction:
    """``out = op(*args, **params)``; ``args`` index earlier values of the program."""
    op: str
    args: tuple[int, ...]
    params: tuple[tuple[str, Any], ...] = ()


@dataclass
class Program:
    """A random expression graph: input shapes, instructions; the last value is the scalar loss."""
    input_shapes: list[tuple[int, ...]]
    instructions: list[Instruction] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.instructions)

    def ops_used(self) -> set[str]:
        return {i.op for i in self.instructions}


def _torch_rules():
    import torch

    def reduce(fn):
        def run(x, axis=None, keepdims=False):
            dims = tuple(range(x.ndim)) if axis is None else axis
            return fn(x, dim=dims, keepdim=keepdims) if x.ndim else x
        return run

    return {
        "add": lambda a, b: a + b,
        "sub": lambda a, b: a - b,
        "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b,
        "matmul": lambda a, b: a @ b,
        "neg": lambda a: -a,
        "pow": lambda a, exponent: a**exponent,
        "exp": torch.exp,
        "log": torch.log,
        "sum": reduce(torch.sum),
        "mean": reduce(torch.mean),
        "reshape": lambda a, shape: a.reshape(shape),
        "transpose": lambda a, axes=None: a.permute(*(axes if axes is not None else reversed(range(a.ndim)))),
        "relu": torch.relu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "log_softmax": lambda a, axis: torch.log_softmax(a, dim=axis),
        "cross_entropy": lambda z, targets: torch.nn.functional.cross_entropy(z, torch.as_tensor(targets)),
    }


def run_program(program: Program, inputs: Sequence, backend: str = "nntrain"):
    """Evaluate ``program`` on ``inputs`` with our engine (``"nntrain"``) or with ``"torch"``.

    Returns the list of all values; the last one is the scalar loss.
    """
    if backend not in ("nntrain", "torch"):
        raise ValueError(f"unknown backend {backend!r}; expected 'nntrain' or 'torch'")
    if len(inputs) != len(program.input_shapes):
        raise ValueError(f"program takes {len(program.input_shapes)} inputs, got {len(inputs)}")
    values = list(inputs)
    torch_ops = _torch_rules() if backend == "torch" else None
    for ins in program.instructions:
        args, params = [values[i] for i in ins.args], dict(ins.params)
        if backend == "nntrain":
            values.append(Tensor.apply(ins.op, *args, **params))
        else:
            values.append(torch_ops[ins.op](*args, **params))
    return values


# The kinds of random instructions ("permute" is reshape followed by transpose).
_UNARY = ("neg", "pow", "exp", "log", "relu", "sigmoid", "tanh", "sum", "mean", "log_softmax", "permute")
_BINARY = ("add", "sub", "mul", "div", "matmul")


def _fits(shape: tuple[int, ...], full: tuple[int, ...]) -> bool:
    """True if ``shape`` broadcasts to exactly ``full`` (so it combines with any other value)."""
    return _broadcastable(shape, full) and np.broadcast_shapes(shape, full) == full


def random_program(rng: np.random.Generator, n_ops: int = 12, m: int = 3, n: int = 4,
                   with_cross_entropy: bool = True) -> Program:
    """A random expression graph over inputs of shapes (m, n), (m, n), (1, n), (n,), (m, 1), (n, n).

    ``n_ops`` random operations are drawn (the program is longer: guards, the loss). Every value broadcasts to (m, n), so any two can be combined; operands are drawn with a bias
    towards recent values (deep graphs) and often reuse a value (gradient accumulation).
    Domain guards keep values finite: ``log`` and ``div`` act on ``x² + 1``, ``exp`` on ``tanh x``.
    The loss is Σ sum(v · R) over the values nothing else consumed (so that no operation is a
    dead end) for a fixed R = tanh(x1 + x2), plus a cross-entropy of the last value when asked.
    """
    if n_ops < 1:
        raise ValueError(f"n_ops must be at least 1, got {n_ops}")
    if m == n:
        raise ValueError("use m != n so that a wrong transpose cannot pass unnoticed")
    shapes = [(m, n), (m, n), (1, n), (n,), (m, 1), (n, n)]
    prog = Program(input_shapes=list(shapes))
    full = (m, n)

    def emit(op, args, **params):
        prog.instructions.append(Instruction(op, tuple(args), tuple(params.items())))
        values_shapes.append(_infer_shape(op, [values_shapes[a] for a in args], params))
        return len(values_shapes) - 1

    values_shapes = list(shapes)
    weight = 5  # index of the (n, n) matrix: only matmul uses it
    ones_idx = emit("exp", (emit("mul", (0, emit("sub", (0, 0)))),))  # exp(0·x0) = 1, shape (m, n)
    constants = [ones_idx - 2, ones_idx - 1, ones_idx]  # 0, 0 and 1: their gradients cancel exactly

    def pick() -> int:
        k = len(values_shapes)
        # recent values are more likely: a deep chain with occasional reuse
        p = np.arange(1, k + 1, dtype=float) ** 2
        p[weight] = 0.0
        p[constants] = 0.0
        for i, s in enumerate(values_shapes):  # e.g. the (n, m) inside "permute"
            if not _fits(s, full):
                p[i] = 0.0
        return int(rng.choice(k, p=p / p.sum()))

    def square_plus_one(i):
        return emit("add", (emit("mul", (i, i)), ones_idx))

    for _ in range(n_ops):
        kind = rng.choice(_UNARY + _BINARY)
        a = pick()
        if kind in ("add", "sub", "mul"):
            emit(kind, (a, pick()))
        elif kind == "div":
            emit("div", (a, square_plus_one(pick())))
        elif kind == "matmul":
            if values_shapes[a] != full:
                a = emit("add", (a, 0))  # bring it to (m, n)
            emit("matmul", (a, weight))
        elif kind == "log":
            emit("log", (square_plus_one(a),))
        elif kind == "exp":
            emit("exp", (emit("tanh", (a,)),))
        elif kind == "pow":
            emit("pow", (square_plus_one(a),), exponent=float(rng.choice([-1.0, 0.5, 2.0, 3.0])))
        elif kind in ("sum", "mean"):
            shp = values_shapes[a]
            choices = [(None, False)] + [(ax, True) for ax in range(len(shp))]
            if len(shp) == 2:
                choices.append((0, False))  # (m, n) -> (n,) still broadcasts
            axis, keep = choices[rng.integers(len(choices))]
            emit(kind, (a,), axis=axis, keepdims=keep)
        elif kind == "log_softmax":
            if len(values_shapes[a]) != 2:
                a = emit("add", (a, 0))
            emit("log_softmax", (a,), axis=int(rng.integers(2)))
        elif kind == "permute":  # reshape + transpose: a nontrivial shuffle that keeps (m, n)
            if values_shapes[a] != full:
                a = emit("add", (a, 0))
            emit("transpose", (emit("reshape", (a,), shape=(n, m)),), axes=(1, 0))
        else:
            emit(kind, (a,))
    last = len(values_shapes) - 1
    used = {a for ins in prog.instructions for a in ins.args}
    # every value that nothing consumed (a dead end) feeds the loss, so every operation matters
    sinks = [i for i in range(len(shapes), last) if i not in used and _fits(values_shapes[i], full)] + [last]
    r = emit("tanh", (emit("add", (1, 2)),))  # a fixed "random" weighting R built from the inputs
    loss = emit("sum", (emit("mul", (last, r)),), axis=None, keepdims=False)
    for i in sinks[:-1]:
        loss = emit("add", (loss, emit("sum", (emit("mul", (i, r)),), axis=None, keepdims=False)))
    if with_cross_entropy:
        logits = emit("add", (last, 0)) if values_shapes[last] != full else last
        targets = rng.integers(0, n, size=m)
        ce = emit("cross_entropy", (logits,), targets=targets)
        emit("add", (loss, ce))
    return prog


def _broadcastable(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True


def _infer_shape(op: str, shapes: list[tuple[int, ...]], params: dict) -> tuple[int, ...]:
    dummy = [np.ones(s) for s in shapes]
    if op == "cross_entropy":
        return ()
    value, _, _ = _RULES[op].rule(dummy, {k: params.get(k) for k in _RULES[op].params})
    return np.shape(value)


def random_inputs(program: Program, rng: np.random.Generator, dtype=np.float64) -> list[np.ndarray]:
    """Standard normal inputs of the program's shapes (the (n, n) weight scaled by 1/√n)."""
    arrays = [rng.standard_normal(s).astype(dtype) for s in program.input_shapes]
    arrays[-1] = arrays[-1] / np.sqrt(program.input_shapes[-1][0])
    return arrays


@dataclass
class GraphCheck:
    """Result of comparing our gradients with torch.autograd on one program."""
    n_ops: int
    loss_diff: float
    max_grad_diff: float  # max |ours − torch| over all entries of all input gradients
    max_scaled_diff: float  # max |ours − torch| / max(1, |torch|): what ``tol`` bounds
    ok: bool


def check_against_torch(program: Program, inputs: Sequence[np.ndarray], tol: float = 1e-10) -> GraphCheck:
    """Run ``program`` in both engines (float64) and compare the loss and every input gradient.

    Each entry must satisfy |ours − torch| ≤ tol·max(1, |torch|): relative for large entries,
    absolute for small ones, so that an entry that is pure round-off (a true zero computed as
    1e-12 by one engine and 3e-12 by the other) does not fail the check.
    """
    import torch

    ours = [Tensor(x, requires_grad=True) for x in inputs]
    loss = run_program(program, ours)[-1]
    loss.backward()
    theirs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in inputs]
    t_loss = run_program(program, theirs, backend="torch")[-1]
    t_loss.backward()
    loss_diff = abs(loss.item() - t_loss.item())
    ok = loss_diff <= tol * max(1.0, abs(t_loss.item()))
    diffs, scaled = [0.0], [loss_diff / max(1.0, abs(t_loss.item()))]
    for a, b in zip(ours, theirs):
        ga = a.grad if a.grad is not None else np.zeros_like(a.data)
        gb = b.grad.numpy() if b.grad is not None else np.zeros_like(a.data)
        if not np.all(np.isfinite(ga)):
            ok = False
        diffs.append(float(np.max(np.abs(ga - gb), initial=0.0)))
        scaled.append(float(np.max(np.abs(ga - gb) / np.maximum(1.0, np.abs(gb)), initial=0.0)))
    ok = ok and max(scaled) <= tol
    return GraphCheck(len(program), loss_diff, max(diffs), max(scaled), bool(ok))


# --------------------------------------------------------------------------- a tiny MLP on top


class Linear:
    """y = x W + b with W of shape (in, out): the convention of the chapter's formulas.

    Initialised like ``torch.nn.Linear``: U(−1/√in, 1/√in) for both W and b.
    """

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, dtype=np.float64):
        if n_in <= 0 or n_out <= 0:
            raise ValueError(f"Linear needs positive sizes, got {n_in} -> {n_out}")
        bound = 1.0 / np.sqrt(n_in)
        self.W = Tensor(rng.uniform(-bound, bound, (n_in, n_out)), requires_grad=True, name="W", dtype=dtype)
        self.b = Tensor(rng.uniform(-bound, bound, (n_out,)), requires_grad=True, name="b", dtype=dtype)

    def __call__(self, x: Tensor) -> Tensor:
        return x @ self.W + self.b

    def parameters(self) -> list[Tensor]:
        return [self.W, self.b]


_ACTIVATIONS = {"relu": relu, "tanh": tanh, "sigmoid": sigmoid}


class MLP:
    """Linear → activation → ... → Linear (logits)."""

    def __init__(self, sizes: Sequence[int], rng: np.random.Generator, activation: str = "relu", dtype=np.float64):
        if len(sizes) < 2:
            raise ValueError(f"an MLP needs at least an input and an output size, got {list(sizes)}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}")
        self.sizes = list(sizes)
        self.activation = activation
        self.layers = [Linear(a, b, rng, dtype) for a, b in zip(sizes[:-1], sizes[1:])]

    def __call__(self, x: Tensor) -> Tensor:
        act = _ACTIVATIONS[self.activation]
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = act(x)
        return x

    def parameters(self) -> list[Tensor]:
        return [p for layer in self.layers for p in layer.parameters()]

    def n_params(self) -> int:
        return sum(p.data.size for p in self.parameters())

    def to_torch(self):
        """The same network as ``torch.nn.Sequential`` with the same weights (the reference implementation)."""
        import torch

        acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid}
        mods = []
        for i, layer in enumerate(self.layers):
            lin = torch.nn.Linear(*layer.W.shape, dtype=torch.from_numpy(layer.W.data).dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(layer.W.data.T.copy()))  # torch stores W as (out, in)
                lin.bias.copy_(torch.from_numpy(layer.b.data))
            mods.append(lin)
            if i < len(self.layers) - 1:
                mods.append(acts[self.activation]())
        return torch.nn.Sequential(*mods)


def sgd_step(params: Iterable[Tensor], lr: float) -> None:
    """θ ← θ − lr·∇θ, then forget the gradients."""
    for p in params:
        if p.grad is not None:
            p.data -= lr * p.grad
            p.grad = None


def accuracy(model: MLP, x: np.ndarray, y: np.ndarray) -> float:
    """Share of correctly classified rows."""
    logits = model(Tensor(x, dtype=model.layers[0].W.dtype)).data
    return float((logits.argmax(axis=1) == np.asarray(y)).mean())


def train_mlp(model: MLP, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, lr: float,
              rng: np.random.Generator, progress: bool = True) -> list[float]:
    """Mini-batch SGD on cross-entropy with our engine; returns the loss of every step."""
    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise ValueError(f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}")
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    dtype = model.layers[0].W.dtype
    losses = []
    for idx in _batch_order(len(x), epochs, batch_size, rng, progress):
        loss = cross_entropy(model(Tensor(x[idx], dtype=dtype)), y[idx])
        loss.backward()
        sgd_step(model.parameters(), lr)
        losses.append(loss.item())
    return losses


def _batch_order(n: int, epochs: int, batch_size: int, rng: np.random.Generator, progress: bool):
    from tqdm.auto import tqdm

    for _ in tqdm(range(epochs), desc="epochs", disable=not progress):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            yield order[start:start + batch_size]


def train_torch_reference(net, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, lr: float,
                          rng: np.random.Generator, progress: bool = True) -> list[float]:
    """The reference for :func:`train_mlp`: ``torch.optim.SGD`` on the same mini-batches in the same order.

    Given ``net = model.to_torch()`` and a generator in the same state, the two loss curves agree
    to float rounding.
    """
    import torch

    if epochs <= 0 or batch_size <= 0 or lr <= 0:
        raise ValueError(f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}")
    dtype = next(net.parameters()).dtype
    xt, yt = torch.as_tensor(np.asarray(x), dtype=dtype), torch.as_tensor(np.asarray(y))
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    losses = []
    for idx in _batch_order(len(xt), epochs, batch_size, rng, progress):
        idx_t = torch.as_tensor(idx)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xt[idx_t]), yt[idx_t])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


train_torch_twin = train_torch_reference  # the former name, kept for existing callers
