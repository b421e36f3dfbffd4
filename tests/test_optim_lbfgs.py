"""nntrain.optim.lbfgs: the two-loop recursion, the BFGS update and the LBFGS wrapper vs torch."""

import pytest
import torch

from nntrain.functions import rosenbrock
from nntrain.optim.lbfgs import LBFGS, bfgs_inverse_update, lbfgs_dense_inverse, \
    lbfgs_direction, lbfgs_push


def _pairs(d=6, m=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    B = torch.randn(d, d, generator=gen, dtype=torch.float64)
    A = B @ B.T + torch.eye(d, dtype=torch.float64)  # SPD: y = A s has yᵀs > 0
    s = [torch.randn(d, generator=gen, dtype=torch.float64) for _ in range(m)]
    return A, s, [A @ v for v in s]


def test_two_loop_equals_dense_bfgs_product():
    A, s, y = _pairs()
    g = torch.arange(6, dtype=torch.float64) - 2.5
    H = lbfgs_dense_inverse(s, y)
    assert torch.allclose(lbfgs_direction(g, s, y), -H @ g, rtol=1e-10, atol=1e-12)


def test_secant_condition_and_positive_definiteness():
    A, s, y = _pairs()
    H = torch.eye(6, dtype=torch.float64)
    for si, yi in zip(s, y):
        H = bfgs_inverse_update(H, si, yi)
        assert torch.allclose(H @ yi, si, rtol=1e-9, atol=1e-10)
        assert torch.allclose(H, H.T, atol=1e-10)
        assert torch.linalg.eigvalsh(H).min() > 0


def test_no_pairs_is_gradient_step():
    g = torch.tensor([1.0, -2.0], dtype=torch.float64)
    assert torch.equal(lbfgs_direction(g, [], []), -g)


def test_push_keeps_history_and_skips_bad_curvature():
    A, s, y = _pairs(m=5)
    sh, yh = [], []
    for si, yi in zip(s, y):
        sh, yh, kept = lbfgs_push(sh, yh, si, yi, 3)
        assert kept
    assert len(sh) == 3 and sh[0] is s[2]
    sh2, yh2, kept = lbfgs_push(sh, yh, s[0], -y[0], 3)
    assert not kept and sh2 == sh


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
@pytest.mark.parametrize("history", [1, 3, 10])
def test_wrapper_matches_torch_lbfgs_on_rosenbrock(line_search, history):
    f = rosenbrock()
    paths = []
    for cls in (LBFGS, torch.optim.LBFGS):
        x = torch.tensor([-1.5, 2.0], dtype=torch.float64, requires_grad=True)
        lr = 1.0 if line_search else 0.1
        opt = cls([x], lr=lr, max_iter=4, history_size=history, line_search_fn=line_search)

        def closure():
            opt.zero_grad()
            loss = f(x)
            loss.backward()
            return loss

        path = []
        for _ in range(15):
            opt.step(closure)
            path.append(x.detach().clone())
        paths.append(torch.stack(path))
    assert torch.isfinite(paths[0]).all()
    assert torch.allclose(paths[0], paths[1], rtol=0, atol=1e-13)


def test_wrapper_matches_torch_on_two_tensors():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(50, 5, generator=gen, dtype=torch.float64)
    t = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    out = []
    for cls in (LBFGS, torch.optim.LBFGS):
        W = torch.zeros(5, 3, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        opt = cls([W, b], lr=1.0, max_iter=20, history_size=5)

        def closure():
            opt.zero_grad()
            loss = ((X @ W + b - t) ** 2).mean()
            loss.backward()
            return loss

        for _ in range(3):
            opt.step(closure)
        out.append(torch.cat([W.detach().reshape(-1), b.detach()]))
    assert torch.allclose(out[0], out[1], rtol=0, atol=1e-13)


def test_bad_input():
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="lr"):
        LBFGS([x], lr=0.0)
    with pytest.raises(ValueError, match="lr"):
        LBFGS([x], lr=float("nan"))
    with pytest.raises(ValueError, match="history_size"):
        LBFGS([x], history_size=0)
    with pytest.raises(ValueError, match="line_search_fn"):
        LBFGS([x], line_search_fn="armijo")
    g = torch.tensor([1.0, float("nan")])
    with pytest.raises(ValueError, match="NaN"):
        lbfgs_direction(g, [], [])
    s = torch.tensor([1.0, 0.0])
    with pytest.raises(ValueError, match="curvature"):
        lbfgs_direction(torch.ones(2), [s], [-s])
    with pytest.raises(ValueError, match="history_size"):
        lbfgs_push([], [], s, s, 0)
