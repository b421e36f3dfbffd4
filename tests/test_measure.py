"""nntrain.measure: FLOP counts against closed forms, forward vs reverse mode, timing."""

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
