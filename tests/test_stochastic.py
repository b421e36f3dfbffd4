"""nntrain.stochastic: sampling, gradient variance, the noisy quadratic and the KNS bounds (chapter 2, SGD)."""

import math

import pytest
import torch

from nntrain import stochastic as st


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------- sampling


def test_sample_batches_shapes_and_distinctness():
    idx = st.sample_batches(20, 7, 50, replace=False, generator=_gen())
    assert idx.shape == (50, 7)
    assert all(len(set(row.tolist())) == 7 for row in idx)
    idx = st.sample_batches(5, 9, 10, replace=True, generator=_gen())
    assert idx.shape == (10, 9) and idx.min() >= 0 and idx.max() < 5


@pytest.mark.parametrize("scheme", st.SCHEMES)
def test_index_schedule_epochs(scheme):
    n, b = 12, 4
    idx = st.index_schedule(n, b, steps=3 * 3 + 1, scheme=scheme, generator=_gen())
    assert idx.shape == (10, 4)
    epochs = idx[:9].view(3, 12)
    if scheme != "replacement":  # every epoch is a permutation of the data
        assert all(sorted(e.tolist()) == list(range(n)) for e in epochs)
    if scheme == "shuffle_once":
        assert torch.equal(epochs[0], epochs[1]) and torch.equal(epochs[1], epochs[2])
    if scheme == "reshuffle":
        assert not torch.equal(epochs[0], epochs[1])


def test_unseen_fraction_with_replacement_tends_to_one_over_e():
    n = 2000
    idx = st.index_schedule(n, 1, n, "replacement", _gen(3))
    unseen = 1 - len(set(idx.flatten().tolist())) / n
    assert abs(unseen - (1 - 1 / n) ** n) < 0.02
    assert abs((1 - 1 / n) ** n - math.exp(-1)) < 1e-3


# ----------------------------------------------------------------- variance


def test_least_squares_grads_match_autograd():
    torch.manual_seed(0)
    X, y, w = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    G = st.least_squares_grads(X, y, w)
    for i in range(7):
        wi = w.clone().requires_grad_()
        (0.5 * (X[i] @ wi - y[i]) ** 2).backward()
        assert torch.allclose(G[i], wi.grad)
    # the mean of the per-example gradients is the gradient of the mean loss
    wi = w.clone().requires_grad_()
    st.least_squares_loss(X, y, wi).backward()
    assert torch.allclose(G.mean(0), wi.grad)


@pytest.mark.parametrize("replace, sizes", [(False, (1, 2, 3, 5, 8)), (True, (1, 2, 3))])
def test_closed_forms_are_exact_on_a_small_population(replace, sizes):
    G = torch.randn(8, 3, generator=_gen(1), dtype=torch.float64)
    s2 = st.population_variance(G)
    for b in sizes:
        exact = st.exact_minibatch_variance(G, b, replace)
        assert math.isclose(exact, st.minibatch_variance_theory(s2, b, 8, replace), rel_tol=1e-10, abs_tol=1e-14)


@pytest.mark.parametrize("replace", [True, False])
def test_monte_carlo_variance_agrees_with_theory(replace):
    G = torch.randn(50, 4, generator=_gen(2), dtype=torch.float64)
    s2 = st.population_variance(G)
    for b in (1, 10, 40):
        mc = st.minibatch_variance(G, b, 20_000, replace, _gen(b))
        assert abs(mc / st.minibatch_variance_theory(s2, b, 50, replace) - 1) < 0.05


def test_variance_errors():
    G = torch.randn(5, 2)
    with pytest.raises(ValueError, match="without replacement"):
        st.minibatch_variance(G, 6, 10, replace=False)
    with pytest.raises(ValueError, match="positive int"):
        st.minibatch_variance(G, 0, 10, replace=True)
    with pytest.raises(ValueError, match="mini-batches to list"):
        st.exact_minibatch_variance(torch.randn(100, 2), 50, replace=False)
    with pytest.raises(ValueError, match="sampling scheme"):
        st.index_schedule(10, 2, 5, "bootstrap")
    with pytest.raises(ValueError, match="expected X"):
        st.least_squares_grads(torch.zeros(3, 2), torch.zeros(4), torch.zeros(2))


# ----------------------------------------------------------------- noisy quadratic and KNS


def test_exact_recursion_matches_monte_carlo():
    lrs = [0.3] * 20 + [0.1] * 20
    mc = st.noisy_quadratic_sgd(2.0, lrs, mu=1.5, noise=0.7, runs=40_000, generator=_gen(4))
    ex = st.noisy_quadratic_exact(2.0, lrs, mu=1.5, noise=0.7)
    assert torch.allclose(mc.loss, ex.loss, rtol=0.03)
    assert torch.allclose(mc.grad_sq, ex.grad_sq, rtol=0.03)


@pytest.mark.parametrize("lr", [0.05, 0.1, 0.4, 1.2])
def test_plateau_and_stationary_second_moment(lr):
    ex = st.noisy_quadratic_exact(3.0, lr, mu=1.0, noise=1.0, steps=2000)
    assert math.isclose(ex.loss[-1].item(), st.noisy_quadratic_plateau(lr), rel_tol=1e-10)
    assert math.isclose(ex.grad_sq[-1].item(), st.noisy_quadratic_stationary_c2(lr), rel_tol=1e-10)


@pytest.mark.parametrize("lr", [0.05, 0.1, 0.3, 0.45])
@pytest.mark.parametrize("mu", [0.5, 1.0, 2.0])
def test_kns_floor_with_stationary_c2_equals_the_plateau(lr, mu):
    """For f = μx²/2 (L = μ) the KNS floor with C² = lim E g² is exactly the plateau."""
    lr = lr / mu
    c2 = st.noisy_quadratic_stationary_c2(lr, mu, 0.8)
    floor = st.kns_constant_step_bound(10_000, lr, mu, mu, c2, gap0=1.0).item()
    assert math.isclose(floor, st.noisy_quadratic_plateau(lr, mu, 0.8), rel_tol=1e-9)


def test_kns_recursion_is_an_equality_on_the_quadratic():
    """δ_{k+1} = (1 − 2αμ)δ_k + Lα²E g_k²/2 holds with equality when L = μ (the proof loses nothing)."""
    lrs = st.kns_decreasing_steps(50, mu=1.3)
    ex = st.noisy_quadratic_exact(4.0, lrs, mu=1.3, noise=0.5)
    rhs = (1 - 2 * lrs * 1.3) * ex.loss[:-1] + 1.3 * lrs ** 2 * ex.grad_sq[:-1] / 2
    assert torch.allclose(ex.loss[1:], rhs, rtol=1e-12)


def test_kns_bounds_hold_with_the_largest_second_moment():
    mu, s, x0 = 1.0, 1.0, 3.0
    c2_max = mu ** 2 * x0 ** 2 + s ** 2  # E g² is largest at the start
    for lr in (0.05, 0.2, 0.45):
        ex = st.noisy_quadratic_exact(x0, lr, mu, s, steps=300)
        k = torch.arange(301)
        assert (ex.grad_sq <= c2_max + 1e-12).all()
        assert (ex.loss <= st.kns_constant_step_bound(k, lr, mu, mu, c2_max, ex.loss[0].item()) + 1e-12).all()
    steps = st.kns_decreasing_steps(5000, mu)
    ex = st.noisy_quadratic_exact(x0, steps, mu, s)
    k = torch.arange(1, 5001)
    assert (ex.loss[1:] <= st.kns_decreasing_step_bound(k, mu, mu, c2_max)).all()
    # and k·E f_k tends to s²/(2μ) = L·C∞²/(2μ²) with C∞² = s²: asymptotically tight
    assert abs(5000 * ex.loss[-1].item() / (s ** 2 / (2 * mu)) - 1) < 0.01


def test_decreasing_steps_values():
    a = st.kns_decreasing_steps(3, mu=2.0)
    assert torch.allclose(a, torch.tensor([1 / 4, 3 / 16, 5 / 36], dtype=torch.float64))


def test_quadratic_and_kns_errors():
    with pytest.raises(ValueError, match="lr < 1/\\(2 mu\\)"):
        st.kns_constant_step_bound(1, 0.6, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="k >= 1"):
        st.kns_decreasing_step_bound(0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="k must be >= 0"):
        st.kns_constant_step_bound(-1, 0.1, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="L >= mu"):
        st.kns_decreasing_step_bound(1, 1.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="mu must be"):
        st.noisy_quadratic_sgd(1.0, 0.1, mu=-1.0, steps=3)
    with pytest.raises(ValueError, match="steps="):
        st.noisy_quadratic_exact(1.0, 0.1)
    with pytest.raises(ValueError, match="plateau"):
        st.noisy_quadratic_plateau(2.5)
    with pytest.raises(ValueError, match="finite"):
        st.noisy_quadratic_exact(1.0, [0.1, float("nan")])


# ----------------------------------------------------------------- least squares and training


def test_sgd_least_squares_matches_a_plain_loop():
    torch.manual_seed(5)
    X, y = torch.randn(30, 3, dtype=torch.float64), torch.randn(30, dtype=torch.float64)
    idx = torch.stack([st.index_schedule(30, 5, 12, "reshuffle", _gen(r)) for r in range(2)])
    out = st.sgd_least_squares(X, y, torch.zeros(3, dtype=torch.float64), 0.1, idx, record_every=4)
    assert out.shape == (2, 4)
    w = torch.zeros(3, dtype=torch.float64)
    for t in range(12):
        b = idx[1, t]
        w = w - 0.1 * st.least_squares_grads(X[b], y[b], w).mean(0)
    assert torch.allclose(out[1, -1], st.least_squares_loss(X, y, w))


def test_train_epochs_same_losses_for_ours_and_torch():
    from nntrain.optim import SGD

    X, y = torch.randn(64, 5, generator=_gen(6)), torch.randint(0, 3, (64,), generator=_gen(7))
    losses = []
    for make in (lambda p: SGD(p, lr=0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        losses.append(st.train_epochs(model, torch.nn.functional.cross_entropy, X, y, make(model.parameters()),
                                      batch_size=16, epochs=3, generator=_gen(8)))
    assert len(losses[0]) == 12 and losses[0] == losses[1]


# ----------------------------------------------------------------- Bottou–Curtis–Nocedal assumption


@pytest.mark.parametrize("lr", [0.05, 0.4, 1.0, 1.6, 1.95])
@pytest.mark.parametrize("mu", [0.5, 1.0])
def test_bcn_bound_is_exact_on_the_noisy_quadratic(lr, mu):
    """E g² = s² + ‖∇f‖² exactly (M = s², M_G = 1, L = μ): the bound equals E f(x_k) at every k."""
    s, x0 = 0.7, 3.0
    lr = lr / mu  # the whole stability range 0 < α < 2/μ
    ex = st.noisy_quadratic_exact(x0, lr, mu, s, steps=200)
    grad2 = 2 * mu * ex.loss  # ‖∇f(x)‖² = μ²x² = 2μ f(x), in expectation
    assert torch.allclose(ex.grad_sq, s ** 2 + grad2, rtol=1e-12)
    k = torch.arange(201)
    bound = st.bcn_constant_step_bound(k, lr, mu, mu, s ** 2, 1.0, ex.loss[0].item())
    assert torch.allclose(ex.loss, bound, rtol=1e-10, atol=1e-15)
    assert math.isclose(st.bcn_noise_floor(lr, mu, mu, s ** 2, 1.0), st.noisy_quadratic_plateau(lr, mu, s),
                        rel_tol=1e-12)


def test_bcn_bound_holds_on_least_squares_with_replacement():
    """Least squares with B = 1 satisfies E‖g‖² ≤ M + M_G‖∇f‖² with M = 2σ*², M_G = 2κ_data; check the bound."""
    torch.manual_seed(3)
    X = torch.randn(40, 3, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3 * torch.randn(40, dtype=torch.float64)
    H = X.T @ X / len(X)
    eig = torch.linalg.eigvalsh(H)
    mu, L = eig[0].item(), eig[-1].item()
    w_star = torch.linalg.solve(H, X.T @ y / len(X))
    sigma_star2 = st.least_squares_grads(X, y, w_star).pow(2).sum(1).mean().item()
    # ‖g_i(w)‖² ≤ 2‖x_i‖⁴‖w − w*‖² + 2‖g_i(w*)‖² and ‖w − w*‖² ≤ ‖∇f‖²/μ²
    M, M_G = 2 * sigma_star2, max(1.0, 2 * X.pow(2).sum(1).pow(2).mean().item() / mu ** 2)
    lr = 1 / (L * M_G)
    idx = torch.stack([st.index_schedule(40, 1, 400, "replacement", _gen(r)) for r in range(400)])
    f_star = st.least_squares_loss(X, y, w_star).item()
    losses = st.sgd_least_squares(X, y, torch.zeros(3, dtype=torch.float64), lr, idx).mean(0) - f_star
    bound = st.bcn_constant_step_bound(torch.arange(401), lr, mu, L, M, M_G, losses[0].item())
    assert (losses <= bound).all()
    assert st.bcn_noise_floor(lr, mu, L, M, M_G) <= L * M * lr / (2 * mu)


def test_bcn_errors():
    with pytest.raises(ValueError, match="2/\\(L M_G\\)"):
        st.bcn_constant_step_bound(1, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="M_G >= 1"):
        st.bcn_noise_floor(0.1, 1.0, 1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="k must be >= 0"):
        st.bcn_constant_step_bound(-1, 0.1, 1.0, 1.0, 1.0, 1.0, 1.0)


def test_time_per_batch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    X, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    times = st.time_per_batch(model, torch.nn.functional.cross_entropy, X, y, [1, 4, 32], repeat=3, warmup=1)
    assert len(times) == 3 and all(t > 0 for t in times)
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="batch size"):
        st.time_per_batch(model, torch.nn.functional.cross_entropy, X, y, [64])
    with pytest.raises(ValueError, match="positive int"):
        st.time_per_batch(model, torch.nn.functional.cross_entropy, X, y, [0])
    with pytest.raises(ValueError, match="repeat"):
        st.time_per_batch(model, torch.nn.functional.cross_entropy, X, y, [1], repeat=0)
    with pytest.raises(ValueError, match="warmup"):
        st.time_per_batch(model, torch.nn.functional.cross_entropy, X, y, [1], warmup=-1)


def test_robbins_monro_step_of_the_exercise_keeps_the_o_one_over_k_bound():
    """Exercise 3: α_k = 1/(μ(k+1)) gives E f(x_k) − f* ≤ L·C0²/(2μ²k) (C0² the largest second moment)."""
    mu, s, x0 = 1.5, 0.8, 2.0
    k = torch.arange(3000, dtype=torch.float64)
    ex = st.noisy_quadratic_exact(x0, 1 / (mu * (k + 1)), mu, s)
    c2_max = ex.grad_sq.max().item()
    bound = st.kns_decreasing_step_bound(torch.arange(1, 3001), mu, mu, c2_max)
    assert (ex.loss[1:] <= bound).all()


@pytest.mark.parametrize("lrs", ["constant", "robbins_monro"])
def test_nonconvex_theorem_inequality_on_the_quadratic(lrs):
    """Σ α_k E‖∇f(x_k)‖² ≤ 2(f(x_0) − f*) + L·M·Σ α_k² with M = s², M_G = 1, α_k ≤ 1/L."""
    mu, s, x0, K = 1.0, 1.0, 3.0, 2000
    k = torch.arange(K, dtype=torch.float64)
    alphas = torch.full((K,), 0.3, dtype=torch.float64) if lrs == "constant" else 1 / (k + 1)
    ex = st.noisy_quadratic_exact(x0, alphas, mu, s)
    grad2 = 2 * mu * ex.loss[:-1]  # E|f'(x_k)|² = μ² E x_k²
    lhs = torch.cumsum(alphas * grad2, 0)
    rhs = 2 * ex.loss[0] + mu * s ** 2 * torch.cumsum(alphas ** 2, 0)
    assert (lhs <= rhs).all()


def test_least_squares_excess_curves():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.3 * torch.randn(60, generator=g,
                                                                                   dtype=torch.float64)
    for scheme in ("replacement", "reshuffle"):
        c = st.least_squares_excess(X, y, 0.05, 4, 6, scheme, runs=3, seed=1)
        assert c.shape == (7,) and bool((c >= -1e-12).all())
        assert torch.allclose(c, st.least_squares_excess(X, y, 0.05, 4, 6, scheme, runs=3, seed=1),
                              rtol=1e-10)
        assert c[-1] < 0.1 * c[0]  # SGD has made progress from w = 0
    with pytest.raises(ValueError, match="epochs"):
        st.least_squares_excess(X, y, 0.05, 4, 0, "reshuffle", runs=3, seed=1)


def test_pl_recursion_without_square_summable_steps_tracks_the_current_noise_level():
    """Under PL, α_k → 0 with Σα_k = ∞ suffices: for α_k = c/√(k+1) (Σα_k² = ∞) the exact
    E f(x_k) on the noisy quadratic follows the floor α_k·s²/(2(2 − α_kμ)) of the current step."""
    mu, s = 1.0, 1.0
    k = torch.arange(200_000, dtype=torch.float64)
    lrs = 0.5 / torch.sqrt(k + 1)
    loss = st.noisy_quadratic_exact(3.0, lrs, mu, s).loss
    floor = lrs * s ** 2 / (2 * (2 - lrs * mu))
    ratio = loss[1:] / floor
    assert abs(ratio[-1].item() - 1) < 0.01
    assert bool((ratio[1000:] < 1.1).all())
