"""One look for every figure of the book.

``use_style()`` is called by ``nntrain.setup()``. Chapters draw with plain matplotlib after that
and take colours from ``COLORS`` so that, say, SGD is the same colour in every chapter.
"""

from __future__ import annotations

from typing import Iterable

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

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

# The page's text column is about 780 px wide at the figure dpi below: a figure no wider than this is
# shown at its own size on a desktop (12 pt text ≈ 18 px) and scaled by the same factor as the page
# on a phone. The tests reject committed figures wider than MAX_PIXELS.
PAGE_WIDTH = 7.0  # inches
MAX_PANELS_PER_ROW = 3
MAX_PIXELS = 800

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
    "axes.labelsize": 12,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
    "legend.frameon": False,
    "lines.linewidth": 2.0,
    "font.size": 12,
    "image.cmap": "viridis",
}


def use_style() -> None:
    """Apply the book's matplotlib style (idempotent)."""
    mpl.rcParams.update(STYLE)


def subplots(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.6, **kwargs):
    """``plt.subplots`` that fits the page: at most three panels a row, never wider than ``PAGE_WIDTH``.

    Panels narrower than ``width`` keep their aspect ratio; for more panels, stack rows.
    """
    if not (isinstance(ncols, int) and 1 <= ncols <= MAX_PANELS_PER_ROW):
        raise ValueError(f"at most {MAX_PANELS_PER_ROW} panels fit in a row of the page, got ncols={ncols!r}: "
                         "use more rows")
    panel = min(width, PAGE_WIDTH / ncols)
    height = height * panel / width
    return plt.subplots(nrows, ncols, figsize=(panel * ncols, height * nrows), constrained_layout=True, **kwargs)


def moving_average(values, window: int) -> np.ndarray:
    """The mean of each run of ``window`` consecutive values (``len(values) - window + 1`` of them).

    Training losses of mini-batch runs are noisy from step to step; the book's curves are smoothed
    this one way. ``window`` larger than the series is an error, not a silent shorter window.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {v.shape}")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 1 <= window <= v.size:
        raise ValueError(f"window must be an int in [1, {v.size}], got {window!r}")
    return np.convolve(v, np.ones(window) / window, mode="valid")


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


# ---------------------------------------------------------------- contours and trajectories (chapter 2)

_START_MARKER = {"marker": "o", "markersize": 6, "markeredgecolor": "white", "zorder": 5}
_MIN_MARKER = {"marker": "*", "markersize": 14, "color": "#F0E442", "markeredgecolor": "black", "zorder": 6,
               "linestyle": "none"}


def _grid_values(fn, box, n: int):
    """Evaluate ``fn`` (a callable on tensors of shape (..., 2)) on an n×n grid over ``box``."""
    import numpy as np
    import torch

    if len(box) != 4 or not (box[0] < box[1] and box[2] < box[3]):
        raise ValueError(f"box must be (xmin, xmax, ymin, ymax) with xmin < xmax and ymin < ymax, got {box!r}")
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"the grid needs n >= 2 points per side, got {n!r}")
    xs = torch.linspace(box[0], box[1], n, dtype=torch.float64)
    ys = torch.linspace(box[2], box[3], n, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    z = fn(torch.stack([gx, gy], dim=-1))
    return gx.numpy(), gy.numpy(), np.asarray(z.detach().cpu().numpy(), dtype=float)


def contour_levels(z, n_levels: int = 20, log: bool = True):
    """Contour levels for the values ``z``: log-spaced above the lowest value (dense near minima) or even."""
    import numpy as np

    if n_levels < 2:
        raise ValueError(f"n_levels must be at least 2, got {n_levels}")
    lo, hi = float(np.nanmin(z)), float(np.nanmax(z))
    span = hi - lo
    if not np.isfinite(span) or span <= 0:
        raise ValueError("the function is constant (or not finite) on the box: nothing to draw")
    if not log:
        return np.linspace(lo, hi, n_levels)
    return lo + np.logspace(np.log10(span) - 4, np.log10(span), n_levels)


def contour(ax, fn, box=None, n: int = 200, n_levels: int = 20, log: bool = True, filled: bool = True,
            cmap: str = "Greys", minimizers: bool = True):
    """Draw the level sets of a function of two variables on ``ax``; return the contour set.

    ``fn`` is a ``nntrain.functions.Function2D`` (its ``box`` and minimisers are used) or any callable
    on tensors of shape (..., 2) — then ``box = (xmin, xmax, ymin, ymax)`` is required. Levels are
    log-spaced by default, so that the bottom of a valley is drawn as finely as its walls.
    """
    box = box if box is not None else getattr(fn, "box", None)
    if box is None:
        raise ValueError("give box=(xmin, xmax, ymin, ymax): fn has no box of its own")
    if not callable(fn):
        raise TypeError(f"fn must be callable on tensors of shape (..., 2), got {type(fn).__name__}")
    gx, gy, z = _grid_values(fn, box, n)
    levels = contour_levels(z, n_levels, log)
    if filled:
        cs = ax.contourf(gx, gy, z, levels=levels, cmap=cmap, alpha=0.55, extend="both")
        ax.contour(gx, gy, z, levels=levels, colors="k", linewidths=0.4, alpha=0.35)
    else:
        cs = ax.contour(gx, gy, z, levels=levels, cmap=cmap, linewidths=0.8)
    if minimizers:
        for m in getattr(fn, "minimizers", ()):
            if box[0] <= m[0] <= box[1] and box[2] <= m[1] <= box[3]:
                ax.plot([m[0]], [m[1]], **_MIN_MARKER)
    ax.set_xlim(box[0], box[1])
    ax.set_ylim(box[2], box[3])
    ax.set_xlabel("$x$")
    ax.set_ylabel("$y$")
    return cs


def _color_for(label: str, i: int, colors: dict | None) -> str:
    if colors and label in colors:
        return colors[label]
    key = label.strip().lower().split()[0] if label.strip() else ""
    return COLORS.get(key, PALETTE[i % len(PALETTE)])


def _as_xy(path):
    import numpy as np

    p = getattr(path, "path", path)  # a Trajectory or a tensor / array of shape (n, 2)
    p = p.detach().cpu().numpy() if hasattr(p, "detach") else np.asarray(p, dtype=float)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"a path must have shape (n, 2), got {p.shape}")
    return p


def trajectories(ax, fn, paths: dict, box=None, colors: dict | None = None, markers: bool = True,
                 legend: bool = True, title: str | None = None, **contour_kwargs) -> list:
    """Contour of ``fn`` plus one polyline per method: ``paths = {label: Trajectory | (n, 2) array}``.

    Colours come from ``COLORS`` when a label starts with a known method name ("gd", "momentum",
    "nesterov", ...), else from ``PALETTE``; ``colors={label: colour}`` overrides. Returns the lines.
    """
    if not isinstance(paths, dict) or not paths:
        raise ValueError("paths must be a non-empty dict {label: path}")
    contour(ax, fn, box, **contour_kwargs)
    lines = []
    for i, (name, path) in enumerate(paths.items()):
        p = _as_xy(path)
        c = _color_for(name, i, colors)
        style = {"marker": ".", "markersize": 4} if markers and len(p) <= 200 else {}
        (line,) = ax.plot(p[:, 0], p[:, 1], color=c, lw=1.6, label=name, **style)
        ax.plot(p[:1, 0], p[:1, 1], color=c, **_START_MARKER)
        lines.append(line)
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(loc="best", fontsize=9, frameon=True, framealpha=0.85)
    return lines


def animate_trajectories(fn, paths: dict, box=None, frames: int | None = None, interval: int = 40,
                         colors: dict | None = None, figsize=(5.0, 4.4), *, title: str | None = None,
                         step_label: str | None = None, head_size: float = 0.0, trail_width: float = 1.6,
                         trail_markers: bool = True, legend_loc: str = "best", legend_fontsize: float = 9,
                         dpi: float | None = None, log_levels: bool | None = None):
    """A ``matplotlib.animation.FuncAnimation`` of the methods moving together over the contour of ``fn``.

    Each method draws its trail (the path so far) and, when ``head_size > 0``, a large dot at its
    current point, so that a small GIF on a phone shows where every method is. ``step_label`` is a
    format string with ``{k}`` (the step shown), written in the upper left corner, e.g.
    ``"шаг {k}"``. Save it with ``save_gif`` (small palette GIF) or ``anim.save(..., writer="pillow")``;
    notebooks do not render it in CI. The frame function returns the trails. ``log_levels``: contour
    levels log-spaced (dense near a minimum) or even; by default log-spaced when ``fn`` has a
    minimiser and even when it has none (a saddle's centre would otherwise be one flat grey).
    """
    from matplotlib.animation import FuncAnimation

    if not isinstance(paths, dict) or not paths:
        raise ValueError("paths must be a non-empty dict {label: path}")
    if frames is not None and (not isinstance(frames, int) or frames < 1):
        raise ValueError(f"frames must be a positive int (or None for one frame per step), got {frames!r}")
    if head_size < 0 or trail_width <= 0:
        raise ValueError(f"need head_size >= 0 and trail_width > 0, got {head_size!r}, {trail_width!r}")
    fig, ax = plt.subplots(figsize=figsize, constrained_layout=True, dpi=dpi)
    if log_levels is None:
        log_levels = bool(getattr(fn, "minimizers", True))
    contour(ax, fn, box, log=log_levels)
    xy = {k: _as_xy(v) for k, v in paths.items()}
    n = max(len(p) for p in xy.values())
    frames = n if frames is None else min(frames, n)
    lines, heads = {}, {}
    for i, name in enumerate(xy):
        c = _color_for(name, i, colors)
        style = {"marker": ".", "markersize": 4} if trail_markers else {}
        (lines[name],) = ax.plot([], [], color=c, lw=trail_width, label=name, **style)
        if head_size:
            (heads[name],) = ax.plot([], [], "o", color=c, markersize=head_size, markeredgecolor="white",
                                     markeredgewidth=1.2, zorder=7)
    ax.legend(loc=legend_loc, fontsize=legend_fontsize, frameon=True, framealpha=0.85)
    if title:
        ax.set_title(title)
    text = ax.text(0.02, 0.97, "", transform=ax.transAxes, va="top", ha="left", fontsize=legend_fontsize + 1,
                   bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8}) if step_label else None

    def draw(frame: int):
        k = int(round(frame * (n - 1) / max(frames - 1, 1))) + 1
        for name, p in xy.items():
            lines[name].set_data(p[:k, 0], p[:k, 1])
            if name in heads:
                j = min(k, len(p)) - 1
                heads[name].set_data(p[j:j + 1, 0], p[j:j + 1, 1])
        if text is not None:
            text.set_text(step_label.format(k=k - 1))
        return list(lines.values())

    return FuncAnimation(fig, draw, frames=frames, interval=interval, blit=False)


def save_gif(anim, path, fps: float = 12.0, colors: int = 64, hold: int = 0) -> int:
    """Save an animation as a small looping GIF: one shared adaptive palette, frames stored as deltas.

    ``colors`` (2–256) is the palette size; ``hold`` repeats the last frame that many times so the
    viewer sees where the methods ended before the loop restarts. Returns the file size in bytes.
    """
    from pathlib import Path

    import numpy as np
    from matplotlib.animation import FuncAnimation
    from PIL import Image

    if not isinstance(anim, FuncAnimation):
        raise TypeError(f"anim must be a matplotlib FuncAnimation, got {type(anim).__name__}")
    if not (isinstance(colors, int) and 2 <= colors <= 256):
        raise ValueError(f"colors must be an int in [2, 256], got {colors!r}")
    if not (fps > 0) or not (isinstance(hold, int) and hold >= 0):
        raise ValueError(f"need fps > 0 and an int hold >= 0, got fps={fps!r}, hold={hold!r}")
    fig = anim._fig  # FuncAnimation keeps its figure and frame function in these attributes
    frames = []
    seq = list(anim.new_saved_frame_seq())
    for f in seq:
        anim._func(f)
        fig.canvas.draw()  # at the figure's own dpi: the GIF is figsize × dpi pixels
        frames.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB"))
    anim._draw_was_started = True  # drawn by hand: matplotlib need not warn that it never ran
    frames += [frames[-1]] * hold
    # one palette for all frames, from the first and the last frame side by side plus a large swatch
    # of every line's colour, so that the trails keep their own colours among the contour's greys
    from matplotlib.colors import to_rgb

    w, h = frames[0].size
    lines = {to_rgb(ln.get_color()) for a in fig.axes for ln in a.get_lines() if ln.get_visible()}
    sample = Image.new("RGB", (w * (2 + len(lines)), h))
    sample.paste(frames[0], (0, 0))
    sample.paste(frames[-1], (w, 0))
    for i, c in enumerate(sorted(lines)):
        sample.paste(tuple(int(round(255 * v)) for v in c), (w * (2 + i), 0, w * (3 + i), h))
    pal = sample.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    q = [f.quantize(palette=pal, dither=Image.Dither.NONE) for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    q[0].save(path, save_all=True, append_images=q[1:], duration=int(round(1000 / fps)), loop=0,
              optimize=True, disposal=1)
    return path.stat().st_size
