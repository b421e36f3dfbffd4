"""Every schedule of nntrain.schedules equals its torch.optim.lr_scheduler counterpart step for step."""

import itertools
import math
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as L

from nntrain import schedules as S

TOL = 1e-12


def torch_lrs(make, steps, lr):
    """The lr an optimizer sees at iterations 0..steps when driven by make(optimizer)."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make(opt)
        out = []
        for _ in range(steps + 1):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return out


def max_rel_err(ours, theirs):
    return max(abs(a - b) / b for a, b in zip(ours, theirs))


@pytest.mark.parametrize("lr,step_size,gamma", list(itertools.product([0.1, 3.0], [1, 7, 30], [0.1, 0.5, 1.0])))
def test_step(lr, step_size, gamma):
    K = 120
    ref = torch_lrs(lambda o: L.StepLR(o, step_size, gamma), K, lr)
    assert max_rel_err([S.step(k, lr, step_size, gamma) for k in range(K + 1)], ref) < TOL


@pytest.mark.parametrize("lr,gamma", list(itertools.product([0.1, 3.0], [0.9, 0.99, 1.0])))
def test_exponential(lr, gamma):
    K = 300
    ref = torch_lrs(lambda o: L.ExponentialLR(o, gamma), K, lr)
    assert max_rel_err([S.exponential(k, lr, gamma) for k in range(K + 1)], ref) < 1e-11


@pytest.mark.parametrize("lr,warmup,start", list(itertools.product([0.1, 3.0], [1, 5, 50], [0.01, 0.25, 1.0])))
def test_linear_warmup(lr, warmup, start):
    K = 120
    ref = torch_lrs(lambda o: L.LinearLR(o, start_factor=start, end_factor=1.0, total_iters=warmup), K, lr)
    assert max_rel_err([S.linear_warmup(k, lr, warmup, start) for k in range(K + 1)], ref) < TOL


@pytest.mark.parametrize("lr,total,lr_min", list(itertools.product([0.1, 3.0], [1, 10, 200], [0.0, 0.01])))
def test_cosine(lr, total, lr_min):
    ref = torch_lrs(lambda o: L.CosineAnnealingLR(o, T_max=total, eta_min=lr_min), total, lr)
    ours = [S.cosine(k, lr, total, lr_min) for k in range(total + 1)]
    assert max(abs(a - b) for a, b in zip(ours, ref)) < TOL * lr


@pytest.mark.parametrize("lr,period,mult,lr_min",
                         list(itertools.product([0.1, 3.0], [1, 7, 25], [1, 2, 3], [0.0, 0.01])))
def test_cosine_restarts(lr, period, mult, lr_min):
    K = 400
    ref = torch_lrs(lambda o: L.CosineAnnealingWarmRestarts(o, T_0=period, T_mult=mult, eta_min=lr_min), K, lr)
    ours = [S.cosine_restarts(k, lr, period, mult, lr_min) for k in range(K + 1)]
    assert max(abs(a - b) for a, b in zip(ours, ref)) < TOL * lr


@pytest.mark.parametrize("lr,warmup,total,lr_min,start",
                         list(itertools.product([0.1, 3.0], [1, 10, 99], [100, 250], [0.0, 0.01], [0.01, 0.5])))
def test_warmup_cosine_is_sequential_lr(lr, warmup, total, lr_min, start):
    def make(o):
        return L.SequentialLR(o, [L.LinearLR(o, start_factor=start, end_factor=1.0, total_iters=warmup),
                                  L.CosineAnnealingLR(o, T_max=total - warmup, eta_min=lr_min)],
                              milestones=[warmup])
    ref = torch_lrs(make, total, lr)
    ours = [S.warmup_cosine(k, lr, warmup, total, lr_min, start) for k in range(total + 1)]
    assert max(abs(a - b) for a, b in zip(ours, ref)) < TOL * lr


@pytest.mark.parametrize("lr,warmup,decay,lr_min,start",
                         list(itertools.product([0.1, 3.0], [1, 20], [1, 30, 79], [0.0, 0.001], [0.01, 0.5])))
def test_wsd_is_sequential_lr(lr, warmup, decay, lr_min, start):
    total = 100
    def make(o):
        return L.SequentialLR(o, [L.LinearLR(o, start_factor=start, end_factor=1.0, total_iters=warmup),
                                  L.ConstantLR(o, factor=1.0, total_iters=1),
                                  L.LinearLR(o, start_factor=1.0, end_factor=lr_min / lr, total_iters=decay)],
                              milestones=[warmup, total - decay])
    if warmup + decay > total:
        with pytest.raises(ValueError, match="exceeds the run"):
            S.wsd(0, lr, warmup, total, decay, lr_min, start)
        return
    ref = torch_lrs(make, total, lr)
    ours = [S.wsd(k, lr, warmup, total, decay, lr_min, start) for k in range(total + 1)]
    assert max(abs(a - b) for a, b in zip(ours, ref)) < TOL * lr


@pytest.mark.parametrize("d_model,warmup", list(itertools.product([64, 512], [1, 100, 4000])))
def test_inverse_sqrt_is_vaswani(d_model, warmup):
    """LambdaLR with the formula of Vaswani et al. as printed (steps counted from 1)."""
    lr = (d_model * warmup) ** -0.5
    K = 3 * warmup + 10
    ref = torch_lrs(lambda o: L.LambdaLR(
        o, lambda k: d_model ** -0.5 * min((k + 1) ** -0.5, (k + 1) * warmup ** -1.5)), K, 1.0)
    assert max_rel_err([S.inverse_sqrt(k, lr, warmup) for k in range(K + 1)], ref) < TOL
    assert S.inverse_sqrt(warmup - 1, lr, warmup) == pytest.approx(lr)


@pytest.mark.parametrize("name,opts", [
    ("constant", {}), ("step", {"step_size": 10, "gamma": 0.5}), ("exponential", {"gamma": 0.97}),
    ("linear_warmup", {"warmup": 10}), ("inverse_sqrt", {"warmup": 10}), ("cosine", {"total": 50}),
    ("cosine_restarts", {"period": 7, "mult": 2}), ("warmup_cosine", {"warmup": 5, "total": 50}),
    ("wsd", {"warmup": 5, "total": 50, "decay": 10}), ("inverse_time", {"k0": 4.0})])
def test_lambda_lr_adapter(name, opts):
    lr = 0.3
    sched = S.make(name, lr, **opts)
    p, q = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p]}, {"params": [q], "lr": 2 * lr}], lr=lr)
    lam = S.lambda_lr(opt, sched)
    for k in range(51):
        assert opt.param_groups[0]["lr"] == pytest.approx(sched(k), rel=1e-12)
        assert opt.param_groups[1]["lr"] == pytest.approx(2 * sched(k), rel=1e-12)
        opt.step()
        lam.step()
    assert torch.allclose(S.values(sched, 51), torch.tensor([sched(k) for k in range(51)],
                                                           dtype=torch.float64))


@pytest.mark.parametrize("call,match", [
    (lambda: S.constant(0, 0.0), "lr must be a positive"),
    (lambda: S.cosine(0, -1.0, 10), "lr must be a positive"),
    (lambda: S.step(0, math.nan, 3), "lr must be a positive"),
    (lambda: S.warmup_cosine(0, 0.1, 100, 100), "must be shorter than the run"),
    (lambda: S.wsd(0, 0.1, 120, 100, 10), "must be shorter than the run"),
    (lambda: S.wsd(0, 0.1, 50, 100, 60), "exceeds the run"),
    (lambda: S.make("cosin", 0.1, total=10), "unknown schedule 'cosin'"),
    (lambda: S.make("cosine", 0.1), "missing"),
    (lambda: S.cosine(-1, 0.1, 10), "non-negative integer"),
    (lambda: S.step(0, 0.1, 0), "step_size must be a positive integer"),
    (lambda: S.step(0, 0.1, 5, gamma=1.5), r"gamma must lie in \(0, 1\]"),
    (lambda: S.cosine(0, 0.1, 10, lr_min=0.2), r"lr_min must lie in"),
    (lambda: S.cosine_restarts(0, 0.1, 10, mult=0), "mult must be an integer"),
    (lambda: S.linear_warmup(0, 0.1, 10, start_factor=2.0), "start_factor"),
])
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_lambda_lr_rejects_zero_lr():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)
    with pytest.raises(ValueError, match="lr must be positive"):
        S.lambda_lr(opt, S.make("constant", 0.1))


def test_scheduler_lrs_matches_the_local_reference():
    ref = torch_lrs(lambda o: L.StepLR(o, 5, 0.5), 20, 0.3)
    got = S.scheduler_lrs(lambda o: L.StepLR(o, 5, 0.5), 20, 0.3)
    assert got.tolist() == ref


def test_train_classifier_runs_and_decay_helps_on_a_tiny_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 5, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    out = S.train_classifier(S.make("cosine", 0.1, total=200), x, y, x, y, steps=200, batch_size=16)
    assert out["test_acc"] > 0.9 and math.isfinite(out["train_loss"])
    again = S.train_classifier(S.make("cosine", 0.1, total=200), x, y, x, y, steps=200, batch_size=16)
    assert again == out  # seeded
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        S.train_classifier(S.make("constant", 0.1), x, y, x, y, steps=0)


@pytest.mark.parametrize("lr,k0", [(0.1, 1.0), (0.2, 5.0), (3.0, 0.5), (0.05, 100.0)])
def test_inverse_time_is_multiplicative_lr(lr, k0):
    K = 500
    ref = torch_lrs(lambda o: L.MultiplicativeLR(o, lambda k: (k0 + k - 1) / (k0 + k)), K, lr)
    assert max_rel_err([S.inverse_time(k, lr, k0) for k in range(K + 1)], ref) < 1e-11
    with pytest.raises(ValueError, match="k0 must be a positive"):
        S.inverse_time(0, lr, 0.0)


@pytest.mark.parametrize("beta2", [0.99, 0.999])
def test_radam_rectification_is_torch_radam(beta2):
    """With the gradient 1 everywhere m̂ = v̂ = 1, so torch's RAdam step is lr·r_k (lr while ρ_k ≤ 5)."""
    lr, K = 0.1, 400
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.RAdam([p], lr=lr, betas=(0.9, beta2), eps=0.0)
    steps = []
    for _ in range(K):
        p.grad = torch.ones_like(p)
        before = p.detach().clone()
        opt.step()
        steps.append((before - p.detach()).item() / lr)
    rho, r = S.radam_rectification(torch.arange(1, K + 1), beta2)
    expect = torch.where(rho > 5, r, torch.ones_like(r))
    assert torch.allclose(torch.tensor(steps, dtype=torch.float64), expect, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="count from 1"):
        S.radam_rectification(torch.arange(0, 3), beta2)
