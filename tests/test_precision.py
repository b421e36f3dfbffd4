"""nntrain.precision (chapter 7): float formats, rounding, loss scalers, master weights vs torch.amp."""

import math

import pytest
import torch
from torch import nn

from nntrain import precision as P

# ------------------------------------------------------------------ formats and the decoder

KNOWN_BITS = [  # (value, format, bit pattern) from the IEEE 754 / OCP fp8 tables
    (1.0, "fp32", 0x3F800000), (-2.0, "fp32", 0xC0000000), (0.1, "fp32", 0x3DCCCCCD),
    (1.0, "fp16", 0x3C00), (-2.0, "fp16", 0xC000), (65504.0, "fp16", 0x7BFF), (2.0 ** -14, "fp16", 0x0400),
    (2.0 ** -24, "fp16", 0x0001), (math.inf, "fp16", 0x7C00), (1e6, "fp16", 0x7C00), (0.0, "fp16", 0x0000),
    (1.0, "bf16", 0x3F80), (3.0, "bf16", 0x4040), (-0.5, "bf16", 0xBF00),
    (1.0, "fp8_e4m3", 0x38), (448.0, "fp8_e4m3", 0x7E), (2.0 ** -9, "fp8_e4m3", 0x01),
    (1.0, "fp8_e5m2", 0x3C), (57344.0, "fp8_e5m2", 0x7B), (2.0 ** -16, "fp8_e5m2", 0x01),
    (1.0, "tf32", 0x3F800000 >> 13), (1.0 + 2.0 ** -10, "tf32", (0x3F800000 >> 13) + 1),
]


@pytest.mark.parametrize("value,fmt,bits", KNOWN_BITS)
def test_to_bits_on_known_patterns(value, fmt, bits):
    assert P.to_bits(value, fmt) == bits


def test_decode_fields_of_one_and_of_extremes():
    one = P.decode(1.0, "fp16")
    assert (one.sign, one.exponent, one.mantissa, one.kind, one.value) == (0, 15, 0, "normal", 1.0)
    assert one.bitstring == "0 01111 0000000000"
    assert P.decode(65504.0, "fp16").bitstring == "0 11110 1111111111"
    tiny = P.decode(2.0 ** -24, "fp16")
    assert tiny.kind == "subnormal" and tiny.unbiased_exponent == -14 and tiny.value == 2.0 ** -24
    assert P.decode(-0.0, "fp16").kind == "zero" and P.decode(-0.0, "fp16").sign == 1
    assert P.decode(math.inf, "bf16").kind == "inf"
    assert P.decode(math.nan, "fp32").kind == "nan"
    assert P.decode(math.nan, "fp8_e4m3").bitstring[2:] == "1111 111"  # e4m3fn: S.1111.111 is NaN
    assert P.decode(448.0, "fp8_e4m3").kind == "normal"  # e4m3fn has no infinities


@pytest.mark.parametrize("fmt", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_value_of_fields_matches_torch_on_every_bit_pattern(fmt):
    f = P.get_format(fmt)
    if f.dtype is None:
        pytest.skip(f"this torch has no {f.dtype_name}")
    n = 1 << f.bits
    raw = torch.arange(n, dtype=torch.int64)
    view = {16: torch.int16, 8: torch.uint8}[f.bits]
    if f.bits == 16:
        raw = torch.where(raw >= 2 ** 15, raw - 2 ** 16, raw)
    values = raw.to(view).view(f.dtype).to(torch.float64).tolist()
    for bits, expected in zip(range(n), values):
        got = P.value_of_fields(*P.split_bits(bits, f), f)
        assert (math.isnan(got) and math.isnan(expected)) or got == expected, (fmt, hex(bits), got, expected)


@pytest.mark.parametrize("fmt", ["fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_decode_value_is_torch_rounding(fmt):
    f = P.get_format(fmt)
    g = torch.Generator().manual_seed(0)
    xs = (torch.randn(300, generator=g) * 10.0 ** torch.randint(-6, 4, (300,), generator=g)).tolist()
    for x in xs:
        expected = torch.tensor([x], dtype=torch.float32).to(f.dtype).double().item()
        got = P.decode(x, f).value
        assert (math.isnan(got) and math.isnan(expected)) or got == expected


def test_format_limits_are_the_published_numbers():
    fp16, bf16, fp32 = (P.format_limits(n) for n in ("fp16", "bf16", "fp32"))
    assert (fp16["max"], fp16["min_normal"], fp16["min_subnormal"], fp16["eps"]) == (65504.0, 2.0 ** -14,
                                                                                     2.0 ** -24, 2.0 ** -10)
    assert (bf16["min_normal"], bf16["min_subnormal"], bf16["eps"]) == (2.0 ** -126, 2.0 ** -133, 2.0 ** -7)
    assert bf16["max"] == pytest.approx(3.39e38, rel=1e-3)
    assert (fp32["min_subnormal"], fp32["eps"]) == (2.0 ** -149, 2.0 ** -23)
    assert P.format_limits("fp8_e4m3")["max"] == 448.0 and P.format_limits("fp8_e5m2")["max"] == 57344.0
    assert P.format_limits("tf32")["eps"] == 2.0 ** -10
    for name, f in P.FORMATS.items():  # the smallest subnormal is the pattern 0...01
        if f.dtype is not None or name == "tf32":
            assert P.format_limits(name)["min_subnormal"] == 2.0 ** (1 - f.bias - f.mantissa_bits)


def test_round_to_tf32_is_round_to_nearest_even_on_10_bits():
    x = torch.tensor([1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 1 + 2.0 ** -11 + 2.0 ** -20, -(1 + 2.0 ** -12),
                      math.inf, 3.3e38])
    r = P.round_to(x, "tf32").tolist()
    assert r[:4] == [1.0, 1 + 2.0 ** -9, 1 + 2.0 ** -10, -1.0]
    assert r[4] == math.inf
    g = torch.Generator().manual_seed(1)
    y = torch.randn(10_000, generator=g)
    ry = P.round_to(y, "tf32")
    assert bool(((ry.view(torch.int32) & 0x1FFF) == 0).all())  # 13 low bits cleared
    assert float(((ry - y).abs() / y.abs()).max()) <= 2.0 ** -11
    assert torch.equal(P.round_to(y, "fp16"), y.half().float())


def test_lost_in_addition_and_ulp():
    assert P.lost_in_addition(1.0, 2.0 ** -11, "fp16")  # a tie, rounded to the even neighbour 1
    assert P.lost_in_addition(1.0, 2.0 ** -12, "fp16")
    assert not P.lost_in_addition(1.0, 2.0 ** -10, "fp16")
    assert P.lost_in_addition(1.0, 2.0 ** -9, "bf16") and not P.lost_in_addition(1.0, 2.0 ** -7, "bf16")
    assert P.lost_in_addition(1.0, 2.0 ** -24, "fp32")
    assert P.ulp(1.0, "fp16") == 2.0 ** -10 and P.ulp(1024.0, "fp16") == 1.0 and P.ulp(1.0, "bf16") == 2.0 ** -7
    assert P.ulp(2.0 ** -24, "fp16") == 2.0 ** -24


def test_sequential_sums():
    x = torch.full((10_000, 3), 0.01)
    naive = P.sequential_sum(x, torch.float16, "naive")
    assert torch.equal(naive, torch.full((3,), 32.0, dtype=torch.float16))  # stalls where ulp/2 > 0.01
    for method in ("kahan", "pairwise"):
        assert float((P.sequential_sum(x, torch.float16, method).float() - 100).abs().max()) < 0.1
    g = torch.Generator().manual_seed(0)
    u = torch.rand(3001, 4, generator=g, dtype=torch.float64)
    exact = u.sum(0)
    for method in P.SUM_METHODS:
        assert torch.allclose(P.sequential_sum(u, torch.float64, method), exact, rtol=1e-12)
    path = P.sequential_sum(x[:100], torch.float32, "kahan", running=True)
    assert path.shape == (100, 3) and torch.equal(path[-1], P.sequential_sum(x[:100], torch.float32, "kahan"))
    with pytest.raises(ValueError, match="running"):
        P.sequential_sum(x, torch.float16, "pairwise", running=True)
    err = {m: float((P.sequential_sum(u, torch.float16, m).double() - exact).abs().max()) for m in P.SUM_METHODS}
    assert err["kahan"] < err["naive"] and err["pairwise"] < err["naive"]


def test_underflow_census_counts_each_fate():
    g = torch.tensor([2.0 ** -30, 2.0 ** -20, 2.0 ** -10, 1e5, 0.0])  # the zero is not counted
    c = P.underflow_census(g, 1.0)
    assert c == {"zero": 0.25, "subnormal": 0.25, "overflow": 0.25, "kept": 0.5}
    c = P.underflow_census([g[:2], g[2:]], 2.0 ** 10)
    assert c == {"zero": 0.0, "subnormal": 0.25, "overflow": 0.25, "kept": 0.75}
    assert P.underflow_census(g, 1.0, torch.bfloat16)["kept"] == 1.0


@pytest.mark.parametrize("fmt", ["fp32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_largest_finite_from_bits_is_finfo_max(fmt):
    f = P.get_format(fmt)
    if f.dtype is None:
        pytest.skip(f"this torch has no {f.dtype_name}")
    assert P.largest_finite(fmt) == float(torch.finfo(f.dtype).max)
    ieee_rule = (2 - 2.0 ** -f.mantissa_bits) * 2.0 ** f.bias
    assert (P.largest_finite(fmt) == ieee_rule) == f.ieee_specials  # e4m3: 448, not 240


def test_e4m3_has_two_nans_no_infinities_and_torch_saturates():
    if P.get_format("fp8_e4m3").dtype is None:
        pytest.skip("this torch has no float8_e4m3fn")
    kinds = [P.decode_bits(b, "fp8_e4m3").kind for b in range(256)]
    assert kinds.count("nan") == 2 and kinds.count("inf") == 0
    assert [b for b in range(256) if kinds[b] == "nan"] == [0x7F, 0xFF]
    assert P.decode_bits(0x7E, "fp8_e4m3").value == 448.0 == 1.75 * 2 ** 8
    e5 = [P.decode_bits(b, "fp8_e5m2").kind for b in range(256)]
    assert e5.count("inf") == 2 and e5.count("nan") == 6
    # torch's cast to e4m3fn saturates: overflow (even +inf) becomes +-448, NaN stays NaN
    x = torch.tensor([464.0, 1e5, math.inf, -math.inf, math.nan]).to(torch.float8_e4m3fn).float()
    assert x[:4].tolist() == [448.0, 448.0, 448.0, -448.0] and math.isnan(x[4].item())
    assert torch.tensor([1e5]).to(torch.float8_e5m2).float().item() == math.inf


def test_gap_toward_is_halved_below_a_power_of_two():
    assert P.gap_toward(1.0, +1, "fp16") == 2.0 ** -10
    assert P.gap_toward(1.0, -1, "fp16") == 2.0 ** -11
    assert P.gap_toward(1.5, -1, "fp16") == 2.0 ** -10
    assert P.gap_toward(-1.0, +1, "fp16") == 2.0 ** -11  # towards zero from a negative power of two
    assert P.gap_toward(2.0 ** -14, -1, "fp16") == 2.0 ** -24  # smallest normal: subnormals below
    assert P.absorption_bound(1.0, -1e-4, "fp16") == 2.0 ** -12 == P.ulp(1.0, "fp16") / 4
    with pytest.raises(ValueError, match="not representable"):
        P.gap_toward(0.1, 1, "fp16")
    with pytest.raises(ValueError, match="non-zero"):
        P.gap_toward(1.0, 0, "fp16")


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_absorption_lemma_on_random_pairs(fmt):
    """fl(a + b) == a exactly when |b| < half the gap towards b (ties: a's mantissa is even)."""
    f = P.get_format(fmt)
    g = torch.Generator().manual_seed(7)
    a_all = torch.exp2(torch.randint(-8, 8, (4000,), generator=g).float())
    a_all = torch.where(torch.rand(4000, generator=g) < 0.5, a_all,
                        a_all * (1 + torch.rand(4000, generator=g))).to(f.dtype)
    ratio = torch.exp2(-(f.mantissa_bits + torch.rand(4000, generator=g) * 3))
    sign = torch.where(torch.rand(4000, generator=g) < 0.5, -1.0, 1.0)
    b_all = (a_all.float() * ratio * sign).to(f.dtype)
    checked_ties = 0
    for a, b in zip(a_all.tolist(), b_all.tolist()):
        if b == 0:
            continue
        bound = P.absorption_bound(a, b, fmt)
        lost = P.lost_in_addition(a, b, fmt)
        if abs(b) < bound:
            assert lost, (a, b)
        elif abs(b) > bound:
            assert not lost, (a, b)
        else:
            checked_ties += 1
            assert lost == (P.decode(a, fmt).mantissa % 2 == 0), (a, b)
    # the counterexample of the chapter: the naive rule |b| < ulp(a)/2 says "lost", it is not
    assert not P.lost_in_addition(1.0, -0.75 * 2.0 ** -11, "fp16")


def test_stored_census_and_underflow_against_a_reference():
    ref = torch.tensor([0.0, 2.0 ** -30, 2.0 ** -20, 1.0, 3.0])
    low = ref.half()
    c = P.stored_census(low, ref)
    assert c["zero"] == 0.4 and c["subnormal"] == 0.2 and c["normal"] == 0.4 and c["nonfinite"] == 0.0
    assert c["underflow"] == 0.25  # one of the four non-zero reference values became 0
    assert P.stored_census([torch.tensor([math.inf], dtype=torch.float16)])["nonfinite"] == 1.0
    with pytest.raises(ValueError, match="one floating dtype"):
        P.stored_census([low, ref])
    with pytest.raises(ValueError, match="reference has"):
        P.stored_census(low, ref[:2])


def test_activation_grads_are_the_fp16_gradients_of_a_real_backward_pass():
    x, y = _batches(1)[0]
    mw = P.MasterWeights(_mlp(0), "fp16")
    with P.ActivationGrads(mw.work) as low:
        nn.functional.cross_entropy(mw.forward(x), y).backward()
    assert list(low.grads) == ["4", "3", "2", "1", "0"]  # in backward order
    assert all(g.dtype == torch.float16 for g in low.grads.values())
    with P.ActivationGrads(mw.master, names=["4"]) as ref:
        logits = mw.master(x)
        nn.functional.cross_entropy(logits, y).backward()
    expected = (torch.softmax(logits, 1) - nn.functional.one_hot(y, 4)) / len(y)
    assert torch.allclose(ref.grads["4"], expected, atol=1e-7)
    assert torch.allclose(low.grads["4"].float(), expected, atol=1e-3)
    tiny = P.MasterWeights(_mlp(0), "fp16")
    with P.ActivationGrads(tiny.work, names=["4"]) as ag:
        (2.0 ** -30 * nn.functional.cross_entropy(tiny.forward(x), y)).backward()
    assert P.stored_census(ag.grads["4"])["zero"] == 1.0  # (p - y)/(B 2^30) underflows in fp16
    with pytest.raises(ValueError, match="no such modules"):
        P.ActivationGrads(mw.work, names=["nope"])


def _ln_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 4))


def test_master_weights_keeps_normalisations_in_fp32():
    mw = P.MasterWeights(_ln_net(0), "bf16")
    dtypes = {n: p.dtype for n, p in mw.work.named_parameters()}
    assert dtypes["1.weight"] == dtypes["1.bias"] == torch.float32
    assert dtypes["0.weight"] == dtypes["3.weight"] == torch.bfloat16
    whole = P.MasterWeights(_ln_net(0), "bf16", fp32_modules=())
    assert all(p.dtype == torch.bfloat16 for p in whole.work.parameters())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("net", ["mlp", "layernorm"])
def test_master_weights_equal_cpu_autocast_bit_for_bit_under_the_same_op_rules(precision, net):
    """CPU autocast (torch 2.13) runs layer_norm on the low-precision input with fp32 weights."""
    make = {"mlp": _mlp, "layernorm": _ln_net}[net]
    loss_fn = nn.functional.cross_entropy
    mw = P.MasterWeights(make(0), precision, fp32_inputs=False)
    twin = make(0)
    opt_a = torch.optim.SGD(mw.master.parameters(), lr=0.1, momentum=0.9)
    opt_b = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    with torch.autocast("cpu", dtype=mw.dtype):
        ln_dtype = nn.LayerNorm(4)(torch.ones(2, 4, dtype=mw.dtype)).dtype
    if net == "layernorm" and ln_dtype != mw.dtype:
        pytest.skip("this torch's CPU autocast runs layer_norm in fp32")
    for x, y in _batches(10):
        P.master_weights_step(mw, opt_a, loss_fn, x, y)
        P.autocast_step(twin, opt_b, loss_fn, x, y, precision)
    for p, q in zip(mw.master.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    if net == "layernorm":  # casting the whole copy (LayerNorm weights included) breaks the equality
        whole, ref = P.MasterWeights(make(0), precision, fp32_modules=()), make(0)
        opt_a = torch.optim.SGD(whole.master.parameters(), lr=0.1, momentum=0.9)
        opt_b = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
        for x, y in _batches(10):
            P.master_weights_step(whole, opt_a, loss_fn, x, y)
            P.autocast_step(ref, opt_b, loss_fn, x, y, precision)
        assert any(not torch.equal(p, q) for p, q in zip(whole.master.parameters(), ref.parameters()))


def test_nonfinite_finder_names_the_first_module_with_inf():
    class Scores(nn.Module):
        def forward(self, x):
            return x @ x.transpose(-1, -2)

    model = nn.Sequential(Scores(), nn.Softmax(dim=-1))
    q = torch.randn(8, 16)
    q[:, 0] = 300.0
    with P.NonFiniteFinder(model) as nf:
        model(q.half())
    assert nf.first == "0" and nf.bad == ["0", "1", "(model)"]
    with P.NonFiniteFinder(model) as nf:
        model(q.bfloat16())
    assert nf.first is None and nf.bad == []
    assert not model[0]._forward_hooks  # the hooks are removed on exit


def test_fp8_roundtrip_per_tensor_and_per_block():
    if P.get_format("fp8_e4m3").dtype is None:
        pytest.skip("this torch has no float8_e4m3fn")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 256, generator=g)
    for block in (None, 128, 32):
        q = P.fp8_roundtrip(x, "fp8_e4m3", block=block)
        assert q.shape == x.shape and q.dtype == torch.float32
        assert float(((q - x).abs() / x.abs()).max()) <= 2.0 ** -4 + 1e-6 or block is None
    assert P.fp8_roundtrip(x, block=None).abs().max() == x.abs().max()  # amax maps exactly to 448
    x[3, 5] = 1e6
    per_tensor = P.fp8_roundtrip(x)
    per_block = P.fp8_roundtrip(x, block=32)
    assert (per_tensor == 0).sum() > 10 * max(int((per_block == 0).sum()), 1)
    with pytest.raises(ValueError, match="dividing"):
        P.fp8_roundtrip(x, block=100)
    with pytest.raises(ValueError, match="fp8"):
        P.fp8_roundtrip(x, "fp16")


def test_torch_threads_restores_the_number_of_threads():
    before = torch.get_num_threads()
    with P.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), P.torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive int"):
        with P.torch_threads(0):
            pass


def test_draw_mixed_precision_flow():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    P.draw_mixed_precision_flow(ax)
    assert len(ax.patches) >= 14 and any("мастер-веса" in t.get_text() for t in ax.texts)
    plt.close(fig)


# ------------------------------------------------------------------ loss scalers vs GradScaler


def test_dynamic_rule_defaults_are_gradscalers():
    s = torch.amp.GradScaler("cpu")
    d = P.DynamicLossScaler()
    assert (d.value, d.growth_factor, d.backoff_factor, d.growth_interval) == (
        s.get_scale(), s.get_growth_factor(), s.get_backoff_factor(), s.get_growth_interval())


@pytest.mark.parametrize("interval", [1, 3, 5])
def test_dynamic_scaler_skips_halves_and_grows_like_gradscaler(interval):
    bad = {2: math.inf, 3: math.inf, 9: math.nan, 10: -math.inf, 17: math.nan}
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(5, generator=g, dtype=torch.float64) for _ in range(30)]
    for t, v in bad.items():
        grads[t][t % 5] = v
    kw = dict(init_scale=2.0 ** 10, growth_factor=2.0, backoff_factor=0.5, growth_interval=interval)
    p_ref = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    p_our = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt_ref = torch.optim.SGD([p_ref], lr=0.1, momentum=0.9)
    opt_our = torch.optim.SGD([p_our], lr=0.1, momentum=0.9)
    ref = torch.amp.GradScaler("cpu", **kw)
    our = P.DynamicLossScaler(**kw)
    for t, gt in enumerate(grads):
        ref.scale((p_ref * gt).sum()).backward()  # backward of scale·⟨p, g⟩: the grad is scale·g
        assert torch.equal(p_ref.grad, gt * ref.get_scale()) or t in bad
        ref.step(opt_ref)
        ref.update()
        opt_ref.zero_grad()
        p_our.grad = gt * our.value
        found = our.unscale_([p_our.grad])
        assert found == (t in bad)
        if not found:
            opt_our.step()
        our.update(found)
        opt_our.zero_grad()
        assert our.value == ref.get_scale(), t
        assert our.growth_tracker == int(ref._get_growth_tracker()), t
        assert torch.equal(p_our.detach(), p_ref.detach()), t
    assert our.skipped == len(bad)


def test_dynamic_rule_never_grows_to_inf():
    assert P.dynamic_scale_update(2.0 ** 127, 1, False, growth_interval=2) == (2.0 ** 127, 0)
    assert P.dynamic_scale_update(8.0, 5, True) == (4.0, 0)
    assert P.dynamic_scale_update(8.0, 5, False, growth_interval=7) == (8.0, 6)


def test_static_scaler_never_changes():
    s = P.StaticLossScaler(8.0)
    grad = torch.tensor([8.0, 16.0])
    assert not s.unscale_([grad, None]) and torch.equal(grad, torch.tensor([1.0, 2.0]))
    assert s.unscale_([torch.tensor([math.inf])])
    s.update(True)
    assert s.value == 8.0 and s.skipped == 1
    assert float(s.scale(torch.tensor(2.0))) == 16.0


# ------------------------------------------------------------------ master weights vs autocast


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))


def _batches(n: int):
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(16, 12, generator=g), torch.randint(0, 4, (16,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_master_weights_loop_matches_autocast(precision, opt_name):
    make = {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
            "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1)}[opt_name]
    loss_fn = nn.functional.cross_entropy
    mw = P.MasterWeights(_mlp(0), precision)
    twin = _mlp(0)
    opt_a, opt_b = make(mw.master.parameters()), make(twin.parameters())
    ours = P.DynamicLossScaler(growth_interval=4) if precision == "fp16" else None
    lib = torch.amp.GradScaler("cpu", growth_interval=4) if precision == "fp16" else None
    try:
        for x, y in _batches(12):
            a = P.master_weights_step(mw, opt_a, loss_fn, x, y, ours).loss
            b = P.autocast_step(twin, opt_b, loss_fn, x, y, precision, lib)
            assert a == pytest.approx(b, rel=1e-3, abs=1e-3)
    except RuntimeError as err:  # an old torch without CPU autocast for this dtype
        pytest.skip(f"CPU autocast {precision} unavailable: {err}")
    for p, q in zip(mw.master.parameters(), twin.parameters()):
        assert p.dtype == torch.float32
        assert torch.allclose(p, q, atol=1e-3), float((p - q).abs().max())
    if ours is not None:
        assert ours.value == lib.get_scale()


def test_fp32_master_weights_step_is_plain_training():
    mw = P.MasterWeights(_mlp(1), "fp32")
    plain = _mlp(1)
    opt_a = torch.optim.SGD(mw.master.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(plain.parameters(), lr=0.1)
    for x, y in _batches(5):
        r = P.master_weights_step(mw, opt_a, nn.functional.cross_entropy, x, y)
        P.autocast_step(plain, opt_b, nn.functional.cross_entropy, x, y, "fp32")
        assert not r.skipped and r.scale == 1.0 and 0.0 <= r.zero_share < 1.0
    for p, q in zip(mw.master.parameters(), plain.parameters()):
        assert torch.equal(p, q)


def test_tiny_gradients_vanish_without_scaling_and_survive_with_it():
    x, y = _batches(1)[0]
    shares = {}
    for scale in (1.0, 2.0 ** 16):
        mw = P.MasterWeights(_mlp(2), "fp16")
        opt = torch.optim.SGD(mw.master.parameters(), lr=0.0)
        r = P.master_weights_step(mw, opt, lambda o, t: 2.0 ** -20 * nn.functional.cross_entropy(o, t), x, y,
                                  P.StaticLossScaler(scale))
        shares[scale] = r.zero_share
    assert shares[1.0] > 0.9 and shares[2.0 ** 16] < 0.2


def test_train_master_weights_loss_weight_is_exact_in_fp32():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(64, 12, generator=g), torch.randint(0, 4, (64,), generator=g)
    a, ha = P.train_master_weights(_mlp(4), x, y, steps=8, precision="fp32", batch_size=16)
    b, hb = P.train_master_weights(_mlp(4), x, y, steps=8, precision="fp32", batch_size=16, loss_weight=2.0 ** -16)
    assert ha["loss"] == hb["loss"]
    assert all(torch.equal(p, q) for p, q in zip(a.master.parameters(), b.master.parameters()))
    with pytest.raises(ValueError, match="steps"):
        P.train_master_weights(_mlp(4), x, y, steps=0)


def test_matmul_seconds_runs():
    assert P.matmul_seconds(16, torch.float32, repeats=2) > 0
    with pytest.raises(ValueError, match="positive int"):
        P.matmul_seconds(0, torch.float32)


def test_tf32_matmul_restores_the_flags():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with P.tf32_matmul(True):
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    with pytest.raises(RuntimeError), P.tf32_matmul(True):
        raise RuntimeError("boom")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@pytest.mark.parametrize("mode", P.TIMING_MODES)
def test_train_step_seconds_trains_in_every_mode(mode):
    model = _mlp(0)
    x, y = torch.randn(32, 12), torch.randint(0, 4, (32,))
    w0 = [p.detach().clone() for p in model.parameters()]
    sec = P.train_step_seconds(model, lambda m: nn.functional.cross_entropy(m(x).float(), y), mode,
                               repeats=2, warmup=1, lr=1e-2)
    assert sec > 0
    assert any(not torch.equal(a, b) for a, b in zip(w0, model.parameters()))  # the steps really updated
    with pytest.raises(ValueError, match="expected one of"):
        P.train_step_seconds(model, lambda m: m(x).sum(), "fp64")
    with pytest.raises(TypeError, match="nn.Module"):
        P.train_step_seconds(lambda t: t, lambda m: m(x).sum(), mode)


@pytest.mark.parametrize("mode", ["fp32", "bf16"])
def test_train_step_profile_shares_sum_to_one_and_the_step_trains(mode):
    model = _mlp(0)
    x, y = torch.randn(32, 12), torch.randint(0, 4, (32,))
    w0 = [p.detach().clone() for p in model.parameters()]
    prof = P.train_step_profile(model, lambda m: nn.functional.cross_entropy(m(x).float(), y), mode,
                                repeats=2, warmup=1, lr=1e-2)
    assert set(prof) == set(P.PROFILE_GROUPS) | {"ms"} and prof["ms"] > 0
    assert math.isclose(sum(prof[k] for k in P.PROFILE_GROUPS), 1.0, rel_tol=1e-9)
    assert prof["matmul"] > 0 and prof["attention"] == 0  # an MLP: linear layers, no attention
    assert any(not torch.equal(a, b) for a, b in zip(w0, model.parameters()))
    with pytest.raises(ValueError, match="repeats"):
        P.train_step_profile(model, lambda m: m(x).sum(), mode, repeats=0)


def test_profile_groups_of_operator_names():
    assert P._profile_group("aten::_scaled_dot_product_flash_attention_for_cpu_backward") == "attention"
    assert P._profile_group("aten::mm") == P._profile_group("aten::addmm") == "matmul"
    assert P._profile_group("aten::copy_") == "casts" and P._profile_group("aten::gelu") == "other"


@pytest.mark.parametrize("skipped,warns", [(0, True), (3, False)])
def test_scheduler_warning_only_when_the_first_step_is_skipped(skipped, warns):
    """The recipe in chapter 7: PyTorch warns about lr_scheduler.step() before optimizer.step()
    only if GradScaler skipped the very first optimizer step; a later skip is silent, yet the
    schedule still advances on it."""
    import warnings

    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    scaler = torch.amp.GradScaler("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in range(6):
            g = torch.tensor([math.inf if k == skipped else 1.0])
            scaler.scale((p * g).sum()).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad()
            sched.step()
    said = any("lr_scheduler.step()" in str(w.message) for w in caught)
    assert said == warns
    assert math.isclose(opt.param_groups[0]["lr"], 0.1 * 0.5**6)  # six scheduler steps, one skipped update


# ------------------------------------------------------------------ bad input


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="expected one of"):
        P.get_format("fp64")
    with pytest.raises(TypeError, match="Python float"):
        P.to_bits("1.0", "fp16")
    with pytest.raises(ValueError, match="bits must be"):
        P.split_bits(1 << 16, "fp16")
    with pytest.raises(ValueError, match="no torch dtype"):
        P.lost_in_addition(1.0, 1.0, "tf32")
    with pytest.raises(TypeError, match="torch.Tensor"):
        P.round_to([1.0], "fp16")
    with pytest.raises(ValueError, match="undefined"):
        P.ulp(math.inf, "fp16")
    with pytest.raises(ValueError, match="expected one of"):
        P.sequential_sum(torch.ones(3), torch.float16, "exact")
    with pytest.raises(ValueError, match="positive finite"):
        P.underflow_census(torch.ones(3), 0.0)
    with pytest.raises(ValueError, match="no non-zero"):
        P.underflow_census(torch.zeros(3))
    with pytest.raises(ValueError, match="positive finite"):
        P.StaticLossScaler(-1.0)
    with pytest.raises(ValueError, match="growth_factor must be > 1"):
        P.DynamicLossScaler(growth_factor=0.5)
    with pytest.raises(ValueError, match="backoff_factor must be < 1"):
        P.DynamicLossScaler(backoff_factor=2.0)
    with pytest.raises(ValueError, match="growth_interval"):
        P.DynamicLossScaler(growth_interval=0)
    with pytest.raises(TypeError, match="nn.Module"):
        P.MasterWeights(lambda x: x)
    with pytest.raises(ValueError, match="expected one of"):
        P.MasterWeights(_mlp(0), "fp64")
