"""nntrain.optim.adam8bit: state bytes, agreement with float32 Adam and bitsandbytes, bad input (chapter 4)."""

import math

import pytest
import torch

from nntrain import memopt, memory
from nntrain.optim.adam8bit import Adam8bit, adam8bit_init, adam8bit_moments, adam8bit_update
from nntrain.quant import dynamic_code, max_half_gap

SHAPES = [(64, 128), (4096,), (10,), (33, 200)]


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g).requires_grad_() for s in SHAPES], g


def _run(opt_cls, params, g, steps, **kw):
    opt = opt_cls(params, **kw)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return opt


def test_state_bytes_at_most_2_1_per_parameter():
    w = torch.zeros(4096, 1024, requires_grad=True)
    w.grad = torch.randn_like(w)
    opt = Adam8bit([w])
    opt.step()
    measured = memory.optimizer_state_bytes(opt)
    assert measured / w.numel() <= 2.1
    expected = 2 * w.numel() + 2 * 4 * (w.numel() // 256) + 4 + memopt.CODE_BOOK_BYTES
    assert measured == expected
    assert memory.state_bytes([(4096, 1024)], "adam8bit") + memopt.CODE_BOOK_BYTES == measured
    st = opt.state[w]
    assert st["state1"].dtype == torch.uint8 and st["state2"].dtype == torch.uint8
    assert st["absmax1"].shape == (w.numel() // 256,)


def test_ledger_matches_measured_for_a_model():
    params, g = _params()
    opt = _run(Adam8bit, params, g, 2)
    shapes = [tuple(p.shape) for p in params]
    assert memory.state_bytes(shapes, "adam8bit") + memopt.CODE_BOOK_BYTES == memory.optimizer_state_bytes(opt)


def test_small_tensors_keep_float32_moments():
    st = adam8bit_init(torch.zeros(10))
    assert st["exp_avg"].dtype == torch.float32 and "state1" not in st
    params, g = _params()
    ref = [p.detach().clone().requires_grad_() for p in params]
    g2 = torch.Generator().manual_seed(0)
    g2.set_state(g.get_state())
    _run(Adam8bit, params, g, 20, lr=1e-2)
    _run(torch.optim.Adam, ref, g2, 20, lr=1e-2)
    torch.testing.assert_close(params[2], ref[2], rtol=1e-6, atol=1e-6)  # the (10,) tensor: exact Adam


def test_first_step_equals_adam_and_states_within_one_rounding():
    """Step 1 uses the float32 moments before quantization: the parameters equal Adam's."""
    params, g = _params()
    ref = [p.detach().clone().requires_grad_() for p in params]
    grads = [torch.randn(p.shape, generator=g) for p in params]
    ours, theirs = Adam8bit(params, lr=1e-2), torch.optim.Adam(ref, lr=1e-2)
    for p, q, gr in zip(params, ref, grads):
        p.grad, q.grad = gr.clone(), gr.clone()
    ours.step()
    theirs.step()
    for p, q in zip(params, ref):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
        if p.numel() >= 4096:
            m, v = adam8bit_moments(ours.state[p])
            m_ref, v_ref = theirs.state[q]["exp_avg"], theirs.state[q]["exp_avg_sq"]
            am = ours.state[p]["absmax1"].repeat_interleave(256)[: p.numel()].view(p.shape)
            assert bool(((m - m_ref).abs() <= am * (max_half_gap(dynamic_code(True)) + 1e-6)).all())
            av = ours.state[p]["absmax2"].repeat_interleave(256)[: p.numel()].view(p.shape)
            assert bool(((v - v_ref).abs() <= av * (max_half_gap(dynamic_code(False)) + 1e-6)).all())


def test_close_to_float32_adam_over_many_steps():
    params, g = _params(1)
    ref = [p.detach().clone().requires_grad_() for p in params]
    g2 = torch.Generator()
    g2.set_state(g.get_state())
    _run(Adam8bit, params, g, 100, lr=1e-3)
    _run(torch.optim.Adam, ref, g2, 100, lr=1e-3)
    for p, q, p0 in zip(params, ref, _params(1)[0]):
        moved = float((q - p0).detach().norm())
        assert float((p - q).detach().norm()) < 0.1 * moved


def test_pure_update_changes_nothing():
    w, grad = torch.randn(64, 64), torch.randn(64, 64)
    w0 = w.clone()
    new_w, st = adam8bit_update(w, grad, lr=1e-2)
    assert torch.equal(w, w0) and not torch.equal(new_w, w)
    codes = st["state1"].clone()
    adam8bit_update(new_w, grad, st, lr=1e-2)
    assert torch.equal(st["state1"], codes) and float(st["step"]) == 1.0


@pytest.mark.parametrize("bad", [0, -256, 1.5, True])
def test_block_size_must_be_positive(bad):
    with pytest.raises(ValueError, match="block_size"):
        Adam8bit([torch.zeros(8, requires_grad=True)], block_size=bad)


@pytest.mark.parametrize("bad", [dict(lr=-1.0), dict(betas=(0.9, 1.0)), dict(eps=math.nan), dict(min_8bit_size=-1)])
def test_bad_options_refused(bad):
    with pytest.raises(ValueError):
        Adam8bit([torch.zeros(8, requires_grad=True)], **bad)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_gradient_refused_state_intact(value):
    params, g = _params()
    opt = _run(Adam8bit, params, g, 3, lr=1e-2)
    before = [p.detach().clone() for p in params]
    states = [{k: v.clone() for k, v in opt.state[p].items()} for p in params]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    params[-1].grad[0, 0] = value  # the last tensor: the others must not have been updated either
    with pytest.raises(ValueError, match="non-finite"):
        opt.step()
    for p, b, st in zip(params, before, states):
        assert torch.equal(p, b)
        for k, v in st.items():
            assert torch.equal(opt.state[p][k], v), k


def test_closure_and_groups_as_in_torch():
    """The closure's loss is returned; a NaN in the second group refuses the first group's step too."""
    a, b = torch.randn(64, 64, requires_grad=True), torch.randn(10, requires_grad=True)
    opt = Adam8bit([{"params": [a]}, {"params": [b], "lr": 1e-2}])

    def closure():
        opt.zero_grad()
        loss = (a ** 2).sum() + (b ** 2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.is_tensor(loss) and float(opt.state[a]["step"]) == 1.0
    a0 = a.detach().clone()
    closure()
    b.grad[0] = math.nan
    with pytest.raises(ValueError, match="non-finite"):
        opt.step()
    assert torch.equal(a, a0) and float(opt.state[a]["step"]) == 1.0


def test_block_size_changes_absmax_count():
    w = torch.zeros(8192, requires_grad=True)
    w.grad = torch.randn_like(w)
    opt = Adam8bit([w], block_size=2048)
    opt.step()
    assert opt.state[w]["absmax2"].shape == (4,)


def test_against_bitsandbytes():
    bnb = pytest.importorskip("bitsandbytes")
    params, g = _params(2)
    theirs_p = [p.detach().clone().requires_grad_() for p in params]
    ref = [p.detach().clone().requires_grad_() for p in params]
    ours = Adam8bit(params, lr=1e-3)
    theirs = bnb.optim.Adam8bit(theirs_p, lr=1e-3)
    fp32 = torch.optim.Adam(ref, lr=1e-3)
    for step in range(60):
        grads = [torch.randn(p.shape, generator=g) for p in params]
        for ps in (params, theirs_p, ref):
            for p, gr in zip(ps, grads):
                p.grad = gr.clone()
        for o in (ours, theirs, fp32):
            o.step()
        if step == 0:  # same float32 moments before quantization: same parameters
            for p, q in zip(params, theirs_p):
                torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    # same state layout and bytes (bitsandbytes keeps `step` as a Python int: 4 bytes less per tensor)
    n_tensors = len(params)
    assert memory.optimizer_state_bytes(ours) == memory.optimizer_state_bytes(theirs) + 4 * n_tensors
    for p, q in zip(params, theirs_p):
        if p.numel() >= 4096:  # the 8-bit tensors have bitsandbytes' keys, dtypes and shapes
            for k in ("state1", "state2", "absmax1", "absmax2", "qmap1", "qmap2"):
                assert ours.state[p][k].dtype == theirs.state[q][k].dtype
                assert ours.state[p][k].shape == theirs.state[q][k].shape
    # both stay as close to float32 Adam as each other (the rounding of bitsandbytes' CPU search differs)
    for p, q, r in zip(params, theirs_p, ref):
        d_ours, d_theirs = float((p - r).detach().norm()), float((q - r).detach().norm())
        assert d_ours <= 2 * d_theirs + 1e-6 and d_theirs <= 2 * d_ours + 1e-6
