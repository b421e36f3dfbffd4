"""Tests of nntrain.optim.sam (chapter 9): SAM's first step against a hand computation, both APIs, errors."""

import pytest
import torch
from torch import nn

from nntrain.optim.sam import SAM


def _setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(16, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (16,))
    return model, x, y


def _loss(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


def _closure(opt, model, x, y):
    """The closure SAM's ``step`` calls twice: zero the gradients, evaluate, backpropagate."""
    def closure():
        opt.zero_grad()
        loss = _loss(model, x, y)
        loss.backward()
        return loss
    return closure


def test_first_step_is_rho_g_over_norm():
    model, x, y = _setup()
    w0 = [p.detach().clone() for p in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1)
    _loss(model, x, y).backward()
    g = [p.grad.clone() for p in model.parameters()]
    norm = torch.sqrt(sum((t ** 2).sum() for t in g))
    opt.first_step()
    for p, a, b in zip(model.parameters(), w0, g):
        torch.testing.assert_close(p.detach(), a + 0.3 * b / norm)


def test_two_steps_equal_hand_written_sam():
    model, x, y = _setup(1)
    ref = [p.detach().clone() for p in model.parameters()]
    # hand-written SAM step with plain SGD
    ref_model, _, _ = _setup(1)
    params = list(ref_model.parameters())
    g = torch.autograd.grad(_loss(ref_model, x, y), params)
    norm = torch.sqrt(sum((t ** 2).sum() for t in g))
    with torch.no_grad():
        for p, t in zip(params, g):
            p.add_(0.05 * t / norm)
    g2 = torch.autograd.grad(_loss(ref_model, x, y), params)
    expected = [a - 0.1 * b for a, b in zip(ref, g2)]
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    opt.step(_closure(opt, model, x, y))
    for p, e in zip(model.parameters(), expected):
        torch.testing.assert_close(p.detach(), e)
    assert opt.grad_evaluations == 2


def test_manual_api_equals_closure_api_with_adam():
    results = []
    for mode in ("manual", "closure"):
        model, x, y = _setup(2)
        opt = SAM(model.parameters(), torch.optim.Adam, rho=0.1, lr=1e-2)
        for _ in range(3):
            if mode == "manual":
                _loss(model, x, y).backward()
                opt.first_step(zero_grad=True)
                _loss(model, x, y).backward()
                opt.second_step(zero_grad=True)
            else:
                opt.step(_closure(opt, model, x, y))
        results.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1])


def test_adaptive_first_step():
    model, x, y = _setup(3)
    w0 = [p.detach().clone() for p in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, adaptive=True, lr=0.1)
    _loss(model, x, y).backward()
    g = [p.grad.clone() for p in model.parameters()]
    norm = torch.sqrt(sum(((w.abs() * t) ** 2).sum() for w, t in zip(w0, g)))
    opt.first_step()
    for p, w, t in zip(model.parameters(), w0, g):
        torch.testing.assert_close(p.detach(), w + 0.5 * w ** 2 * t / norm)


def test_bad_input():
    model, _, _ = _setup()
    for rho in (0.0, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match="rho must be a positive"):
            SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        SAM(nn.ReLU().parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(TypeError, match="base must be"):
        SAM(model.parameters(), "sgd", lr=0.1)
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(RuntimeError, match="call backward"):
        opt.first_step()
    with pytest.raises(ValueError, match="closure"):
        opt.step()
