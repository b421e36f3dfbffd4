"""Shampoo (chapter 2): the rule, the polar-factor link to Muon, the tensor and vector cases, errors."""

import pytest
import torch

from nntrain.optim import Shampoo, full_matrix_adagrad_init, full_matrix_adagrad_update, inverse_root, \
    polar_factor_svd, shampoo_state_numel, shampoo_update


def test_one_step_without_accumulation_is_the_polar_factor():
    torch.manual_seed(0)
    g = torch.randn(7, 4, dtype=torch.float64)
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    for eps in (1e-2, 1e-6):
        p, _ = shampoo_update(torch.zeros_like(g), g, lr=1.0, eps=eps)
        torch.testing.assert_close(-p, u @ torch.diag(s / (s ** 2 + eps).sqrt()) @ vh)
    p, _ = shampoo_update(torch.zeros_like(g), g, lr=1.0, eps=1e-12)
    torch.testing.assert_close(-p, polar_factor_svd(g), rtol=0, atol=1e-9)


def test_rank_deficient_gradient_still_gives_the_polar_factor():
    torch.manual_seed(1)
    g = torch.randn(6, 2, dtype=torch.float64) @ torch.randn(2, 5, dtype=torch.float64)
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    p, _ = shampoo_update(torch.zeros_like(g), g, lr=1.0, eps=1e-14)
    torch.testing.assert_close(-p, u[:, :2] @ vh[:2], rtol=0, atol=1e-6)


def test_accumulated_rule_matches_the_formula():
    torch.manual_seed(2)
    w = torch.randn(3, 5, dtype=torch.float64)
    eps, lr = 1e-3, 0.1
    L, R = eps * torch.eye(3, dtype=w.dtype), eps * torch.eye(5, dtype=w.dtype)
    ref, p, s = w.clone(), w.clone(), None
    for t in range(1, 4):
        g = torch.randn(3, 5, dtype=w.dtype)
        L, R = L + g @ g.T, R + g.T @ g
        ref = ref - lr * inverse_root(L, 4) @ g @ inverse_root(R, 4)
        p, s = shampoo_update(p, g, s, lr=lr, eps=eps, step=t)
    torch.testing.assert_close(p, ref)


def test_wrapper_matches_pure_rule_and_update_freq_reuses_roots():
    torch.manual_seed(3)
    a = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    opt = Shampoo([a], lr=0.1, update_freq=2)
    g1, g2 = torch.randn(4, 3, dtype=a.dtype), torch.randn(4, 3, dtype=a.dtype)
    p1, s1 = shampoo_update(a.detach(), g1, lr=0.1, eps=1e-4)
    a.grad = g1
    opt.step()
    torch.testing.assert_close(a.detach(), p1)
    roots = [r.clone() for r in opt.state[a]["roots"]]
    a.grad = g2
    opt.step()  # step 2: statistics grow, roots are those of step 1
    torch.testing.assert_close(a.detach(), p1 - 0.1 * roots[0] @ g2 @ roots[1])
    torch.testing.assert_close(opt.state[a]["stats"][0], s1["stats"][0] + g2 @ g2.T)


def test_momentum_on_the_preconditioned_direction():
    torch.manual_seed(4)
    a = torch.nn.Parameter(torch.randn(3, 3, dtype=torch.float64))
    w0 = a.detach().clone()
    opt = Shampoo([a], lr=0.1, momentum=0.5)
    gs = [torch.randn(3, 3, dtype=a.dtype) for _ in range(2)]
    L, R, b = 1e-4 * torch.eye(3, dtype=a.dtype), 1e-4 * torch.eye(3, dtype=a.dtype), 0
    for g in gs:
        a.grad = g
        opt.step()
        L, R = L + g @ g.T, R + g.T @ g
        b = 0.5 * b + inverse_root(L, 4) @ g @ inverse_root(R, 4)
        w0 = w0 - 0.1 * b
    torch.testing.assert_close(a.detach(), w0)


def test_order_three_tensor_uses_exponent_one_sixth():
    torch.manual_seed(5)
    g = torch.randn(2, 3, 4, dtype=torch.float64)
    p, s = shampoo_update(torch.zeros_like(g), g, lr=1.0, eps=1e-3)
    h = [1e-3 * torch.eye(d, dtype=g.dtype) + g.movedim(i, 0).reshape(d, -1) @ g.movedim(i, 0).reshape(d, -1).T
         for i, d in enumerate(g.shape)]
    ref = torch.einsum("ai,bj,ck,ijk->abc", *[inverse_root(x, 6) for x in h], g)
    torch.testing.assert_close(-p, ref)


def test_vectors_need_a_rule():
    with pytest.raises(ValueError, match="1-D parameter.*vector='diagonal'"):
        Shampoo([torch.nn.Parameter(torch.ones(3))], lr=0.1)
    b = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = Shampoo([b], lr=0.1, vector="diagonal", eps=1e-4)
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    b.grad = g
    opt.step()
    torch.testing.assert_close(b.detach(), 1 - 0.1 * g / (1e-4 + g ** 2).sqrt())


@pytest.mark.parametrize("bad, match", [(dict(lr=0.0), "lr"), (dict(lr=-0.1), "lr"),
                                        (dict(lr=0.1, eps=0.0), "eps"), (dict(lr=0.1, update_freq=0), "update_freq"),
                                        (dict(lr=0.1, momentum=1.0), "momentum"),
                                        (dict(lr=0.1, vector="full"), "vector")])
def test_bad_options(bad, match):
    with pytest.raises(ValueError, match=match):
        Shampoo([torch.nn.Parameter(torch.ones(2, 2))], **bad)


def test_full_matrix_adagrad_and_memory_counts():
    torch.manual_seed(6)
    w, g = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    p, h = full_matrix_adagrad_update(w, g, full_matrix_adagrad_init(w, 1e-8), lr=1.0, eps=1e-8)
    v = g.reshape(-1)
    # one step: H = vvᵀ + εI, H^{-1/2} v ≈ v/‖v‖
    torch.testing.assert_close((w - p).reshape(-1), v / v.norm(), rtol=1e-6, atol=1e-6)
    assert shampoo_state_numel((100, 50)) == {"diagonal": 5000, "shampoo": 12500, "full": 25_000_000}
    with pytest.raises(ValueError, match="positive definite"):
        inverse_root(torch.zeros(2, 2), 4)
