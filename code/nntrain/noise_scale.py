"""Gradient noise scale and steps to a target (chapter 2, «Большие батчи, усреднение и предобусловливание»).

McCandlish et al. (arXiv 1812.06162) measure how much a larger batch helps by the *simple noise scale*
B_simple = tr(Σ)/|G|², G the full gradient and Σ the per-example gradient covariance. With batches of
B examples drawn independently, the squared norm of a batch gradient has

    E |G_B|² = |G|² + tr(Σ)/B,

so two batch sizes B_small < B_big give unbiased estimates (their Appendix A.1)

    |G|² ≈ (B_big·|G_big|² − B_small·|G_small|²) / (B_big − B_small),
    tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big),

averaged over many draws before their ratio is taken (the ratio of the means; the mean of ratios
is biased). :func:`measure_noise_scale` draws the big batch as B_big/B_small independent small
batches (indices with replacement, so the draws are i.i.d. and E|G_B|² is exact).

The second half measures what the noise scale predicts: the number of steps S(B) to reach a
training-loss target, whose knee is the critical batch size. :func:`train_run` is the one training
loop of the chapter (steps to a target, large-batch runs, SWA and EMA through ``callback``);
:func:`fit_steps_curve` fits the paper's S = S_min·(1 + B_crit/B), i.e. (S/S_min − 1)(E/E_min − 1) = 1.

The rest are the chapter's small reusable pieces: :func:`noise_probe` (B_simple along a run),
:func:`tune_grid` (the lr grid search every comparison of the chapter uses, with an edge flag),
:func:`ema_tracker` (an EMA of the weights through ``swa_utils``), and :func:`spd_with_condition` with
:func:`run_on_gradient` for the preconditioning experiment.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["two_batch_estimates", "simple_noise_scale", "flat_grad", "measure_noise_scale", "noise_probe",
           "lr_factor", "train_run", "tune_steps_to_target", "tune_grid", "evaluate", "fit_steps_curve",
           "predicted_steps", "bn_mlp", "ema_tracker", "spd_with_condition", "run_on_gradient"]


def _check_sizes(b_small: int, b_big: int) -> None:
    for name, b in (("b_small", b_small), ("b_big", b_big)):
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"{name} must be a positive integer, got {b!r}")
    if b_small >= b_big:
        raise ValueError(f"need b_small < b_big, got {b_small} and {b_big}")


def two_batch_estimates(sq_small, sq_big, b_small: int, b_big: int) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased estimates of |G|² and tr(Σ) from squared batch-gradient norms at two batch sizes.

    ``sq_small`` and ``sq_big`` are arrays of |G_B|² (one value per draw, same length); returns two
    arrays of per-draw estimates (McCandlish et al., Appendix A.1).
    """
    _check_sizes(b_small, b_big)
    s, b = np.asarray(sq_small, dtype=float), np.asarray(sq_big, dtype=float)
    if s.shape != b.shape:
        raise ValueError(f"sq_small and sq_big must have the same shape, got {s.shape} and {b.shape}")
    g2 = (b_big * b - b_small * s) / (b_big - b_small)
    tr = (s - b) / (1.0 / b_small - 1.0 / b_big)
    return g2, tr


def simple_noise_scale(sq_small, sq_big, b_small: int, b_big: int) -> dict[str, float]:
    """B_simple = mean(tr Σ estimates)/mean(|G|² estimates), with both means and their standard errors."""
    g2, tr = two_batch_estimates(sq_small, sq_big, b_small, b_big)
    n = g2.size
    se = (lambda a: float(a.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan)
    return {"G2": float(g2.mean()), "trace": float(tr.mean()), "G2_se": se(g2), "trace_se": se(tr),
            "B_simple": float(tr.mean() / g2.mean()), "draws": n}


def flat_grad(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor) -> Tensor:
    """The gradient of the mean loss on (x, y) with respect to all parameters, as one flat vector."""
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(x), y), params)
    return torch.cat([g.reshape(-1) for g in grads])


def measure_noise_scale(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor,
                        b_small: int, b_big: int, draws: int, generator: torch.Generator) -> dict[str, float]:
    """B_simple of ``model`` at its current parameters on the dataset (x, y).

    Each draw takes b_big/b_small independent small batches (indices with replacement), whose mean
    is the big-batch gradient; every small batch gives one |G_small|², every draw one |G_big|².
    The small-batch values are averaged within a draw, which keeps the estimator unbiased.
    """
    _check_sizes(b_small, b_big)
    if b_big % b_small:
        raise ValueError(f"b_big must be a multiple of b_small, got {b_big} and {b_small}")
    if draws < 2:
        raise ValueError(f"draws must be at least 2, got {draws}")
    k = b_big // b_small
    sq_s, sq_b = [], []
    was_training = model.training
    model.eval()  # no BatchNorm statistics updated while measuring
    for _ in range(draws):
        idx = torch.randint(len(x), (k, b_small), generator=generator).to(x.device)
        gs = torch.stack([flat_grad(model, loss_fn, x[i], y[i]) for i in idx])
        sq_s.append(gs.pow(2).sum(1).mean().item())
        sq_b.append(gs.mean(0).pow(2).sum().item())
    model.train(was_training)
    return simple_noise_scale(sq_s, sq_b, b_small, b_big)


def noise_probe(x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor], b_small: int, b_big: int,
                draws: int, every: int, generator: torch.Generator) -> tuple[Callable[[int, nn.Module], None], list]:
    """A ``train_run`` callback that measures B_simple every ``every`` steps along a training run.

    Returns ``(callback, marks)``; after step k with k % every == 0 the callback appends
    ``(k, full training loss, B_simple, |G|² estimate, tr Σ estimate)`` to ``marks``. The chapter
    compares the mean of B_simple along a run with the knee of steps-to-target.
    """
    _check_sizes(b_small, b_big)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    marks: list = []

    def callback(k: int, model: nn.Module) -> None:
        if k % every == 0:
            loss = evaluate(model, x, y)[0]
            r = measure_noise_scale(model, loss_fn, x, y, b_small, b_big, draws, generator)
            marks.append((k, loss, r["B_simple"], r["G2"], r["trace"]))

    return callback, marks


def lr_factor(k: int, steps: int, warmup: int = 0, schedule: str = "constant") -> float:
    """Multiplier of the peak learning rate at step k: linear warmup over ``warmup`` steps, then
    constant or a cosine decay to zero at ``steps`` (the schedules of the schedules section)."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    if not 0 <= warmup < max(steps, 1):
        raise ValueError(f"warmup must lie in [0, steps), got {warmup} for {steps} steps")
    if k < warmup:
        return (k + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = (k - warmup) / max(steps - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of a classifier on (x, y), in eval mode."""
    was = model.training
    model.eval()
    out = model(x)
    loss = nn.functional.cross_entropy(out, y).item()
    acc = (out.argmax(1) == y).float().mean().item()
    model.train(was)
    return (loss if math.isfinite(loss) else math.inf), acc


def train_run(build_model: Callable[[], nn.Module], make_opt: Callable[[nn.Module], torch.optim.Optimizer],
              x: Tensor, y: Tensor, batch_size: int, steps: int, *, seed: int = 0, warmup: int = 0,
              schedule: str = "constant", target: float | None = None, eval_every: int = 10,
              test: tuple[Tensor, Tensor] | None = None,
              callback: Callable[[int, nn.Module], None] | None = None, diverge_at: float = 50.0) -> dict:
    """Train a classifier by mini-batches of ``batch_size`` drawn without replacement at each step.

    ``make_opt(model)`` builds the optimizer with its *peak* lr, scaled by :func:`lr_factor`. With a
    ``target``, the full training loss is evaluated every ``eval_every`` steps and the run stops as
    soon as it is ≤ target: ``steps_to_target`` is that step (None if never, or if it diverged).
    ``callback(k, model)`` runs after every step (SWA, EMA). The seed fixes initialisation and batches.
    A batch loss above ``diverge_at`` (or NaN) stops the run as diverged. Returns the final
    train/test loss and accuracy, ``steps_to_target``, ``diverged``, ``steps_done`` and the model.
    """
    if batch_size < 1 or batch_size > len(x):
        raise ValueError(f"batch_size must lie in [1, {len(x)}], got {batch_size}")
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    torch.manual_seed(seed)
    model = build_model().to(x.device)
    opt = make_opt(model)
    base = [g["lr"] for g in opt.param_groups]
    gen = torch.Generator().manual_seed(10_000 + seed)
    hit, diverged = None, False
    model.train()
    for k in range(steps):
        f = lr_factor(k, steps, warmup, schedule)
        for g, lr in zip(opt.param_groups, base):
            g["lr"] = lr * f
        idx = torch.randperm(len(x), generator=gen)[:batch_size].to(x.device)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        if not torch.isfinite(loss) or loss.item() > diverge_at:
            diverged = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if callback is not None:
            callback(k, model)
        if target is not None and (k + 1) % eval_every == 0:
            if evaluate(model, x, y)[0] <= target:
                hit = k + 1
                break
    train_loss, train_acc = evaluate(model, x, y)
    if diverged:
        train_loss, hit = math.inf, None
    out = {"train_loss": train_loss, "train_acc": train_acc, "steps_to_target": hit, "diverged": diverged,
           "steps_done": k + 1, "model": model}
    if test is not None:
        out["test_loss"], out["test_acc"] = evaluate(model, *test)
        if diverged:
            out["test_loss"], out["test_acc"] = math.inf, 0.0
    return out


def tune_steps_to_target(build_model: Callable[[], nn.Module], make_opt: Callable[[nn.Module, float], torch.optim.Optimizer],
                         x: Tensor, y: Tensor, batch_size: int, lrs, target: float, max_steps: int,
                         seeds=(0,), eval_every: int = 5, slack: float = 3.0) -> dict:
    """Steps to ``target`` at one batch size for every lr of a grid (median over seeds); the best lr.

    Shallue et al. and McCandlish et al. tune the learning rate separately for each batch size; so
    does this helper. A run is cut at ``slack`` times the best step count found so far (it cannot win),
    and counts as not reaching the target. Returns ``{"steps": {lr: median or None}, "lr": best lr,
    "S": its steps, "edge": whether the best lr is at an end of the grid}``.
    """
    lrs = sorted(float(a) for a in lrs)
    steps, best = {}, None
    for lr in lrs:
        budget = max_steps if best is None else min(max_steps, int(slack * best) + eval_every)
        hits = [train_run(build_model, lambda m: make_opt(m, lr), x, y, batch_size, budget, seed=s,
                          target=target, eval_every=eval_every)["steps_to_target"] for s in seeds]
        med = None if any(h is None for h in hits) else float(np.median(hits))
        steps[lr] = med
        if med is not None and (best is None or med < best):
            best = med
    reached = {lr: s for lr, s in steps.items() if s is not None}
    if not reached:
        return {"steps": steps, "lr": None, "S": None, "edge": True}
    lr_best = min(reached, key=reached.get)
    return {"steps": steps, "lr": lr_best, "S": reached[lr_best], "edge": lr_best in (lrs[0], lrs[-1])}


def tune_grid(score: Callable[[float], float], grid) -> dict:
    """Pick the lr of ``grid`` with the lowest ``score(lr)`` (e.g. a validation loss averaged over seeds).

    Non-finite scores count as +inf (a diverged run loses). Returns ``{"best", "scores": {lr: score},
    "edge"}``; ``edge`` is True when the best lr is the smallest or largest of the grid, i.e. the grid
    does not bracket the optimum and the comparison that uses it is not fair (chapter 2).
    """
    lrs = [float(a) for a in grid]
    if not lrs:
        raise ValueError("the grid is empty")
    scores = {}
    for lr in lrs:
        v = float(score(lr))
        scores[lr] = v if math.isfinite(v) else math.inf
    best = min(scores, key=scores.get)
    return {"best": best, "scores": scores, "edge": len(lrs) > 1 and best in (min(lrs), max(lrs))}


def fit_steps_curve(batch_sizes, steps) -> dict[str, float]:
    """Least-squares fit of S(B) = S_min + E_min/B (McCandlish et al., eq. 2.11): S_min, E_min, B_crit = E_min/S_min."""
    b, s = np.asarray(batch_sizes, dtype=float), np.asarray(steps, dtype=float)
    if b.shape != s.shape or b.size < 2:
        raise ValueError("need at least two (batch size, steps) pairs of the same length")
    a = np.stack([np.ones_like(b), 1.0 / b], axis=1)
    (s_min, e_min), *_ = np.linalg.lstsq(a, s, rcond=None)
    return {"S_min": float(s_min), "E_min": float(e_min), "B_crit": float(e_min / s_min)}


def predicted_steps(batch_sizes, s_min: float, b_noise: float) -> np.ndarray:
    """S(B)/S_min = 1 + B_noise/B, times S_min: the prediction from a measured noise scale."""
    return s_min * (1.0 + b_noise / np.asarray(batch_sizes, dtype=float))


def bn_mlp(sizes: list[int], first_scale: float = 1.0) -> nn.Sequential:
    """Linear → BatchNorm → ReLU blocks and a linear head: the model of the chapter's LARS/LAMB and SWA runs.

    Every hidden layer is followed by BatchNorm, so its function does not change when its weights are
    rescaled (up to BatchNorm's ε); ``first_scale`` multiplies the first layer's initial weights, the
    rescaling against which LARS and LAMB are invariant and SGD and Adam are not.
    """
    if len(sizes) < 3:
        raise ValueError(f"bn_mlp needs input, at least one hidden and output sizes, got {sizes}")
    if not first_scale > 0:
        raise ValueError(f"first_scale must be positive, got {first_scale!r}")
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        net[0].weight.mul_(first_scale)
    return net


def ema_tracker(rho: float) -> tuple[Callable[[int, nn.Module], None], dict]:
    """A ``train_run`` callback keeping an exponential moving average of the weights (chapter 2, EMA).

    On its first call it wraps the model in ``torch.optim.swa_utils.AveragedModel`` with
    ``get_ema_multi_avg_fn(rho)`` and ``use_buffers=True`` (BatchNorm statistics are averaged too);
    every call then updates the average. Returns ``(callback, box)``; ``box["model"]`` is the
    AveragedModel once training has made a step.
    """
    from torch.optim import swa_utils

    if not 0.0 <= rho < 1.0:
        raise ValueError(f"rho must lie in [0, 1), got {rho!r}")
    box: dict = {}

    def callback(k: int, model: nn.Module) -> None:
        if "model" not in box:
            box["model"] = swa_utils.AveragedModel(
                model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(rho), use_buffers=True)
        box["model"].update_parameters(model)

    return callback, box


def spd_with_condition(d: int, kappa: float, generator: torch.Generator) -> Tensor:
    """A random symmetric positive definite d×d matrix (float64) with eigenvalues log-spaced in [1, kappa].

    Its eigenvectors are random, so the ill-conditioning is not aligned with the coordinate axes —
    the case where diagonal preconditioners (Adam, AdaGrad) cannot help (chapter 2, Shampoo).
    """
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    if not kappa >= 1.0:
        raise ValueError(f"kappa must be at least 1, got {kappa!r}")
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    lam = torch.logspace(0, math.log10(kappa), d, dtype=torch.float64)
    return (q * lam) @ q.T


def run_on_gradient(make_opt: Callable[[list[Tensor]], torch.optim.Optimizer], grad: Callable[[Tensor], Tensor],
                    loss: Callable[[Tensor], float], w0: Tensor, steps: int) -> list[float]:
    """Run a torch optimizer on a problem with a closed-form gradient; return loss(w) after every step.

    ``make_opt([w])`` builds the optimizer for the single parameter w (a copy of ``w0``); each step sets
    ``w.grad = grad(w)`` and calls ``step()``. Used for the preconditioning comparison of chapter 2.
    """
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    w = nn.Parameter(w0.detach().clone())
    opt = make_opt([w])
    out = []
    for _ in range(steps):
        w.grad = grad(w.detach())
        opt.step()
        out.append(float(loss(w.detach())))
    return out
