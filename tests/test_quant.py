"""nntrain.quant: code books and block-wise quantization (chapter 4, «Оптимизаторы, экономящие память»)."""

import math

import pytest
import torch

from nntrain.quant import (dequantize_blockwise, dynamic_code, linear_code, max_half_gap, n_blocks,
                           nearest_index, quantize_blockwise, relative_error, roundtrip)

CODES = {"dynamic": dynamic_code(True), "udynamic": dynamic_code(False),
         "linear": linear_code(True), "ulinear": linear_code(False)}


def test_code_books_shape_and_range():
    for name, c in CODES.items():
        assert c.shape == (256,) and c.dtype == torch.float32, name
        assert bool((c[1:] >= c[:-1]).all()), name
        assert float(c.max()) == 1.0 and float(c.min()) >= -1.0, name
        assert 0.0 in c.tolist(), name
    d = CODES["dynamic"]
    assert len(set(d.tolist())) == 256  # 254 non-trivial values, 0 and 1
    assert float(d.min()) > -1.0  # the signed code has +1 but not −1 (as in bitsandbytes)
    assert 5e-7 < float(d[d > 0].min()) < 1e-6  # the smallest decade, 10⁻⁶


@pytest.mark.parametrize("name", list(CODES))
def test_nearest_index_equals_bucketize(name):
    c = CODES[name]
    mids = (c[:-1] + c[1:]) / 2
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(20000, generator=g) * 2 - 1,
                   (torch.rand(20000, generator=g) * 2 - 1) * 10 ** (-8 * torch.rand(20000, generator=g)),
                   mids, c, torch.nextafter(mids, torch.tensor(2.0)),
                   torch.nextafter(mids, torch.tensor(-2.0)), torch.tensor([0.0, 1.0, -1.0, 1e-30])])
    x = x.clamp(-1, 1)
    assert torch.equal(nearest_index(x, c), torch.bucketize(x, mids))


@pytest.mark.parametrize("block", [1, 7, 64, 256, 2048])
@pytest.mark.parametrize("name", ["dynamic", "linear"])
def test_roundtrip_error_bound_per_block(block, name):
    """|x − x̂| ≤ absmax(block)·(half the largest gap of the code), block by block."""
    c = CODES[name]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5000, generator=g) * torch.rand(5000, generator=g) ** 3
    x[17] = 40.0  # an outlier: only its own block loses precision
    codes, absmax = quantize_blockwise(x, c, block)
    assert codes.dtype == torch.uint8 and codes.shape == x.shape
    assert absmax.shape == (n_blocks(x.numel(), block),)
    xh = dequantize_blockwise(codes, absmax, c, block)
    per_block_max = torch.repeat_interleave(absmax, block)[: x.numel()]
    bound = per_block_max * (max_half_gap(c) + 1e-6)  # + float32 rounding of the product
    assert bool(((x - xh).abs() <= bound + 1e-12).all())
    # absmax itself is represented exactly (code value 1 or −1·… the largest magnitude decodes to it)
    blocks = x.abs().reshape(-1)[: (x.numel() // block) * block].reshape(-1, block)
    assert torch.equal(absmax[: blocks.shape[0]], blocks.max(dim=1).values)


def test_nearest_is_optimal():
    """No other code value is closer than the chosen one."""
    c = CODES["dynamic"]
    x = torch.linspace(-1, 1, 10001)
    idx = nearest_index(x, c)
    best = (x[:, None] - c[None, :]).abs().min(dim=1).values
    assert torch.allclose((x - c[idx]).abs(), best, atol=1e-7, rtol=0)


def test_smaller_blocks_isolate_outliers():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1 << 14, generator=g)
    x[::997] *= 1000.0
    errs = [relative_error(x, CODES["dynamic"], b) for b in (16384, 2048, 256, 64)]
    assert errs == sorted(errs, reverse=True)


def test_zero_block_and_empty_and_dtype():
    c = CODES["dynamic"]
    z = torch.zeros(300)
    codes, absmax = quantize_blockwise(z, c, 128)
    assert torch.equal(dequantize_blockwise(codes, absmax, c, 128), z)
    e_codes, e_abs = quantize_blockwise(torch.zeros(0), c, 128)
    assert e_codes.numel() == 0 and e_abs.numel() == 0
    x = torch.randn(10, 20, dtype=torch.float64)
    assert roundtrip(x, c, 32).dtype == torch.float64
    assert relative_error(torch.zeros(5), c) == 0.0


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, None])
def test_block_size_must_be_positive_int(bad):
    with pytest.raises(ValueError, match="block_size"):
        quantize_blockwise(torch.randn(10), CODES["dynamic"], bad)
    with pytest.raises(ValueError, match="block_size"):
        n_blocks(10, bad)


def test_non_finite_input_refused():
    x = torch.randn(100)
    x[3] = math.nan
    with pytest.raises(ValueError, match="non-finite"):
        quantize_blockwise(x, CODES["dynamic"], 32)
    x[3] = math.inf
    with pytest.raises(ValueError, match="non-finite"):
        quantize_blockwise(x, CODES["dynamic"], 32)


def test_bad_codes_and_mismatched_absmax():
    with pytest.raises(ValueError, match="sorted"):
        quantize_blockwise(torch.randn(10), torch.tensor([1.0, 0.0, -1.0]), 4)
    with pytest.raises(ValueError, match="1-D"):
        quantize_blockwise(torch.randn(10), torch.zeros(2, 2), 4)
    codes, absmax = quantize_blockwise(torch.randn(10), CODES["dynamic"], 4)
    with pytest.raises(ValueError, match="absmax"):
        dequantize_blockwise(codes, absmax[:-1], CODES["dynamic"], 4)
    with pytest.raises(TypeError, match="uint8"):
        dequantize_blockwise(codes.long(), absmax, CODES["dynamic"], 4)
    with pytest.raises(ValueError, match="floating"):
        quantize_blockwise(torch.arange(10), CODES["dynamic"], 4)


def test_inputs_not_modified():
    x = torch.randn(1000)
    x0 = x.clone()
    roundtrip(x, CODES["dynamic"], 64)
    assert torch.equal(x, x0)


def test_matches_bitsandbytes_code_books_and_roundtrip():
    F = pytest.importorskip("bitsandbytes.functional")
    assert torch.equal(dynamic_code(True), F.create_dynamic_map(signed=True))
    assert torch.equal(dynamic_code(False), F.create_dynamic_map(signed=False))
    # bitsandbytes' CPU kernel searches the code book approximately: its codes differ from the
    # nearest ones for some values, never by more than a few entries, and its error is not smaller
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1 << 14, generator=g) * torch.rand(1 << 14, generator=g) ** 4
    c = dynamic_code(True)
    ours, am = quantize_blockwise(x, c, 256)
    theirs, st = F.quantize_blockwise(x, code=c, blocksize=256)
    assert torch.equal(am, st.absmax)
    assert int((ours.int() - theirs.int()).abs().max()) <= 8
    err_ours = float((dequantize_blockwise(ours, am, c, 256) - x).norm())
    err_theirs = float((F.dequantize_blockwise(theirs, st) - x).norm())
    assert err_ours <= err_theirs * (1 + 1e-6)
