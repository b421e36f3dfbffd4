"""Test functions of two variables, and a runner that records optimization trajectories (chapter 2).

Every trajectory figure of the book is drawn on one of these functions: an ill-conditioned
quadratic, Rosenbrock's valley, a saddle, the Levy function and Himmelblau's function. Each one
knows its value, its analytic gradient and Hessian (so no autograd is needed to run an optimizer
on it, and the tests can check the formulas against autograd), its minimisers and a box to plot.
All of them work on tensors of shape ``(..., 2)``, so a whole grid is evaluated at once.

``run`` moves a point with any method for a number of steps and returns the path and the values.
A method is either a ``torch.optim.Optimizer`` factory (``lambda params: torch.optim.SGD(params, lr=0.1)``)
or a pure update ``update(x, grad_fn, state) -> (x_new, state)``: any optimizer of the book through
``nntrain.optim.trajectory_rule(name, **options)``, or the chapter's names in ``nntrain.rates``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ._checks import check_positive_int
from .optim.trajectory import GradFn, Update

Tensor = torch.Tensor

__all__ = [
    "Function2D", "Trajectory", "quadratic", "ill_conditioned", "rotation", "rosenbrock", "saddle", "levy", "himmelblau",
    "lessard", "drori_teboulle", "sample_box", "get", "NAMES", "run", "newton", "Lasso", "lasso", "soft_threshold",
    "proximal_gradient",
]


@dataclass(frozen=True)
class Function2D:
    """A smooth function of ``x`` with shape ``(..., dim)``: value, gradient, Hessian, known points.

    ``minimizers`` are the global minimisers, ``stationary`` every stationary point we know
    (minimisers included), ``box = (xmin, xmax, ymin, ymax)`` a good window for contour plots.
    """

    name: str
    value: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]
    hessian: Callable[[Tensor], Tensor]
    minimizers: tuple[tuple[float, ...], ...]
    stationary: tuple[tuple[float, ...], ...]
    box: tuple[float, float, float, float]
    f_min: float | None = None
    dim: int = 2
    info: dict = field(default_factory=dict)

    def __call__(self, x: Tensor) -> Tensor:
        return self.value(_check_point(x, self.dim, self.name))


def _check_point(x: Tensor, dim: int, name: str) -> Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (..., {dim}), got {type(x).__name__}")
    if x.shape[-1:] != (dim,):
        raise ValueError(f"{name}: expected a tensor of shape (..., {dim}), got shape {tuple(x.shape)}")
    return x


def _checked(name: str, dim: int, f: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def wrapped(x: Tensor) -> Tensor:
        return f(_check_point(x, dim, name))

    wrapped.__doc__ = f.__doc__
    return wrapped


def _positive(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------- quadratic ½ xᵀAx


def rotation(angle: float) -> Tensor:
    """The 2×2 rotation matrix by ``angle`` radians (float64)."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def quadratic(eigenvalues: Sequence[float] = (1.0, 10.0), angle: float = 0.0) -> Function2D:
    """f(x) = ½ xᵀAx with A = R diag(λ) Rᵀ, R a rotation by ``angle``: κ = λ_max / λ_min.

    Convex when every λ ≥ 0; its Hessian is A everywhere, so L = λ_max and μ = λ_min exactly.
    """
    lam = [float(v) for v in eigenvalues]
    if len(lam) != 2:
        raise ValueError(f"quadratic: give two eigenvalues (a function of two variables), got {len(lam)}")
    if not all(math.isfinite(v) for v in lam):
        raise ValueError(f"quadratic: eigenvalues must be finite, got {lam}")
    r = rotation(angle)
    a = r @ torch.diag(torch.tensor(lam, dtype=torch.float64)) @ r.T
    a = (a + a.T) / 2

    def value(x: Tensor) -> Tensor:
        m = a.to(x)
        return 0.5 * torch.einsum("...i,ij,...j->...", x, m, x)

    def grad(x: Tensor) -> Tensor:
        return x @ a.to(x).T

    def hessian(x: Tensor) -> Tensor:
        return a.to(x).expand(*x.shape[:-1], 2, 2).clone()

    lo = min(lam)
    mins = ((0.0, 0.0),) if lo > 0 else ()
    kappa = max(lam) / lo if lo > 0 else math.inf
    return Function2D(
        name="quadratic", value=_checked("quadratic", 2, value), grad=_checked("quadratic", 2, grad),
        hessian=_checked("quadratic", 2, hessian), minimizers=mins, stationary=((0.0, 0.0),),
        box=(-2.0, 2.0, -2.0, 2.0), f_min=0.0 if lo >= 0 else None,
        info={"A": a, "eigenvalues": tuple(lam), "L": max(lam), "mu": lo, "kappa": kappa, "angle": angle},
    )


def ill_conditioned(kappa: float, mu: float = 1.0, angle: float = math.pi / 6) -> Function2D:
    """The quadratic with eigenvalues (μ, κμ), rotated so that its axes are not the coordinate axes."""
    kappa = _positive("kappa", kappa)
    if kappa < 1:
        raise ValueError(f"kappa is a condition number, kappa >= 1; got {kappa}")
    mu = _positive("mu", mu)
    return quadratic((mu, kappa * mu), angle=angle)


# ---------------------------------------------------------------- Rosenbrock


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Function2D:
    """f = (a − x)² + b(y − x²)²: a curved narrow valley; minimum f = 0 at (a, a²)."""
    a = float(a)
    b = _positive("b", b)

    def value(p: Tensor) -> Tensor:
        x, y = p[..., 0], p[..., 1]
        return (a - x) ** 2 + b * (y - x**2) ** 2

    def grad(p: Tensor) -> Tensor:
        x, y = p[..., 0], p[..., 1]
        r = y - x**2
        return torch.stack([-2 * (a - x) - 4 * b * x * r, 2 * b * r], dim=-1)

    def hessian(p: Tensor) -> Tensor:
        x, y = p[..., 0], p[..., 1]
        hxx = 2 - 4 * b * (y - x**2) + 8 * b * x**2
        hxy = -4 * b * x
        hyy = torch.full_like(x, 2 * b)
        return torch.stack([torch.stack([hxx, hxy], -1), torch.stack([hxy, hyy], -1)], -2)

    m = ((a, a * a),)
    return Function2D(
        name="rosenbrock", value=_checked("rosenbrock", 2, value), grad=_checked("rosenbrock", 2, grad),
        hessian=_checked("rosenbrock", 2, hessian), minimizers=m, stationary=m,
        box=(-2.0, 2.0, -1.0, 3.0), f_min=0.0, info={"a": a, "b": b},
    )


# ---------------------------------------------------------------- saddle


def saddle(a: float = 1.0, b: float = 1.0) -> Function2D:
    """f = a·x² − b·y²: the origin is stationary but not a minimum (no minimiser at all)."""
    a = _positive("a", a)
    b = _positive("b", b)

    def value(p: Tensor) -> Tensor:
        return a * p[..., 0] ** 2 - b * p[..., 1] ** 2

    def grad(p: Tensor) -> Tensor:
        return torch.stack([2 * a * p[..., 0], -2 * b * p[..., 1]], dim=-1)

    def hessian(p: Tensor) -> Tensor:
        h = torch.tensor([[2 * a, 0.0], [0.0, -2 * b]], dtype=p.dtype, device=p.device)
        return h.expand(*p.shape[:-1], 2, 2).clone()

    return Function2D(
        name="saddle", value=_checked("saddle", 2, value), grad=_checked("saddle", 2, grad),
        hessian=_checked("saddle", 2, hessian), minimizers=(), stationary=((0.0, 0.0),),
        box=(-1.5, 1.5, -1.5, 1.5), f_min=None, info={"a": a, "b": b},
    )


# ---------------------------------------------------------------- Levy


def _levy_parts(w: Tensor, first: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Value, first and second derivative (in w) of one separable term of the 2-D Levy function."""
    pi = math.pi
    d = w - 1
    if first:
        s = torch.sin(pi * w + 1)
        g = torch.sin(pi * w) ** 2 + d**2 * (1 + 10 * s**2)
        g1 = pi * torch.sin(2 * pi * w) + 2 * d * (1 + 10 * s**2) + 10 * pi * d**2 * torch.sin(2 * pi * w + 2)
        g2 = (2 * pi**2 * torch.cos(2 * pi * w) + 2 + 20 * s**2 + 40 * pi * d * torch.sin(2 * pi * w + 2)
              + 20 * pi**2 * d**2 * torch.cos(2 * pi * w + 2))
    else:
        s = torch.sin(2 * pi * w)
        g = d**2 * (1 + s**2)
        g1 = 2 * d * (1 + s**2) + 2 * pi * d**2 * torch.sin(4 * pi * w)
        g2 = 2 + 2 * s**2 + 8 * pi * d * torch.sin(4 * pi * w) + 8 * pi**2 * d**2 * torch.cos(4 * pi * w)
    return g, g1, g2


def levy() -> Function2D:
    """The Levy function in 2-D, w = 1 + (x − 1)/4: many local minima on a convex-looking bowl.

    f = sin²(πw₁) + (w₁ − 1)²[1 + 10 sin²(πw₁ + 1)] + (w₂ − 1)²[1 + sin²(2πw₂)]; minimum f = 0 at (1, 1).
    It is a sum of a function of x and a function of y, so its Hessian is diagonal.
    """

    def value(p: Tensor) -> Tensor:
        return _levy_parts(1 + (p[..., 0] - 1) / 4, True)[0] + _levy_parts(1 + (p[..., 1] - 1) / 4, False)[0]

    def grad(p: Tensor) -> Tensor:
        gx = _levy_parts(1 + (p[..., 0] - 1) / 4, True)[1] / 4
        gy = _levy_parts(1 + (p[..., 1] - 1) / 4, False)[1] / 4
        return torch.stack([gx, gy], dim=-1)

    def hessian(p: Tensor) -> Tensor:
        hx = _levy_parts(1 + (p[..., 0] - 1) / 4, True)[2] / 16
        hy = _levy_parts(1 + (p[..., 1] - 1) / 4, False)[2] / 16
        z = torch.zeros_like(hx)
        return torch.stack([torch.stack([hx, z], -1), torch.stack([z, hy], -1)], -2)

    return Function2D(
        name="levy", value=_checked("levy", 2, value), grad=_checked("levy", 2, grad),
        hessian=_checked("levy", 2, hessian), minimizers=((1.0, 1.0),), stationary=((1.0, 1.0),),
        box=(-10.0, 10.0, -10.0, 10.0), f_min=0.0,
    )


# ---------------------------------------------------------------- Himmelblau

_HIMMELBLAU_MINIMA = (
    (3.0, 2.0),
    (-2.805118086952745, 3.131312518250573),
    (-3.779310253377747, -3.283185991286170),
    (3.584428340330492, -1.848126526964404),
)


def himmelblau() -> Function2D:
    """f = (x² + y − 11)² + (x + y² − 7)²: four global minima with f = 0, a local maximum, four saddles."""

    def value(p: Tensor) -> Tensor:
        x, y = p[..., 0], p[..., 1]
        return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2

    def grad(p: Tensor) -> Tensor:
        x, y = p[..., 0], p[..., 1]
        u, v = x**2 + y - 11, x + y**2 - 7
        return torch.stack([4 * x * u + 2 * v, 2 * u + 4 * y * v], dim=-1)

    def hessian(p: Tensor) -> Tensor:
        x, y = p[..., 0], p[..., 1]
        hxx = 12 * x**2 + 4 * y - 42
        hxy = 4 * x + 4 * y
        hyy = 4 * x + 12 * y**2 - 26
        return torch.stack([torch.stack([hxx, hxy], -1), torch.stack([hxy, hyy], -1)], -2)

    return Function2D(
        name="himmelblau", value=_checked("himmelblau", 2, value), grad=_checked("himmelblau", 2, grad),
        hessian=_checked("himmelblau", 2, hessian), minimizers=_HIMMELBLAU_MINIMA,
        stationary=_HIMMELBLAU_MINIMA, box=(-5.0, 5.0, -5.0, 5.0), f_min=0.0,
    )


# ---------------------------------------------------------------- Lessard–Recht–Packard counterexample


def lessard() -> Function2D:
    """A 1-D piecewise quadratic, μ = 1, L = 25, on which the tuned heavy ball cycles (chapter 2, momentum).

    f = 25x²/2 (x < 1), x²/2 + 24x − 12 (1 ≤ x < 2), 25x²/2 − 24x + 36 (x ≥ 2): strongly convex and
    L-smooth, minimum at 0. Lessard, Recht & Packard (2016, arXiv:1408.3595) found that the heavy ball
    with Polyak's constants for μ = 1, L = 25 settles on a cycle of period 3 from x₀ = 3.3.
    Works on tensors of shape (..., 1).
    """

    def value(p: Tensor) -> Tensor:
        x = p[..., 0]
        return torch.where(x < 1, 12.5 * x**2, torch.where(x < 2, 0.5 * x**2 + 24 * x - 12, 12.5 * x**2 - 24 * x + 36))

    def grad(p: Tensor) -> Tensor:
        x = p[..., 0]
        return torch.where(x < 1, 25 * x, torch.where(x < 2, x + 24, 25 * x - 24))[..., None]

    def hessian(p: Tensor) -> Tensor:
        x = p[..., 0]
        return torch.where((x >= 1) & (x < 2), torch.ones_like(x), torch.full_like(x, 25.0))[..., None, None]

    return Function2D(
        name="lessard", value=_checked("lessard", 1, value), grad=_checked("lessard", 1, grad),
        hessian=_checked("lessard", 1, hessian), minimizers=((0.0,),), stationary=((0.0,),),
        box=(-3.0, 4.0, -3.0, 4.0), f_min=0.0, dim=1, info={"mu": 1.0, "L": 25.0},
    )


# ---------------------------------------------------------------- Drori–Teboulle's worst case


def drori_teboulle(L: float = 1.0, R: float = 1.0, steps: int = 10) -> Function2D:
    """The 1-D convex L-smooth function on which gradient descent with step 1/L is as slow as it can be.

    A Huber function: f = Lx²/2 for |x| ≤ t, f = L·t·|x| − L·t²/2 beyond, t = R/(2N + 1), N = ``steps``.
    From x₀ = R, N steps of size 1/L stay on the linear part and end at f(x_N) = LR²/(4N + 2),
    which is Drori and Teboulle's (2014, arXiv:1206.3209) exact worst case over convex L-smooth f
    with ‖x₀ − x*‖ ≤ R. Works on tensors of shape (..., 1); ``info["bound"]`` is LR²/(4N + 2).
    """
    L, R = _positive("L", L), _positive("R", R)
    check_positive_int("steps", steps)
    t = R / (2 * steps + 1)

    def value(p: Tensor) -> Tensor:
        x = p[..., 0]
        return torch.where(x.abs() <= t, 0.5 * L * x**2, L * t * x.abs() - 0.5 * L * t * t)

    def grad(p: Tensor) -> Tensor:
        x = p[..., 0]
        return torch.where(x.abs() <= t, L * x, L * t * torch.sign(x))[..., None]

    def hessian(p: Tensor) -> Tensor:
        x = p[..., 0]
        return torch.where(x.abs() <= t, torch.full_like(x, L), torch.zeros_like(x))[..., None, None]

    return Function2D(
        name="drori_teboulle", value=_checked("drori_teboulle", 1, value), grad=_checked("drori_teboulle", 1, grad),
        hessian=_checked("drori_teboulle", 1, hessian), minimizers=((0.0,),), stationary=((0.0,),),
        box=(-R, R, -R, R), f_min=0.0, dim=1,
        info={"L": L, "R": R, "steps": steps, "kink": t, "bound": L * R * R / (4 * steps + 2)},
    )


def sample_box(fn: Function2D, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` points drawn uniformly from the plotting box of a function of two variables, shape (n, 2)."""
    if not isinstance(fn, Function2D) or fn.dim != 2:
        raise TypeError("fn must be a Function2D of two variables (it supplies the box)")
    check_positive_int("n", n)
    lo = torch.tensor([fn.box[0], fn.box[2]], dtype=torch.float64)
    hi = torch.tensor([fn.box[1], fn.box[3]], dtype=torch.float64)
    return lo + (hi - lo) * torch.rand(n, 2, generator=generator, dtype=torch.float64)


_FACTORIES: dict[str, Callable[..., Function2D]] = {
    "quadratic": quadratic,
    "ill_conditioned": ill_conditioned,
    "rosenbrock": rosenbrock,
    "saddle": saddle,
    "levy": levy,
    "himmelblau": himmelblau,
}
NAMES = tuple(_FACTORIES)


def get(name: str, **kwargs) -> Function2D:
    """A test function by name: one of ``NAMES``; keyword arguments go to its factory."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown test function {name!r}; expected one of {list(NAMES)}")
    return _FACTORIES[name](**kwargs)


# ---------------------------------------------------------------- the runner


@dataclass(frozen=True)
class Trajectory:
    """The points x₀, x₁, …, x_n (``path``, shape (n + 1, dim)) and the values f(x_k) (``values``).

    ``diverged`` is True when the run was stopped early because the point left every bound.
    """

    path: Tensor
    values: Tensor
    diverged: bool = False

    @property
    def steps(self) -> int:
        return self.path.shape[0] - 1

    @property
    def final(self) -> Tensor:
        return self.path[-1]


def _as_start(x0, dim: int, dtype: torch.dtype) -> Tensor:
    x = torch.as_tensor(x0, dtype=dtype).detach().clone()
    if x.shape != (dim,):
        raise ValueError(f"x0 must be a point with {dim} coordinates, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"x0 must be finite, got {x.tolist()}")
    return x


def run(fn: Function2D, x0, steps: int, *, update: Update | None = None,
        optimizer: Callable[[list[Tensor]], torch.optim.Optimizer] | None = None,
        dtype: torch.dtype = torch.float64, bound: float = 1e6) -> Trajectory:
    """Run ``steps`` iterations of one method from ``x0`` on ``fn`` and record the trajectory.

    Give exactly one of ``update`` (a pure rule ``(x, grad_fn, state) -> (x, state)``, state ``None``
    at the start) or ``optimizer`` (a factory that makes a ``torch.optim.Optimizer`` from ``[param]``;
    the analytic gradient of ``fn`` is written into ``param.grad`` before each ``step()``).
    The run stops early, with ``diverged=True``, once ‖x‖ exceeds ``bound`` or stops being finite.
    """
    if not isinstance(fn, Function2D):
        raise TypeError(f"fn must be a Function2D (e.g. nntrain.functions.rosenbrock()), got {type(fn).__name__}")
    if (update is None) == (optimizer is None):
        raise ValueError("give exactly one of update= (a pure update rule) or optimizer= (a torch.optim factory)")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    x = _as_start(x0, fn.dim, dtype)
    points = [x.clone()]
    diverged = False
    if update is not None:
        if not callable(update):
            raise TypeError(f"update must be callable (x, grad_fn, state) -> (x, state), got {type(update).__name__}")
        state = None
        for _ in range(steps):
            x, state = update(x, fn.grad, state)
            points.append(x.detach().clone())
            if not torch.isfinite(x).all() or x.abs().max() > bound:
                diverged = True
                break
    else:
        param = x.clone().requires_grad_(True)
        opt = optimizer([param])
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"optimizer must return a torch.optim.Optimizer, got {type(opt).__name__}")
        for _ in range(steps):
            param.grad = fn.grad(param.detach()).clone()
            opt.step()
            points.append(param.detach().clone())
            if not torch.isfinite(param).all() or param.detach().abs().max() > bound:
                diverged = True
                break
    path = torch.stack(points)
    return Trajectory(path=path, values=fn.value(path), diverged=diverged)


# ---------------------------------------------------------------- Newton's method


def newton(fn: Function2D, alpha: float = 1.0) -> Update:
    """Newton's method as an update rule for ``run``: x ← x − α [∇²f(x)]⁻¹ ∇f(x) (pure Newton at α = 1).

    It is steepest descent in the norm ‖d‖ = √(dᵀ∇²f(x)d) of the current Hessian; the Hessian must be
    positive definite along the path (a ``torch.linalg.LinAlgError`` says when it is singular).
    """
    if not isinstance(fn, Function2D):
        raise TypeError(f"fn must be a Function2D (it supplies the Hessian), got {type(fn).__name__}")
    alpha = _positive("alpha", alpha)

    def update(x: Tensor, grad_fn: GradFn, state: Any = None) -> tuple[Tensor, Any]:
        g = grad_fn(x)
        return x - alpha * torch.linalg.solve(fn.hessian(x), g), state

    return update


# ---------------------------------------------------------------- Lasso and the proximal gradient method


@dataclass(frozen=True)
class Lasso:
    """f(x) = ‖Dx − y‖²/(2N) + λ‖x‖₁: a smooth part g with an L-Lipschitz gradient plus a non-smooth one.

    ``L`` = λ_max(DᵀD)/N; ``x_true`` is the sparse vector the data were made from (or None).
    """

    D: Tensor
    y: Tensor
    lam: float
    x_true: Tensor | None = None

    @property
    def L(self) -> float:
        return float(torch.linalg.eigvalsh(self.D.T @ self.D).max()) / self.D.shape[0]

    def smooth(self, x: Tensor) -> Tensor:
        r = x @ self.D.T - self.y
        return 0.5 * (r * r).sum(-1) / self.D.shape[0]

    def grad(self, x: Tensor) -> Tensor:
        return (x @ self.D.T - self.y) @ self.D / self.D.shape[0]

    def value(self, x: Tensor) -> Tensor:
        return self.smooth(x) + self.lam * x.abs().sum(-1)


def lasso(n: int = 200, d: int = 100, nonzero: int = 10, lam: float = 0.05, noise: float = 0.1,
          seed: int = 0) -> Lasso:
    """A Lasso problem with Gaussian features D (n × d) and y = D x_true + noise, x_true with ``nonzero`` ±1's."""
    for name, v in (("n", n), ("d", d), ("nonzero", nonzero)):
        check_positive_int(name, v)
    if nonzero > d:
        raise ValueError(f"nonzero must not exceed d, got nonzero={nonzero}, d={d}")
    lam = _positive("lam", lam)
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(n, d, generator=g, dtype=torch.float64)
    x_true = torch.zeros(d, dtype=torch.float64)
    idx = torch.randperm(d, generator=g)[:nonzero]
    x_true[idx] = torch.where(torch.rand(nonzero, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    y = D @ x_true + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return Lasso(D=D, y=y, lam=lam, x_true=x_true)


def soft_threshold(v: Tensor, tau: float) -> Tensor:
    """The proximal map of τ‖·‖₁: argmin_x (‖x − v‖²/2 + τ‖x‖₁) = sign(v)·max(|v| − τ, 0)."""
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau must be a non-negative number, got {tau!r}")
    return torch.sign(v) * torch.clamp(v.abs() - tau, min=0.0)


def proximal_gradient(problem: Lasso, steps: int, x0: Tensor | None = None, accelerated: bool = False,
                      alpha: float | None = None) -> tuple[Tensor, Tensor]:
    """ISTA (or FISTA when ``accelerated``) on a Lasso problem: x ← prox_{αλ‖·‖₁}(y − α∇g(y)).

    ISTA takes y_k = x_k; FISTA takes Beck and Teboulle's (2009) extrapolation
    y_k = x_k + (t_k − 1)/t_{k+1} · (x_k − x_{k−1}) with t_0 = t_1 = 1 and
    t_{k+1} = (1 + √(1 + 4t_k²))/2 for k ≥ 1, so the first two steps are plain ISTA steps
    (their y_{k+1} is our y_k).
    The step is α = 1/L by default. Returns the last point and the objective values
    f(x_0), …, f(x_steps).
    """
    if not isinstance(problem, Lasso):
        raise TypeError(f"problem must be a Lasso (nntrain.functions.lasso()), got {type(problem).__name__}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    alpha = 1.0 / problem.L if alpha is None else _positive("alpha", alpha)
    x = torch.zeros(problem.D.shape[1], dtype=problem.D.dtype) if x0 is None else x0.clone()
    x_prev, t_prev, t = x.clone(), 1.0, 1.0  # t_k, t_{k+1} at k = 0: t_0 = t_1 = 1
    values = [problem.value(x)]
    for _ in range(steps):
        y = x + (t_prev - 1) / t * (x - x_prev) if accelerated else x
        x_prev, x = x, soft_threshold(y - alpha * problem.grad(y), alpha * problem.lam)
        t_prev, t = t, (1 + math.sqrt(1 + 4 * t * t)) / 2
        values.append(problem.value(x))
    return x, torch.stack(values)
