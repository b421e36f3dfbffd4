"""Step time of our optimizers against torch's foreach kernels (chapter 2, «SGD и прочие оптимизаторы»).

The goal of the chapter is that writing a rule once over lists of tensors costs nothing: each
wrapper's step should take at most 1.5× the step of its ``torch.optim`` twin with ``foreach=True``.
``scripts/bench_optim.py`` prints the table; the sgd chapter glues the SGD measurement.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from torch import Tensor

from .._checks import check_choice, check_positive_int
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["compare_step_time", "BENCH_METHODS"]

# method name -> (our wrapper, torch's twin)
BENCH_METHODS: dict[str, tuple[type, type]] = {
    "sgd": (SGD, torch.optim.SGD),
    "adagrad": (Adagrad, torch.optim.Adagrad),
    "rmsprop": (RMSprop, torch.optim.RMSprop),
    "adam": (Adam, torch.optim.Adam),
    "adamw": (AdamW, torch.optim.AdamW),
}


def _bench_params(n_params: int, width: int, seed: int) -> list[Tensor]:
    """Weights width×width and biases of width, enough layers for about ``n_params`` numbers, with fixed grads."""
    g = torch.Generator().manual_seed(seed)
    params = []
    for _ in range(max(1, round(n_params / (width * width + width)))):
        for shape in ((width, width), (width,)):
            p = torch.randn(shape, generator=g).requires_grad_()
            p.grad = torch.randn(shape, generator=g)
            params.append(p)
    return params


def _timed_steps(optimizers: dict[str, torch.optim.Optimizer], warmup: int, repeats: int) -> dict[str, list[float]]:
    """Alternate the optimizers' steps, so that load that comes and goes hits all of them alike."""
    sync: Callable[[], None] = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for i in range(warmup + repeats):
        for name, opt in optimizers.items():
            start = time.perf_counter()
            opt.step()
            sync()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def compare_step_time(n_params: int = 10_000_000, repeats: int = 30, warmup: int = 5, momentum: float = 0.9,
                      lr: float = 1e-3, width: int = 1000, method: str = "sgd", **options: Any) -> dict[str, Any]:
    """Step time of one of our wrappers against its ``torch.optim`` twin with ``foreach=True``.

    ``method`` is one of :data:`BENCH_METHODS`; ``momentum`` is SGD's (ignored by the others unless
    given again in ``options``, e.g. RMSprop's), ``options`` go to both optimizers. The parameters
    are float32 with fixed random gradients, so only the optimizer step is timed. Returns the median
    times (seconds), the median of the step-by-step ratios ours/torch, whether the parameters are
    still bit-for-bit equal afterwards, and their largest absolute difference.
    """
    check_choice("method", method, BENCH_METHODS)
    check_positive_int("repeats", repeats)
    ours_cls, torch_cls = BENCH_METHODS[method]
    if method == "sgd":
        options = {"momentum": momentum, **options}
    ours_p, ref_p = _bench_params(n_params, width, 0), _bench_params(n_params, width, 0)
    optimizers = {"ours": ours_cls(ours_p, lr=lr, **options),
                  "torch": torch_cls(ref_p, lr=lr, foreach=True, **options)}
    times = _timed_steps(optimizers, warmup, repeats)
    return {"method": method, "params": sum(p.numel() for p in ours_p),
            "ours_s": statistics.median(times["ours"]), "torch_s": statistics.median(times["torch"]),
            "ratio": statistics.median(a / b for a, b in zip(times["ours"], times["torch"])),
            "identical": all(torch.equal(p, q) for p, q in zip(ours_p, ref_p)),
            "max_abs_diff": max(float((p.detach() - q.detach()).abs().max()) for p, q in zip(ours_p, ref_p))}
