"""Tests of nntrain.imbalance (chapter 11, heavy-tailed class imbalance)."""

import math

import numpy as np
import pytest
import torch

from nntrain import imbalance as M


def test_zipf_frequencies_sum_and_ratio():
    pi = M.zipf_frequencies(10)
    assert pi.sum() == pytest.approx(1.0)
    assert pi[0] / pi[4] == pytest.approx(5.0)
    assert pi[0] == pytest.approx(1 / sum(1 / k for k in range(1, 11)))
    pi2 = M.zipf_frequencies(10, exponent=2.0)
    assert pi2[0] / pi2[1] == pytest.approx(4.0)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True])
def test_zipf_rejects_bad_exponent(bad):
    with pytest.raises(ValueError, match="exponent"):
        M.zipf_frequencies(5, bad)


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, True])
def test_zipf_rejects_fewer_than_two_classes(bad):
    with pytest.raises(ValueError, match="at least 2 classes"):
        M.zipf_frequencies(bad)
    with pytest.raises(ValueError):
        M.frequency_groups(bad)


def test_counts_sum_and_order():
    counts = M.zipf_counts(63, 2048)
    assert counts.sum() == 2048
    assert counts.min() >= 1
    assert np.all(np.diff(counts) <= 0)
    with pytest.raises(ValueError, match="cannot give"):
        M.zipf_counts(10, 5)


def test_groups_are_octaves_and_balanced():
    groups = M.frequency_groups(63)
    assert [len(g) for g in groups] == [1, 2, 4, 8, 16, 32]
    assert np.concatenate(groups).tolist() == list(range(63))
    shares = M.group_shares(M.zipf_counts(63, 100_000), groups)
    assert shares.sum() == pytest.approx(1.0)
    # every group holds between ln 2/H and 1/H of the mass (sum of 1/k over an octave)
    h = sum(1 / k for k in range(1, 64))
    assert np.all(shares > math.log(2) / h - 0.01) and np.all(shares < 1 / h + 0.01)
    assert [len(g) for g in M.frequency_groups(5)] == [1, 2, 2]


def test_linear_problem_initial_loss_and_gradient_formula():
    p = M.linear_problem(15, 256, 32, centre=True, dtype=torch.float64)
    model = p.build_model(0)
    cl = p.class_loss(model).detach()
    assert float(cl.sum()) == pytest.approx(math.log(15))
    assert p.group_losses(cl) == pytest.approx(np.full(len(p.groups), math.log(15)))
    # centred features: gradient of row k at W = 0 is -pi_k * mean of class k
    g = M.class_gradient_norms(p, model)
    x, y = p.data["x"], p.data["y"]
    pi = p.counts / p.n
    expect = np.array([pi[k] * x[y == k].mean(0).norm().item() for k in range(15)])
    assert g == pytest.approx(expect, rel=1e-9)


def test_hessian_blocks_match_autograd():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3, bias=False).double()
    x = torch.randn(20, 4, dtype=torch.float64)
    y = torch.randint(3, (20,))

    def f(w):
        return torch.nn.functional.cross_entropy(x @ w.reshape(3, 4).T, y)

    h = torch.autograd.functional.hessian(f, model.weight.detach().reshape(-1)).reshape(3, 4, 3, 4)
    full, diag = M.hessian_blocks(model, x)
    for k in range(3):
        assert diag[k] == pytest.approx(torch.trace(h[k, :, k, :]).item())
        for l in range(3):
            assert full[k, l] == pytest.approx(abs(torch.trace(h[k, :, l, :]).item()))


def test_sign_descent_step_and_errors():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.0]))
    opt = M.SignDescent([p], lr=0.5)
    p.grad = torch.tensor([3.0, -1e-6, 0.0])
    opt.step()
    assert p.detach().tolist() == [0.5, -1.5, 0.0]
    with pytest.raises(ValueError):
        M.SignDescent([p], lr=0.0)
    with pytest.raises(ValueError, match="unknown method"):
        M.make_optimizer("lion", [p], 0.1)


def test_train_gd_matches_manual_step():
    p = M.linear_problem(7, 64, 8, dtype=torch.float64)
    tr = M.train(p, "gd", 0.5, 1, every=1)
    model = p.build_model(0)
    loss = p.class_loss(model).sum()
    loss.backward()
    with torch.no_grad():
        model.weight -= 0.5 * model.weight.grad
    assert tr.loss[0] == pytest.approx(math.log(7))
    assert tr.loss[1] == pytest.approx(float(p.class_loss(model).detach().sum()))
    assert tr.groups.shape == (2, len(p.groups))


def test_adam_beats_gd_on_rare_classes():
    p = M.linear_problem(31, 512, 64)
    gd = M.train(p, "gd", 0.3, 150)
    adam = M.train(p, "adam", 0.03, 150)
    assert adam.groups[-1, -1] < gd.groups[-1, -1] - 0.5


def test_train_errors_and_divergence():
    p = M.linear_problem(7, 64, 8)
    with pytest.raises(ValueError, match="batch_size"):
        M.train(p, "sgd", 0.1, 5)
    with pytest.raises(ValueError, match="unknown method"):
        M.train(p, "newton", 0.1, 5)
    tr = M.train(p, "gd", 1e30, 20)   # cross-entropy stays finite: a huge loss, never chosen
    assert tr.final > 100 * tr.loss[0]
    p.data["x"][0, 0] = float("nan")
    bad = M.train(p, "gd", 0.1, 20)
    assert bad.diverged and bad.final == math.inf and len(bad.loss) == 1


def test_tune_extends_past_edge_and_check_bracket():
    p = M.linear_problem(7, 64, 8)
    tuned = M.tune(p, "adam", [1e-5, 1e-4], 30, extend=6)
    assert tuned.grid[-1] > 1e-4 and not tuned.at_edge
    assert M.check_bracket(tuned) == tuned.best
    stuck = M.tune(p, "adam", [1e-6, 1e-5], 30, extend=0)
    assert stuck.at_edge
    with pytest.raises(ValueError, match="edge"):
        M.check_bracket(stuck)
    with pytest.raises(ValueError, match="geometric"):
        M.tune(p, "gd", [0.1, 0.2, 0.5], 5)
    with pytest.raises(ValueError):
        M.tune(p, "gd", [0.1], 5)


def test_bigram_problem_shapes_and_floor():
    p = M.bigram_problem(31, 20_000, 8, rank=4)
    assert p.n == 20_000 and p.num_classes == 31
    assert np.all(np.diff(p.counts) <= 0)
    model = p.build_model(0)
    cl = p.class_loss(model)
    assert cl.shape == (31,)
    floor = p.data["floor_class_loss"]
    assert float(floor.sum()) < float(cl.detach().sum())
    tr = M.train(p, "adam", 0.03, 200)
    assert tr.loss[-1] < tr.loss[0]
    # no model beats the empirical conditional on the training sample (in the sum)
    final = p.build_model(0)
    opt = M.make_optimizer("adam", final.parameters(), 0.03)
    for _ in range(200):
        opt.zero_grad()
        p.class_loss(final).sum().backward()
        opt.step()
    assert float(p.class_loss(final).detach().sum()) >= float(floor.sum()) - 1e-5
    sgd = M.train(p, "sgd", 0.5, 10, batch_size=16)
    assert len(sgd.loss) == len(sgd.steps)


def test_sign_descent_is_adam_without_moments_except_at_zero():
    # nonzero gradients: torch's Adam with betas (0, 0), eps = 0 takes lr·sign(g)
    wa = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    wb = torch.nn.Parameter(wa.detach().clone())
    sd = M.SignDescent([wa], lr=0.1)
    ad = torch.optim.Adam([wb], lr=0.1, betas=(0.0, 0.0), eps=0.0)
    for _ in range(4):
        for w, o in ((wa, sd), (wb, ad)):
            o.zero_grad()
            (w ** 3 + w).sum().backward()
            o.step()
    assert torch.allclose(wa, wb)
    # a zero coordinate: sign descent stays, Adam divides 0 by 0
    wa.grad = torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64)
    wb.grad = wa.grad.clone()
    before = wa.detach().clone()
    sd.step()
    ad.step()
    assert wa[0] == before[0] and torch.isnan(wb[0])
