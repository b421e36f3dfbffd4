"""nntrain.plot: contour and trajectory helpers (Agg backend, no display)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nntrain import functions as F  # noqa: E402
from nntrain import plot, rates  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    plot.use_style()
    yield
    plt.close("all")


def test_contour_levels_log_spaced_above_minimum():
    z = np.array([[1.0, 2.0], [5.0, 1001.0]])
    lv = plot.contour_levels(z, 5)
    assert lv[0] > 1.0 and np.isclose(lv[-1], 1001.0)
    assert np.allclose(np.diff(np.log10(lv - 1.0)), 1.0)
    assert np.allclose(plot.contour_levels(z, 3, log=False), [1.0, 501.0, 1001.0])
    with pytest.raises(ValueError, match="constant"):
        plot.contour_levels(np.ones((2, 2)))


@pytest.mark.parametrize("name", F.NAMES)
def test_contour_every_function(name):
    fn = F.get(name) if name != "ill_conditioned" else F.get(name, kappa=10.0)
    fig, ax = plt.subplots()
    cs = plot.contour(ax, fn, n=30)
    assert len(cs.levels) >= 2
    assert ax.get_xlim() == (fn.box[0], fn.box[1])


def test_contour_plain_callable_needs_box():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="box"):
        plot.contour(ax, lambda p: (p**2).sum(-1))
    plot.contour(ax, lambda p: (p**2).sum(-1), box=(-1, 1, -1, 1), n=20, filled=False)
    with pytest.raises(ValueError, match="xmin < xmax"):
        plot.contour(ax, lambda p: (p**2).sum(-1), box=(1, -1, -1, 1))


def test_trajectories_draw_one_line_per_method_with_book_colours():
    fn = F.rosenbrock()
    paths = {
        "GD": F.run(fn, [-1.5, 2.0], 50, update=rates.gd(1e-3)),
        "Momentum": F.run(fn, [-1.5, 2.0], 50, update=rates.heavy_ball(1e-3, 0.9)),
        "другой": np.zeros((3, 2)),
    }
    fig, ax = plt.subplots()
    lines = plot.trajectories(ax, fn, paths, n=30, title="t")
    assert [ln.get_label() for ln in lines] == list(paths)
    assert lines[0].get_color() == plot.COLORS["gd"]
    assert lines[1].get_color() == plot.COLORS["momentum"]
    np.testing.assert_allclose(lines[0].get_xydata(), paths["GD"].path.numpy())
    assert ax.get_legend() is not None
    lines = plot.trajectories(ax, fn, {"x": torch.zeros(2, 2)}, colors={"x": "#123456"}, n=20, legend=False)
    assert lines[0].get_color() == "#123456"


def test_trajectories_bad_input():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="non-empty dict"):
        plot.trajectories(ax, F.saddle(), {})
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        plot.trajectories(ax, F.saddle(), {"a": np.zeros((3, 3))}, n=20)


def test_animation_frames():
    fn = F.saddle()
    paths = {"GD": F.run(fn, [1.0, 1e-3], 20, update=rates.gd(0.1))}
    anim = plot.animate_trajectories(fn, paths, frames=5)
    artists = anim._func(4)  # draw the last frame without saving
    assert len(artists) == 1 and len(artists[0].get_xdata()) == 21


def test_animation_heads_step_label_and_bad_input():
    fn = F.saddle()
    paths = {"GD": F.run(fn, [1.0, 1e-3], 20, update=rates.gd(0.1)),
             "короткий": np.zeros((5, 2))}
    anim = plot.animate_trajectories(fn, paths, frames=6, step_label="шаг {k}", head_size=10,
                                     trail_markers=False, colors={"короткий": "#123456"})
    artists = anim._func(5)
    assert [len(a.get_xdata()) for a in artists] == [21, 5]
    ax = anim._fig.axes[0]
    heads = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and ln.get_markersize() == 10]
    assert len(heads) == 2 and heads[1].get_xydata().tolist() == [[0.0, 0.0]]  # stays at its end
    assert any(t.get_text() == "шаг 20" for t in ax.texts)
    with pytest.raises(ValueError, match="frames"):
        plot.animate_trajectories(fn, paths, frames=0)
    with pytest.raises(ValueError, match="head_size"):
        plot.animate_trajectories(fn, paths, head_size=-1)


def test_save_gif_small_palette(tmp_path):
    from PIL import Image

    fn = F.rosenbrock()
    paths = {"GD": F.run(fn, [-1.5, 2.0], 30, update=rates.gd(1e-3))}
    anim = plot.animate_trajectories(fn, paths, frames=4, figsize=(2.0, 1.8), dpi=100, head_size=6)
    size = plot.save_gif(anim, tmp_path / "a" / "t.gif", fps=5, colors=16, hold=2)
    im = Image.open(tmp_path / "a" / "t.gif")
    assert len(im.convert("RGB").getcolors(256)) <= 16
    assert size == (tmp_path / "a" / "t.gif").stat().st_size and im.size == (200, 180)
    total = 0
    for i in range(im.n_frames):  # Pillow merges equal frames into one longer frame
        im.seek(i)
        total += im.info["duration"]
    assert total == 6 * 200
    with pytest.raises(ValueError, match="colors"):
        plot.save_gif(anim, tmp_path / "b.gif", colors=1)
    with pytest.raises(TypeError, match="FuncAnimation"):
        plot.save_gif(object(), tmp_path / "b.gif")


def test_moving_average():
    import numpy as np
    import pytest
    from nntrain.plot import moving_average
    np.testing.assert_allclose(moving_average([1, 2, 3, 4], 2), [1.5, 2.5, 3.5])
    np.testing.assert_allclose(moving_average([1, 2, 3], 1), [1, 2, 3])
    for bad in (0, 4, 2.0, True):
        with pytest.raises(ValueError, match="window"):
            moving_average([1, 2, 3], bad)
    with pytest.raises(ValueError, match="1-D"):
        moving_average([[1, 2]], 1)
