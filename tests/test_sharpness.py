"""Tests of nntrain.sharpness (chapter 9).

The eigenvalue against the explicit Hessian, Lanczos against power iteration, Dinh's
rescaling and the filter-normalized sharpness.
"""

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


def test_lanczos_matches_explicit_hessian_top_three():
    model, x, y = _tiny(4)
    hess = S.explicit_hessian(model, lambda m: S.full_loss(m, x, y, "ce"))
    eig = torch.linalg.eigvalsh(hess).flip(0)
    n = hess.shape[0]
    full = S.lanczos(model, lambda: S.full_loss(model, x, y, "ce"), k=3, steps=n,
                     generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(full, eig[:3], rtol=1e-8, atol=1e-10)
    short = S.lanczos(model, lambda: S.full_loss(model, x, y, "ce"), k=1, steps=15,
                      generator=torch.Generator().manual_seed(1))
    assert float(short[0]) == pytest.approx(float(eig[0]), rel=1e-8)


def test_filter_scaled_sharpness_is_dhd_and_invariant_to_dinh_rescaling():
    model, x, y = _tiny(5)
    scales = S.filter_scales(model)
    assert torch.count_nonzero(scales[1]) == 0 and torch.count_nonzero(scales[3]) == 0
    torch.testing.assert_close(scales[0][:, 0], model[0].weight.detach().norm(dim=1))
    d = torch.cat([s.reshape(-1) for s in scales])
    hess = S.explicit_hessian(model, lambda m: S.full_loss(m, x, y))
    dhd = torch.linalg.eigvalsh(d[:, None] * hess * d[None, :])
    top = float(dhd[dhd.abs().argmax()])
    lam = S.lanczos(model, lambda: S.full_loss(model, x, y), k=1, steps=26, scale=scales)
    assert float(lam[0]) == pytest.approx(float(dhd[-1]), rel=1e-8)
    p_lam, _ = S.top_eigenvalue(model, lambda: S.full_loss(model, x, y), iters=3000, tol=1e-13,
                                scale=scales, generator=torch.Generator().manual_seed(0))
    assert p_lam == pytest.approx(top, rel=1e-6)
    big = S.dinh_rescale(model, 7.0)
    raw0 = S.lanczos(model, lambda: S.full_loss(model, x, y), steps=26)[0]
    raw1 = S.lanczos(big, lambda: S.full_loss(big, x, y), steps=26)[0]
    f1 = S.lanczos(big, lambda: S.full_loss(big, x, y), steps=26, scale=S.filter_scales(big))[0]
    assert float(raw1) > 10 * float(raw0)
    assert float(f1) == pytest.approx(float(lam[0]), rel=1e-8)


def test_lanczos_bad_input():
    model, x, y = _tiny()
    loss = lambda: S.full_loss(model, x, y)
    with pytest.raises(ValueError, match="k <= steps"):
        S.lanczos(model, loss, k=5, steps=3)
    with pytest.raises(ValueError, match="k <= steps"):
        S.lanczos(model, loss, steps=1000)
    with pytest.raises(ValueError, match="no trainable parameters"):
        S.lanczos(nn.ReLU(), lambda: torch.tensor(0.0))
    with pytest.raises(ValueError, match="scale"):
        S.top_eigenvalue(model, loss, scale=[torch.ones(2)])


def test_lanczos_and_power_iteration_share_the_start_vector_and_lanczos_is_never_worse():
    # the chapter's comparison: same seed, same start vector; then the top Ritz value after
    # m products is the largest Rayleigh quotient over K_m, which contains H^{m-1} v
    model, x, y = _tiny(6)
    loss = lambda: S.full_loss(model, x, y, "ce")
    lam1, _ = S.top_eigenvalue(model, loss, iters=1, tol=0.0,
                               generator=torch.Generator().manual_seed(3))
    ritz1 = S.lanczos(model, loss, steps=1, generator=torch.Generator().manual_seed(3))
    assert float(ritz1[0]) == pytest.approx(lam1, rel=1e-12)
    top = float(torch.linalg.eigvalsh(
        S.explicit_hessian(model, lambda m: S.full_loss(m, x, y, "ce")))[-1])
    for m in range(1, 12):
        lam, _ = S.top_eigenvalue(model, loss, iters=m, tol=0.0,
                                  generator=torch.Generator().manual_seed(3))
        ritz = float(S.lanczos(model, loss, steps=m,
                               generator=torch.Generator().manual_seed(3))[0])
        assert lam - 1e-12 <= ritz <= top + 1e-12


def test_filter_sharpness_is_not_invariant_to_a_per_neuron_rescaling():
    model, x, y = _tiny(5)
    c = torch.tensor([1.0, 5.0, 0.2, 3.0], dtype=torch.float64)
    per_neuron = S.dinh_rescale(model, c)
    torch.testing.assert_close(per_neuron(x), model(x))

    def dhd(m):
        return float(S.lanczos(m, lambda: S.full_loss(m, x, y), steps=26,
                               scale=S.filter_scales(m))[0])

    assert dhd(S.dinh_rescale(model, 7.0)) == pytest.approx(dhd(model), rel=1e-8)
    assert abs(dhd(per_neuron) / dhd(model) - 1) > 0.1
    with pytest.raises(ValueError, match="hidden-unit"):
        S.dinh_rescale(model, torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        S.dinh_rescale(model, torch.tensor([1.0, -1.0, 1.0, 1.0]))
