"""Tests of nntrain.decay: L2 against decoupled weight decay (chapter 2, «AdamW и затухание весов»)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from nntrain import decay as D


# ------------------------------------------------------------------ Proposition 1: SGD


def test_sgd_l2_equals_decoupled_after_rescaling():
    r = D.sgd_l2_vs_decoupled(decay=1e-3, lr=0.1, steps=60, n_train=256)
    assert r["max_diff"] < 1e-12 * max(1.0, r["scale"])
    # without the rescaling λ' = λ/α the runs part visibly
    assert r["max_diff_naive"] > 1e-4


def test_sgd_equivalence_rejects_bad_input():
    with pytest.raises(ValueError, match="decay"):
        D.sgd_l2_vs_decoupled(decay=1.0, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        D.sgd_l2_vs_decoupled(decay=1e-3, lr=0.0)
    with pytest.raises(ValueError, match="steps"):
        D.sgd_l2_vs_decoupled(decay=1e-3, lr=0.1, steps=0)


# ------------------------------------------------------------------ closed forms


H, C = (1.0, 100.0), (2.0, 2.0)


def test_l2_fixed_point_is_the_ridge_solution():
    x = D.l2_fixed_point(H, C, 1.0)
    h, c = torch.tensor(H, dtype=torch.float64), torch.tensor(C, dtype=torch.float64)
    assert torch.allclose(h * (x - c) + 1.0 * x, torch.zeros(2, dtype=torch.float64), atol=1e-12)
    assert torch.equal(D.l2_fixed_point(H, C, 0.0), c)


@pytest.mark.parametrize("eps", [1e-8, 1e-3, 0.5])
@pytest.mark.parametrize("lam", [0.3, 1.0, 4.0])
def test_decoupled_fixed_point_solves_its_equation(eps, lam):
    h = torch.tensor([0.5, 3.0, 40.0, 2.0], dtype=torch.float64)
    c = torch.tensor([2.0, -1.5, 0.2, -3.0], dtype=torch.float64)
    x = D.decoupled_fixed_point(h, c, lam, eps)
    g = h * (x - c)
    assert torch.allclose(lam * x * (g.abs() + eps), -g, atol=1e-12)
    assert ((x.sign() == c.sign()) & (x.abs() <= c.abs())).all()


def test_decoupled_fixed_point_tends_to_the_box():
    c = torch.tensor([2.0, -2.0, 0.3], dtype=torch.float64)
    h = torch.tensor([1.0, 100.0, 5.0], dtype=torch.float64)
    box = D.decoupled_fixed_point(h, c, 1.0, eps=0.0)
    assert torch.equal(box, torch.tensor([1.0, -1.0, 0.3], dtype=torch.float64))
    assert torch.allclose(D.decoupled_fixed_point(h, c, 1.0, eps=1e-12), box, atol=1e-9)
    assert torch.equal(D.decoupled_fixed_point(h, c, 0.0), c)


def test_closed_forms_reject_bad_input():
    with pytest.raises(ValueError, match="curvature"):
        D.l2_fixed_point((0.0, 1.0), (1.0, 1.0), 0.1)
    with pytest.raises(ValueError, match="same length"):
        D.decoupled_fixed_point((1.0,), (1.0, 2.0), 0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        D.decoupled_fixed_point(H, C, -1.0)
    with pytest.raises(ValueError, match="l2"):
        D.l2_fixed_point(H, C, float("nan"))


def test_adam_l2_trajectory_ends_at_the_ridge_point():
    fn = D.separable_quadratic(H, C)
    t = D.quadratic_trajectory(fn, "adam", (0.0, 0.0), 4000, lr=0.02, weight_decay=1.0)
    assert torch.allclose(t.final, D.l2_fixed_point(H, C, 1.0), atol=1e-3)


def test_adamw_trajectory_ends_at_its_fixed_point():
    fn = D.separable_quadratic(H, C)
    t = D.quadratic_trajectory(fn, "adamw", (0.0, 0.0), 4000, lr=0.02, weight_decay=1.0, betas=(0.9, 0.99),
                               eps=1e-3)
    assert torch.allclose(t.final, D.decoupled_fixed_point(H, C, 1.0, eps=1e-3), atol=1e-3)
    # both coordinates stop at the same place although their curvatures differ a hundredfold
    assert abs(t.final[0] - t.final[1]) < 1e-2


def test_separable_quadratic_gradient():
    fn = D.separable_quadratic(H, C)
    x = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    fn.value(x).backward()
    assert torch.allclose(x.grad, fn.grad(x.detach()))
    with pytest.raises(ValueError, match="two curvatures"):
        D.separable_quadratic((1.0, 2.0, 3.0), (0.0, 0.0, 0.0))


def test_noisy_mean_prediction_and_simulation():
    assert D.decoupled_noisy_mean(1.0, 2.0, 0.0, 1.0) == pytest.approx(1.0, abs=1e-9)
    assert D.decoupled_noisy_mean(1.0, -2.0, 0.0, 1.0) == pytest.approx(-1.0, abs=1e-9)
    sig = [0.3, 3.0]
    sim = D.noisy_stationary_mean("adamw", 1.0, 1.0, sig, 0.5, steps=3000, replicas=100)
    pred = [D.decoupled_noisy_mean(1.0, 1.0, s, 0.5) for s in sig]
    assert np.allclose(sim, pred, rtol=0.03)
    l2 = D.noisy_stationary_mean("adam", 1.0, 1.0, sig, 0.5, steps=3000, replicas=100)
    assert np.allclose(l2, 1 / 1.5, rtol=0.02)  # the ridge point for every noise level
    with pytest.raises(ValueError, match="sigmas"):
        D.noisy_stationary_mean("adamw", 1.0, 1.0, [-1.0], 0.5)


# ------------------------------------------------------------------ the grid


def test_replicas_train_like_separate_networks():
    """One optimizer over the stacked replicas gives what separate optimizers give (float64)."""
    from nntrain.optim import AdamW

    torch.manual_seed(0)
    X, y = torch.randn(40, 5, dtype=torch.float64), torch.randint(0, 3, (40,))
    seeds = [3, 7]
    joint = D.ReplicaMLP([5, 6, 3], seeds).double()
    alone = [D.ReplicaMLP([5, 6, 3], [s]).double() for s in seeds]
    for a, s in zip(alone, range(2)):
        for p, q in zip(a.parameters(), joint.parameters()):
            assert torch.equal(p[0], q[s])
    opts = [AdamW(D.decay_groups(m, 0.1), lr=1e-2) for m in [joint, *alone]]
    for k in range(20):
        idx = torch.stack([torch.arange(8) + 8 * ((k + s) % 5) for s in range(2)])
        for m, opt, rows in [(joint, opts[0], idx), (alone[0], opts[1], idx[:1]), (alone[1], opts[2], idx[1:])]:
            loss = nn.functional.cross_entropy(m(X[rows]).reshape(-1, 3), y[rows].reshape(-1), reduction="sum") / 8
            opt.zero_grad()
            loss.backward()
            opt.step()
    for s, a in enumerate(alone):
        for p, q in zip(a.parameters(), joint.parameters()):
            assert torch.allclose(p[0], q[s], rtol=0, atol=1e-13)


def test_decay_groups_split_matrices_from_vectors():
    mlp = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    decay, keep = D.decay_groups(mlp, 0.1)
    assert [p.shape for p in decay["params"]] == [(3, 4), (2, 3)]
    assert len(keep["params"]) == 4 and keep["weight_decay"] == 0.0
    rep = D.ReplicaMLP([4, 3, 2], [0, 1])
    decay, keep = D.decay_groups(rep, 0.1)
    assert [p.shape for p in decay["params"]] == [(2, 4, 3), (2, 3, 2)]
    assert [p.shape for p in keep["params"]] == [(2, 1, 3), (2, 1, 2)]


@pytest.fixture(scope="module")
def splits():
    return D.digits_splits(200)


def test_grid_runs_small(splits):
    runs = D.grid_runs("adamw", [1e-2, 3e-2], [0.0, 0.1], [0, 1], splits=splits, steps=20, progress=False)
    assert len(runs) == 8
    assert {(r.lr, r.weight_decay, r.seed) for r in runs} == {(a, b, s) for a in (1e-2, 3e-2) for b in (0.0, 0.1)
                                                            for s in (0, 1)}
    mean, half = D.grid_table(runs, [1e-2, 3e-2], [0.0, 0.1], "val_loss")
    assert mean.shape == (2, 2) and np.isfinite(mean).all() and np.isfinite(half).all()
    # different seeds are different runs
    assert runs[0].metrics["val_loss"] != runs[1].metrics["val_loss"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="sgd"), "method"),
    (dict(lrs=[]), "lrs"),
    (dict(lrs=[-1e-3]), "lr"),
    (dict(lrs=[1e-3, 1e-3]), "repeated"),
    (dict(weight_decays=[-0.1]), "weight decay"),
    (dict(weight_decays=[float("inf")]), "weight decay"),
    (dict(seeds=[0, -1]), "seed"),
    (dict(seeds=[]), "seeds"),
    (dict(steps=0), "steps"),
])
def test_grid_runs_rejects_bad_input(splits, kwargs, match):
    args = dict(method="adam", lrs=[1e-3], weight_decays=[0.0], seeds=[0])
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in args}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        D.grid_runs(args["method"], args["lrs"], args["weight_decays"], args["seeds"], splits=splits,
                    progress=False, **extra)


def test_grid_runs_needs_all_splits(splits):
    with pytest.raises(ValueError, match="splits"):
        D.grid_runs("adam", [1e-3], [0.0], [0], splits={"train": splits["train"]}, progress=False)
    with pytest.raises(ValueError, match="validation"):
        D.digits_splits(5000)


def test_grid_summaries():
    lrs, wds = [1e-3, 1e-2, 1e-1], [0.0, 0.1, 1.0, 10.0]
    mean = np.array([[3, 2, 1, 4], [3, 1, 2, 4], [3, 0.5, 2, 4]], dtype=float)
    best = D.best_cell(mean, lrs, wds)
    assert (best["lr"], best["weight_decay"]) == (1e-1, 0.1) and best["lr_edge"] and not best["wd_edge"]
    assert D.best_cell(-mean, lrs, wds, maximize=True)["value"] == -0.5
    # best positive λ per row: 1, 0.1, 0.1 against lr 1e-3, 1e-2, 1e-1: slope −0.5; constant best λ: slope 0
    assert D.row_best_decays(mean, wds) == [1.0, 0.1, 0.1]
    assert D.best_decay_slope(mean, lrs, wds) == pytest.approx(-0.5)
    assert D.best_decay_slope(np.array([[1, 0, 1, 2]] * 3, dtype=float), lrs, wds) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="grid"):
        D.best_cell(mean[:, :2], lrs, wds)
    with pytest.raises(ValueError, match="positive"):
        D.row_best_decays(mean[:, :1], [0.0])
    with pytest.raises(ValueError, match="no run"):
        D.grid_table([D.GridRun("adam", 1e-3, 0.0, 0, {"val_loss": 1.0})], [1e-3, 1e-2], [0.0], "val_loss")
    with pytest.raises(ValueError, match="one method"):
        D.grid_table([D.GridRun("adam", 1e-3, 0.0, 0, {}), D.GridRun("adamw", 1e-3, 0.0, 0, {})], [1e-3], [0.0], "x")


def test_paired_cell_gap():
    runs_a = [D.GridRun("adam", 1e-2, 0.1, s, {"m": v}) for s, v in enumerate([1.0, 2.0, 3.0])]
    runs_b = [D.GridRun("adamw", 1e-2, 0.0, s, {"m": v}) for s, v in enumerate([0.5, 1.5, 2.5])]
    mean, half, n = D.paired_cell_gap(runs_a, (1e-2, 0.1), runs_b, (1e-2, 0.0), "m")
    assert (mean, half, n) == (pytest.approx(0.5), pytest.approx(0.0, abs=1e-12), 3)
    assert set(D.cell_runs(runs_a, 1e-2, 0.1)) == {0, 1, 2}
    with pytest.raises(ValueError, match="no run"):
        D.cell_runs(runs_a, 1e-3, 0.1)
    with pytest.raises(ValueError, match="no seed"):
        D.paired_cell_gap(runs_a, (1e-2, 0.1), [D.GridRun("adamw", 1e-2, 0.0, 9, {"m": 0.0})], (1e-2, 0.0), "m")


# ------------------------------------------------------------------ what λ means


def test_decay_factor_constant_and_cosine():
    r = D.decay_factor(1e-3, 0.1, [1.0] * 10_000)
    assert r["product"] == pytest.approx((1 - 1e-4) ** 10_000, rel=1e-12)
    assert r["approx"] == pytest.approx(math.exp(-1.0)) and r["efolds"] == pytest.approx(1.0)
    cos = D.cosine_factors(1000)
    assert cos[0] == 1.0 and sum(cos) == pytest.approx(500.0, abs=1.0)
    assert D.decay_factor(1e-3, 0.1, cos)["efolds"] == pytest.approx(1e-4 * sum(cos))
    with pytest.raises(ValueError, match="below 1"):
        D.decay_factor(1.0, 2.0, [1.0])
    with pytest.raises(ValueError, match="factors"):
        D.decay_factor(1e-3, 0.1, [])


def test_normalized_weight_decay():
    assert D.normalized_weight_decay(0.05, 128, 50_000, 100) == pytest.approx(0.05 * math.sqrt(128 / 5e6))
    with pytest.raises(ValueError, match="batch_size"):
        D.normalized_weight_decay(0.05, 0, 50_000, 100)


def test_decay_split_can_exclude_embeddings():
    from nntrain import models

    gpt = models.GPT(models.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    decay, keep = D.decay_split(gpt)
    assert "transformer.wte.weight" in decay and "transformer.h.0.ln_1.weight" in keep
    decay, keep = D.decay_split(gpt, exclude_embeddings=True)
    assert {"transformer.wte.weight", "transformer.wpe.weight"} <= set(keep)
    assert all(n.endswith("weight") and ".ln_" not in n for n in decay)
    with pytest.raises(TypeError, match="exclude_embeddings"):
        D.decay_split(gpt, exclude_embeddings=1)


def test_schedule_factors():
    f = D.schedule_factors(1000, warmup=100, floor=0.1)
    assert len(f) == 1000 and f[0] == pytest.approx(0.01) and f[99] == 1.0
    # after the warmup the cosine starts from the peak and runs over the remaining 900 steps
    assert f[100] == 1.0 and f[100 + 450] == pytest.approx(0.55)
    assert max(f) <= 1.0 and f[-1] == pytest.approx(0.1, abs=1e-4)
    assert D.cosine_factors(4) == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5,
                                                 0.5 * (1 + math.cos(3 * math.pi / 4))])
    with pytest.raises(ValueError, match="warmup"):
        D.schedule_factors(10, warmup=10)
    with pytest.raises(ValueError, match="floor"):
        D.schedule_factors(10, floor=2.0)
