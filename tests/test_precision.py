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
    assert P.decode(math.nan, "fp8_e4m3").bitstring[2:] == "1111 111"  # the only NaN of e4m3fn
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
