"""Tests of nntrain.sharpness (chapter 9): the eigenvalue against the explicit Hessian, Dinh's rescaling."""

import pytest
import torch
from torch import nn

from nntrain import sharpness as S


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x = torch.randn(20, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (20,))
    return model, x, y


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_power_iteration_matches_explicit_hessian(loss):
    model, x, y = _tiny()
    hess = S.explicit_hessian(model, lambda m: S.full_loss(m, x, y, loss))
    n = sum(p.numel() for p in model.parameters())
    assert hess.shape == (n, n)
    eig = torch.linalg.eigvalsh(hess)
    top = eig[eig.abs().argmax()]
    lam, v = S.top_eigenvalue(model, lambda: S.full_loss(model, x, y, loss), iters=2000, tol=1e-13,
                              generator=torch.Generator().manual_seed(0))
    assert lam == pytest.approx(float(top), rel=1e-6)
    assert float(sum((t ** 2).sum() for t in v)) == pytest.approx(1.0)


def test_hvp_matches_hessian_times_vector():
    model, x, y = _tiny(1)
    hess = S.explicit_hessian(model, lambda m: S.full_loss(m, x, y))
    params = list(model.parameters())
    v = [torch.randn_like(p) for p in params]
    hv = torch.cat([t.reshape(-1) for t in S.hvp(lambda: S.full_loss(model, x, y), params, v)])
    flat = torch.cat([t.reshape(-1) for t in v])
    torch.testing.assert_close(hv, hess @ flat)


def test_dinh_rescale_keeps_function_and_changes_sharpness():
    model, x, y = _tiny(2)
    big = S.dinh_rescale(model, 10.0)
    torch.testing.assert_close(big(x), model(x))
    g = torch.Generator().manual_seed(0)
    lam0, _ = S.top_eigenvalue(model, lambda: S.full_loss(model, x, y), iters=500, generator=g)
    lam1, _ = S.top_eigenvalue(big, lambda: S.full_loss(big, x, y), iters=500, generator=g)
    assert lam1 > 10 * lam0


def test_gd_sharpness_run_shapes():
    model, x, y = _tiny(3)
    out = S.gd_sharpness_run(model, x, y, lr=0.1, steps=25, every=10)
    assert len(out["loss"]) == 25
    assert out["sharp_step"] == [0, 10, 20, 24]


def test_bad_input():
    model, x, y = _tiny()
    with pytest.raises(ValueError, match="no trainable parameters"):
        S.top_eigenvalue(nn.ReLU(), lambda: torch.tensor(0.0))
    with pytest.raises(ValueError, match="positive"):
        S.dinh_rescale(model, -1.0)
    with pytest.raises(ValueError, match="Linear, ReLU, Linear"):
        S.dinh_rescale(nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2)), 2.0)
    with pytest.raises(ValueError, match="lr must be positive"):
        S.gd_sharpness_run(model, x, y, lr=0.0, steps=3)
    with pytest.raises(ValueError, match="unknown loss"):
        S.full_loss(model, x, y, "hinge")


def test_fit_and_measure_counts_two_passes_for_sam():
    torch.manual_seed(0)
    x = torch.randn(64, 5)
    y = torch.randint(0, 3, (64,))
    sgd = S.fit_and_measure(x, y, x, y, [5, 8, 3], 0.1, seed=0, epochs=2, batch_size=16)
    sam = S.fit_and_measure(x, y, x, y, [5, 8, 3], 0.1, seed=0, rho=0.05, epochs=2, batch_size=16)
    assert sgd["grad_evaluations"] == 8 and sam["grad_evaluations"] == 16
    assert 0 <= sam["test_acc"] <= 1
    cost = S.step_cost([5, 8, 3], x, y, steps=2, repeats=1)
    assert cost["sgd"] > 0 and cost["sam"] > 0
    with pytest.raises(ValueError, match="epochs"):
        S.train_minibatch(sgd["model"], x, y, torch.optim.SGD(sgd["model"].parameters(), lr=0.1),
                          0, 16)
