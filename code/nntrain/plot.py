"""One look for every figure of the book.

``use_style()`` is called by ``nntrain.setup()``. Chapters draw with plain matplotlib after that
and take colours from ``COLORS`` so that, say, SGD is the same colour in every chapter.
"""

from __future__ import annotations

from typing import Iterable

import matplotlib as mpl
import matplotlib.pyplot as plt

# A colour-blind-safe palette (Okabe & Ito), in the order the book uses them.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

# Fixed colours for things that recur across chapters.
COLORS = {
    "gd": PALETTE[0],
    "sgd": PALETTE[0],
    "momentum": PALETTE[1],
    "nesterov": PALETTE[2],
    "adam": PALETTE[3],
    "adamw": PALETTE[3],
    "muon": PALETTE[4],
    "theory": "#555555",
    "forward": PALETTE[0],
    "backward": PALETTE[1],
}

STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linestyle": "-",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "legend.frameon": False,
    "lines.linewidth": 2.0,
    "font.size": 11,
    "image.cmap": "viridis",
}


def use_style() -> None:
    """Apply the book's matplotlib style (idempotent)."""
    mpl.rcParams.update(STYLE)


def subplots(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.6, **kwargs):
    """``plt.subplots`` with a size that grows with the number of panels."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), constrained_layout=True, **kwargs)


def label(ax, xlabel: str, ylabel: str, title: str | None = None, legend: bool = False) -> None:
    """Label an axis in one line; every figure of the book has labelled axes."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if legend:
        ax.legend()


def annotate_points(ax, xs: Iterable[float], ys: Iterable[float], texts: Iterable[str], **kwargs) -> None:
    """Write a short text next to each point."""
    for x, y, t in zip(xs, ys, texts):
        ax.annotate(t, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=9, **kwargs)
