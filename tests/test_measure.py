"""nntrain.measure: FLOP counts against closed forms, forward vs reverse mode, timing."""

import math

import pytest
import torch

from nntrain import measure


def _mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def test_matmul_costs_2mkn():
    a, b = torch.randn(3, 5), torch.randn(5, 7)
    assert measure.count_flops(torch.mm, a, b) == 2 * 3 * 5 * 7
    assert measure.flops_by_op(torch.mm, a, b) == {"aten.mm": 2 * 3 * 5 * 7}


@pytest.mark.parametrize("input_grad", [False, True])
@pytest.mark.parametrize("sizes", [[8, 16, 4], [10, 32, 32, 32, 3], [5, 5]])
def test_mlp_flops_match_the_formula(sizes, input_grad):
    torch.manual_seed(0)
    x = torch.randn(12, sizes[0], requires_grad=input_grad)
    split = measure.forward_backward_flops(_mlp(sizes), x)
    assert split == measure.mlp_flops_formula(12, sizes, input_grad=input_grad)


def test_ratio_tends_to_three():
    depth = 6
    sizes = [64] * (depth + 1)
    split = measure.mlp_flops_formula(32, sizes)
    assert split.ratio == pytest.approx(3 - 1 / depth)
    assert measure.mlp_flops_formula(32, sizes, input_grad=True).ratio == 3.0
    assert split.total == split.forward + split.backward


def test_forward_and_reverse_mode_give_the_same_gradient():
    torch.manual_seed(0)
    w = torch.randn(6, 6, dtype=torch.float64)
    f = lambda v: torch.tanh(v @ w).pow(2).sum()
    x = torch.randn(1, 6, dtype=torch.float64)
    g_fwd, passes_fwd = measure.gradient_by_forward_mode(f, x)
    g_rev, passes_rev = measure.gradient_by_reverse_mode(f, x)
    assert passes_fwd == 6 and passes_rev == 1
    assert torch.allclose(g_fwd, g_rev, rtol=1e-12, atol=1e-14)
    fwd_flops = measure.count_flops(measure.gradient_by_forward_mode, f, x)
    rev_flops = measure.count_flops(measure.gradient_by_reverse_mode, f, x)
    assert fwd_flops > 3 * rev_flops


def test_time_fn_and_errors():
    assert measure.time_fn(lambda: sum(range(100)), repeat=3) >= 0.0
    with pytest.raises(ValueError, match="repeat"):
        measure.time_fn(lambda: None, repeat=0)
    with pytest.raises(TypeError, match="callable"):
        measure.count_flops(42)
    with pytest.raises(ValueError, match="scalar"):
        measure.forward_backward_flops(_mlp([3, 2]), torch.randn(4, 3), loss_fn=lambda out: out)
    with pytest.raises(ValueError, match="does not require grad"):
        measure.forward_backward_flops(lambda x: x * 2, torch.randn(4, 3))
    with pytest.raises(ValueError, match="scalar"):
        measure.gradient_by_reverse_mode(lambda v: v * 2, torch.randn(3))
    with pytest.raises(ValueError, match="positive"):
        measure.mlp_flops_formula(0, [3, 2])


@pytest.mark.parametrize("activation,init_scale", [("tanh", 0.5), ("tanh", 2.0), ("relu", 1.0), ("relu", 2.0)])
def test_gradient_gain_is_bounded_by_the_product_of_spectral_norms(activation, init_scale):
    for depth in (1, 3, 8):
        gain = measure.gradient_gain(depth, activation, init_scale, width=32, batch=8, seed=depth)
        assert 0 < gain.gain_first <= gain.bound * (1 + 1e-12)


def test_gradient_gain_of_relu_follows_the_mean_field_factor():
    """E‖Wm‖² = g²‖m‖² and half of ReLU's slopes are 1: the norm changes by about g/√2 per layer."""
    depth = 24
    for scale in (1.0, 2.0**0.5, 2.0):
        gain = measure.gradient_gain(depth, "relu", scale, width=256, batch=64, seed=1, bound=False).gain
        expected = (scale / 2**0.5) ** depth
        assert expected / 3 < gain < expected * 3, (scale, gain, expected)
    assert math.isnan(measure.gradient_gain(2, "relu", bound=False).bound)  # no SVDs asked for


def test_gradient_gain_of_a_linear_network_with_orthogonal_like_scale():
    """With no nonlinearity and scale 1 the expected squared gain is exactly 1 per layer."""
    gain = measure.gradient_gain(16, "linear", 1.0, width=256, batch=64, seed=2, bound=False).gain
    assert 0.5 < gain < 2.0


def test_gradient_gain_rejects_bad_input():
    with pytest.raises(ValueError, match="activation"):
        measure.gradient_gain(2, "gelu")
    with pytest.raises(ValueError, match="depth"):
        measure.gradient_gain(0)
    with pytest.raises(ValueError, match="init_scale"):
        measure.gradient_gain(2, init_scale=0.0)


def test_silenced_stderr_fd_hides_descriptor_2_and_restores_it(capfd):
    import os

    with measure.silenced_stderr_fd():
        os.write(2, b"from C\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_time_fn_is_the_median_after_one_warmup(monkeypatch):
    # chapter 8 timed with its own median_time(fn, repeats): one warm-up call, then the median
    # of `repeats` timings (statistics.median); for an odd count time_fn returns the same number
    import statistics

    durations = iter([9.0, 3.0, 1.0, 2.0, 7.0, 5.0])   # the first call is the warm-up
    clock = {"t": 0.0, "pending": 0.0}

    def fn():
        clock["pending"] = next(durations)

    def perf_counter():
        clock["t"] += clock["pending"]
        clock["pending"] = 0.0
        return clock["t"]

    monkeypatch.setattr(measure.time, "perf_counter", perf_counter)
    assert measure.time_fn(fn, repeat=5, warmup=1) == statistics.median([3.0, 1.0, 2.0, 7.0, 5.0])
