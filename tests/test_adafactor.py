"""nntrain.optim.adafactor against torch.optim.Adafactor, in float64 (chapter 4)."""

import itertools
import math

import pytest
import torch

from nntrain import memopt, memory
from nntrain.optim.adafactor import Adafactor, adafactor_init, adafactor_update

SHAPES = [(7, 5), (3, 4, 6), (2, 1, 3, 3), (5,), ()]
STEPS = 300


def _pair(options, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    ps = [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in SHAPES]
    qs = [p.detach().clone().requires_grad_() for p in ps]
    return ps, qs, Adafactor(ps, **options), torch.optim.Adafactor(qs, **options), g


OPTION_GRID = [dict(lr=lr, weight_decay=wd, maximize=mx, eps=eps, d=d, beta2_decay=b)
               for lr, wd, mx, eps, d, b in itertools.product(
                   (1e-2, 0.3), (0.0, 0.1), (False, True), ((None, 1e-3), (1e-30, 1e-2)), (1.0, 2.0), (-0.8, -0.5))]


@pytest.mark.parametrize("options", OPTION_GRID[::5] + OPTION_GRID[-1:])
def test_matches_torch_in_float64(options):
    ps, qs, ours, theirs, g = _pair(options)
    for k in range(STEPS):
        for p, q in zip(ps, qs):
            grad = torch.randn(p.shape, generator=g, dtype=p.dtype) * (1 + k % 3)
            p.grad, q.grad = grad.clone(), grad.clone()
        ours.step()
        theirs.step()
    for p, q in zip(ps, qs):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
        for key in theirs.state[q]:
            torch.testing.assert_close(ours.state[p][key], theirs.state[q][key], rtol=1e-12, atol=1e-14)


def test_state_keys_shapes_and_vector_fallback():
    """Matrices (and higher) factor along the last two dims; vectors and scalars keep a full moment."""
    st = adafactor_init(torch.zeros(6, 4, 5))
    assert st["row_var"].shape == (6, 4, 1) and st["col_var"].shape == (6, 1, 5) and "variance" not in st
    for shape in [(9,), ()]:
        st = adafactor_init(torch.zeros(shape))
        assert st["variance"].shape == shape and "row_var" not in st


def test_state_dict_moves_to_torch():
    ps, qs, ours, theirs, g = _pair({})
    for _ in range(5):
        for p, q in zip(ps, qs):
            grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
            p.grad, q.grad = grad.clone(), grad.clone()
        ours.step()
        theirs.step()
    theirs2 = torch.optim.Adafactor([p.detach().clone().requires_grad_() for p in ps])
    theirs2.load_state_dict(ours.state_dict())
    assert theirs2.state_dict()["state"][0]["step"] == 5


def test_pure_update_changes_nothing_and_equals_optimizer():
    w = torch.randn(4, 3, dtype=torch.float64)
    grad = torch.randn(4, 3, dtype=torch.float64)
    w0 = w.clone()
    new_w, st = adafactor_update(w, grad, lr=0.05)
    assert torch.equal(w, w0)
    q = w.clone().requires_grad_()
    opt = torch.optim.Adafactor([q], lr=0.05)
    q.grad = grad.clone()
    opt.step()
    torch.testing.assert_close(new_w, q.detach(), rtol=1e-14, atol=1e-15)
    new_w2, st2 = adafactor_update(new_w, grad, st, lr=0.05)
    assert float(st["step"]) == 1.0 and float(st2["step"]) == 2.0  # the old state was copied


def test_first_step_uses_g_squared_and_rank_one_is_exact():
    """At t = 1, 1 − β̂₂ = 1: V̂ = rank-1 fit of G². For G² of rank 1 the fit is exact."""
    r = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    c = torch.tensor([0.5, 1.0, 4.0, 2.0], dtype=torch.float64)
    grad = torch.outer(r, c).sqrt()
    w = torch.ones(3, 4, dtype=torch.float64)
    _, st = adafactor_update(w, grad, eps=(0.0, 1e-3))
    v_hat = st["row_var"] @ st["col_var"] / st["row_var"].mean()
    torch.testing.assert_close(v_hat, grad ** 2, rtol=1e-13, atol=0)


@pytest.mark.parametrize("bad", [dict(lr=-1.0), dict(beta2_decay=0.5), dict(d=0.5), dict(weight_decay=-1.0),
                                 dict(eps=(-1.0, 1e-3)), dict(eps=(None, -1.0)), dict(lr=math.nan)])
def test_bad_options_refused(bad):
    with pytest.raises(ValueError):
        Adafactor([torch.zeros(2, 2, requires_grad=True)], **bad)


def test_bad_types_refused():
    with pytest.raises(TypeError):
        Adafactor([torch.zeros(2, requires_grad=True)], eps=1e-3)
    with pytest.raises(TypeError):
        Adafactor([torch.zeros(2, requires_grad=True)], maximize=1)


def test_skips_parameters_without_grad():
    a = torch.zeros(3, 3, requires_grad=True)
    b = torch.ones(3, requires_grad=True)
    opt = Adafactor([a, b])
    a.grad = torch.ones(3, 3)
    opt.step()
    assert b not in opt.state and torch.equal(b, torch.ones(3))


def test_ledger_counts_measured_state_bytes():
    """The ledger's Adafactor entry equals memory.optimizer_state_bytes of a real state."""
    model = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.LayerNorm(4096))
    opt = Adafactor(model.parameters())
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert memory.state_bytes(shapes, "adafactor") == memory.optimizer_state_bytes(opt)
    assert memopt.adafactor_state_bytes((4096, 1024)) == (4096 + 1024) * 4 + 4
    torch_opt = torch.optim.Adafactor(model.parameters())
    torch_opt.step()
    assert memory.optimizer_state_bytes(torch_opt) == memory.optimizer_state_bytes(opt)
