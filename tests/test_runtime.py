"""nntrain.runtime: quick mode, device choice, seeding, set-up."""

import random

import numpy as np
import pytest
import torch

import nntrain


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False), ("", False), ("off", False)])
def test_quick_mode_values(monkeypatch, value, expected):
    monkeypatch.setenv(nntrain.QUICK_ENV, value)
    assert nntrain.is_quick() is expected
    assert nntrain.pick(full="big", quick="small") == ("small" if expected else "big")


def test_quick_mode_unset_means_full_size(monkeypatch):
    monkeypatch.delenv(nntrain.QUICK_ENV, raising=False)
    assert nntrain.is_quick() is False


def test_bad_quick_value_is_an_error(monkeypatch):
    monkeypatch.setenv(nntrain.QUICK_ENV, "maybe")
    with pytest.raises(ValueError, match="NNTRAIN_QUICK='maybe'"):
        nntrain.is_quick()


def test_device_defaults_and_errors():
    assert nntrain.device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert nntrain.device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        nntrain.device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            nntrain.device("cuda")


def test_seed_everything_reproduces_all_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    nntrain.seed_everything(123)
    first = draw()
    nntrain.seed_everything(123)
    assert draw() == first
    with pytest.raises(ValueError):
        nntrain.seed_everything(-1)


def test_setup_prints_environment_and_returns_device(capsys):
    dev = nntrain.setup(seed=1)
    line = capsys.readouterr().out
    assert "torch" in line and "размер: быстрый" in line
    assert dev == nntrain.device()
