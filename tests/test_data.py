"""nntrain.data: offline datasets, the idx parser and the Fashion-MNIST fallback."""

import gzip
import struct

import numpy as np
import pytest
import torch

from nntrain import data


def write_idx(path, array: np.ndarray, compress: bool = True):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">f4"): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def test_digits_split_is_deterministic_and_disjoint():
    x_tr, y_tr = data.load("digits", "train", seed=0)
    x_te, y_te = data.load("digits", "test", seed=0)
    assert x_tr.shape[1] == 64 and x_tr.dtype == torch.float32 and y_tr.dtype == torch.long
    assert len(x_tr) + len(x_te) == 1797
    assert 0.0 <= x_tr.min() and x_tr.max() <= 1.0
    again, _ = data.load("digits", "train", seed=0)
    assert torch.equal(again, x_tr)
    other, _ = data.load("digits", "train", seed=1)
    assert not torch.equal(other, x_tr)
    assert not set(data.split_indices(1797, "train", 0)) & set(data.split_indices(1797, "test", 0))


@pytest.mark.parametrize("name", ["linear_regression", "spirals", "teacher_student"])
def test_synthetic_sets(name):
    x, y = data.load(name, "train", seed=3, size=100, dtype=torch.float64)
    assert len(x) == len(y) == 100 and x.dtype == torch.float64
    x2, _ = data.load(name, "train", seed=3, size=100, dtype=torch.float64)
    assert torch.equal(x, x2)


def test_teacher_student_labels_cover_classes():
    _, y = data.load("teacher_student", "all", seed=0)
    assert len(torch.unique(y)) >= 5


def test_bad_requests_give_clear_errors():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*digits"):
        data.load("mnist")
    with pytest.raises(ValueError, match="unknown split"):
        data.load("digits", "validation")
    with pytest.raises(ValueError, match="only .* examples"):
        data.load("digits", "test", size=10**6)
    with pytest.raises(ValueError, match="positive int"):
        data.load("digits", size=0)


def test_read_idx_roundtrip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", images)
    write_idx(tmp_path / "b", images, compress=False)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.gz"), images)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "b"), images)
    floats = np.linspace(0, 1, 6).astype(">f4").reshape(2, 3)
    write_idx(tmp_path / "f.gz", floats)
    np.testing.assert_allclose(data.read_idx(tmp_path / "f.gz"), floats)


def test_read_idx_rejects_broken_files(tmp_path):
    (tmp_path / "junk").write_bytes(b"not an idx file")
    with pytest.raises(ValueError, match="bad magic"):
        data.read_idx(tmp_path / "junk")
    images = np.zeros((2, 2), dtype=np.uint8)
    write_idx(tmp_path / "short", images, compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(ValueError, match="promises"):
        data.read_idx(tmp_path / "short")


def test_fashion_mnist_from_cache(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 9], dtype=np.uint8)
    img_name, lbl_name = data.FASHION_MNIST_FILES["test"]
    write_idx(tmp_path / img_name, images)
    write_idx(tmp_path / lbl_name, labels)
    x, y = data.fashion_mnist_arrays("test", root=tmp_path)
    assert x.shape == (5, 784) and x.max() <= 1.0
    np.testing.assert_array_equal(y, labels)


def test_fashion_mnist_downloads_through_the_real_code_path(tmp_path):
    source = tmp_path / "server"
    source.mkdir()
    for split, (img_name, lbl_name) in data.FASHION_MNIST_FILES.items():
        write_idx(source / img_name, np.zeros((3, 28, 28), dtype=np.uint8))
        write_idx(source / lbl_name, np.array([1, 2, 3], dtype=np.uint8))
    cache = tmp_path / "cache"
    x, y = data.fashion_mnist_arrays("train", root=cache, base_url=source.as_uri() + "/")
    assert x.shape == (3, 784) and (cache / data.FASHION_MNIST_FILES["train"][0]).exists()


def test_fashion_mnist_falls_back_to_digits_with_a_message(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data, "download", offline)
    monkeypatch.setenv("NNTRAIN_DATA", str(tmp_path))
    x, y = data.load("fashion_mnist", "train", size=10)
    assert "falling back" in capsys.readouterr().out
    assert x.shape == (10, 64)


def test_batches_cover_the_epoch_once():
    x = torch.arange(10.0).unsqueeze(1)
    y = torch.arange(10)
    seen = torch.cat([yb for _, yb in data.batches(x, y, 3, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10))
    assert sum(1 for _ in data.batches(x, y, 3, drop_last=True)) == 3
    with pytest.raises(ValueError):
        next(data.batches(x, y[:5], 3))
