"""Every optimizer of the book as a trajectory rule ``update(x, grad_fn, state) -> (x_new, state)`` (chapter 2).

The 2-D pictures (``nntrain.functions.run``) and the rate experiments (``nntrain.rates``) move a
point, or a batch of points of shape (batch, d), with a rule of this protocol; ``state`` is None
at the start. This module turns the pure functions of ``nntrain.optim`` into such rules, so a
method is written once — in :mod:`~nntrain.optim.sgd`, :mod:`~nntrain.optim.adagrad`,
:mod:`~nntrain.optim.rmsprop` or :mod:`~nntrain.optim.adam` — and the trajectory, the rate
experiment and the ``torch.optim`` wrapper all run that definition.

The momentum family keeps the names of the momentum chapter: ``alpha`` (step) and ``beta``, which
may be tensors that broadcast against ``x`` (one value per problem of a batch). Gradient descent
is the heavy ball with β = 0 and Nesterov's method is the heavy ball with the gradient taken at the
look-ahead point x + βv. The other rules take the options of their pure function (``lr``,
``betas``, ``eps`` …) as floats.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import Tensor

from ._common import check_range
from .adagrad import adagrad_init, adagrad_update
from .adam import adam_init, adam_update, adamw_update
from .rmsprop import rmsprop_init, rmsprop_update
from .sgd import _ema_momentum, _heavy_ball, check_sgd_options, sgd_update

GradFn = Callable[[Tensor], Tensor]
Update = Callable[[Tensor, GradFn, Any], "tuple[Tensor, Any]"]

__all__ = ["GradFn", "Update", "TRAJECTORY_RULES", "trajectory_rule", "gd_rule", "heavy_ball_rule",
           "nesterov_rule", "ema_momentum_rule"]


def _check_alpha_beta(alpha: Any, beta: Any) -> None:
    """α > 0 and β ∈ [0, 1] (β = 1 is allowed: the momentum chapter shows the undamped oscillation)."""
    check_range("alpha", alpha, 0.0, low_open=True)
    check_range("beta", beta, 0.0, 1.0)


def gd_rule(alpha: Any) -> Update:
    """Gradient descent x ← x − α∇f(x): the heavy ball with β = 0 (no state is kept)."""
    check_range("alpha", alpha, 0.0, low_open=True)

    def update(x: Tensor, grad_fn: GradFn, state: Any = None) -> tuple[Tensor, Any]:
        x_new, _ = _heavy_ball(x, 0.0, grad_fn(x), alpha, 0.0)  # v = 0: x − α∇f(x) to the last bit
        return x_new, state

    return update


def heavy_ball_rule(alpha: Any, beta: Any) -> Update:
    """Polyak's heavy ball v ← βv − α∇f(x), x ← x + v (:func:`~nntrain.optim.heavy_ball_update`); state v."""
    _check_alpha_beta(alpha, beta)

    def update(x: Tensor, grad_fn: GradFn, state: Any = None) -> tuple[Tensor, Any]:
        v = torch.zeros_like(x) if state is None else state
        return _heavy_ball(x, v, grad_fn(x), alpha, beta)

    return update


def nesterov_rule(alpha: Any, beta: Any) -> Update:
    """Nesterov's method in look-ahead form: the heavy ball with the gradient taken at x + βv; state v.

    With v_k = x_k − x_{k−1} it is y_k = x_k + β(x_k − x_{k−1}), x_{k+1} = y_k − α∇f(y_k):
    Nesterov's constant-step scheme for strongly convex f (2004, scheme 2.2.19).
    """
    _check_alpha_beta(alpha, beta)

    def update(x: Tensor, grad_fn: GradFn, state: Any = None) -> tuple[Tensor, Any]:
        v = torch.zeros_like(x) if state is None else state
        return _heavy_ball(x, v, grad_fn(x + beta * v), alpha, beta)

    return update


def ema_momentum_rule(alpha: Any, beta: Any) -> Update:
    """Momentum as an EMA m ← βm + (1 − β)∇f(x), x ← x − αm (:func:`~nntrain.optim.ema_momentum_update`).

    The state is m (m₀ = 0 when the state is None); it equals ``heavy_ball_rule(alpha * (1 - beta), beta)``.
    """
    _check_alpha_beta(alpha, beta)

    def update(x: Tensor, grad_fn: GradFn, state: Any = None) -> tuple[Tensor, Any]:
        m = torch.zeros_like(x) if state is None else state
        return _ema_momentum(x, m, grad_fn(x), alpha, beta)

    return update


def _sgd_rule(**hyper: Any) -> Update:
    """torch's SGD convention (:func:`~nntrain.optim.sgd_update`); the state is the momentum buffer."""
    check_sgd_options(**hyper)

    def update(x: Tensor, grad_fn: GradFn, state: Any = None) -> tuple[Tensor, Any]:
        return sgd_update(x, grad_fn(x), state, **hyper)

    return update


def _stateful_rule(init: Callable[..., Any], step: Callable[..., Any], init_keys: tuple[str, ...],
                   **hyper: Any) -> Update:
    """A rule from a pure pair ``init(param, ...)``/``step(param, grad, state, ...)``: state made at step 1."""
    init_kw = {k: hyper[k] for k in init_keys if k in hyper}
    step_kw = {k: v for k, v in hyper.items() if k in _options(step)}

    def update(x: Tensor, grad_fn: GradFn, state: Any = None) -> tuple[Tensor, Any]:
        if state is None:
            state = init(x, **init_kw)
        return step(x, grad_fn(x), state, **step_kw)

    probe = torch.zeros(1, dtype=torch.float64)
    update(probe, torch.zeros_like)  # check the options now, with the pure function's own messages
    return update


def _options(fn: Callable[..., Any]) -> list[str]:
    """The option names of a pure update ``fn(param, grad, state, *, ...)``: all but the first three."""
    return list(inspect.signature(fn).parameters)[3:]


# name -> (builder, valid option names)
TRAJECTORY_RULES: dict[str, tuple[Callable[..., Update], list[str]]] = {
    "gd": (gd_rule, ["alpha"]),
    "heavy_ball": (heavy_ball_rule, ["alpha", "beta"]),
    "nesterov": (nesterov_rule, ["alpha", "beta"]),
    "ema_momentum": (ema_momentum_rule, ["alpha", "beta"]),
    "sgd": (_sgd_rule, _options(sgd_update)),
    "adagrad": (lambda **h: _stateful_rule(adagrad_init, adagrad_update, ("initial_accumulator_value",), **h),
                ["initial_accumulator_value", *_options(adagrad_update)]),
    "rmsprop": (lambda **h: _stateful_rule(rmsprop_init, rmsprop_update, ("momentum", "centered"), **h),
                _options(rmsprop_update)),
    "adam": (lambda **h: _stateful_rule(adam_init, adam_update, ("amsgrad",), **h), _options(adam_update)),
    "adamw": (lambda **h: _stateful_rule(adam_init, adamw_update, ("amsgrad",), **h), _options(adamw_update)),
    "amsgrad": (lambda **h: _stateful_rule(adam_init, adam_update, ("amsgrad",), amsgrad=True, **h),
                [k for k in _options(adam_update) if k != "amsgrad"]),
}


def trajectory_rule(name: str, **hyper: Any) -> Update:
    """The rule ``name`` with options ``hyper``, for ``nntrain.functions.run`` and ``nntrain.rates``.

    ``name`` is one of :data:`TRAJECTORY_RULES`: "gd", "heavy_ball", "nesterov", "ema_momentum"
    (options ``alpha``, ``beta``: floats or broadcasting tensors), "sgd" (``lr``, ``momentum``,
    ``dampening``, ``nesterov``, ``weight_decay``, ``maximize``), "adagrad", "rmsprop", "adam",
    "adamw", "amsgrad" (the options of :func:`adagrad_update` — plus ``initial_accumulator_value`` —,
    :func:`rmsprop_update`, :func:`adam_update`, :func:`adamw_update`; "amsgrad" is Adam with
    ``amsgrad=True``; RMSprop's ``alpha`` is its smoothing constant, as in torch, and its step is
    ``lr``). Example: ``F.run(fn, x0, 300, update=trajectory_rule("adam", lr=0.1))``.
    Unknown names or options raise errors naming the valid ones; bad values fail here, not mid-run.
    """
    if name not in TRAJECTORY_RULES:
        raise ValueError(f"unknown rule {name!r}; expected one of {list(TRAJECTORY_RULES)}")
    build, valid = TRAJECTORY_RULES[name]
    unknown = set(hyper) - set(valid)
    if unknown:
        raise TypeError(f"rule {name!r} got unknown option(s) {sorted(unknown)}; valid options are {valid}")
    return build(**hyper)
