"""Learning-rate schedules as pure functions of the iteration (chapter 2, «Расписания шага»).

Each schedule maps the iteration k = 0, 1, ... to the step α_k; the peak (base) step is ``lr``.
The closed forms follow ``torch.optim.lr_scheduler`` (StepLR, ExponentialLR, LinearLR,
CosineAnnealingLR, CosineAnnealingWarmRestarts, SequentialLR), the inverse square root of
Vaswani et al. 2017 (arXiv 1706.03762) and warmup–stable–decay of Hu et al. 2024 (MiniCPM,
arXiv 2404.06395). ``make`` builds one by name, ``lambda_lr`` hands any of them to
``torch.optim.lr_scheduler.LambdaLR``. The tests check every schedule against its
``lr_scheduler`` counterpart step for step.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = [
    "SCHEDULES", "constant", "step", "exponential", "linear_warmup", "inverse_sqrt", "cosine",
    "cosine_restarts", "warmup_cosine", "wsd", "inverse_time", "make", "values", "lambda_lr", "scheduler_lrs",
    "radam_rectification",
    "train_classifier",
]

Schedule = Callable[[int], float]


def _lr(lr: float) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    return float(lr)


def _k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"the iteration k must be a non-negative integer, got {k!r}")
    return k


def _pos_int(name: str, v: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return v


def _lr_min(lr_min: float, lr: float) -> float:
    if not (math.isfinite(lr_min) and 0 <= lr_min <= lr):
        raise ValueError(f"lr_min must lie in [0, lr] = [0, {lr}], got {lr_min!r}")
    return float(lr_min)


def _warmup(warmup: int, total: int) -> int:
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    if warmup >= total:
        raise ValueError(f"warmup ({warmup} iterations) must be shorter than the run ({total})")
    return warmup


def _factor(name: str, v: float) -> float:
    if not (math.isfinite(v) and 0 < v <= 1):
        raise ValueError(f"{name} must lie in (0, 1], got {v!r}")
    return float(v)


def _half_cosine(t: float, lr: float, lr_min: float) -> float:
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * t)) / 2


def constant(k: int, lr: float) -> float:
    """α_k = α: the baseline that the sgd section showed stalls at a noise floor ∝ α."""
    _k(k)
    return _lr(lr)


def step(k: int, lr: float, step_size: int, gamma: float = 0.1) -> float:
    """Step decay α·γ^⌊k/step_size⌋ (StepLR): the classic ImageNet schedule."""
    return _lr(lr) * _factor("gamma", gamma) ** (_k(k) // _pos_int("step_size", step_size))


def exponential(k: int, lr: float, gamma: float) -> float:
    """α·γ^k (ExponentialLR): step decay with a drop at every iteration."""
    return _lr(lr) * _factor("gamma", gamma) ** _k(k)


def linear_warmup(k: int, lr: float, warmup: int, start_factor: float = 0.0) -> float:
    """Linear growth from start_factor·α at k = 0 to α at k = warmup, then constant (LinearLR).

    Warmup keeps the first steps small while Adam's second moment v is still a poor estimate
    and while a large-batch run is far from the region where its large step is stable.
    """
    lr, k = _lr(lr), _k(k)
    warmup = _pos_int("warmup", warmup)
    if not (math.isfinite(start_factor) and 0 <= start_factor <= 1):
        raise ValueError(f"start_factor must lie in [0, 1], got {start_factor!r}")
    return lr * (start_factor + (1 - start_factor) * min(k, warmup) / warmup)


def inverse_sqrt(k: int, lr: float, warmup: int) -> float:
    """Vaswani et al. 2017: linear warmup to α at iteration ``warmup``, then α·sqrt(warmup/(k+1)).

    With n = k + 1 (their steps count from 1) it equals d^(−1/2)·min(n^(−1/2), n·W^(−3/2)) up to
    the normalisation α = (d·W)^(−1/2).
    """
    lr, n = _lr(lr), _k(k) + 1
    w = _pos_int("warmup", warmup)
    return lr * min(n / w, math.sqrt(w / n))


def cosine(k: int, lr: float, total: int, lr_min: float = 0.0) -> float:
    """Half a cosine from α at k = 0 to lr_min at k = total (CosineAnnealingLR); lr_min after it."""
    lr, k, total = _lr(lr), _k(k), _pos_int("total", total)
    return _half_cosine(min(k, total) / total, lr, _lr_min(lr_min, lr))


def cosine_restarts(k: int, lr: float, period: int, mult: int = 1, lr_min: float = 0.0) -> float:
    """SGDR (Loshchilov & Hutter 2017): cosine periods T_0, T_0·m, T_0·m², ... each restarting at α."""
    lr, k = _lr(lr), _k(k)
    t_i = _pos_int("period", period)
    if isinstance(mult, bool) or not isinstance(mult, int) or mult < 1:
        raise ValueError(f"mult must be an integer ≥ 1, got {mult!r}")
    t_cur = k if mult > 1 else k % t_i
    while t_cur >= t_i:  # integer arithmetic: no log rounding at the restart points
        t_cur -= t_i
        t_i *= mult
    return _half_cosine(t_cur / t_i, lr, _lr_min(lr_min, lr))


def warmup_cosine(k: int, lr: float, warmup: int, total: int, lr_min: float = 0.0,
                  start_factor: float = 0.0) -> float:
    """Linear warmup over ``warmup`` iterations, then a half cosine to lr_min at k = total."""
    lr, k, total = _lr(lr), _k(k), _pos_int("total", total)
    warmup = _warmup(warmup, total)
    if k < warmup:
        return linear_warmup(k, lr, warmup, start_factor)
    return cosine(k - warmup, lr, total - warmup, lr_min)


def wsd(k: int, lr: float, warmup: int, total: int, decay: int, lr_min: float = 0.0,
        start_factor: float = 0.0) -> float:
    """Warmup–stable–decay: linear warmup, a long constant stage, a linear decay over the last
    ``decay`` iterations to lr_min at k = total (Hu et al. 2024 decay exponentially; the shape of
    the last stage varies between papers, the idea — a short final decay — is the same)."""
    lr, k, total = _lr(lr), _k(k), _pos_int("total", total)
    decay = _pos_int("decay", decay)
    warmup = _warmup(warmup, total)
    if warmup + decay > total:
        raise ValueError(f"warmup + decay = {warmup + decay} exceeds the run ({total})")
    lr_min = _lr_min(lr_min, lr)
    if k < warmup:
        return linear_warmup(k, lr, warmup, start_factor)
    start = total - decay
    if k < start:
        return lr
    return lr + (lr_min - lr) * min(k - start, decay) / decay


def inverse_time(k: int, lr: float, k0: float) -> float:
    """α·k0/(k0 + k): the Robbins–Monro step ≈ α·k0/k; with k0 = 1/(αμ) it is 1/(μ(k0 + k))."""
    lr, k = _lr(lr), _k(k)
    if not (math.isfinite(k0) and k0 > 0):
        raise ValueError(f"k0 must be a positive number, got {k0!r}")
    return lr * k0 / (k0 + k)


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant, "step": step, "exponential": exponential,
    "linear_warmup": linear_warmup, "inverse_sqrt": inverse_sqrt, "cosine": cosine,
    "cosine_restarts": cosine_restarts, "warmup_cosine": warmup_cosine, "wsd": wsd,
    "inverse_time": inverse_time,
}


def make(name: str, lr: float, **options) -> Schedule:
    """The schedule ``name`` with its options bound: a function k ↦ α_k (options checked now)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; available: {', '.join(SCHEDULES)}")
    fn = SCHEDULES[name]
    fn(0, lr, **options)  # validate the options before the run starts

    def schedule(k: int) -> float:
        return fn(k, lr, **options)

    schedule.__name__ = name
    return schedule


def values(schedule: Schedule, steps: int) -> torch.Tensor:
    """α_0, ..., α_{steps−1} as a float64 tensor (for plots and for the noisy quadratic)."""
    return torch.tensor([schedule(k) for k in range(_pos_int("steps", steps))],
                        dtype=torch.float64)


def lambda_lr(optimizer: torch.optim.Optimizer, schedule: Schedule
              ) -> torch.optim.lr_scheduler.LambdaLR:
    """Drive ``optimizer`` by ``schedule`` through LambdaLR: its factor is α_k / (the group's lr).

    Every parameter group gets α_k scaled by its own initial lr relative to the first group's.
    """
    base = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
    if not base > 0:
        raise ValueError(f"the optimizer's lr must be positive, got {base!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: schedule(k) / base)


def scheduler_lrs(make_scheduler: Callable[[torch.optim.Optimizer], object], steps: int,
                  lr: float) -> torch.Tensor:
    """The lr that a ``torch.optim.lr_scheduler`` built by ``make_scheduler(optimizer)`` gives at
    iterations 0..steps (an SGD on one dummy parameter with base lr ``lr``): the reference the
    closed forms above are checked against."""
    import warnings

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=_lr(lr))
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's deprecation notes about step(epoch)
        sched = make_scheduler(opt)
        for _ in range(_pos_int("steps", steps) + 1):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return torch.tensor(out, dtype=torch.float64)


def radam_rectification(k: torch.Tensor, beta2: float = 0.999,
                        threshold: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """RAdam's ρ_k and its variance rectification r_k at Adam steps k = 1, 2, ... (Liu et al. 2020,
    arXiv 1908.03265): ρ_∞ = 2/(1 − β2) − 1, ρ_k = ρ_∞ − 2kβ2^k/(1 − β2^k),
    r_k = sqrt((ρ_k − 4)(ρ_k − 2)ρ_∞ / ((ρ_∞ − 4)(ρ_∞ − 2)ρ_k)), and r_k = 0 (no adaptive step) while
    ρ_k ≤ threshold (4 in the paper's algorithm, 5 in ``torch.optim.RAdam``)."""
    if not 0 < beta2 < 1:
        raise ValueError(f"beta2 must lie in (0, 1), got {beta2!r}")
    k = torch.as_tensor(k, dtype=torch.float64)
    if (k < 1).any():
        raise ValueError("Adam's steps k count from 1")
    rho_inf = 2 / (1 - beta2) - 1
    rho = rho_inf - 2 * k * beta2 ** k / (1 - beta2 ** k)
    ratio = (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
    r = torch.where(rho > threshold, ratio.clamp_min(0).sqrt(), torch.zeros_like(rho))
    return rho, r


def train_classifier(schedule: Schedule, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
                     y_test: torch.Tensor, steps: int, batch_size: int = 32, hidden: int = 128,
                     momentum: float = 0.9, seed: int = 0) -> dict[str, float]:
    """Train an MLP by SGD with momentum (``nntrain.optim.SGD``) for ``steps`` iterations with the
    step α_k = schedule(k); return the final full-batch train loss and the test accuracy.

    The experiment of the schedules section: the same model, data order and initialisation for
    every schedule (all fixed by ``seed``), so that only α_k differs between runs.
    """
    from .models import mlp
    from .optim import SGD

    steps, batch_size = _pos_int("steps", steps), _pos_int("batch_size", batch_size)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = mlp([x.shape[1], _pos_int("hidden", hidden), int(y.max()) + 1]).to(x.device, x.dtype)
    opt = SGD(model.parameters(), lr=1.0, momentum=momentum)  # LambdaLR sets α_0 at once
    sched = lambda_lr(opt, schedule)
    loss_fn = torch.nn.functional.cross_entropy
    n, k = len(x), 0
    while k < steps:
        order = torch.randperm(n, generator=gen).to(x.device)
        for start in range(0, n - batch_size + 1, batch_size):
            if k == steps:
                break
            idx = order[start:start + batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            k += 1
    with torch.no_grad():
        train_loss = loss_fn(model(x), y).item()
        if not math.isfinite(train_loss):
            train_loss = math.inf
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    return {"train_loss": train_loss, "test_acc": acc}
