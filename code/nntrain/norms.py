"""Norms, dual norms and linear minimization oracles (chapter 8: steepest descent in a norm).

Steepest descent in a norm ||·|| moves along LMO(g) = argmin_{||x|| = 1} <g, x>; the step of the
non-normalised method is scaled by the dual norm ||g||_* = sup_{||x|| = 1} <g, x>, and
<g, LMO(g)> = -||g||_*. For vectors: l2 gives normalised gradient descent, l_inf gives sign
descent, l1 moves one coordinate. For matrices: the spectral norm gives -U V^T (Muon), the
Frobenius norm the normalised gradient, the nuclear norm a rank-one step.
"""

from __future__ import annotations

import math

import torch

__all__ = ["VECTOR_NORMS", "MATRIX_NORMS", "DUAL", "norm", "dual_norm", "lmo", "steepest_descent_step",
           "unit_sphere_2d"]

VECTOR_NORMS = ("l1", "l2", "linf")
MATRIX_NORMS = ("spectral", "frobenius", "nuclear")
DUAL = {"l1": "linf", "linf": "l1", "l2": "l2", "spectral": "nuclear", "nuclear": "spectral", "frobenius": "frobenius"}


def _check(x: torch.Tensor, kind: str) -> None:
    if kind not in DUAL:
        raise ValueError(f"unknown norm {kind!r}; expected one of {VECTOR_NORMS + MATRIX_NORMS}")
    if kind in MATRIX_NORMS and x.ndim != 2:
        raise ValueError(f"the {kind} norm is defined for matrices, got shape {tuple(x.shape)}")


def norm(x: torch.Tensor, kind: str) -> torch.Tensor:
    """||x|| in the named norm (vector norms act on all entries, matrix norms on a 2-D tensor)."""
    _check(x, kind)
    if kind == "l1":
        return x.abs().sum()
    if kind == "l2" or kind == "frobenius":
        return x.pow(2).sum().sqrt()
    if kind == "linf":
        return x.abs().max()
    s = torch.linalg.svdvals(x)
    return s.max() if kind == "spectral" else s.sum()


def dual_norm(g: torch.Tensor, kind: str) -> torch.Tensor:
    """||g||_* = sup over ||x|| = 1 of <g, x>, the dual of the named norm (e.g. l_inf -> l1)."""
    _check(g, kind)
    return norm(g, DUAL[kind])


def lmo(g: torch.Tensor, kind: str) -> torch.Tensor:
    """argmin over ||x|| = 1 of <g, x>: the steepest-descent direction of the named norm."""
    _check(g, kind)
    if not bool(g.ne(0).any()):
        raise ValueError("the LMO of a zero gradient is not unique: every unit vector is a minimiser")
    if kind == "l2" or kind == "frobenius":
        return -g / norm(g, "l2")
    if kind == "linf":
        return -torch.sign(g)  # ties (g_i = 0) may take any value in [-1, 1]; 0 is one choice
    if kind == "l1":
        flat = g.reshape(-1)
        i = flat.abs().argmax()
        out = torch.zeros_like(flat)
        out[i] = -torch.sign(flat[i])
        return out.reshape(g.shape)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    if kind == "spectral":
        return -(u @ vh)
    return -torch.outer(u[:, 0], vh[0])  # nuclear: the top singular pair


def steepest_descent_step(g: torch.Tensor, kind: str, lr: float, normalized: bool = False) -> torch.Tensor:
    """The step Δx of (normalised) steepest descent: lr·||g||_*·LMO(g), or lr·LMO(g) if ``normalized``.

    The first minimises <g, Δ> + ||Δ||^2 / (2 lr); the second minimises <g, Δ> over ||Δ|| = lr.
    """
    direction = lmo(g, kind)
    return lr * direction if normalized else lr * dual_norm(g, kind) * direction


def unit_sphere_2d(kind: str, n: int = 401) -> tuple[torch.Tensor, torch.Tensor]:
    """Points (x, y) on the unit sphere of a vector norm in the plane, for drawing unit balls."""
    if kind not in VECTOR_NORMS:
        raise ValueError(f"unit_sphere_2d draws vector norms only: {VECTOR_NORMS}, got {kind!r}")
    t = torch.linspace(0, 2 * math.pi, n, dtype=torch.float64)
    pts = torch.stack([t.cos(), t.sin()], dim=1)
    r = {"l1": pts.abs().sum(1), "l2": pts.norm(dim=1), "linf": pts.abs().max(1).values}[kind]
    pts = pts / r[:, None]
    return pts[:, 0], pts[:, 1]
