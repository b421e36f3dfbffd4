"""Tests of nntrain.explr (chapter 9): Li & Arora's equivalence in float64, the schedule, errors."""

import pytest
import torch
from torch import nn

from nntrain import explr


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (64,), generator=g)
    return x, y


def test_schedule():
    s = explr.explr_schedule(0.1, 0.5, 3)
    rho = 1 - 0.05
    torch.testing.assert_close(s, torch.tensor([0.1 / rho, 0.1 / rho ** 3, 0.1 / rho ** 5],
                                               dtype=torch.float64))


def test_scale_invariance():
    x, _ = _data()
    model = explr.scale_invariant_net([6, 8, 3])
    out = model(x)
    with torch.no_grad():
        model[0].weight.mul_(7.0)
        model[3].weight.mul_(0.2)
    torch.testing.assert_close(model(x), out)


def test_equivalence_float64():
    x, y = _data()
    model = explr.scale_invariant_net([6, 8, 3])
    out = explr.run_pair(model, x, y, lr=0.2, wd=0.05, steps=200, batch_size=16)
    assert float(out["rel_diff"].max()) < 1e-11
    assert torch.allclose(out["loss_wd"], out["loss_exp"], rtol=0, atol=1e-11)
    assert float(out["norm_ratio"][-1]) == pytest.approx((1 - 0.01) ** -200, rel=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="lr must be positive"):
        explr.explr_schedule(0.0, 0.1, 3)
    with pytest.raises(ValueError, match="weight decay"):
        explr.explr_schedule(0.1, 10.0, 3)
    with pytest.raises(ValueError, match="steps"):
        explr.explr_schedule(0.1, 0.1, 0)
    x, y = _data()
    with pytest.raises(ValueError, match="no parameters"):
        explr.run_pair(nn.ReLU(), x, y, 0.1, 0.1, 3, 4)
