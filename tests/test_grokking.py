"""Tests for nntrain.grokking (chapter 10, «Гроккинг»)."""

import math

import pytest
import torch

from nntrain import grokking as G


@pytest.mark.parametrize("p, fraction", [(7, 0.3), (97, 0.5), (10, 0.9)])
def test_split_sizes_and_no_overlap(p, fraction):
    s = G.modular_split(p, fraction, seed=1)
    assert s.n_train == round(fraction * p * p)
    assert s.n_train + s.n_test == p * p
    train = {tuple(r) for r in s.x_train.tolist()}
    test = {tuple(r) for r in s.x_test.tolist()}
    assert not train & test
    assert len(train | test) == p * p
    assert torch.equal(s.y_train, (s.x_train[:, 0] + s.x_train[:, 1]) % p)


def test_split_is_seeded_and_operations():
    a, b = G.modular_split(11, 0.4, seed=3), G.modular_split(11, 0.4, seed=3)
    assert torch.equal(a.x_train, b.x_train)
    c = G.modular_split(11, 0.4, seed=4)
    assert not torch.equal(a.x_train, c.x_train)
    pairs, lab = G.modular_table(5, "mul")
    assert lab[3 * 5 + 4].item() == 2
    _, lab = G.modular_table(5, "sub")
    assert lab[1 * 5 + 3].item() == 3


@pytest.mark.parametrize("p", [1, 0, -3, 2.5, True])
def test_bad_modulus(p):
    with pytest.raises(ValueError, match="modulus"):
        G.modular_split(p, 0.5)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        G.modular_split(7, fraction)


def test_empty_split():
    with pytest.raises(ValueError, match="empty training"):
        G.modular_split(3, 0.01)
    with pytest.raises(ValueError, match="empty test"):
        G.modular_split(3, 0.99)
    with pytest.raises(ValueError, match="operation"):
        G.modular_table(5, "div")


def test_log_schedule():
    s = G.log_schedule(1000, 20)
    assert s[0] == 0 and s[-1] == 1000 and s == sorted(set(s))


def test_mlp_groks_in_quick_mode():
    # seeded quick setting of the notebook: memorises first, then the test accuracy crosses 0.95
    s = G.modular_split(47, 0.6, seed=0)
    model = G.QuadraticMLP(47, 128, generator=torch.Generator().manual_seed(0))
    hist = G.train(model, s, 1500, weight_decay=3.0, log_at=range(0, 1501, 25), stop_at=0.95)
    train_step = G.grokking_step(hist, 0.99, on="train")
    test_step = G.grokking_step(hist, 0.95)
    assert test_step is not None, "no grokking within 1500 steps"
    assert train_step is not None and train_step < test_step


def test_fourier_on_hand_built_embedding():
    p = 31
    a = torch.arange(p, dtype=torch.float64)
    emb = torch.stack([3 * torch.cos(2 * math.pi * 4 * a / p + 0.7),
                       torch.sin(2 * math.pi * 9 * a / p),
                       torch.ones(p) * 0.0], 1)
    spec = G.fourier_spectrum(emb)
    assert spec.shape == (p // 2 + 1,)
    assert math.isclose(float(spec.sum()), 1.0)
    assert math.isclose(float(spec[4]), 0.9, abs_tol=1e-12)
    assert math.isclose(float(spec[9]), 0.1, abs_tol=1e-12)
    assert G.dominant_frequencies(spec, 0.85) == [4]
    assert G.dominant_frequencies(spec, 0.95) == [4, 9]
    basis, freqs = G.fourier_basis(p)
    assert torch.allclose(basis @ basis.T, torch.eye(p, dtype=torch.float64), atol=1e-12)
    basis, _ = G.fourier_basis(8)
    assert torch.allclose(basis @ basis.T, torch.eye(8, dtype=torch.float64), atol=1e-12)
    freq, share = G.neuron_frequencies(emb[:, :2])
    assert freq.tolist() == [4, 9] and torch.allclose(share, torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="zero"):
        G.fourier_spectrum(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="zero"):
        G.neuron_frequencies(emb)


@pytest.mark.parametrize("p, freqs", [(97, None), (97, [5]), (13, [2, 6]), (15, [2])])
def test_analytic_network_is_exact(p, freqs):
    model = G.analytic_mlp(p, freqs)
    x, y = G.modular_table(p)
    logits = model(x).detach()
    ks = list(range(1, (p - 1) // 2 + 1)) if freqs is None else freqs
    q = torch.arange(p, dtype=torch.float64)
    m = (x[:, :1] + x[:, 1:] - q).double()
    expected = 4.5 * sum(torch.cos(2 * math.pi * k * m / p) for k in ks)
    assert torch.allclose(logits, expected, atol=1e-9)
    if all(math.gcd(k, p) == 1 for k in ks):
        assert torch.equal(logits.argmax(1), y)


def test_analytic_bad_input():
    with pytest.raises(ValueError, match="phases"):
        G.analytic_mlp(7, phases=2)
    with pytest.raises(ValueError, match="freqs"):
        G.analytic_mlp(7, [])


def test_weight_norm_and_train_bad_input():
    model = G.QuadraticMLP(5, 4, init_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert math.isclose(G.weight_norm(model),
                        float(torch.cat([q.detach().flatten() for q in model.parameters()]).norm()),
                        rel_tol=1e-6)
    with pytest.raises(ValueError, match="weight_decay"):
        G.train(model, G.modular_split(5, 0.5), 3, weight_decay=-1.0)
    with pytest.raises(ValueError, match="init_scale"):
        G.QuadraticMLP(5, 4, init_scale=0.0)


def test_transformer_shapes_and_bad_input():
    gen = torch.Generator().manual_seed(0)
    for mlp in (True, False):
        net = G.OneLayerTransformer(11, 16, heads=4, mlp=mlp, generator=gen)
        x, _ = G.modular_table(11)
        assert net(x).shape == (121, 11)
        assert net.residue_embedding().shape == (11, 16)
    assert not hasattr(G.OneLayerTransformer(11, 16, mlp=False), "w_in")
    with pytest.raises(ValueError, match="divisible"):
        G.OneLayerTransformer(11, 18, heads=4)
    with pytest.raises(ValueError, match="modulus"):
        G.OneLayerTransformer(1, 16)
    with pytest.raises(ValueError, match="d_model"):
        G.OneLayerTransformer(11, 0)
    with pytest.raises(ValueError, match="pairs"):
        net(torch.zeros(4, 3, dtype=torch.long))


def test_transformer_last_position_matches_full_causal_attention():
    # the shortcut (only the last query) equals a full causal pass read at the last position
    p, d, heads = 7, 8, 2
    net = G.OneLayerTransformer(p, d, heads=heads, generator=torch.Generator().manual_seed(1))
    x, _ = G.modular_table(p)
    tok = torch.cat([x, torch.full_like(x[:, :1], p)], 1)
    resid = net.embed[tok] + net.pos
    B, D = len(x), d // heads
    q, k, v = (resid @ w for w in (net.w_q, net.w_k, net.w_v))
    q, k, v = (t.view(B, 3, heads, D).transpose(1, 2) for t in (q, k, v))
    mask = torch.triu(torch.ones(3, 3, dtype=torch.bool), 1)
    att = (q @ k.transpose(-1, -2) / math.sqrt(D)).masked_fill(mask, float("-inf")).softmax(-1)
    h = resid + (att @ v).transpose(1, 2).reshape(B, 3, d) @ net.w_o
    h = h + torch.relu(h @ net.w_in + net.b_in) @ net.w_out + net.b_out
    assert torch.allclose(net(x), h[:, -1] @ net.unembed, atol=1e-5)


def test_transformer_learns_training_set_quickly():
    # seeded short run: the training pairs are memorised within 150 steps
    s = G.modular_split(17, 0.5, seed=0)
    net = G.OneLayerTransformer(17, 32, generator=torch.Generator().manual_seed(0))
    hist = G.train(net, s, 150, lr=3e-3, warmup=10, log_at=[0, 150])
    assert hist.train_acc[0] < 0.2 and hist.train_acc[-1] >= 0.99


def test_sweep_and_warmup_bad_input():
    runs = G.grokking_sweep(11, 16, [0.5], [1.0, 2.0], [0, 1], 20, every=10)
    assert [(r.weight_decay, r.seed) for r in runs] == [(1.0, 0), (1.0, 1), (2.0, 0), (2.0, 1)]
    assert all(r.memorised is None or r.memorised <= 20 for r in runs)
    with pytest.raises(ValueError, match="seed"):
        G.grokking_sweep(11, 16, [0.5], [1.0], [], 20)
    with pytest.raises(ValueError, match="warmup"):
        G.train(G.QuadraticMLP(5, 4), G.modular_split(5, 0.5), 3, warmup=-1)


def test_summarize_runs():
    h = G.History()
    runs = [G.GrokRun(0, 0.5, 1.0, 10, 100, 1.0, h), G.GrokRun(1, 0.5, 1.0, 20, 200, 1.0, h),
            G.GrokRun(2, 0.5, 1.0, 30, None, 0.1, h), G.GrokRun(0, 0.5, 0.0, 5, None, 0.0, h)]
    s = G.summarize_runs(runs, "weight_decay")
    assert list(s) == [0.0, 1.0]
    assert s[1.0]["steps"] == [100, 200] and s[1.0]["n"] == 3 and s[1.0]["mean"] == 150
    assert math.isclose(s[1.0]["half"], 12.706 * math.sqrt(5000) / math.sqrt(2), rel_tol=1e-3)
    assert math.isnan(s[0.0]["mean"]) and s[0.0]["mem"] == [5]
    with pytest.raises(ValueError, match="key"):
        G.summarize_runs(runs, "seed")


def test_describe_setting_and_intervals_overlap():
    h = G.History()
    runs = [G.GrokRun(0, 0.5, 1.0, 10, 100, 1.0, h), G.GrokRun(1, 0.5, 1.0, 20, 200, 1.0, h),
            G.GrokRun(0, 0.5, 2.0, 10, 120, 1.0, h), G.GrokRun(1, 0.5, 2.0, 20, None, 0.9, h),
            G.GrokRun(0, 0.5, 4.0, 5, None, 0.0, h),
            G.GrokRun(0, 0.5, 8.0, 5, 1000, 1.0, h), G.GrokRun(1, 0.5, 8.0, 5, 1002, 1.0, h)]
    s = G.summarize_runs(runs, "weight_decay")
    half = 12.706 * math.sqrt(5000) / math.sqrt(2)
    assert G.describe_setting(1.0, s[1.0], "λ") == f"λ = 1: 150 ± {half:.0f} (от 100 до 200), 2 из 2"
    assert G.describe_setting(2.0, s[2.0], "λ") == "λ = 2: 120 (1 из 2)"
    assert G.describe_setting(4.0, s[4.0], "r") == "r = 4: нет (0 из 1)"
    assert G.intervals_overlap(s[1.0], s[1.0]) is True
    assert G.intervals_overlap(s[1.0], s[8.0]) is False
    assert G.intervals_overlap(s[1.0], s[2.0]) is None  # survivors only: no verdict
    with pytest.raises(ValueError, match="summarize_runs"):
        G.describe_setting(1.0, {"steps": []}, "λ")
