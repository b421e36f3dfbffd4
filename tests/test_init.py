"""Tests of nntrain.init (chapter 11, «Инициализация весов»)."""

import math

import pytest
import torch
from torch import nn

from nntrain import init


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("activation", ["relu", "linear"])
@pytest.mark.parametrize("name", ["he_normal", "he_uniform", "xavier_normal", "torch_default"])
def test_forward_second_moment_matches_derivation_within_sampling_error(activation, name):
    # Theorem of the chapter: E[q_ℓ] is exactly the product formula (zero-mean symmetric weights).
    depth, width, seeds = 8, 128, 24
    x = torch.randn(128, width, generator=_gen(9001), dtype=torch.float64)
    measured = []
    for s in range(seeds):
        net = init.plain_mlp([width] * (depth + 1), activation, bias=False).double()
        init.init_mlp_(net, name, _gen(s))
        measured.append(init.layer_stats(net, x).preact)
    m = torch.tensor(measured)  # seeds × layers
    vars_ = [init.variance(name, width, width)] * depth
    pred = torch.tensor(init.predicted_second_moments(net, activation, x, weight_vars=vars_))
    mean, se = m.mean(0), m.std(0) / math.sqrt(seeds)
    assert torch.all((mean - pred).abs() <= 4 * se + 1e-12), (mean / pred)


def test_he_keeps_relu_second_moment_constant_and_torch_default_shrinks_it():
    width = 256
    x = torch.randn(256, width, generator=_gen(9002), dtype=torch.float64)
    net = init.plain_mlp([width] * 11, "relu", bias=False).double()
    init.init_mlp_(net, "he_normal", _gen(0))
    q = init.predicted_second_moments(net, "relu", x, [2 / width] * 10)
    assert q[-1] == pytest.approx(q[1], rel=1e-12)
    qd = init.predicted_second_moments(net, "relu", x, [1 / (3 * width)] * 10)
    assert qd[-1] / qd[0] == pytest.approx(6.0 ** -9, rel=1e-9)


def test_backward_recursion_is_close_for_relu():
    width, depth = 256, 10
    x = torch.randn(256, width, generator=_gen(9003), dtype=torch.float64)
    ratios = []
    for s in range(6):
        net = init.plain_mlp([width] * (depth + 1), "relu", bias=False).double()
        init.init_mlp_(net, "he_normal", _gen(s))
        st = init.layer_stats(net, x, seed=s)
        pred = init.predicted_grad_moments(net, "relu", x)
        ratios.append([a / b for a, b in zip(st.grad, pred)])
    mean_ratio = torch.tensor(ratios).mean(0)
    assert torch.all((mean_ratio - 1).abs() < 0.25), mean_ratio


def test_tanh_quadrature_small_q_is_linear():
    m2, d2 = init.activation_moments("tanh", 1e-6)
    assert m2 == pytest.approx(1e-6, rel=1e-4) and d2 == pytest.approx(1.0, rel=1e-4)
    assert init.activation_moments("relu", 3.0) == (1.5, 0.5)


@pytest.mark.parametrize("n_in,n_out", [(300, 200), (200, 300)])
def test_schemes_match_torch_init_in_distribution(n_in, n_out):
    g = _gen(0)
    cases = {
        "xavier_uniform": lambda w: nn.init.xavier_uniform_(w),
        "xavier_normal": lambda w: nn.init.xavier_normal_(w),
        "he_uniform": lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
        "he_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
        "he_normal_out": lambda w: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"),
        "lecun_normal": lambda w: nn.init.kaiming_normal_(w, nonlinearity="linear"),
        "torch_default": lambda w: nn.init.kaiming_uniform_(w, a=math.sqrt(5)),
    }
    torch.manual_seed(0)
    for name, fn in cases.items():
        ours = init.init_weight(name, n_in, n_out, g, dtype=torch.float64)
        ref = fn(torch.empty(n_out, n_in, dtype=torch.float64))
        v = init.variance(name, n_in, n_out)
        n = ours.numel()
        for w in (ours, ref):  # variance of the sample variance of a normal: 2v²/n; uniform less
            assert w.var().item() == pytest.approx(v, abs=6 * v * math.sqrt(2 / n)), name
            assert abs(w.mean().item()) < 6 * math.sqrt(v / n)
        if "uniform" in name or name == "torch_default":
            bound = math.sqrt(3 * v)
            assert ours.abs().max() <= bound and ref.abs().max() <= bound + 1e-12
            assert ours.abs().max() > 0.99 * bound


def test_torch_default_is_nn_linear():
    layer = nn.Linear(400, 300)
    v = init.variance("torch_default", 400, 300)
    assert v == pytest.approx(1 / 1200)
    assert layer.weight.abs().max().item() <= 1 / math.sqrt(400)
    assert layer.weight.var().item() == pytest.approx(v, rel=0.05)


@pytest.mark.parametrize("n_in,n_out", [(50, 80), (80, 50), (64, 64)])
def test_orthogonal(n_in, n_out):
    w = init.init_weight("orthogonal", n_in, n_out, _gen(0), gain=2.0, dtype=torch.float64)
    gram = w @ w.T if n_out <= n_in else w.T @ w
    assert torch.allclose(gram, 4 * torch.eye(min(n_in, n_out), dtype=torch.float64), atol=1e-10)
    ref = nn.init.orthogonal_(torch.empty(n_out, n_in, dtype=torch.float64), gain=2.0)
    assert ref.pow(2).mean().item() == pytest.approx(init.variance("orthogonal", n_in, n_out, 2.0))
    assert w.pow(2).mean().item() == pytest.approx(init.variance("orthogonal", n_in, n_out, 2.0))


def test_jacobian_singular_values():
    width, depth = 32, 6
    net = init.plain_mlp([width] * (depth + 1), "linear", bias=False).double()
    init.init_mlp_(net, "orthogonal", _gen(0))
    x = torch.randn(3, width, generator=_gen(1), dtype=torch.float64)
    s = init.jacobian_singular_values(net, x)
    assert s.shape == (3, width) and torch.allclose(s, torch.ones_like(s), atol=1e-10)
    net = init.plain_mlp([width] * (depth + 1), "relu", bias=False).double()
    init.init_mlp_(net, "he_normal", _gen(0))
    j = init.jacobian(net, x[0])
    h, prod = x[0], torch.eye(width, dtype=torch.float64)
    for layer in init.linears(net):
        z = layer.weight @ h
        prod = torch.diag((z > 0).double()) @ layer.weight @ prod if layer is not init.linears(net)[-1] \
            else layer.weight @ prod
        h = torch.relu(z)
    assert torch.allclose(j, prod, atol=1e-10)


def test_constant_init_keeps_units_equal():
    x = torch.randn(64, 8, generator=_gen(0))
    y = torch.randint(0, 3, (64,), generator=_gen(1))
    net = init.plain_mlp([8, 16, 3], "tanh")
    init.init_mlp_(net, "constant", bias=0.0)
    init.train(net, x, y, lr=0.1, steps=50, batch_size=16)
    w = net[0].weight.detach()
    assert torch.allclose(w, w[:1].expand_as(w), atol=1e-6)
    assert not torch.allclose(w, torch.full_like(w, 0.1))  # it did move, all rows together


def test_depth_run_trains_shallow_he():
    x = torch.randn(256, 10, generator=_gen(0))
    y = (x[:, 0] > 0).long()
    r = init.depth_run(3, 32, "he_normal", 0.05, x, y, steps=100)
    assert r.final_loss < 0.3 and len(r.losses) == 100


def test_bad_input():
    with pytest.raises(ValueError, match="unknown init scheme 'kaiming'"):
        init.variance("kaiming", 10, 10)
    with pytest.raises(ValueError, match="unknown init scheme"):
        init.init_mlp_(nn.Linear(3, 3), "glorot")
    with pytest.raises(TypeError):
        init.scheme(None)
    with pytest.raises(ValueError, match="n_in"):
        init.variance("he_normal", 0, 10)
    with pytest.raises(ValueError, match="gain"):
        init.variance("he_normal", 10, 10, gain=-1.0)
    with pytest.raises(ValueError, match="no nn.Linear"):
        init.linears(nn.ReLU())
    with pytest.raises(ValueError, match="activation"):
        init.activation_moments("gelu", 1.0)
    with pytest.raises(ValueError, match="batch"):
        init.layer_stats(init.plain_mlp([4, 4, 2]), torch.randn(4))
    with pytest.raises(ValueError, match="one input vector"):
        init.jacobian(init.plain_mlp([4, 4, 2]), torch.randn(2, 4))
    with pytest.raises(ValueError, match="lr"):
        init.train(init.plain_mlp([4, 2]), torch.randn(4, 4), torch.zeros(4, dtype=torch.long), lr=0)
    with pytest.raises(ValueError, match="bias"):
        init.init_mlp_(nn.Linear(3, 3), "he_normal", bias="zeros")
