"""Tests of nntrain.checkpointing (chapter 6): exact gradients, saved bytes vs the ledger, Revolve."""

import math

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

from nntrain import checkpointing as ck
from nntrain import memory, models


def _mlp(n=12, w=16, dtype=torch.float64, dropout=0.0):
    torch.manual_seed(0)
    layers = []
    for _ in range(n):
        mods = [nn.Linear(w, w), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        layers.append(nn.Sequential(*mods))
    return nn.Sequential(*layers).to(dtype)


def _grads(net, run, x, g, seed=1):
    net.zero_grad()
    torch.manual_seed(seed)
    with ck.SavedPeak(net) as sp:
        y = run(x)
        y.backward(g)
    return [p.grad.clone() for p in net.parameters()], y.detach(), sp.peak


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 12])
def test_gradients_identical_and_peak_equals_ledger(k):
    net = _mlp()
    x = torch.randn(8, 16, dtype=torch.float64)
    g = torch.randn(8, 16, dtype=torch.float64)
    g0, y0, _ = _grads(net, net, x, g)
    gk, yk, peak = _grads(net, lambda t: ck.checkpointed_sequential(net, k, t), x, g)
    assert torch.equal(y0, yk)
    assert all(torch.equal(a, b) for a, b in zip(g0, gk))
    assert peak == ck.predicted_peak_bytes(net, x, k)
    assert peak == ck.sqrt_rule_units(12, k) * x.numel() * x.element_size()


def test_input_gradient_and_float32():
    net = _mlp(dtype=torch.float32)
    x = torch.randn(4, 16, requires_grad=True)
    y = net(x).sum()
    (gx,) = torch.autograd.grad(y, x)
    y2 = ck.checkpointed_sequential(net, 3, x).sum()
    (gx2,) = torch.autograd.grad(y2, x)
    assert torch.equal(gx, gx2)


def test_matches_torch_checkpoint_sequential():
    net = _mlp()
    x = torch.randn(8, 16, dtype=torch.float64)
    g = torch.randn(8, 16, dtype=torch.float64)
    g1, _, _ = _grads(net, lambda t: ck.checkpointed_sequential(net, 4, t), x, g)
    g2, _, _ = _grads(net, lambda t: checkpoint_sequential(net, 4, t, use_reentrant=False), x, g)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_dropout_needs_rng_state():
    net = _mlp(dropout=0.3)
    x = torch.randn(8, 16, dtype=torch.float64)
    g = torch.randn(8, 16, dtype=torch.float64)
    g0, _, _ = _grads(net, net, x, g)
    same, _, _ = _grads(net, lambda t: ck.checkpointed_sequential(net, 4, t, True), x, g)
    wrong, _, _ = _grads(net, lambda t: ck.checkpointed_sequential(net, 4, t, False), x, g)
    assert all(torch.equal(a, b) for a, b in zip(g0, same))
    assert not all(torch.equal(a, b) for a, b in zip(g0, wrong))


def test_autocast_replayed_in_recomputation():
    """Backward runs outside autocast: the recomputation must re-enter it, as torch.utils.checkpoint does."""
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Sequential(nn.Linear(16, 16), nn.GELU()) for _ in range(4)])
    x = torch.randn(8, 16)

    def grads(run):
        net.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = run(x).float().sum()
        y.backward()
        return [p.grad.clone() for p in net.parameters()]

    plain = grads(net)
    ours = grads(lambda t: ck.checkpointed_sequential(net, 2, t))
    theirs = grads(lambda t: checkpoint_sequential(net, 2, t, use_reentrant=False))
    assert all(torch.equal(a, b) for a, b in zip(plain, ours))
    assert all(torch.equal(a, b) for a, b in zip(plain, theirs))


def test_module_wrapper_and_eval():
    net = _mlp()
    wrapped = ck.CheckpointedSequential(net, 3)
    x = torch.randn(2, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(wrapped(x), net(x))


@pytest.mark.parametrize("k", [0, -1, 13, 2.5, True])
def test_bad_segments(k):
    net = _mlp()
    with pytest.raises(ValueError, match="segments"):
        ck.checkpointed_sequential(net, k, torch.randn(2, 16, dtype=torch.float64))


def test_inplace_refused():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 4))
    with pytest.raises(ValueError, match="in place"):
        ck.checkpointed_sequential(net, 2, torch.randn(2, 4))


def test_input_modified_in_place_detected():
    class Scale(nn.Module):
        def forward(self, x):
            return x.mul_(2.0)

    net = nn.Sequential(Scale(), nn.Linear(4, 4), nn.Linear(4, 4))
    x = torch.randn(2, 4).requires_grad_() * 1.0
    with pytest.raises(RuntimeError, match="in place"):
        ck.checkpointed_sequential(net, 2, x)


def test_sqrt_rule_integer_optimum():
    for n in range(1, 300):
        # the theorem: min over k of k + ⌈n/k⌉ is ⌈2√n⌉
        assert min(k + -(-n // k) for k in range(1, n + 1)) == math.ceil(2 * math.sqrt(n))
        for k in range(1, n + 1):
            if n % k == 0:  # equal segments: the runner's peak is k + n/k units
                assert ck.sqrt_rule_units(n, k) == k + n // k
    assert ck.sqrt_rule_units(64, 1) == 65 and ck.sqrt_rule_units(64, 8) == 16
    assert ck.best_segments(64) == 8


def test_revolve_dp_equals_closed_form():
    for steps in range(1, 60):
        for snaps in range(1, 7):
            assert ck.revolve_advances(steps, snaps) == ck.revolve_closed_form(steps, snaps)
    assert ck.revolve_advances(10, 1) == 45
    assert ck.binomial_steps(3, 2) == 10
    # with s checkpoints and r repetitions exactly β(s, r) steps fit
    assert ck.repetition_number(10, 3) == 2 and ck.repetition_number(11, 3) == 3
    with pytest.raises(ValueError):
        ck.revolve_advances(0, 2)
    with pytest.raises(ValueError):
        ck.binomial_steps(-1, 2)


def _tiny_gpt(dropout=0.1, attention="math"):
    cfg = models.GPTConfig(vocab_size=32, block_size=16, n_layer=3, n_head=2, n_embd=16,
                           dropout=dropout, attention=attention)
    torch.manual_seed(0)
    return models.build(cfg)


@pytest.mark.parametrize("mode,kw", [("nntrain", {}), ("nntrain", {"segments": 2}), ("torch", {}),
                                     ("selective", {}), ("selective", {"ops": ("mm", "addmm")})])
def test_gpt_modes_identical(mode, kw):
    m = _tiny_gpt()
    idx = torch.randint(0, 32, (2, 16), generator=torch.Generator().manual_seed(0))

    def grads(mode_, **kw_):
        m.zero_grad()
        torch.manual_seed(3)
        ck.gpt_forward(m, idx, idx, mode_, **kw_).backward()
        return [p.grad.clone() for p in m.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(grads("none"), grads(mode, **kw)))


def test_gpt_forward_matches_model_and_checks():
    m = _tiny_gpt(dropout=0.0)
    idx = torch.randint(0, 32, (2, 16))
    assert torch.equal(m(idx, idx)[1], ck.gpt_forward(m, idx, idx))
    with pytest.raises(ValueError):
        ck.gpt_forward(m, idx, idx, "bogus")
    with pytest.raises(ValueError, match="segments"):
        ck.gpt_forward(m, idx, idx, "nntrain", segments=4)
    with pytest.raises(ValueError, match="unknown aten"):
        ck.selective_context(("not_an_op",))


def test_ledger_segments_option():
    cfg = models.GPT_PRESETS["gpt2-xl"].with_(attention="math", dropout=0.1)
    full = memory.ledger(cfg, batch=32, seq=1024, checkpointing="full")
    same = memory.ledger(cfg, batch=32, seq=1024, checkpointing="full", segments=48)
    assert full.activations == same.activations
    seven = memory.ledger(cfg, batch=32, seq=1024, checkpointing="full", segments=7)
    sbh = 1024 * 32 * 1600
    per_layer = full.activation_terms["layers: one layer recomputed"]
    assert seven.activation_terms["layers: segment inputs kept (k·sbh)"] == 7 * 2 * sbh
    assert seven.activation_terms["layers: one segment recomputed"] == 7 * per_layer
    with pytest.raises(ValueError, match="checkpointing='full'"):
        memory.ledger(cfg, batch=1, seq=8, segments=4)
    with pytest.raises(ValueError, match="more than"):
        memory.ledger(cfg, batch=1, seq=8, checkpointing="full", segments=49)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_gpt_saved_peak_equals_ledger(k):
    """Equal up to two known terms.

    The ledger counts the recomputed segment's input twice (kept, and as LN1's input): one
    res·sbh too many; nll_loss saves a 4-byte scalar (total_weight) the ledger leaves out.
    """
    cfg = models.GPTConfig(vocab_size=32, block_size=16, n_layer=4, n_head=2, n_embd=16,
                           dropout=0.1, attention="math")
    torch.manual_seed(0)
    m = models.build(cfg)
    b, s = 2, 16
    idx, targets = torch.randint(0, 32, (2, b, s))
    with ck.SavedPeak(m) as sp:
        ck.gpt_forward(m, idx, targets, "nntrain", segments=k).backward()
    led = memory.ledger(cfg, "adam", "fp32", batch=b, seq=s, target="cpu",
                        checkpointing="full", segments=k)
    assert sp.peak == led.activations - 4 * s * b * cfg.n_embd + 4


def test_sequential_step():
    net = _mlp(n=4)
    x = torch.randn(3, 16, dtype=torch.float64)
    g = torch.randn(3, 16, dtype=torch.float64)
    out = []
    for k, impl in [(1, "nntrain"), (2, "nntrain"), (2, "torch")]:
        ck.sequential_step(net, x, g, k, impl)
        out.append([p.grad.clone() for p in net.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(out[0], out[1]))
    assert all(torch.equal(a, b) for a, b in zip(out[0], out[2]))
    with pytest.raises(ValueError):
        ck.sequential_step(net, x, g, 2, "jax")


def test_interleaved_times():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    best = ck.interleaved_times(fns, repeat=3, warmup=0)
    assert set(best) == {"a", "b"} and calls.count("a") == 3
    ratios = ck.interleaved_times(fns, repeat=3, reference="a")
    assert ratios["a"] == 1.0
    with pytest.raises(ValueError):
        ck.interleaved_times(fns, reference="c")


def test_interleaved_times_clocks():
    fns = {"a": lambda: sum(range(1000))}
    for clock in ("cpu", "wall"):
        assert ck.interleaved_times(fns, repeat=2, clock=clock)["a"] >= 0
    with pytest.raises(ValueError):
        ck.interleaved_times(fns, clock="sundial")


def test_sqrt_rule_minimum_at_ceil_sqrt():
    for n in range(1, 2000):
        q = math.isqrt(n - 1) + 1  # ⌈√n⌉
        assert q + -(-n // q) == math.ceil(2 * math.sqrt(n))


def test_binomial_steps_is_the_largest_chain():
    for s in range(1, 6):
        for r in range(0, 6):
            longest = max(l for l in range(1, 300) if ck.revolve_repetitions(l, s) <= r)
            assert longest == ck.binomial_steps(s, r)
            for l in range(1, longest + 1):
                assert ck.revolve_repetitions(l, s) == ck.repetition_number(l, s)


def test_interleaved_quartiles():
    fns = {"a": lambda: None, "b": lambda: sum(range(10000))}
    q = ck.interleaved_times(fns, repeat=5, reference="a", quartiles=True)
    assert q["a"] == (1.0, 1.0, 1.0)
    lo, mid, hi = q["b"]
    assert lo <= mid <= hi
