"""Experiments of the section «AdaGrad, RMSProp, Adam» (chapter 2): the measurements behind its claims.

The update rules themselves live in :mod:`nntrain.optim` (``adagrad_update``, ``rmsprop_update``,
``adam_update``, ``trajectory_rule``); this module only *runs* them on the problems of the section:

* online convex problems on a box, with the Euclidean projection after each step: the regret of
  projected AdaGrad against the bound of the section's theorem (:func:`adagrad_box_regret`) and
  Reddi, Kale and Kumar's 1-D counterexample to Adam (:func:`reddi_run`);
* the quadratic ½ xᵀAx at different angles of its axes: adaptive methods are not rotation
  invariant (:func:`rotated_quadratic_grad`, :func:`rotation_iterations`), and Adam's measured rate
  there (:func:`contraction_factor`), which its momentum caps at √β₁;
* Adam's bias correction (:func:`moment_means`, :func:`uncorrected_adam_rule`) and Adam's step on a
  stationary noisy gradient (:func:`adam_step_response`), which is sign descent when the noise is small;
* a saddle and a plateau for the seeds' pictures (:func:`escape_iterations`, :func:`plateau`);
* the learning-rate sweep on small classification tasks (:func:`digits_task`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ._checks import check_choice, check_positive_int
from .functions import Function2D, rotation
from .optim import adagrad_init, adagrad_update, adam_init, adam_update

__all__ = [
    "project_box", "reddi_gradient", "reddi_constants", "OnlineRun", "reddi_run", "online_linear_gradients",
    "adagrad_regret_bound", "adagrad_box_regret", "rotated_quadratic_grad", "rotated_start",
    "rotation_iterations", "moment_means", "uncorrected_schedule", "uncorrected_adam_rule", "adam_path",
    "adam_step_response", "contraction_factor", "escape_iterations", "plateau", "digits_task",
    "state_bytes_per_parameter",
]

GradFn = Callable[[Tensor], Tensor]
Update = Callable[[Tensor, GradFn, Any], "tuple[Tensor, Any]"]


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------- online convex problems on a box


def project_box(x: Tensor, low: float, high: float) -> Tensor:
    """The Euclidean projection onto the box [low, high]^d: clamp every coordinate.

    The projection of online gradient methods (Duchi et al. 2011; Reddi et al. 2018); on a box it is
    separable, which is why the AdaGrad regret proof of the section works coordinate by coordinate.
    """
    if not low < high:
        raise ValueError(f"the box needs low < high, got [{low!r}, {high!r}]")
    return x.clamp(low, high)


def reddi_gradient(t: int, C: float) -> float:
    """Gradient of f_t in Reddi et al.'s example: f_t(x) = Cx when t mod 3 = 1, −x otherwise (t ≥ 1)."""
    check_positive_int("t", t)
    return float(C) if t % 3 == 1 else -1.0


def reddi_constants(C: float) -> dict[str, float]:
    """The constants of the counterexample (proof of Theorem 1 of Reddi et al. 2018).

    β₁ = 0, β₂ = 1/(1 + C²), and the step α_t = α/√t needs α < √(1 − β₂); C > 2 so that x* = −1.
    ``avg_regret_at_plus_one`` is the average regret of staying at x = +1: 2(C − 2)/3.
    """
    C = _positive("C", C)
    if C <= 2:
        raise ValueError(f"the counterexample needs C > 2 (then x* = -1), got {C!r}")
    beta2 = 1.0 / (1.0 + C * C)
    return {"beta1": 0.0, "beta2": beta2, "alpha_max": math.sqrt(1 - beta2),
            "avg_regret_at_plus_one": 2 * (C - 2) / 3}


@dataclass(frozen=True)
class OnlineRun:
    """An online run: the points x_1 … x_{T+1} (``x``), the regret R_t for t = 1 … T (``regret``)."""

    x: Tensor
    regret: Tensor

    @property
    def average_regret(self) -> Tensor:
        t = torch.arange(1, len(self.regret) + 1, dtype=self.regret.dtype)
        return self.regret / t


def _linear_regret(losses: Tensor, grads: Tensor, radius: float) -> Tensor:
    """R_t = Σ_{s≤t} ⟨g_s, x_s⟩ − min_{‖x‖∞≤r} Σ_{s≤t} ⟨g_s, x⟩ = Σ losses + r Σ_i |Σ_s g_{s,i}|."""
    return losses.cumsum(0) + radius * grads.cumsum(0).abs().reshape(len(grads), -1).sum(1)


def reddi_run(method: str, steps: int, C: float = 3.0, alpha: float = 0.5, x0: float = 1.0,
              eps: float = 0.0) -> OnlineRun:
    """Adam or AMSGrad on Reddi et al.'s example, F = [−1, 1], α_t = α/√t, projection after each step.

    ``method`` is "adam" or "amsgrad"; β₁ = 0 and β₂ = 1/(1 + C²) as in the paper's proof. The step
    is :func:`nntrain.optim.adam_update` (torch's Adam, so with bias correction; with β₁ = 0 the
    correction of m is 1 and that of v tends to 1 within a few steps). Adam drifts to x = +1, the
    worst point; AMSGrad goes to the minimiser x* = −1.
    """
    check_choice("method", method, ("adam", "amsgrad"))
    check_positive_int("steps", steps)
    const = reddi_constants(C)
    alpha = _positive("alpha", alpha)
    if alpha >= const["alpha_max"]:
        raise ValueError(f"the paper's proof needs alpha < sqrt(1 - beta2) = {const['alpha_max']:.4f}, got {alpha}")
    if not -1 <= x0 <= 1:
        raise ValueError(f"x0 must lie in F = [-1, 1], got {x0!r}")
    amsgrad = method == "amsgrad"
    x = torch.tensor([float(x0)], dtype=torch.float64)
    state = adam_init(x, amsgrad=amsgrad)
    xs, losses, grads = [x.clone()], [], []
    for t in range(1, steps + 1):
        g = torch.tensor([reddi_gradient(t, C)], dtype=torch.float64)
        losses.append(float(g * x))
        grads.append(g)
        x, state = adam_update(x, g, state, lr=alpha / math.sqrt(t), betas=(const["beta1"], const["beta2"]),
                               eps=eps, amsgrad=amsgrad)
        x = project_box(x, -1.0, 1.0)
        xs.append(x.clone())
    regret = _linear_regret(torch.tensor(losses, dtype=torch.float64), torch.stack(grads), 1.0)
    return OnlineRun(torch.cat(xs), regret)


def online_linear_gradients(steps: int, dim: int, frequencies: Sequence[float] | Tensor, drift: float = 0.3,
                            generator: torch.Generator | None = None) -> Tensor:
    """Gradients g_t (shape (steps, dim)) of online linear losses f_t(x) = ⟨g_t, x⟩.

    Coordinate i is non-zero with probability ``frequencies[i]`` (rare features have small ones); a
    non-zero value is ``drift + N(0, 1)``, so that the best fixed point sits at a corner of the box.
    """
    check_positive_int("steps", steps)
    check_positive_int("dim", dim)
    p = torch.as_tensor(frequencies, dtype=torch.float64)
    if p.shape != (dim,) or ((p <= 0) | (p > 1)).any():
        raise ValueError(f"frequencies must be {dim} numbers in (0, 1], got {frequencies!r}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    mask = torch.rand(steps, dim, generator=gen, dtype=torch.float64) < p
    values = drift + torch.randn(steps, dim, generator=gen, dtype=torch.float64)
    return torch.where(mask, values, torch.zeros_like(values))


def adagrad_regret_bound(grads: Tensor, diameter: float, lr: float, eps: float = 0.0) -> Tensor:
    """The section's bound on the regret of projected AdaGrad after each step t (shape (steps,)).

    R_t ≤ Σ_i [ D²/(2η) · (√G_{t,i} + ε) + η · √G_{t,i} ],  G_{t,i} = Σ_{s≤t} g_{s,i}²,
    where D = D∞ is the side of the box, η = ``lr``; with ε = 0 and η = D/√2 it is √2 D Σ_i √G_{t,i}.
    """
    diameter, lr = _positive("diameter", diameter), _positive("lr", lr)
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps!r}")
    root = grads.pow(2).cumsum(0).sqrt().reshape(len(grads), -1)
    return (diameter**2 / (2 * lr) * (root + eps) + lr * root).sum(1)


def adagrad_box_regret(grads: Tensor, radius: float, lr: float, eps: float = 1e-10,
                       x0: Tensor | None = None) -> OnlineRun:
    """Projected AdaGrad on the online linear losses ⟨g_t, x⟩ over the box [−r, r]^d; its exact regret.

    The step is :func:`nntrain.optim.adagrad_update` (torch's Adagrad: the step of coordinate i is
    η/(√G_{t,i} + ε), the current gradient included in G), followed by :func:`project_box`.
    The comparator is the best fixed point of the box, so R_t is computed exactly.
    """
    radius, lr = _positive("radius", radius), _positive("lr", lr)
    if grads.ndim != 2:
        raise ValueError(f"grads must have shape (steps, dim), got {tuple(grads.shape)}")
    x = torch.zeros(grads.shape[1], dtype=grads.dtype) if x0 is None else x0.detach().clone().to(grads.dtype)
    if x.shape != grads.shape[1:] or (x.abs() > radius).any():
        raise ValueError(f"x0 must be a point of the box [-{radius}, {radius}]^{grads.shape[1]}")
    state = adagrad_init(x)
    xs, losses = [x.clone()], []
    for g in grads:
        losses.append(float(g @ x))
        x, state = adagrad_update(x, g, state, lr=lr, eps=eps)
        x = project_box(x, -radius, radius)
        xs.append(x.clone())
    return OnlineRun(torch.stack(xs), _linear_regret(torch.tensor(losses, dtype=grads.dtype), grads, radius))


# ---------------------------------------------------------------- rotation: ½ xᵀAx at an angle


def _quadratic_matrices(kappas: Sequence[float], angles: Sequence[float]) -> Tensor:
    if len(kappas) != len(angles) or len(kappas) == 0:
        raise ValueError(f"give one angle per kappa, got {len(kappas)} kappas and {len(angles)} angles")
    mats = []
    for kappa, angle in zip(kappas, angles):
        if not kappa >= 1:
            raise ValueError(f"kappa is a condition number, kappa >= 1; got {kappa!r}")
        r = rotation(float(angle))
        mats.append(r @ torch.diag(torch.tensor([1.0, float(kappa)], dtype=torch.float64)) @ r.T)
    return torch.stack(mats)


def rotated_quadratic_grad(kappas: Sequence[float], angles: Sequence[float]) -> GradFn:
    """The gradient x ↦ A_j x of a batch of quadratics, row j: eigenvalues (1, κ_j), axes turned by θ_j.

    The rows of the point x (shape (batch, 2)) are independent problems, so one run of a rule of
    :func:`nntrain.optim.trajectory_rule` (which acts elementwise) solves them all at once.
    """
    mats = _quadratic_matrices(kappas, angles)

    def grad(x: Tensor) -> Tensor:
        if x.shape != (len(mats), 2):
            raise ValueError(f"expected a batch of shape ({len(mats)}, 2), got {tuple(x.shape)}")
        return torch.einsum("bij,bj->bi", mats.to(x), x)

    return grad


def rotated_start(angles: Sequence[float], start: Sequence[float] = (1.0, 0.5)) -> Tensor:
    """The start R(θ_j)·u₀ for each angle: the same point in the eigenbasis, so GD's runs coincide."""
    u = torch.tensor([float(v) for v in start], dtype=torch.float64)
    if u.shape != (2,):
        raise ValueError(f"start must have two coordinates, got {start!r}")
    return torch.stack([rotation(float(a)) @ u for a in angles])


def rotation_iterations(make_rule: Callable[[float], Update], lrs: Sequence[float], kappas: Sequence[float],
                        angles: Sequence[float], tol: float = 1e-6, max_steps: int = 3000,
                        start: Sequence[float] = (1.0, 0.5)) -> dict[str, np.ndarray]:
    """Iterations to ‖x_k‖ ≤ tol·‖x_0‖ of a method at its best step, for each (κ_j, θ_j).

    ``make_rule(lr)`` builds the rule (e.g. ``lambda lr: trajectory_rule("adagrad", lr=lr, eps=0.0)``);
    every step of the grid ``lrs`` is run on all problems at once. Returns ``iterations`` (−1 where no
    step reached the tolerance within ``max_steps``), ``best_lr`` and ``at_edge`` (the best step is the
    smallest or largest of the grid: the grid may not bracket the optimum).
    """
    from .rates import iterations_to_tolerance

    grid = sorted(float(v) for v in lrs)
    if len(grid) < 3:
        raise ValueError(f"a step grid needs at least 3 values to bracket an optimum, got {lrs!r}")
    grad = rotated_quadratic_grad(kappas, angles)
    x0 = rotated_start(angles, start)
    table = np.array([iterations_to_tolerance(make_rule(lr), grad, x0, tol, max_steps).numpy() for lr in grid])
    masked = np.where(table < 0, np.iinfo(np.int64).max, table)
    best = masked.argmin(0)
    iters = table[best, np.arange(table.shape[1])]
    reached = iters >= 0
    return {"iterations": iters, "best_lr": np.where(reached, np.array(grid)[best], np.nan),
            "at_edge": reached & ((best == 0) | (best == len(grid) - 1)), "table": table, "lrs": np.array(grid)}


# ---------------------------------------------------------------- Adam: bias correction, sign descent, ε


def moment_means(steps: int, streams: int, mean: float, std: float, betas: tuple[float, float] = (0.9, 0.999),
                 generator: torch.Generator | None = None) -> dict[str, np.ndarray]:
    """Averages over ``streams`` independent gradient streams g ~ N(mean, std²) of Adam's m_t and v_t.

    The moments are read from the state of :func:`nntrain.optim.adam_update`. Under stationarity
    E[m_t] = (1 − β₁ᵗ) E[g] and E[v_t] = (1 − β₂ᵗ) E[g²] (Kingma and Ba 2015, §3): the returned
    ``m``, ``v`` should follow ``m_theory``, ``v_theory``.
    """
    check_positive_int("steps", steps)
    check_positive_int("streams", streams)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    x = torch.zeros(streams, dtype=torch.float64)
    state = adam_init(x)
    m, v = [], []
    for _ in range(steps):
        g = mean + std * torch.randn(streams, generator=gen, dtype=torch.float64)
        _, state = adam_update(x, g, state, lr=0.0, betas=betas)
        m.append(state.exp_avg.mean().item())
        v.append(state.exp_avg_sq.mean().item())
    t = np.arange(1, steps + 1)
    return {"t": t, "m": np.array(m), "v": np.array(v), "m_theory": (1 - betas[0] ** t) * mean,
            "v_theory": (1 - betas[1] ** t) * (mean**2 + std**2)}


def uncorrected_schedule(t: int, lr: float, betas: tuple[float, float], eps: float) -> tuple[float, float]:
    """(lr_t, ε_t) with which torch's bias-corrected Adam takes the step of Adam *without* correction.

    Corrected: lr'·m/(1 − β₁ᵗ) / (√v/√(1 − β₂ᵗ) + ε'). With lr' = lr·(1 − β₁ᵗ)/√(1 − β₂ᵗ) and
    ε' = ε/√(1 − β₂ᵗ) it equals lr·m/(√v + ε) exactly: bias correction is a schedule of the step.
    """
    check_positive_int("t", t)
    b1, b2 = betas
    c2 = math.sqrt(1 - b2**t)
    return lr * (1 - b1**t) / c2, eps / c2


def uncorrected_adam_rule(lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> Update:
    """Adam without bias correction, as a trajectory rule: :func:`nntrain.optim.adam_update` run with
    the step and ε of :func:`uncorrected_schedule` (so no second copy of Adam's rule is written)."""
    lr = _positive("lr", lr)

    def update(x: Tensor, grad_fn: GradFn, state: Any = None) -> tuple[Tensor, Any]:
        state = adam_init(x) if state is None else state
        lr_t, eps_t = uncorrected_schedule(state.step + 1, lr, betas, eps)
        return adam_update(x, grad_fn(x), state, lr=lr_t, betas=betas, eps=eps_t)

    return update


def adam_path(grads: Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
              corrected: bool = True) -> Tensor:
    """The updates Δx_t (shape (steps, d)) that Adam takes on a given sequence of gradients.

    With a constant gradient, |Δx_t|/lr is the effective step: exactly 1 with bias correction,
    (1 − β₁ᵗ)/√(1 − β₂ᵗ) without it (ε = 0).
    """
    lr = _positive("lr", lr)
    x = torch.zeros_like(grads[0])
    state = adam_init(x)
    out = []
    for t, g in enumerate(grads, start=1):
        lr_t, eps_t = (lr, eps) if corrected else uncorrected_schedule(t, lr, betas, eps)
        x_new, state = adam_update(x, g, state, lr=lr_t, betas=betas, eps=eps_t)
        out.append(x_new - x)
        x = x_new
    return torch.stack(out)


def adam_step_response(snr: Sequence[float] | Tensor, steps: int, betas: tuple[float, float] = (0.9, 0.999),
                       eps: float = 0.0, burn_in: int | None = None, streams: int = 1,
                       generator: torch.Generator | None = None,
                       with_error: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Mean of −Δx/α of Adam per coordinate on stationary gradients g = s + N(0, 1), s = ``snr``.

    Averaged over the iterations after ``burn_in`` (default: half) and over ``streams`` independent
    gradient streams per value of s. The approximation of the section, m̂/√v̂ ≈ E[g]/√E[g²] =
    s/√(s² + 1), tends to sign(s) — sign descent — as the noise vanishes. One stream is not enough
    to test it at small s: its time average has a standard error of about 1/√(steps − burn_in),
    larger than s itself. With ``with_error`` the standard error over the streams (streams ≥ 2) is
    returned as well: ``(mean, standard_error)``.
    """
    check_positive_int("steps", steps)
    check_positive_int("streams", streams)
    if with_error and streams < 2:
        raise ValueError(f"a standard error needs at least 2 streams, got {streams!r}")
    s = torch.as_tensor(snr, dtype=torch.float64)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    burn = steps // 2 if burn_in is None else burn_in
    if not 0 <= burn < steps:
        raise ValueError(f"burn_in must lie in [0, steps), got {burn!r}")
    s_all = s.reshape(1, -1).expand(streams, -1).contiguous()
    x = torch.zeros_like(s_all)
    state = adam_init(x)
    total = torch.zeros_like(s_all)
    for t in range(steps):
        g = s_all + torch.randn(s_all.shape, generator=gen, dtype=torch.float64)
        x_new, state = adam_update(x, g, state, lr=1.0, betas=betas, eps=eps)
        if t >= burn:
            total -= x_new - x
        x = x_new
    per_stream = total / (steps - burn)
    mean = per_stream.mean(0).reshape(s.shape).numpy()
    if not with_error:
        return mean
    se = (per_stream.std(0) / math.sqrt(streams)).reshape(s.shape).numpy()
    return mean, se


def contraction_factor(update: Update, grad_fn: GradFn, x0: Tensor, first: int, last: int) -> Tensor:
    """Per-iteration factor (‖x_last‖/‖x_first‖)^(1/(last − first)) of each row of ``x0`` (minimiser 0).

    The measured linear rate of a method on the section's quadratics: for Adam with momentum β₁ it
    is close to √β₁ whatever the angle (the determinant of the step's matrix is β₁ per coordinate).
    """
    check_positive_int("first", first)
    check_positive_int("last", last)
    if not first < last:
        raise ValueError(f"need first < last, got {first!r} and {last!r}")
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (batch, dim), got {tuple(x0.shape)}")
    x, state = x0.clone(), None
    norms = {}
    for k in range(1, last + 1):
        x, state = update(x, grad_fn, state)
        if k in (first, last):
            norms[k] = x.norm(dim=1)
    return (norms[last] / norms[first]) ** (1.0 / (last - first))


# ---------------------------------------------------------------- saddle and plateau


def escape_iterations(update: Update, grad_fn: GradFn, x0: Tensor, coordinate: int = 1, radius: float = 1.0,
                      max_steps: int = 10_000) -> Tensor:
    """For each row of ``x0``: the first k with |x_k[coordinate]| ≥ ``radius``, or −1 (the saddle's exit)."""
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (batch, dim), got {tuple(x0.shape)}")
    check_positive_int("max_steps", max_steps)
    hit = torch.full((x0.shape[0],), -1, dtype=torch.long)
    x, state = x0.clone(), None
    for k in range(1, max_steps + 1):
        x, state = update(x, grad_fn, state)
        out = (x[:, coordinate].abs() >= radius) & (hit < 0)
        hit[out] = k
        if (hit >= 0).all():
            break
    return hit


def plateau(k: float = 2.0, edge: float = -2.0, depth: float = 1.0, centre: float = 3.0, width: float = 0.7,
            q: float = 1.0) -> Function2D:
    """A slope that flattens into a plateau, then a well (chapter 2, the picture «RMSProp vs AdaGrad»).

    f = ln(1 + e^{−k(x − edge)})/k − depth·e^{−(x − c)²/(2w²)} + q y²/2, with c = ``centre``, w = ``width``.

    Left of ``edge`` the gradient in x is ≈ −1; on the plateau it decays like e^{−k(x − edge)} until the
    well at x = ``centre`` pulls. AdaGrad keeps the large early gradients in its sum and crawls on the
    plateau; RMSProp forgets them and crosses it.
    """
    k, width, q = _positive("k", k), _positive("width", width), _positive("q", q)
    depth = _positive("depth", depth)

    def parts(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z = -k * (x - edge)
        well = depth * torch.exp(-((x - centre) ** 2) / (2 * width**2))
        value = torch.nn.functional.softplus(z) / k - well
        d1 = -torch.sigmoid(z) + well * (x - centre) / width**2
        d2 = k * torch.sigmoid(z) * torch.sigmoid(-z) + well * (1 / width**2 - (x - centre) ** 2 / width**4)
        return value, d1, d2

    def check(p: Tensor) -> Tensor:
        if not isinstance(p, Tensor) or p.shape[-1:] != (2,):
            raise ValueError(f"plateau: expected a tensor of shape (..., 2), got {getattr(p, 'shape', p)!r}")
        return p

    def value(p: Tensor) -> Tensor:
        p = check(p)
        return parts(p[..., 0])[0] + 0.5 * q * p[..., 1] ** 2

    def grad(p: Tensor) -> Tensor:
        p = check(p)
        return torch.stack([parts(p[..., 0])[1], q * p[..., 1]], dim=-1)

    def hessian(p: Tensor) -> Tensor:
        p = check(p)
        hxx = parts(p[..., 0])[2]
        z = torch.zeros_like(hxx)
        return torch.stack([torch.stack([hxx, z], -1), torch.stack([z, torch.full_like(hxx, q)], -1)], -2)

    return Function2D(name="plateau", value=value, grad=grad, hessian=hessian, minimizers=(), stationary=(),
                      box=(-5.0, 5.0, -2.0, 2.0), f_min=None,
                      info={"k": k, "edge": edge, "depth": depth, "centre": centre, "width": width, "q": q})


# ---------------------------------------------------------------- learning-rate sweep, memory


def digits_task(hidden: Sequence[int], steps: int, batch_size: int = 64, seed: int = 0):
    """A :class:`nntrain.compare.Task`: a perceptron 64–hidden–10 on digits (no hidden layers: softmax regression).

    Training batches come from 80 % of the training split, validation loss from the other 20 %, test
    metrics from the test split (the learning rate is chosen on validation, as in chapter 8).
    """
    from . import compare, data
    from .models import mlp

    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    X, y = data.load("digits", "train", seed=seed)
    Xte, yte = data.load("digits", "test", seed=seed)
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    n_val = len(X) // 5
    Xv, yv, Xf, yf = X[perm[:n_val]], y[perm[:n_val]], X[perm[n_val:]], y[perm[n_val:]]
    sizes = [X.shape[1], *[int(h) for h in hidden], 10]
    ce = torch.nn.functional.cross_entropy

    def batch(gen: torch.Generator) -> tuple[Tensor, Tensor]:
        i = torch.randint(len(Xf), (batch_size,), generator=gen)
        return Xf[i], yf[i]

    return compare.Task(build_model=lambda: mlp(sizes), batch=batch, loss=lambda model, x, t: ce(model(x), t),
                        evaluate=lambda model: compare.classification_metrics(model, {"val": (Xv, yv),
                                                                                      "test": (Xte, yte)}),
                        steps=steps)


def state_bytes_per_parameter(optimizer: torch.optim.Optimizer) -> float:
    """Bytes of optimizer state per parameter, counting only tensors of the parameter's size.

    After one step of Adam in fp32 this is 8 (m and v, 4 bytes each); the per-tensor ``step``
    scalar is left out, as in the memory chapter (also for a one-element parameter, whose ``step``
    has as many elements as the parameter itself).
    """
    params = [p for g in optimizer.param_groups for p in g["params"]]
    n = sum(p.numel() for p in params)
    if n == 0:
        raise ValueError("the optimizer has no parameters")
    total = 0
    for p in params:
        for key, value in optimizer.state.get(p, {}).items():
            if key != "step" and isinstance(value, Tensor) and value.shape == p.shape:
                total += value.numel() * value.element_size()
    return total / n
