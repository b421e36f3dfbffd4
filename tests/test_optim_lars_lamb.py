"""LARS and LAMB (chapter 2, large batches): the rules as written, the wrappers, rescaling invariance, errors."""

import pytest
import torch

from nntrain.optim import LAMB, LARS, lamb_update, lars_trust_ratios, lars_update



@pytest.fixture(autouse=True)
def _float64():
    """Exact comparisons in float64, without leaking the default dtype into other test modules."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _net(scale: float = 1.0) -> torch.nn.Sequential:
    """Linear → BatchNorm (no affine, eps ≈ 0) → ReLU → Linear: the first layer is exactly scale-invariant."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8, bias=False), torch.nn.BatchNorm1d(8, affine=False, eps=1e-30),
                              torch.nn.ReLU(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        net[0].weight.mul_(scale)
    return net.double()


def test_lars_matches_the_formula():
    torch.manual_seed(1)
    w, g = torch.randn(5, 4), torch.randn(5, 4)
    lr, m, beta, eta = 0.1, 0.9, 1e-3, 0.02
    v = torch.zeros_like(w)
    w_ref = w.clone()
    p, b = w, None
    for _ in range(3):
        lam = eta * w_ref.norm() / (g.norm() + beta * w_ref.norm())
        v = m * v + lr * lam * (g + beta * w_ref)
        w_ref = w_ref - v
        p, b = lars_update(p, g, b, lr=lr, momentum=m, weight_decay=beta, trust_coefficient=eta, eps=0.0)
    torch.testing.assert_close(p, w_ref)


def test_lars_wrapper_equals_pure_rule():
    torch.manual_seed(2)
    a = torch.nn.Parameter(torch.randn(3, 4))
    opt = LARS([a], lr=0.5, weight_decay=1e-4)
    p, b = a.detach().clone(), None
    for _ in range(4):
        g = torch.randn(3, 4)
        a.grad = g.clone()
        opt.step()
        p, b = lars_update(p, g, b, lr=0.5, weight_decay=1e-4)
    torch.testing.assert_close(a.detach(), p)
    torch.testing.assert_close(opt.state[a]["momentum_buffer"], b)


def test_lars_zero_weights_fall_back_to_ratio_one():
    r = lars_trust_ratios([torch.zeros(3), torch.ones(3)], [torch.ones(3), torch.zeros(3)])
    assert [x.item() for x in r] == [1.0, 1.0]


def test_lamb_matches_the_formula():
    torch.manual_seed(3)
    x, lam, lr, (b1, b2), eps = torch.randn(4, 3), 0.01, 0.05, (0.9, 0.999), 1e-6
    m = v = torch.zeros_like(x)
    ref, p, s = x.clone(), x.clone(), None
    for t in range(1, 4):
        g = torch.randn(4, 3)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        r = (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)
        u = r + lam * ref
        ref = ref - lr * ref.norm() / u.norm() * u
        p, s = lamb_update(p, g, s, lr=lr, weight_decay=lam)
    torch.testing.assert_close(p, ref)


def test_lamb_wrapper_equals_pure_rule():
    torch.manual_seed(4)
    a = torch.nn.Parameter(torch.randn(2, 5))
    opt = LAMB([a], lr=0.01, weight_decay=0.1)
    p, s = a.detach().clone(), None
    for _ in range(3):
        g = torch.randn(2, 5)
        a.grad = g.clone()
        opt.step()
        p, s = lamb_update(p, g, s, lr=0.01, weight_decay=0.1)
    torch.testing.assert_close(a.detach(), p)
    assert int(opt.state[a]["step"]) == 3


@pytest.mark.parametrize("make", [lambda ps: LARS(ps, lr=0.5, momentum=0.9, eps=0.0),
                                  lambda ps: LAMB(ps, lr=0.02, eps=1e-12)])
def test_rescaling_a_scale_invariant_layer_rescales_its_trajectory(make):
    """w → c·w for a layer followed by BatchNorm: the network's function is unchanged, its gradient
    becomes g/c, and LARS/LAMB keep w_k(c) = c·w_k(1) for every step (SGD would not)."""
    torch.manual_seed(5)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    runs = {}
    for c in (1.0, 10.0):
        net = _net(c)
        opt = make(list(net.parameters()))
        for _ in range(5):
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        runs[c] = (net[0].weight.detach().clone(), net[3].weight.detach().clone())
    torch.testing.assert_close(runs[10.0][0], 10.0 * runs[1.0][0], rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(runs[10.0][1], runs[1.0][1], rtol=1e-7, atol=1e-9)


def test_sgd_is_not_invariant_to_rescaling():
    torch.manual_seed(5)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    out = {}
    for c in (1.0, 10.0):
        net = _net(c)
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        for _ in range(5):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        out[c] = net[0].weight.detach() / c
    assert not torch.allclose(out[1.0], out[10.0], rtol=1e-3)


@pytest.mark.parametrize("bad, match", [(dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"),
                                        (dict(lr=0.1, trust_coefficient=0.0), "trust_coefficient"),
                                        (dict(lr=0.1, trust_coefficient=-1e-3), "trust_coefficient"),
                                        (dict(lr=0.1, momentum=1.0), "momentum"),
                                        (dict(lr=0.1, weight_decay=-1.0), "weight_decay")])
def test_lars_bad_options(bad, match):
    with pytest.raises(ValueError, match=match):
        LARS([torch.nn.Parameter(torch.ones(2))], **bad)


@pytest.mark.parametrize("bad, match", [(dict(lr=0.0), "lr"), (dict(lr=1e-3, betas=(1.0, 0.9)), "betas"),
                                        (dict(lr=1e-3, eps=-1.0), "eps"),
                                        (dict(lr=1e-3, weight_decay=-0.1), "weight_decay")])
def test_lamb_bad_options(bad, match):
    with pytest.raises(ValueError, match=match):
        LAMB([torch.nn.Parameter(torch.ones(2))], **bad)


def test_unknown_option_and_shape_errors():
    with pytest.raises(TypeError, match="unknown"):
        LARS([torch.nn.Parameter(torch.ones(2))], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="shape"):
        lars_update(torch.ones(2, 2), torch.ones(3), lr=0.1)
    with pytest.raises(ValueError, match="shape"):
        lamb_update(torch.ones(2, 2), torch.ones(3), lr=0.1)
