"""nntrain.optim.adam: the pure Adam(W) step and its wrapper agree with torch.optim in float64."""

import itertools

import pytest
import torch

from nntrain.optim import Adam, AdamW, adamw_init, adamw_update


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(20, 6, generator=g, dtype=torch.float64)
    b = torch.randn(20, 3, generator=g, dtype=torch.float64)
    w0 = torch.randn(6, 3, generator=g, dtype=torch.float64)
    c0 = torch.randn(3, generator=g, dtype=torch.float64)
    return a, b, w0, c0


def _run(opt_cls, steps: int = 60, **kw):
    a, b, w0, c0 = _problem()
    w = w0.clone().requires_grad_()
    c = c0.clone().requires_grad_()
    opt = opt_cls([w, c], **kw)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((a @ w + c - b) ** 2).mean() + (w**4).mean()
        loss.backward()
        opt.step()
    return w.detach(), c.detach()


@pytest.mark.parametrize("wd,amsgrad,betas", list(itertools.product([0.0, 0.1], [False, True], [(0.9, 0.999), (0.8, 0.95)])))
def test_adamw_matches_torch(wd, amsgrad, betas):
    kw = dict(lr=0.03, betas=betas, eps=1e-8, weight_decay=wd, amsgrad=amsgrad)
    ours = _run(AdamW, **kw)
    ref = _run(torch.optim.AdamW, **kw)
    for x, y in zip(ours, ref):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("wd,amsgrad", list(itertools.product([0.0, 0.1], [False, True])))
def test_adam_with_l2_matches_torch_adam(wd, amsgrad):
    kw = dict(lr=0.03, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd, amsgrad=amsgrad)
    ours = _run(Adam, **kw)
    ref = _run(torch.optim.Adam, **kw)
    for x, y in zip(ours, ref):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_pure_function_does_not_modify_inputs():
    p = torch.randn(4, 3, dtype=torch.float64)
    g = torch.randn(4, 3, dtype=torch.float64)
    s = adamw_init(p)
    p0, m0 = p.clone(), s.exp_avg.clone()
    new_p, new_s = adamw_update(p, g, s, lr=0.1)
    assert torch.equal(p, p0) and torch.equal(s.exp_avg, m0)
    assert new_s.step == 1 and not torch.equal(new_p, p)


def test_first_step_is_sign_descent():
    """Without weight decay Adam's first step is -lr*sign(g) (up to eps): the ell_inf steepest descent."""
    p = torch.zeros(50, dtype=torch.float64)
    g = torch.randn(50, dtype=torch.float64)
    new_p, _ = adamw_update(p, g, adamw_init(p), lr=0.1, eps=0.0, weight_decay=0.0)
    torch.testing.assert_close(new_p, -0.1 * g.sign())


def test_bad_input_raises():
    p = torch.zeros(3)
    with pytest.raises(ValueError, match="betas"):
        AdamW([p.requires_grad_()], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr"):
        adamw_update(p, p, adamw_init(p), lr=-1)
    with pytest.raises(ValueError, match="shape"):
        adamw_update(p, torch.zeros(4), adamw_init(p))
    with pytest.raises(ValueError, match="amsgrad"):
        adamw_update(p, p, adamw_init(p), amsgrad=True)
