"""Datasets of the book: all of them work offline.

``load(name, split, seed, size)`` returns ``(X, y)`` tensors on the chosen device:

* ``"digits"`` — scikit-learn's 8×8 handwritten digits (ships inside scikit-learn);
* ``"fashion_mnist"`` — the real loader (download, cache, idx parsing); without network it prints
  why and falls back to ``"digits"``;
* synthetic sets: ``"linear_regression"``, ``"spirals"``, ``"teacher_student"``.

Splits are deterministic: the same ``seed`` always gives the same train/test partition.
"""

from __future__ import annotations

import gzip
import os
import struct
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .runtime import device as _device

SPLITS = ("train", "test", "all")
TEST_FRACTION = 0.2

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# idx type codes (LeCun's format): code -> numpy dtype (big-endian)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def default_cache_dir() -> Path:
    """Where downloaded data lives: ``$NNTRAIN_DATA`` or ``~/.cache/nntrain``."""
    return Path(os.environ.get("NNTRAIN_DATA", Path.home() / ".cache" / "nntrain"))


# --------------------------------------------------------------------------- splitting


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def split_indices(n: int, split: str, seed: int, test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """Indices of ``split`` in a seeded random partition of ``range(n)``."""
    _check_split(split)
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    if split == "test":
        return order[:n_test]
    if split == "train":
        return order[n_test:]
    return order


def _take(x: np.ndarray, y: np.ndarray, size: int | None, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    if size is None:
        return x, y
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int or None, got {size!r}")
    if size > len(x):
        raise ValueError(f"{name!r} has only {len(x)} examples in split {split!r}, but size={size} was asked for")
    return x[:size], y[:size]


def _to_tensors(x: np.ndarray, y: np.ndarray, dev, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    dev = _device(dev) if isinstance(dev, str) or dev is None else dev
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=dev)
    y_dtype = torch.long if np.issubdtype(y.dtype, np.integer) else dtype
    yt = torch.as_tensor(np.ascontiguousarray(y), dtype=y_dtype, device=dev)
    return xt, yt


# --------------------------------------------------------------------------- real data


def digits_arrays(split: str = "train", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: 1797 images 8×8 as rows of 64 values in [0, 1], labels 0..9."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.data.astype(np.float32) / 16.0
    y = bunch.target.astype(np.int64)
    idx = split_indices(len(x), split, seed)
    return x[idx], y[idx]


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse a file in LeCun's idx format (optionally gzip-compressed) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown idx type code 0x{type_code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated idx header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: idx header promises {expected} bytes of data, file has {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def download(url: str, path: Path, timeout: float = 10.0) -> Path:
    """Download ``url`` to ``path`` atomically (a partial file never looks complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
        out.write(response.read())
    tmp.replace(path)
    return path


def fashion_mnist_arrays(split: str = "train", root: str | os.PathLike | None = None,
                         base_url: str = FASHION_MNIST_URL, timeout: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from the cache in ``root``, downloading missing files; images flattened to [0, 1]."""
    if split not in FASHION_MNIST_FILES:
        raise ValueError(f"Fashion-MNIST has splits {tuple(FASHION_MNIST_FILES)}, not {split!r}")
    root = Path(root) if root is not None else default_cache_dir() / "fashion_mnist"
    arrays = []
    for name in FASHION_MNIST_FILES[split]:
        path = root / name
        if not path.exists():
            download(base_url + name, path, timeout=timeout)
        arrays.append(read_idx(path))
    images, labels = arrays
    if len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels")
    x = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return x, labels.astype(np.int64)


def _fashion_or_digits(split: str, seed: int, root=None) -> tuple[np.ndarray, np.ndarray]:
    if split == "all":
        raise ValueError("Fashion-MNIST comes with fixed splits: use 'train' or 'test'")
    try:
        x, y = fashion_mnist_arrays(split, root=root)
    except (OSError, urllib.error.URLError, ValueError) as err:
        print(f"Fashion-MNIST is not available ({type(err).__name__}: {err}); "
              "falling back to scikit-learn's digits (8×8 images, ships offline).")
        return digits_arrays(split, seed)
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order], y[order]


# --------------------------------------------------------------------------- synthetic data


def linear_regression_arrays(split: str = "train", seed: int = 0, n: int = 1000, dim: int = 10,
                             noise: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """y = x·w* + noise·ε with Gaussian x; w* is fixed by ``seed``, so train and test share it."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(dim)
    x = rng.standard_normal((n, dim))
    y = x @ w + noise * rng.standard_normal(n)
    idx = split_indices(n, split, seed)
    return x[idx].astype(np.float32), y[idx].astype(np.float32)


def spirals_arrays(split: str = "train", seed: int = 0, n: int = 1000, classes: int = 3,
                   noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` interleaved 2-D spirals: a small problem that a linear model cannot solve."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    r = rng.uniform(0.05, 1.0, n)
    theta = 4.0 * r + 2 * np.pi * y / classes + noise * rng.standard_normal(n)
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    idx = split_indices(n, split, seed)
    return x[idx].astype(np.float32), y[idx].astype(np.int64)


def teacher_student_arrays(split: str = "train", seed: int = 0, n: int = 2000, dim: int = 20,
                           hidden: int = 32, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Labels from a random 'teacher' MLP: a student of the same shape can fit them exactly."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((dim, hidden)) / np.sqrt(dim)
    w2 = rng.standard_normal((hidden, classes)) / np.sqrt(hidden)
    x = rng.standard_normal((n, dim))
    y = np.argmax(np.maximum(x @ w1, 0.0) @ w2, axis=1)
    idx = split_indices(n, split, seed)
    return x[idx].astype(np.float32), y[idx].astype(np.int64)


_LOADERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "digits": digits_arrays,
    "fashion_mnist": _fashion_or_digits,
    "linear_regression": linear_regression_arrays,
    "spirals": spirals_arrays,
    "teacher_student": teacher_student_arrays,
}
DATASETS = tuple(_LOADERS)


def load(name: str, split: str = "train", seed: int = 0, size: int | None = None,
         device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
         **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a dataset of the book as ``(X, y)`` tensors on ``device``.

    ``size`` keeps the first ``size`` examples of the (seeded, shuffled) split;
    extra keyword arguments go to the synthetic generators (``n``, ``dim``, ``noise``...).
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    _check_split(split)
    x, y = _LOADERS[name](split=split, seed=seed, **kwargs)
    x, y = _take(x, y, size, name, split)
    return _to_tensors(x, y, device, dtype)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
            shuffle: bool = True, drop_last: bool = False):
    """Yield one epoch of mini-batches ``(xb, yb)``; a fresh permutation each epoch when ``shuffle``."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(x)
    order = torch.randperm(n, generator=generator, device="cpu").to(x.device) if shuffle else torch.arange(n, device=x.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
