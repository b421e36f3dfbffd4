"""Where a notebook runs and at what size: device, seeds, quick mode, environment report.

Every chapter starts with ``nntrain.setup()``. The quick-mode switch ``NNTRAIN_QUICK`` is read
here and nowhere else, so that CI (quick) and the published run (full size) differ in one place.
"""

from __future__ import annotations

import os
import platform
import random
from typing import TypeVar

import numpy as np
import torch

QUICK_ENV = "NNTRAIN_QUICK"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
_DEVICE_KINDS = ("cpu", "cuda", "mps")

T = TypeVar("T")


def is_quick() -> bool:
    """True when ``NNTRAIN_QUICK`` asks for the small CI-sized run of a notebook."""
    raw = os.environ.get(QUICK_ENV, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(
        f"{QUICK_ENV}={os.environ[QUICK_ENV]!r} is not understood; "
        f"use one of {sorted(_TRUE)} to switch quick mode on or {sorted(_FALSE - {''})} to switch it off"
    )


def pick(full: T, quick: T) -> T:
    """Return ``quick`` in quick mode and ``full`` otherwise: ``steps = pick(full=2000, quick=200)``."""
    return quick if is_quick() else full


def device(name: str | None = None) -> torch.device:
    """The device to compute on: CUDA when present, else CPU (MPS is never picked silently).

    ``name`` forces a device ("cpu", "cuda", "cuda:1", "mps"); an unknown or unavailable one raises.
    """
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r}; expected one of {_DEVICE_KINDS} (e.g. 'cuda:0')") from err
    if dev.type not in _DEVICE_KINDS:
        raise ValueError(f"unknown device {name!r}; expected one of {_DEVICE_KINDS}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} was asked for, but MPS is not available on this machine")
    return dev


def seed_everything(seed: int = 0) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and all GPUs)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def describe_device(dev: torch.device | None = None) -> str:
    """The device in words: ``cuda (NVIDIA H100 80GB HBM3)`` or ``cpu (x86_64, ядер: 2)``."""
    dev = dev or device()
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"{dev.type} ({platform.processor() or platform.machine()}, ядер: {os.cpu_count()})"


def env_info(dev: torch.device | None = None) -> str:
    """One line about the environment, in the book's language: versions, the device, the size of the run."""
    where = describe_device(dev)
    size = "быстрый" if is_quick() else "полный"
    return f"torch {torch.__version__} | numpy {np.__version__} | устройство: {where} | размер: {size}"


def setup(seed: int = 0, device_name: str | None = None, verbose: bool = True,
          flush_denormals: bool = True) -> torch.device:
    """Prepare a notebook: seeds, the book's plot style, fast CPU floats; return the device.

    On CPU, subnormal floats are flushed to zero by default: tiny values in early Adam steps
    otherwise make them several times slower, and no result outside chapter 7 depends on them.
    The mixed-precision chapter is about subnormals and calls ``setup(flush_denormals=False)``.
    """
    from . import plot  # imported late: matplotlib is slow to import and not needed by tests

    dev = device(device_name)
    seed_everything(seed)
    plot.use_style()
    if dev.type == "cpu":
        torch.set_flush_denormal(flush_denormals)
    if verbose:
        print(env_info(dev))
    return dev
