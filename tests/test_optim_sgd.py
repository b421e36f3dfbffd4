"""nntrain.optim.SGD and its pure rule against torch.optim.SGD (chapter 2, «Стохастический градиентный спуск»)."""

import itertools
import math

import pytest
import torch

from nntrain.optim import SGD, compare_step_time, heavy_ball_update, sgd_step_, sgd_update

STEPS = 50


def _combos():
    """Every valid combination of the options (dampening and Nesterov only where torch allows them)."""
    out = []
    for momentum, dampening, nesterov, wd, maximize in itertools.product(
            (0.0, 0.9), (0.0, 0.5), (False, True), (0.0, 0.1), (False, True)):
        if nesterov and (momentum == 0.0 or dampening != 0.0):
            continue
        out.append(dict(momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=wd, maximize=maximize))
    return out


COMBOS = _combos()


class _Net(torch.nn.Module):
    """Two layers plus a parameter that never gets a gradient (its .grad stays None)."""

    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(6, 8)
        self.l2 = torch.nn.Linear(8, 3)
        self.unused = torch.nn.Parameter(torch.randn(4))

    def forward(self, x):
        return self.l2(torch.tanh(self.l1(x)))


def _pair(seed=0):
    torch.manual_seed(seed)
    a = _Net().double()
    b = _Net().double()
    b.load_state_dict(a.state_dict())
    return a, b


def _loss(net, step):
    g = torch.Generator().manual_seed(step)
    x = torch.randn(16, 6, generator=g, dtype=torch.float64)
    y = torch.randn(16, 3, generator=g, dtype=torch.float64)
    # bounded loss so that maximize does not blow up over many steps
    return torch.sigmoid(net(x) - y).pow(2).mean()


def _run(net, opt, steps=STEPS):
    for k in range(steps):
        opt.zero_grad()
        _loss(net, k).backward()
        opt.step()


@pytest.mark.parametrize("opts", COMBOS, ids=[str(sorted(c.items())) for c in COMBOS])
def test_same_trajectory_as_torch(opts):
    """Float64, STEPS steps, both of torch's implementations (foreach and the per-tensor loop)."""
    lr = 0.05
    ours, _ = _pair()
    _run(ours, SGD(ours.parameters(), lr=lr, **opts))
    for foreach in (True, False):
        _, ref = _pair()
        _run(ref, torch.optim.SGD(ref.parameters(), lr=lr, foreach=foreach, **opts))
        for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
            assert torch.allclose(p, q, rtol=0, atol=1e-12), (name, foreach)
        assert ours.unused.grad is None
        assert torch.equal(ours.unused, ref.unused)


def test_none_grad_parameters_keep_no_state():
    net, _ = _pair()
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9)
    _run(net, opt, steps=3)
    assert net.unused not in opt.state or "momentum_buffer" not in opt.state[net.unused]
    assert "momentum_buffer" in opt.state[net.l1.weight]


def test_param_groups_with_own_options():
    ours, ref = _pair()
    groups = lambda m: [{"params": m.l1.parameters(), "lr": 0.02, "momentum": 0.5},  # noqa: E731
                        {"params": list(m.l2.parameters()) + [m.unused], "weight_decay": 0.1, "nesterov": True}]
    _run(ours, SGD(groups(ours), lr=0.05, momentum=0.9))
    _run(ref, torch.optim.SGD(groups(ref), lr=0.05, momentum=0.9))
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-12)


def test_mixed_dtypes_in_one_group():
    torch.manual_seed(1)
    ps = [torch.randn(3, dtype=torch.float64, requires_grad=True), torch.randn(2, 2, dtype=torch.float32, requires_grad=True)]
    qs = [p.detach().clone().requires_grad_() for p in ps]
    opt_a, opt_b = SGD(ps, lr=0.1, momentum=0.9), torch.optim.SGD(qs, lr=0.1, momentum=0.9)
    for _ in range(10):
        for xs, opt in ((ps, opt_a), (qs, opt_b)):
            opt.zero_grad()
            sum((x.double() ** 2).sum() for x in xs).backward()
            opt.step()
    for p, q in zip(ps, qs):
        assert p.dtype == q.dtype and torch.equal(p, q)


def test_state_dict_round_trip_and_exchange_with_torch():
    ours, ref = _pair()
    opts = dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.1)
    a = SGD(ours.parameters(), **opts)
    b = torch.optim.SGD(ref.parameters(), **opts)
    _run(ours, a, steps=5)
    _run(ref, b, steps=5)
    # our state goes into a fresh torch optimizer and torch's into a fresh one of ours
    a2 = torch.optim.SGD(ours.parameters(), **opts)
    a2.load_state_dict(a.state_dict())
    b2 = SGD(ref.parameters(), **opts)
    b2.load_state_dict(b.state_dict())
    for k in range(5, 20):
        for net, opt in ((ours, a2), (ref, b2)):
            opt.zero_grad()
            _loss(net, k).backward()
            opt.step()
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-12)


def test_closure_returns_loss():
    net, _ = _pair()
    opt = SGD(net.parameters(), lr=0.1)

    def closure():
        opt.zero_grad()
        loss = _loss(net, 0)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0


@pytest.mark.parametrize("opts", COMBOS, ids=[str(sorted(c.items())) for c in COMBOS])
def test_pure_function_matches_the_optimizer(opts):
    torch.manual_seed(2)
    p0 = torch.randn(5, dtype=torch.float64)
    p = p0.clone().requires_grad_()
    opt = SGD([p], lr=0.1, **opts)
    x, buf = p0.clone(), None
    for k in range(STEPS):
        g = torch.sin(x * (k + 1))  # any sequence of gradients that depends on the point
        x_before = x.clone()
        x, buf = sgd_update(x, g, buf, lr=0.1, **opts)
        assert torch.equal(x_before, x_before)  # inputs are not modified (checked below as well)
        p.grad = torch.sin(p.detach() * (k + 1))
        opt.step()
        assert torch.allclose(x, p.detach(), rtol=0, atol=1e-13)
    assert (buf is None) == (opts["momentum"] == 0.0)


def test_pure_function_does_not_modify_its_inputs():
    p, g, b = torch.ones(3), torch.full((3,), 2.0), torch.full((3,), 3.0)
    new_p, new_b = sgd_update(p, g, b, lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True)
    assert torch.equal(p, torch.ones(3)) and torch.equal(g, torch.full((3,), 2.0)) and torch.equal(b, torch.full((3,), 3.0))
    # by hand: d = 2 + 0.1·1 = 2.1; b = 0.9·3 + 2.1 = 4.8; u = 2.1 + 0.9·4.8 = 6.42; p = 1 − 0.642
    assert torch.allclose(new_b, torch.full((3,), 4.8))
    assert torch.allclose(new_p, torch.full((3,), 1 - 0.642))


def test_first_step_buffer_is_not_dampened():
    _, b = sgd_update(torch.zeros(2), torch.ones(2), None, lr=0.1, momentum=0.9, dampening=0.5)
    assert torch.equal(b, torch.ones(2))
    _, b2 = sgd_update(torch.zeros(2), torch.ones(2), b, lr=0.1, momentum=0.9, dampening=0.5)
    assert torch.allclose(b2, torch.full((2,), 0.9 + 0.5))


def test_optimizer_does_not_touch_grad_with_nesterov():
    p = torch.ones(3, requires_grad=True)
    p.grad = torch.ones(3)
    opt = SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    opt.step()
    opt.step()
    assert torch.equal(p.grad, torch.ones(3))


def test_heavy_ball_equals_torch_convention_up_to_rescaling():
    """v = −α·b: the physics form and PyTorch's form give the same points for a constant step."""
    lr, beta = 0.1, 0.8
    x_hb = x_t = torch.tensor([3.0, -1.0], dtype=torch.float64)
    v, b = torch.zeros(2, dtype=torch.float64), None
    scales = torch.tensor([1.0, 10.0], dtype=torch.float64)
    for _ in range(100):
        x_hb, v = heavy_ball_update(x_hb, v, scales * x_hb, lr=lr / 10, beta=beta)
        x_t, b = sgd_update(x_t, scales * x_t, b, lr=lr / 10, momentum=beta)
        assert torch.allclose(x_hb, x_t, atol=1e-12)
        assert torch.allclose(v, -(lr / 10) * b, atol=1e-12)


def test_step_on_empty_or_gradless_groups_is_a_no_op():
    p = torch.ones(2, requires_grad=True)
    opt = SGD([p], lr=0.1, momentum=0.9)
    opt.step()
    assert torch.equal(p, torch.ones(2)) and len(opt.state) == 0


@pytest.mark.parametrize("bad, match", [
    (dict(lr=-0.1), "learning rate"),
    (dict(lr=float("nan")), "finite"),
    (dict(lr=float("inf")), "finite"),
    (dict(lr=0.1, momentum=-0.5), "momentum"),
    (dict(lr=0.1, weight_decay=-1.0), "weight_decay"),
    (dict(lr=0.1, nesterov=True), "Nesterov"),
    (dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov"),
    (dict(lr=torch.tensor([0.1, 0.2])), "one element"),
])
def test_bad_values_raise_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        SGD([torch.zeros(1, requires_grad=True)], **bad)
    with pytest.raises(ValueError, match=match):
        sgd_update(torch.zeros(1), torch.zeros(1), **bad)


def test_nan_lr_is_refused_although_torch_accepts_it():
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=math.nan)  # torch: no error
    with pytest.raises(ValueError, match="finite"):
        SGD([torch.zeros(1, requires_grad=True)], lr=math.nan)


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(TypeError, match="valid options are .*'lr'.*'momentum'"):
        SGD([torch.zeros(1, requires_grad=True)], lr=0.1, betas=(0.9, 0.99))
    with pytest.raises(TypeError, match="valid options"):
        SGD([{"params": [torch.zeros(1, requires_grad=True)], "mommentum": 0.9}], lr=0.1)


@pytest.mark.parametrize("bad", [dict(lr="0.1"), dict(lr=0.1, nesterov=1), dict(lr=True)])
def test_wrong_types_raise_type_error(bad):
    with pytest.raises(TypeError):
        SGD([torch.zeros(1, requires_grad=True)], **bad)


def test_tensor_lr_is_accepted():
    p = torch.ones(2, requires_grad=True)
    p.grad = torch.ones(2)
    SGD([p], lr=torch.tensor(0.5)).step()
    assert torch.allclose(p.detach(), torch.full((2,), 0.5))


def test_shape_mismatch_and_sparse_grad_errors():
    with pytest.raises(ValueError, match="does not match"):
        sgd_update(torch.zeros(3), torch.zeros(2), lr=0.1)
    with pytest.raises(ValueError, match="same length"):
        sgd_step_([torch.zeros(1)], [], [None], lr=0.1)
    emb = torch.nn.Embedding(5, 2, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(ValueError, match="sparse"):
        SGD(emb.parameters(), lr=0.1).step()


def test_heavy_ball_rejects_bad_beta():
    with pytest.raises(ValueError, match="beta"):
        heavy_ball_update(torch.zeros(1), torch.zeros(1), torch.zeros(1), lr=0.1, beta=1.0)
    with pytest.raises(ValueError, match="learning rate"):
        heavy_ball_update(torch.zeros(1), torch.zeros(1), torch.zeros(1), lr=-0.1, beta=0.5)


def test_compare_step_time_runs_both_and_keeps_them_equal():
    r = compare_step_time(n_params=2_000, repeats=3, warmup=1, width=40)
    assert r["params"] == 40 * 40 + 40
    assert r["identical"] is True
    assert r["ours_s"] > 0 and r["torch_s"] > 0 and r["ratio"] > 0
