"""Render the GIFs of the optimizer playground page (chapter 2) into ``assets/animations/``.

    python scripts/make_animations.py            # all four
    python scripts/make_animations.py rmsprop_vs_adagrad

The settings of every animation (function, start, steps, the rule and options of each method) are
the dicts of ``nntrain.playground.ANIMATIONS``, so that the page's captions glue the same values.
The trajectories come from ``nntrain.functions.run`` with ``nntrain.optim.trajectory_rule``; the
frames from ``nntrain.plot.animate_trajectories``, saved by ``plot.save_gif`` with one small palette.
Each GIF must stay under 1 MB (checked here).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from nntrain import playground as P  # noqa: E402
from nntrain import plot  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "assets" / "animations"
MAX_BYTES = 1_000_000
# 5.2 × 4.6 in at 100 dpi: 520 × 460 px, shown at full width on a phone.
FIGSIZE, DPI = (5.2, 4.6), 100


def render(name: str) -> int:
    """Draw one animation of ``P.ANIMATIONS`` and save it; return its size in bytes."""
    a = P.ANIMATIONS[name]
    runs = P.animation_runs(name)
    fn = P.SETTINGS[a["function"]].make()
    paths = {P.METHODS[m].label: t for m, t in runs.items()}
    colors = {P.METHODS[m].label: P.METHOD_COLORS[m] for m in runs}
    anim = plot.animate_trajectories(fn, paths, frames=a["frames"], colors=colors, figsize=FIGSIZE, dpi=DPI,
                                     step_label="шаг {k}", head_size=11, trail_width=1.3, trail_markers=False,
                                     legend_loc=a.get("legend", "lower right"), legend_fontsize=12)
    size = plot.save_gif(anim, OUT / f"{name}.gif", fps=10, colors=48, hold=15)
    plt.close("all")
    if size > MAX_BYTES:
        raise SystemExit(f"{name}.gif is {size} bytes, over the {MAX_BYTES}-byte limit: fewer frames or colours")
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"some of {list(P.ANIMATIONS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(P.ANIMATIONS)
    if unknown:
        parser.error(f"unknown animation(s) {sorted(unknown)}; expected some of {list(P.ANIMATIONS)}")
    plot.use_style()
    for name in args.names or list(P.ANIMATIONS):
        print(f"{name}.gif: {render(name)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
