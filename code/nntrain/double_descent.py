"""Double descent in least squares and random features (chapter 10, «Двойной спуск»).

* min-norm least squares X⁺y and ridge regression in the scaling of Hastie et al. 2022
  (arXiv 1903.08560): minimise (1/n)‖y − Xβ‖² + λ‖β‖², so β̂_λ = (XᵀX + nλI)⁻¹Xᵀy;
* the exact conditional risk of the min-norm fit for isotropic features,
  R_X = ‖(I − Π)β‖² + σ² tr((XᵀX)⁺), and its Monte Carlo average over Gaussian designs;
* Hastie et al.'s limiting risk (Theorem 1, isotropic features) as a function of γ = p/n and
  SNR = r²/σ², and the exact finite-n risk σ²p/(n − p − 1) for n > p + 1 (Gaussian design);
* random ReLU features (Belkin et al. 2019, arXiv 1812.11118) fitted by min-norm or ridge;
* epoch-wise double descent: gradient descent on linear regression with two feature scales
  (closed form) and a trained two-layer linear network on the same data with random labels,
  with the Gauss–Newton sharpness along the run (is the step below the edge of stability?).

Letters as in Hastie et al.: n samples, p features (number of random features in the random-
features model), γ = p/n. Everything is float64 and driven by an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ._checks import check_positive_int

__all__ = [
    "min_norm_lstsq", "ridge", "ridgeless_risk", "finite_n_risk", "conditional_risk",
    "ridge_conditional_risk",
    "simulate_ridgeless_risk", "smallest_singular_values", "relu_features",
    "draw_relu_weights", "sine_target", "random_features_curve", "gd_risk_path",
    "two_scale_regression", "two_scale_network_data", "linear_net_sharpness",
    "two_scale_network_curve", "fall_rise_fall", "descent_after_minimum",
]


def _matrix(name: str, X: Tensor) -> Tensor:
    if not isinstance(X, Tensor) or X.ndim != 2 or X.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 2-D tensor, got "
                         f"{getattr(X, 'shape', type(X))}")
    return X.double()


def _targets(X: Tensor, y: Tensor) -> Tensor:
    if not isinstance(y, Tensor) or y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must be a 1-D tensor with {X.shape[0]} entries (rows of X), got "
                         f"{getattr(y, 'shape', type(y))}")
    return y.double()


def min_norm_lstsq(X: Tensor, y: Tensor) -> Tensor:
    """The least-squares solution of smallest Euclidean norm, X⁺y (via the SVD).

    For p > n it interpolates the data; it is also the limit of ridge as λ → 0 and the point
    gradient descent from zero converges to — the estimator whose risk shows double descent.
    """
    X = _matrix("X", X)
    return torch.linalg.pinv(X) @ _targets(X, y)


def ridge(X: Tensor, y: Tensor, lam: float) -> Tensor:
    """Ridge regression argmin (1/n)‖y − Xβ‖² + λ‖β‖² (Hastie et al.'s scaling), λ > 0.

    Solves the smaller of the two equivalent systems: (XᵀX + nλI)β = Xᵀy when p ≤ n, and
    β = Xᵀ(XXᵀ + nλI)⁻¹y when p > n.
    """
    X = _matrix("X", X)
    y = _targets(X, y)
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a positive finite number (use min_norm_lstsq for λ = 0), "
                         f"got {lam!r}")
    n, p = X.shape
    if p <= n:
        A = X.T @ X + n * lam * torch.eye(p, dtype=X.dtype)
        return torch.linalg.solve(A, X.T @ y)
    K = X @ X.T + n * lam * torch.eye(n, dtype=X.dtype)
    return X.T @ torch.linalg.solve(K, y)


def _check_gamma_snr(gamma: float, snr: float, sigma2: float) -> None:
    for name, v in (("gamma", gamma), ("sigma2", sigma2)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    if not (isinstance(snr, (int, float)) and math.isfinite(snr) and snr >= 0):
        raise ValueError(f"snr must be a finite number ≥ 0, got {snr!r}")


def ridgeless_risk(gamma: float, snr: float, sigma2: float = 1.0) -> float:
    """Hastie et al. 2022, Theorem 1: the limiting risk of min-norm least squares, Σ = I.

    With r² = ‖β‖² = snr·σ² and p/n → γ: σ²γ/(1 − γ) for γ < 1 and
    r²(1 − 1/γ) + σ²/(γ − 1) for γ > 1; at γ = 1 the limit is infinite (returned as inf).
    """
    _check_gamma_snr(gamma, snr, sigma2)
    if gamma < 1:
        return sigma2 * gamma / (1 - gamma)
    if gamma == 1:
        return math.inf
    return snr * sigma2 * (1 - 1 / gamma) + sigma2 / (gamma - 1)


def finite_n_risk(n: int, p: int, sigma2: float = 1.0) -> float:
    """E‖β̂ − β‖² = σ²p/(n − p − 1) of ordinary least squares, Gaussian design, n > p + 1.

    The exact finite-sample version of the left branch of ``ridgeless_risk``; it explains why a
    simulation at finite n overshoots the limit σ²γ/(1 − γ) near γ = 1.
    """
    n, p = check_positive_int("n", n), check_positive_int("p", p)
    if n <= p + 1:
        raise ValueError(f"the risk is finite only for n > p + 1, got n = {n}, p = {p}")
    if not (math.isfinite(sigma2) and sigma2 > 0):
        raise ValueError(f"sigma2 must be positive, got {sigma2!r}")
    return sigma2 * p / (n - p - 1)


def conditional_risk(X: Tensor, beta: Tensor, sigma2: float) -> tuple[float, float]:
    """(bias², variance) of the min-norm fit given X: ‖(I − Π)β‖² and σ² tr((XᵀX)⁺).

    Π projects onto the row space of X. Their sum is E[‖β̂ − β‖² | X], the risk R_X of Hastie et
    al. for isotropic features — exact, with no noise average left to simulate.
    """
    X = _matrix("X", X)
    if not isinstance(beta, Tensor) or beta.shape != (X.shape[1],):
        raise ValueError(f"beta must have shape ({X.shape[1]},), got "
                         f"{getattr(beta, 'shape', type(beta))}")
    _, s, Vh = torch.linalg.svd(X, full_matrices=False)
    keep = s > s.max() * max(X.shape) * torch.finfo(X.dtype).eps
    s, Vh = s[keep], Vh[keep]
    beta = beta.double()
    bias = float(beta @ beta - (Vh @ beta).square().sum())
    return bias, float(sigma2 * (1 / s.square()).sum())


def ridge_conditional_risk(X: Tensor, beta: Tensor, sigma2: float,
                           lam: float) -> tuple[float, float]:
    """(bias², variance) of the ridge fit β̂_λ = (XᵀX + nλI)⁻¹Xᵀy given X, for y = Xβ + ε.

    In the SVD X = USVᵀ the fit shrinks the i-th direction by s_i²/(s_i² + nλ), so
    bias² = ‖(I − Π)β‖² + Σ (nλ/(s_i² + nλ))² (v_iᵀβ)² and variance = σ² Σ s_i²/(s_i² + nλ)².
    λ = 0 gives :func:`conditional_risk`. Used to show that tuned ridge removes the
    sample-wise peak (section «Больше данных может навредить»).
    """
    X = _matrix("X", X)
    if not isinstance(beta, Tensor) or beta.shape != (X.shape[1],):
        raise ValueError(f"beta must have shape ({X.shape[1]},), got "
                         f"{getattr(beta, 'shape', type(beta))}")
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if lam == 0:
        return conditional_risk(X, beta, sigma2)
    n = X.shape[0]
    _, s, Vh = torch.linalg.svd(X, full_matrices=False)
    beta = beta.double()
    c = Vh @ beta
    shrink = n * lam / (s.square() + n * lam)
    bias = float(beta @ beta - c.square().sum() + (shrink * c).square().sum())
    var = float(sigma2 * (s.square() / (s.square() + n * lam).square()).sum())
    return bias, var


def simulate_ridgeless_risk(n: int, p: int, snr: float, sigma2: float = 1.0, seeds: int = 20,
                            generator: torch.Generator | None = None) -> Tensor:
    """R_X for ``seeds`` Gaussian designs X ∈ ℝⁿˣᵖ and β uniform on the sphere ‖β‖² = snr·σ².

    Returns a (seeds, 2) tensor of (bias², variance); row sums average to Hastie's limit.
    """
    n, p, seeds = (check_positive_int(k, v) for k, v in (("n", n), ("p", p), ("seeds", seeds)))
    _check_gamma_snr(p / n, snr, sigma2)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    out = torch.empty(seeds, 2, dtype=torch.float64)
    for i in range(seeds):
        X = torch.randn(n, p, generator=g, dtype=torch.float64)
        beta = torch.randn(p, generator=g, dtype=torch.float64)
        beta *= math.sqrt(snr * sigma2) / beta.norm()
        out[i] = torch.tensor(conditional_risk(X, beta, sigma2))
    return out


def smallest_singular_values(n: int, ps: Sequence[int], seeds: int = 5,
                             generator: torch.Generator | None = None) -> Tensor:
    """Squared smallest nonzero singular value of X/√n, X ∈ ℝⁿˣᵖ Gaussian: (len(ps), seeds).

    Bai & Yin 1993 (the Marchenko–Pastur edge): it tends to (1 − √γ)², γ = p/n, which
    vanishes at the threshold γ = 1; Marchenko–Pastur alone only gives the bulk.
    """
    n, seeds = check_positive_int("n", n), check_positive_int("seeds", seeds)
    ps = [check_positive_int("p", p) for p in ps]
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    out = torch.empty(len(ps), seeds, dtype=torch.float64)
    for i, p in enumerate(ps):
        for j in range(seeds):
            X = torch.randn(n, p, generator=g, dtype=torch.float64) / math.sqrt(n)
            out[i, j] = torch.linalg.svdvals(X)[-1] ** 2  # min(n, p) values, all nonzero a.s.
    return out


def draw_relu_weights(d: int, num_features: int,
                      generator: torch.Generator | None = None) -> Tensor:
    """First-layer weights of a random ReLU feature map: a (d, p) matrix of N(0, 1/d) entries."""
    d, num_features = check_positive_int("d", d), check_positive_int("num_features", num_features)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    return torch.randn(d, num_features, generator=g, dtype=torch.float64) / math.sqrt(d)


def relu_features(x: Tensor, W: Tensor) -> Tensor:
    """φ(x) = ReLU(xW)/√p: a two-layer network whose first layer is frozen at random.

    The 1/√p keeps ‖φ(x)‖ of order one for every width, so one ridge λ means the same at all p.
    """
    x, W = _matrix("x", x), _matrix("W", W)
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"x has {x.shape[1]} columns but W has {W.shape[0]} rows")
    return torch.relu(x @ W) / math.sqrt(W.shape[1])


def sine_target(x: Tensor, w: Tensor, freq: float = 1.0) -> Tensor:
    """The teacher f*(x) = sin(freq·wᵀx/√d): smooth, single-index, not a finite ReLU sum."""
    x = _matrix("x", x)
    if not isinstance(w, Tensor) or w.shape != (x.shape[1],):
        raise ValueError(f"w must have shape ({x.shape[1]},), got {getattr(w, 'shape', type(w))}")
    return torch.sin(freq * (x @ w.double()) / math.sqrt(x.shape[1]))


def random_features_curve(n: int, d: int, widths: Sequence[int], noise: float,
                          lams: Sequence[float] = (), seeds: int = 10, n_test: int = 1000,
                          n_val: int = 0, freq: float = 1.0, generator: torch.Generator | None = None
                          ) -> dict[str, Tensor]:
    """Test MSE of random ReLU features against the width p (Belkin et al. 2019's experiment).

    For every seed: inputs x ~ N(0, I_d), targets sine_target + N(0, noise²) on the training
    set (clean on test and validation), features of each width drawn afresh. Returns
    ``{"min_norm": (seeds, len(widths))}``, ``"norm_sq"`` (‖β̂‖² of the min-norm fit) and,
    if ``lams`` is given, ``"ridge"`` of shape (seeds, len(widths), len(lams)) with test
    MSEs and, when n_val > 0, ``"ridge_val"`` with validation MSEs, so that λ is tuned on
    data the test error never sees.
    """
    n, d, seeds, n_test = (check_positive_int(k, v) for k, v in
                           (("n", n), ("d", d), ("seeds", seeds), ("n_test", n_test)))
    widths = [check_positive_int("width", p) for p in widths]
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number ≥ 0, got {noise!r}")
    if any(not (math.isfinite(l) and l > 0) for l in lams):
        raise ValueError(f"every ridge λ must be positive, got {list(lams)}")
    if isinstance(n_val, bool) or not isinstance(n_val, int) or n_val < 0:
        raise ValueError(f"n_val must be an int ≥ 0, got {n_val!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    mn = torch.empty(seeds, len(widths), dtype=torch.float64)
    nsq = torch.empty_like(mn)
    rd = torch.empty(seeds, len(widths), len(lams), dtype=torch.float64)
    rv = torch.empty_like(rd)
    for s in range(seeds):
        w = torch.randn(d, generator=g, dtype=torch.float64)
        x = torch.randn(n + n_test + n_val, d, generator=g, dtype=torch.float64)
        f = sine_target(x, w, freq)
        y = f[:n] + noise * torch.randn(n, generator=g, dtype=torch.float64)
        for j, p in enumerate(widths):
            phi = relu_features(x, draw_relu_weights(d, p, g))
            tr, te, va = phi[:n], phi[n:n + n_test], phi[n + n_test:]
            b0 = min_norm_lstsq(tr, y)
            mn[s, j] = (te @ b0 - f[n:n + n_test]).square().mean()
            nsq[s, j] = b0.square().sum()
            for k, lam in enumerate(lams):
                b = ridge(tr, y, lam)
                rd[s, j, k] = (te @ b - f[n:n + n_test]).square().mean()
                if n_val:
                    rv[s, j, k] = (va @ b - f[n + n_test:]).square().mean()
    out = {"min_norm": mn, "norm_sq": nsq}
    if lams:
        out["ridge"] = rd
        if n_val:
            out["ridge_val"] = rv
    return out


def gd_risk_path(X: Tensor, y: Tensor, beta: Tensor, steps: Sequence[int],
                 weights: Tensor | None = None, lr: float | None = None) -> Tensor:
    """Weighted risk Σ_j w_j (β_k − β)_j² of gradient descent from zero after k steps.

    Gradient descent on f(β) = ‖y − Xβ‖²/(2n) with step α (default 1/L, L = s_1²/n) has the
    closed form β_k = Σ_i (1 − (1 − α s_i²/n)^k) v_i u_iᵀy/s_i in the SVD X = USVᵀ, so the whole
    path costs one SVD: the chapter's epoch-wise curves (early stopping acts like ridge).
    ``weights`` (default ones) are the variances of the features, so that the result is the
    prediction risk E(x₀ᵀβ_k − x₀ᵀβ)² for x₀ with independent coordinates. Weights of shape
    (p,) give a (len(steps),) tensor; weights of shape (p, m) give (len(steps), m), one
    column per weighting (e.g. the risk carried by each group of coordinates).
    """
    X = _matrix("X", X)
    y = _targets(X, y)
    n, p = X.shape
    if not isinstance(beta, Tensor) or beta.shape != (p,):
        raise ValueError(f"beta must have shape ({p},), got {getattr(beta, 'shape', type(beta))}")
    ks = [int(k) for k in steps]
    if any(k < 0 for k in ks):
        raise ValueError(f"steps must be ≥ 0, got {list(steps)}")
    w = torch.ones(p, dtype=torch.float64) if weights is None else weights.double()
    if w.shape[0] != p or w.ndim not in (1, 2):
        raise ValueError(f"weights must have shape ({p},) or ({p}, m), got {tuple(w.shape)}")
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    keep = s > s.max() * max(n, p) * torch.finfo(X.dtype).eps
    U, s, Vh = U[:, keep], s[keep], Vh[keep]
    alpha = n / s.max().item() ** 2 if lr is None else lr
    if not (math.isfinite(alpha) and 0 < alpha < 2 * n / s.max().item() ** 2):
        raise ValueError(f"lr must lie in (0, 2/L) with L = {s.max().item() ** 2 / n:.4g}, "
                         f"got {lr!r}")
    coef = (U.T @ y) / s
    contraction = 1 - alpha * s.square() / n
    k = torch.tensor(ks, dtype=torch.float64)[:, None]
    path = (1 - contraction[None, :] ** k) * coef[None, :] @ Vh  # (len(steps), p)
    err2 = (path - beta.double()[None, :]).square()
    return err2 @ w


def two_scale_regression(n: int, p_fast: int, p_slow: int, scale_slow: float,
                         r_fast: float, r_slow: float, sigma: float,
                         generator: torch.Generator | None = None
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Linear regression with two groups of features of very different scales.

    Features are independent, N(0, 1) for the first p_fast coordinates and N(0, scale_slow²)
    for the other p_slow; β has ‖β_fast‖ = r_fast and scale_slow·‖β_slow‖ = r_slow, so both
    groups carry signal r² in prediction units. Gradient descent learns the fast group first
    and the slow one about 1/scale_slow² times later: two bias–variance U-curves shifted in
    time, whose sum is an epoch-wise double descent (Heckel & Yilmaz 2021, arXiv 2007.10099).
    Returns (X, y, beta, feature variances).
    """
    n, p_fast, p_slow = (check_positive_int(k, v) for k, v in
                         (("n", n), ("p_fast", p_fast), ("p_slow", p_slow)))
    for name, v in (("scale_slow", scale_slow), ("r_fast", r_fast), ("r_slow", r_slow)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite number ≥ 0, got {sigma!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    p = p_fast + p_slow
    scale = torch.cat([torch.ones(p_fast, dtype=torch.float64),
                       torch.full((p_slow,), float(scale_slow), dtype=torch.float64)])
    X = torch.randn(n, p, generator=g, dtype=torch.float64) * scale
    b_fast = torch.randn(p_fast, generator=g, dtype=torch.float64)
    b_slow = torch.randn(p_slow, generator=g, dtype=torch.float64)
    beta = torch.cat([b_fast * r_fast / b_fast.norm(),
                      b_slow * (r_slow / scale_slow) / b_slow.norm()])
    y = X @ beta + sigma * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y, beta, scale.square()


def two_scale_network_data(n: int, p_fast: int, p_slow: int, scale_slow: float,
                           r_fast: float, r_slow: float, label_noise: float, width: int,
                           seeds: int = 8, generator: torch.Generator | None = None
                           ) -> dict[str, Tensor]:
    """Samples, corrupted targets and initial weights of :func:`two_scale_network_curve`.

    For each of ``seeds`` runs, in this order from one generator: the data of
    :func:`two_scale_regression` without additive noise; a mask marking each target with
    probability ``label_noise``; fresh targets N(0, r_fast² + r_slow²), the marginal law of a
    clean target, put in place of the marked ones (drawn once, as Nakkiran et al. 2020 draw
    their noisy labels once; for classification they use a random *wrong* class); W ∈ ℝᵖˣʷ with
    N(0, 1/p) and a ∈ ℝʷ with N(0, 1/w) entries. The draws do not depend on ``scale_slow``:
    calls that differ only in it give the same samples with the slow columns rescaled, the same
    targets and the same initial weights. Returns stacked tensors "X" (seeds, n, p), "y"
    (seeds, n), "beta" (seeds, p), "W" (seeds, p, w), "a" (seeds, w) and "var" (p,).
    """
    n, p_fast, p_slow, width, seeds = (
        check_positive_int(k, v) for k, v in (("n", n), ("p_fast", p_fast),
                                              ("p_slow", p_slow), ("width", width),
                                              ("seeds", seeds)))
    if not (isinstance(label_noise, (int, float)) and 0 <= label_noise <= 1):
        raise ValueError(f"label_noise must be a probability in [0, 1], got {label_noise!r}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    p = p_fast + p_slow
    out: dict[str, list[Tensor]] = {"X": [], "y": [], "beta": [], "W": [], "a": []}
    for _ in range(seeds):
        X, y, beta, var = two_scale_regression(n, p_fast, p_slow, scale_slow, r_fast, r_slow,
                                               0.0, generator=g)
        corrupt = torch.rand(n, generator=g, dtype=torch.float64) < label_noise
        fresh = math.hypot(r_fast, r_slow) * torch.randn(n, generator=g, dtype=torch.float64)
        out["X"].append(X)
        out["y"].append(torch.where(corrupt, fresh, y))
        out["beta"].append(beta)
        out["W"].append(torch.randn(p, width, generator=g, dtype=torch.float64) / math.sqrt(p))
        out["a"].append(torch.randn(width, generator=g, dtype=torch.float64) / math.sqrt(width))
    data = {k: torch.stack(v) for k, v in out.items()}
    data["var"] = var
    return data


def linear_net_sharpness(sigma: Tensor, W: Tensor, a: Tensor) -> Tensor:
    """Top eigenvalue of the Gauss–Newton matrix of ½E(xᵀWa − y)² with E xxᵀ = ``sigma``.

    The Jacobian J of β = Wa with respect to (W, a) has JJᵀ = P = WWᵀ + ‖a‖²I, so the nonzero
    eigenvalues of JᵀΣJ are those of Σ^{1/2} P Σ^{1/2}. Where the loss gradient in β vanishes
    (a global minimum) this matrix is the Hessian, and gradient descent with step α can stay
    there only if α·λ_max ≤ 2 (the edge of stability, chapter 9).
    Batched: sigma (..., p, p), W (..., p, w), a (..., w) → (...).
    """
    evals, evecs = torch.linalg.eigh(sigma.double())
    root = evecs @ torch.diag_embed(evals.clamp_min(0).sqrt()) @ evecs.transpose(-1, -2)
    W, a = W.double(), a.double()
    P = W @ W.transpose(-1, -2) + a.square().sum(-1)[..., None, None] * torch.eye(
        W.shape[-2], dtype=torch.float64)
    return torch.linalg.eigvalsh(root @ P @ root)[..., -1]


def two_scale_network_curve(n: int, p_fast: int, p_slow: int, scale_slow: float,
                            r_fast: float, r_slow: float, label_noise: float, width: int,
                            steps: int, lr: float, eval_steps: Sequence[int], seeds: int = 8,
                            generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Train a two-layer linear network f(x) = xᵀWa by full-batch GD on two-scale data.

    Data, noisy targets and initial weights come from :func:`two_scale_network_data`. Loss
    ‖y − XWa‖²/(2n), both layers updated at once from the current weights, one step per
    epoch. Since the network is linear, the loss depends on the data only through Σ = XᵀX/n,
    b = Xᵀy/n and ‖y‖²/n, and with β = Wa and g = Σβ − b the step is a ← a − αWᵀg,
    W ← W − αgaᵀ: O(p·w + p²) work per step instead of O(n·p·w). The prediction risk on a
    fresh clean point is exactly Σ_j Var(x_j)(β − β*)_j², so no test sample is needed, and it
    splits into the parts carried by the fast and the slow group. Chapter 10, «Двойной спуск».
    Returns tensors of shape (seeds, len(eval_steps)): "risk", "fast", "slow", "train"
    (training MSE on the corrupted targets), "a_sq" (‖a‖²), "w_sq" (‖W‖₂², the squared
    largest singular value), "sharpness" (:func:`linear_net_sharpness`; stable while
    lr·sharpness < 2), and "steps".
    """
    steps = check_positive_int("steps", steps)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    ks = sorted({int(k) for k in eval_steps})
    if not ks or ks[0] < 0 or ks[-1] > steps:
        raise ValueError(f"eval_steps must be non-empty integers in [0, {steps}], "
                         f"got {list(eval_steps)}")
    d = two_scale_network_data(n, p_fast, p_slow, scale_slow, r_fast, r_slow, label_noise,
                               width, seeds, generator)
    X, y, beta, W, a = d["X"], d["y"], d["beta"], d["W"], d["a"][..., None]
    n = X.shape[1]
    S = X.transpose(1, 2) @ X / n                # (seeds, p, p)
    b = X.transpose(1, 2) @ y[..., None] / n     # (seeds, p, 1)
    yy = y.square().mean(1)
    groups = torch.zeros(X.shape[2], 2, dtype=torch.float64)
    groups[:p_fast, 0], groups[p_fast:, 1] = d["var"][:p_fast], d["var"][p_fast:]
    names = ("fast", "slow", "train", "a_sq", "w_sq", "sharpness")
    rec: dict[str, list[Tensor]] = {k: [] for k in names}
    want = set(ks)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is much faster, and reproducible
    try:
        for k in range(steps + 1):
            bk = W @ a                            # (seeds, p, 1): the network's β_k
            if k in want:
                parts = (bk[..., 0] - beta).square() @ groups
                rec["fast"].append(parts[:, 0])
                rec["slow"].append(parts[:, 1])
                quad = (bk.transpose(1, 2) @ (S @ bk - 2 * b))[:, 0, 0]
                rec["train"].append(quad + yy)
                rec["a_sq"].append(a.square().sum((1, 2)))
                rec["w_sq"].append(torch.linalg.matrix_norm(W, ord=2).square())
                rec["sharpness"].append(linear_net_sharpness(S, W, a[..., 0]))
            if k == steps:
                break
            grad = S @ bk - b                    # ∇f(β_k) for f(β) = ‖y − Xβ‖²/(2n)
            a, W = a - lr * W.transpose(1, 2) @ grad, W - lr * grad @ a.transpose(1, 2)
            if not torch.isfinite(a).all():
                raise ValueError(f"gradient descent diverged at step {k + 1}: "
                                 f"lower lr (got {lr})")
    finally:
        torch.set_num_threads(threads)
    out = {name: torch.stack(v, 1) for name, v in rec.items()}
    out["risk"] = out["fast"] + out["slow"]
    out["steps"] = torch.tensor(ks)
    return out


def _first_minimum(curve: Tensor, min_points: int) -> tuple[Tensor, int | None]:
    """The curve in float64 and its first local minimum: the first point after which it rises
    (``None`` if it never rises)."""
    if not isinstance(curve, Tensor) or curve.ndim != 1 or curve.numel() < min_points:
        raise ValueError(f"curve must be a 1-D tensor with ≥ {min_points} points, got "
                         f"{getattr(curve, 'shape', type(curve))}")
    c = curve.double()
    rises = torch.nonzero(c[1:] > c[:-1]).flatten()
    return c, (int(rises[0]) if rises.numel() else None)


def fall_rise_fall(curve: Tensor) -> tuple[int, int, int]:
    """Indices (first local minimum, highest point after it, lowest point after that).

    The curve has the epoch-wise double-descent shape when curve[i_peak] > curve[i_min1] and
    curve[i_min2] < curve[i_peak]; a curve that only falls raises ValueError.
    """
    c, i_min1 = _first_minimum(curve, min_points=3)
    if i_min1 is None:
        raise ValueError("the curve never rises: no first minimum")
    i_peak = i_min1 + int(torch.argmax(c[i_min1:]))
    i_min2 = i_peak + int(torch.argmin(c[i_peak:]))
    return i_min1, i_peak, i_min2


def descent_after_minimum(curve: Tensor) -> float:
    """Depth of the second descent: max over i₁ ≤ j ≤ k of curve[j] − curve[k].

    i₁ is the first local minimum (the first point after which the curve rises). A curve that
    never rises, or only rises after i₁, gives 0: no second descent.
    For a fall–rise–fall curve it is at least peak − second minimum (:func:`fall_rise_fall`).
    """
    c, i_min1 = _first_minimum(curve, min_points=2)
    if i_min1 is None:
        return 0.0
    tail = c[i_min1:]
    return float((torch.cummax(tail, 0).values - tail).max())

