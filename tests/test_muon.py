"""nntrain.optim.muon: polar factor, Newton–Schulz, Polar Express, the Muon step and its wrapper."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from nntrain.optim import (CLASSIC_QUINTIC_COEFFICIENTS, JORDAN_COEFFICIENTS, POLAR_EXPRESS_CUSHION, POLAR_EXPRESS_PUBLISHED,
                           Muon,
                           iterate_scalar, muon_flop_overhead, muon_update, newton_schulz, newton_schulz_flops,
                           orthogonalize, polar_express, polar_express_coefficients, polar_factor_svd, shape_scale,
                           split_muon_params)

GRID = np.linspace(1e-3, 1.0, 20001)


def _matrix(rows, cols, seed=0, dtype=torch.float64, cond=None):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(rows, cols, generator=g, dtype=dtype)
    if cond is None:
        return a
    u, _, vh = torch.linalg.svd(a, full_matrices=False)
    s = torch.logspace(0, -np.log10(cond), min(rows, cols), dtype=dtype)
    return u @ torch.diag(s) @ vh


# --------------------------------------------------------------------------- theory


def test_jordan_band():
    y = iterate_scalar(GRID, [JORDAN_COEFFICIENTS] * 50)
    assert round(y.min(), 3) == 0.682 and round(y.max(), 3) == 1.134


def test_worst_case_errors_after_five_steps():
    err = lambda sched: np.abs(iterate_scalar(GRID, sched) - 1).max()  # noqa: E731
    assert round(err([CLASSIC_QUINTIC_COEFFICIENTS] * 5), 3) == 0.977
    assert round(err([JORDAN_COEFFICIENTS] * 5), 3) == 0.529
    assert round(err(polar_express_coefficients(5, 1e-3, 0.0, 0.0)), 3) == 0.113
    assert err(polar_express_coefficients(5)) < 0.14


def test_polar_express_generator_reproduces_published_table():
    """The published table is the ideal schedule (no safety factor) with the cushion 0.02407...."""
    ours = polar_express_coefficients(8, 1e-3, 0.0, POLAR_EXPRESS_CUSHION)
    for mine, pub in zip(ours[:7], POLAR_EXPRESS_PUBLISHED[:7]):
        np.testing.assert_allclose(mine, pub, rtol=1e-7)
    # the rounded cushion 0.02 (the repository's comment) does not reproduce it
    rounded = polar_express_coefficients(8, 1e-3, 0.0, 0.02)
    assert abs(rounded[0][0] - POLAR_EXPRESS_PUBLISHED[0][0]) > 1e-2
    np.testing.assert_allclose(ours[-1], CLASSIC_QUINTIC_COEFFICIENTS, rtol=1e-6)


def test_polar_factor_identities():
    g = _matrix(64, 32)
    o = polar_factor_svd(g)
    torch.testing.assert_close(o.T @ o, torch.eye(32, dtype=torch.float64), atol=1e-12, rtol=0)
    nuclear = torch.linalg.matrix_norm(g, "nuc")
    torch.testing.assert_close((g * o).sum(), nuclear, atol=1e-10, rtol=0)
    # no matrix of spectral norm 1 does better
    t = torch.randn(300, 64, 32, dtype=torch.float64)
    t = t / torch.linalg.matrix_norm(t, 2)[:, None, None]
    assert ((g * t).sum((1, 2)) < nuclear).all()
    # (G G^T)^(-1/4) G (G^T G)^(-1/4), on a square full-rank matrix
    g = _matrix(32, 32, seed=1)
    def mpow(a, p):
        w, v = torch.linalg.eigh(a)
        return v @ torch.diag(w**p) @ v.T
    torch.testing.assert_close(mpow(g @ g.T, -0.25) @ g @ mpow(g.T @ g, -0.25), polar_factor_svd(g), atol=1e-9, rtol=0)


def test_flops():
    assert newton_schulz_flops(768, 768, 1) == 6 * 768**3
    assert newton_schulz_flops(100, 300, 2) == newton_schulz_flops(300, 100, 2) == 2 * (4 * 100**2 * 300 + 2 * 100**3)
    assert round(100 * muon_flop_overhead(768, 524288), 2) == 0.73
    assert round(100 * muon_flop_overhead(16384, 16 * 2**20), 2) == 0.49


# --------------------------------------------------------------------------- matrices


@pytest.mark.parametrize("shape", [(40, 40), (30, 70), (70, 30)])
def test_newton_schulz_singular_values_in_band(shape):
    g = _matrix(*shape, cond=100)
    o = newton_schulz(g, steps=12)
    s = torch.linalg.svdvals(o)
    assert s.min() > 0.68 and s.max() < 1.14
    # same singular vectors as the polar factor: O = U S' V^T with S' in the band
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    s_prime = torch.diagonal(u.T @ o @ vh.T)
    torch.testing.assert_close(u @ torch.diag(s_prime) @ vh, o, atol=1e-9, rtol=0)


@pytest.mark.parametrize("shape", [(40, 40), (30, 70), (70, 30)])
def test_polar_express_error_within_bound(shape):
    g = _matrix(*shape, cond=100)  # sigma_min/sigma_max = 1e-2 >= 1e-3 after normalisation... mostly
    s = torch.linalg.svdvals(polar_express(g, steps=5))
    assert (s - 1).abs().max() < 0.14
    o = polar_express(g, steps=8)
    torch.testing.assert_close(o, polar_factor_svd(g), atol=1e-6, rtol=0)


def test_bfloat16_iterations_stay_in_band():
    g = _matrix(64, 128, dtype=torch.float32, cond=30)
    s = torch.linalg.svdvals(newton_schulz(g, dtype=torch.bfloat16).float())
    assert s.min() > 0.6 and s.max() < 1.25


def test_matches_torch_newton_schulz_in_bfloat16():
    muon_mod = pytest.importorskip("torch.optim._muon")
    ref_fn = getattr(muon_mod, "_zeropower_via_newtonschulz", None)
    if ref_fn is None:
        pytest.skip("this torch has no Newton–Schulz helper")
    for shape in [(32, 48), (48, 32)]:
        g = _matrix(*shape, dtype=torch.float32)
        ref = ref_fn(g, JORDAN_COEFFICIENTS, 5, 1e-7).float()
        ours = newton_schulz(g, dtype=torch.bfloat16)
        torch.testing.assert_close(ours, ref, atol=2e-2, rtol=0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="matrix"):
        newton_schulz(torch.randn(5))
    with pytest.raises(TypeError, match="torch.Tensor"):
        newton_schulz(np.ones((3, 3)))
    with pytest.raises(ValueError, match="method"):
        orthogonalize(torch.randn(3, 3), method="qr")
    with pytest.raises(ValueError, match="steps"):
        polar_express_coefficients(0)
    with pytest.raises(ValueError, match="shape scaling"):
        shape_scale((3, 4), "adam")
    with pytest.raises(ValueError, match="AdamW"):
        muon_update(torch.randn(5), torch.zeros(5))
    with pytest.raises(ValueError, match="adamw_params"):
        Muon([nn.Parameter(torch.randn(4, 4)), nn.Parameter(torch.randn(4))])
    with pytest.raises(ValueError, match="method"):
        Muon([nn.Parameter(torch.randn(4, 4))], method="cholesky")


# --------------------------------------------------------------------------- the optimizer


def test_buffer_conventions_give_the_same_direction():
    """torch's docs write B = mu B + g; Jordan's code uses an EMA. Normalisation removes the factor."""
    mu = 0.9
    gs = [_matrix(20, 30, seed=s) for s in range(5)]
    ema, plain = torch.zeros(20, 30, dtype=torch.float64), torch.zeros(20, 30, dtype=torch.float64)
    for g in gs:
        ema = mu * ema + (1 - mu) * g
        plain = mu * plain + g
        torch.testing.assert_close(newton_schulz(g.lerp(ema, mu), eps=0), newton_schulz(g + mu * plain, eps=0),
                                   atol=1e-12, rtol=0)


def _train(opt_factory, steps=15, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x = torch.randn(64, 6, dtype=torch.float64)
    y = torch.randn(64, 3, dtype=torch.float64)
    opt = opt_factory(model)
    for _ in range(steps):
        for o in opt:
            o.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        for o in opt:
            o.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("nesterov,wd,scaling", list(itertools.product([True, False], [0.0, 0.1],
                                                                        ["original", "match_rms_adamw"])))
def test_muon_matches_torch_muon_in_float64(monkeypatch, nesterov, wd, scaling):
    """torch.optim.Muon with its bf16 Newton–Schulz swapped for ours in float64: every step agrees."""
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("torch.optim.Muon is not in this torch (added in 2.9)")
    muon_mod = pytest.importorskip("torch.optim._muon")
    if not hasattr(muon_mod, "_zeropower_via_newtonschulz"):
        pytest.skip("this torch has no private Newton–Schulz helper to swap (the bf16 test still runs)")
    monkeypatch.setattr(muon_mod, "_zeropower_via_newtonschulz",
                        lambda g, coeffs, steps, eps: newton_schulz(g, steps, coeffs, eps))
    kw = dict(lr=0.02, momentum=0.9, nesterov=nesterov, weight_decay=wd)

    def ours(model):
        muon, adamw = split_muon_params(model)
        return [Muon(muon, shape_scaling=scaling, **kw), torch.optim.AdamW(adamw, lr=1e-3)]

    def ref(model):
        muon, adamw = split_muon_params(model)
        return [torch.optim.Muon(muon, adjust_lr_fn=scaling, **kw), torch.optim.AdamW(adamw, lr=1e-3)]

    for a, b in zip(_train(ours), _train(ref)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("scaling", ["original", "match_rms_adamw"])
def test_muon_matches_torch_muon_public_api_in_bfloat16(scaling):
    """Only the public torch.optim.Muon (bf16 iterations inside) against ours with dtype=bfloat16."""
    if not hasattr(torch.optim, "Muon"):
        pytest.skip("torch.optim.Muon is not in this torch (added in 2.9)")

    def float_train(opt_factory):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
        x, y = torch.randn(64, 6), torch.randn(64, 3)
        opts = opt_factory(model)
        for _ in range(15):
            for o in opts:
                o.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            for o in opts:
                o.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    kw = dict(lr=0.02, momentum=0.95, weight_decay=0.1)
    a = float_train(lambda m: [Muon(split_muon_params(m)[0], dtype=torch.bfloat16, shape_scaling=scaling, **kw),
                               torch.optim.AdamW(split_muon_params(m)[1], lr=1e-3)])
    b = float_train(lambda m: [torch.optim.Muon(split_muon_params(m)[0], adjust_lr_fn=scaling, **kw),
                               torch.optim.AdamW(split_muon_params(m)[1], lr=1e-3)])
    assert (a - b).abs().max() < 1e-5


def test_auxiliary_adamw_group_matches_torch_adamw():
    kw = dict(betas=(0.9, 0.95), eps=1e-8)

    def ours(model):
        muon, adamw = split_muon_params(model)
        return [Muon(muon, lr=0.01, adamw_params=adamw, adamw_lr=1e-3, adamw_weight_decay=0.1,
                     adamw_betas=kw["betas"], adamw_eps=kw["eps"])]

    def ref(model):
        muon, adamw = split_muon_params(model)
        return [Muon(muon, lr=0.01), torch.optim.AdamW(adamw, lr=1e-3, weight_decay=0.1, **kw)]

    for a, b in zip(_train(ours), _train(ref)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_split_muon_params():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.hidden = nn.Linear(8, 8)
            self.norm = nn.LayerNorm(8)
            self.out = nn.Linear(8, 10, bias=False)
            self.out.weight = self.emb.weight  # tied

    m = Tiny()
    muon, adamw = split_muon_params(m)
    assert [p.shape for p in muon] == [torch.Size([8, 8])]
    assert len(adamw) == 4  # embedding (tied head), hidden bias, norm weight and bias
    muon2, _ = split_muon_params(nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 6), nn.Linear(6, 2)), head="2")
    assert [p.shape for p in muon2] == [torch.Size([5, 4]), torch.Size([6, 5])]
    with pytest.raises(ValueError, match="no module named"):
        split_muon_params(m, head="lm_head")


def test_conv_filters_are_flattened():
    g = _matrix(8, 3 * 3 * 3).reshape(8, 3, 3, 3)
    upd = muon_update(g, torch.zeros_like(g), method="svd", momentum=0.0)
    flat = upd.direction.reshape(8, -1)
    torch.testing.assert_close(flat @ flat.T, torch.eye(8, dtype=torch.float64), atol=1e-10, rtol=0)


def test_update_rms_matches_shape_scaling():
    for rows, cols in [(64, 256), (256, 64)]:
        upd = muon_update(_matrix(rows, cols), torch.zeros(rows, cols, dtype=torch.float64), method="svd")
        rms = upd.direction.pow(2).mean().sqrt().item()
        assert abs(rms - 1 / np.sqrt(cols)) < 1e-9
        upd = muon_update(_matrix(rows, cols), torch.zeros(rows, cols, dtype=torch.float64), method="svd",
                          shape_scaling="match_rms_adamw")
        assert abs(upd.direction.pow(2).mean().sqrt().item() - 0.2) < 1e-9


# --------------------------------------------------------------------------- norms and LMOs (nntrain.norms)


@pytest.mark.parametrize("kind", ["l1", "l2", "linf", "spectral", "frobenius", "nuclear"])
def test_lmo_identity_and_optimality(kind):
    from nntrain.norms import dual_norm, lmo, norm

    g = _matrix(6, 4, seed=3)
    d = lmo(g, kind)
    torch.testing.assert_close(norm(d, kind), torch.tensor(1.0, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close((g * d).sum(), -dual_norm(g, kind), atol=1e-12, rtol=0)
    t = torch.randn(300, 6, 4, dtype=torch.float64)
    values = torch.stack([(g * (x / norm(x, kind))).sum() for x in t])
    assert (values >= (g * d).sum() - 1e-12).all()


def test_norm_helpers_errors_and_steps():
    from nntrain.norms import lmo, steepest_descent_step, unit_sphere_2d

    g = torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(steepest_descent_step(g, "l2", 0.1), -0.1 * g)
    torch.testing.assert_close(steepest_descent_step(g, "linf", 0.1, normalized=True), -0.1 * g.sign())
    x, y = unit_sphere_2d("l1")
    torch.testing.assert_close(x.abs() + y.abs(), torch.ones_like(x))
    with pytest.raises(ValueError, match="unknown norm"):
        lmo(g, "l3")
    with pytest.raises(ValueError, match="matrices"):
        lmo(g, "spectral")
    with pytest.raises(ValueError, match="zero gradient"):
        lmo(torch.zeros(3), "l2")


def test_split_muon_params_input_layer():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    muon, adamw = split_muon_params(model)
    assert [tuple(p.shape) for p in muon] == [(16, 8), (16, 16)]               # default: only the head is kept out
    muon, adamw = split_muon_params(model, input_layer=True)
    assert [tuple(p.shape) for p in muon] == [(16, 16)]                        # Jordan: first layer on AdamW too
    assert sorted(tuple(p.shape) for p in adamw if p.ndim == 2) == [(3, 16), (16, 8)]
    assert [tuple(p.shape) for p in split_muon_params(model, input_layer="2")[0]] == [(16, 8)]
    conv = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8, 2))
    assert [tuple(p.shape) for p in split_muon_params(conv, input_layer=True)[0]] == [(8, 8, 3, 3)]
    with pytest.raises(ValueError):
        split_muon_params(model, input_layer="nope")
