"""nntrain.playground: the precomputed grid, its encoding, the self-contained HTML, the live guard."""

import matplotlib

matplotlib.use("Agg")

import base64  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nntrain import functions as F  # noqa: E402
from nntrain import playground as P  # noqa: E402
from nntrain.optim import trajectory_rule  # noqa: E402


@pytest.fixture(scope="module")
def small():
    """Two functions, three methods (with and without β), a 3 × 2 grid: quick to compute."""
    return P.precompute(functions=("quadratic", "saddle"), methods=("gd", "heavy_ball", "adam"),
                        betas=(0.0, 0.9), n_lr=3)


def test_grid_shapes(small):
    assert small.paths["quadratic"]["gd"].shape == (3, 1, P.SETTINGS["quadratic"].steps + 1, 2)
    assert small.paths["saddle"]["heavy_ball"].shape == (3, 2, P.SETTINGS["saddle"].steps + 1, 2)
    assert small.values["saddle"]["adam"].shape == (3, 2, P.SETTINGS["saddle"].steps + 1)
    assert small.n_runs == 2 * (3 + 6 + 6)
    assert small.lrs["quadratic"]["gd"] == P.lr_grid("quadratic", "gd", 3)
    c = P.SETTINGS["quadratic"].lr["gd"]
    assert P.lr_grid("quadratic", "gd", 3) == pytest.approx((c / 2, c, 2 * c))


def test_trajectories_equal_functions_run_with_the_same_rule(small):
    s = P.SETTINGS["quadratic"]
    lr = small.lrs["quadratic"]["heavy_ball"][1]
    t = F.run(s.make(), s.x0, s.steps, update=trajectory_rule("heavy_ball", alpha=lr, beta=0.9))
    np.testing.assert_array_equal(small.path("quadratic", "heavy_ball", 1, 1), t.path.numpy())
    lr = small.lrs["quadratic"]["adam"][2]
    t = F.run(s.make(), s.x0, s.steps, update=trajectory_rule("adam", lr=lr, betas=(0.0, P.ADAM_BETA2)))
    np.testing.assert_array_equal(small.path("quadratic", "adam", 2, 0), t.path.numpy())
    t = P.trajectory("quadratic", "gd", small.lrs["quadratic"]["gd"][0])
    np.testing.assert_array_equal(small.path("quadratic", "gd", 0), t.path.numpy())


def test_runs_that_leave_the_figure_are_cut(small):
    # on the saddle every run with momentum leaves the box sooner or later; the rest of it is NaN
    p = small.paths["saddle"]["heavy_ball"][2, 1]
    bad = np.isnan(p[:, 0])
    assert bad.any() and bad[np.argmax(bad):].all()
    box = F.saddle().box
    kept = p[~bad]
    assert (kept[:, 1] <= box[3] + 0.5 * (box[3] - box[2]) + 1e-12).all()


def test_encode_decode_round_trip():
    box = (-2.0, 2.0, -1.0, 3.0)
    rng = np.random.default_rng(0)
    pts = rng.uniform([-3.9, -2.9], [3.9, 4.9], size=(4, 7, 2))
    pts[1, 3:] = np.nan
    back = P.decode_paths(P.encode_paths(pts, box), box, pts.shape)
    assert np.isnan(back[1, 3:]).all() and not np.isnan(back[0]).any()
    ok = ~np.isnan(pts)
    assert np.abs(back[ok] - pts[ok]).max() <= 4.0 / (2 * P.SCALE) + 1e-12
    assert len(base64.b64decode(P.encode_paths(pts, box))) == pts.size * 2  # int16


def test_encode_bad_input():
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        P.encode_paths(np.zeros((3, 3)), (0, 1, 0, 1))
    with pytest.raises(ValueError, match="xmin < xmax"):
        P.encode_paths(np.zeros((3, 2)), (1, 0, 0, 1))
    with pytest.raises(ValueError, match="cut them first"):
        P.encode_paths(np.array([[5.0, 0.0]]), (0, 1, 0, 1))
    with pytest.raises(ValueError, match="do not fill"):
        P.decode_paths(P.encode_paths(np.zeros((3, 2)), (0, 1, 0, 1)), (0, 1, 0, 1), (4, 2))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown method 'sgdd'"):
        P.rule("sgdd", 0.1)
    with pytest.raises(ValueError, match="unknown function"):
        P.trajectory("banana", "gd", 0.1)
    with pytest.raises(ValueError, match="positive finite"):
        P.rule("gd", -0.1)
    with pytest.raises(ValueError, match="has no β"):
        P.rule("adagrad", 0.1, 0.9)
    with pytest.raises(ValueError, match=r"needs a β in \[0, 1\)"):
        P.rule("adam", 0.1, 1.0)
    with pytest.raises(ValueError, match="odd"):
        P.lr_grid("saddle", "gd", 4)
    with pytest.raises(ValueError, match="betas"):
        P.precompute(functions=("saddle",), methods=("gd",), betas=(1.5,))


def test_html_is_self_contained_small_and_valid(small):
    html = P.render_html(small, start=("saddle", "adam", 1, 1),
                         presets=[("Седло", ("saddle", "gd", 0, 0))])
    # nothing is loaded from outside: the only URL-like string allowed is none at all
    assert "://" not in html and "src=" not in html
    assert re.search(r"href=\"(?!data:)", html) is None
    payload = json.loads(re.search(r'<script type="application/json">(.*?)</script>', html, re.S).group(1))
    assert [f["key"] for f in payload["functions"]] == ["quadratic", "saddle"]
    f = payload["functions"][1]
    q = np.frombuffer(base64.b64decode(f["runs"][1]), dtype="<i2")
    assert q.size == 3 * 2 * (f["steps"] + 1) * 2
    assert len(f["ends"]) == 3 + 6 + 6
    assert base64.b64decode(f["png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(html.encode()) < 150_000  # two functions, 30 runs: a small page
    assert 'data-preset="saddle|gd|0|0"' in html and "Функция" in html and "Шаг α" in html
    assert P.snippet(html).data == html


def test_html_bad_input(small):
    with pytest.raises(TypeError, match="PlaygroundData"):
        P.render_html({})
    with pytest.raises(ValueError, match="unknown function or method"):
        P.render_html(small, start=("rosenbrock", "gd", 0, 0))
    with pytest.raises(ValueError, match="outside the grid"):
        P.render_html(small, presets=[("x", ("saddle", "gd", 5, 0))])
    with pytest.raises(ValueError, match="outside"):
        P.snippet('<img src="https://example.com/a.png">')


def test_full_static_playground_weight():
    """The page's grid (every static function and method) stays well under a megabyte."""
    runs = sum(P.N_LR * (len(P.BETAS) if m.beta_label else 1) * (P.SETTINGS[f].steps + 1)
               for f in P.STATIC_FUNCTIONS for m in P.METHODS.values())
    encoded = runs * 2 * 2 * 4 / 3  # two int16 per point, base64
    assert encoded + len(P.STATIC_FUNCTIONS) * 30_000 < 600_000


def test_contour_png_size():
    png = P.contour_png(F.rosenbrock(), 120, 100)
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(png)).size == (120, 100)
    with pytest.raises(ValueError, match="width and height"):
        P.contour_png(F.rosenbrock(), 5, 100)


def test_live_guard_without_a_kernel():
    assert P.in_colab() is False
    assert P.live_available() is False  # no IPython kernel under pytest


def test_live_builds_widgets(monkeypatch):
    """The live version builds its widgets and draws once (displayed nowhere under pytest)."""
    pytest.importorskip("ipywidgets")
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: None)
    box = P.live("saddle", "adagrad")
    fn_w, m_w, lr_w, beta_w = box.children[:4]
    assert beta_w.disabled  # AdaGrad has no β
    m_w.value = "adam"
    assert not beta_w.disabled and lr_w.value == pytest.approx(P.SETTINGS["saddle"].lr["adam"])
    fn_w.value = "rosenbrock"
    x_w, y_w = box.children[4].children
    assert (x_w.value, y_w.value) == P.SETTINGS["rosenbrock"].x0


def test_live_redraws_once_per_change(monkeypatch):
    pytest.importorskip("ipywidgets")
    import IPython.display

    from nntrain import functions

    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: None)
    calls = []
    real = functions.run
    monkeypatch.setattr(functions, "run", lambda *a, **k: calls.append(1) or real(*a, **k))
    box = P.live("saddle", "gd", steps=5)
    assert len(calls) == 1
    box.children[0].value = "quadratic"  # resets start, steps and α: one new run, not four
    assert len(calls) == 2
    box.children[2].value = 0.01
    assert len(calls) == 3


def test_end_gives_the_step_at_which_a_run_left():
    data = P.precompute(functions=("quadratic",), methods=("gd",), n_lr=7)
    # α = 0.16: the steep coordinate is multiplied by 1 − 0.16·50 = −7: y₁ = −2.8 is kept
    # (within half a box), y₂ = 19.6 is not, so the run left the figure at step 2
    assert data.lrs["quadratic"]["gd"][6] == pytest.approx(0.16)
    value, left = data.end("quadratic", "gd", 6)
    assert left == 2
    p = data.paths["quadratic"]["gd"][6, 0]
    assert value == pytest.approx(float(P.SETTINGS["quadratic"].make().value(torch.tensor(p[1]))))
    assert data.end("quadratic", "gd", 3)[1] is None  # α = 0.02 stays to the end
    html = P.render_html(data)
    payload = json.loads(re.search(r'<script type="application/json">(.*?)</script>', html, re.S).group(1))
    assert payload["functions"][0]["ends"][6][0] == 2 and payload["functions"][0]["ends"][3][0] == -1


def test_same_as_run(small):
    assert all(P.same_as_run(small, f, m, 1, -1) for f in small.functions for m in small.methods)
    # a run cut where it left the figure still agrees on the points kept
    assert np.isnan(small.paths["saddle"]["heavy_ball"][2, 1, :, 0]).any()
    assert P.same_as_run(small, "saddle", "heavy_ball", 2, 1)
    broken = P.PlaygroundData(small.functions, small.methods, small.betas, small.lrs,
                              {f: {m: a.copy() for m, a in fm.items()} for f, fm in small.paths.items()},
                              small.values)
    broken.paths["quadratic"]["gd"][0, 0, 5, 0] += 1e-12
    assert not P.same_as_run(broken, "quadratic", "gd", 0)
    with pytest.raises(TypeError, match="PlaygroundData"):
        P.same_as_run({}, "quadratic", "gd", 0)


def test_steps_to_leave():
    y = 1e-3 * 1.2 ** np.arange(60)
    path = np.stack([np.zeros_like(y), y], 1)
    assert P.steps_to_leave(path) == 38  # 1.2³⁸·10⁻³ > 1 > 1.2³⁷·10⁻³
    assert P.steps_to_leave(path[:30]) is None
    path[10:] = np.nan  # cut: it left the figure there
    assert P.steps_to_leave(path) == 10
    t = F.run(F.saddle(), (-1.4, 1e-3), 60, update=trajectory_rule("gd", alpha=0.1))
    assert P.steps_to_leave(t) == 38
    with pytest.raises(ValueError, match="shape"):
        P.steps_to_leave(np.zeros(3))
    with pytest.raises(ValueError, match="level"):
        P.steps_to_leave(path, level=0)


@pytest.mark.parametrize("x, text", [
    (0.0742, "0.074"), (3.52, "3.5"), (42.0, "42"), (4.01, "4"), (330.0, "3.3·10²"), (99.7, "10²"),
    (3.1e-4, "3.1·10⁻⁴"), (-3175.0, "−3.2·10³"), (-4.2, "−4.2"), (1e-3, "10⁻³"), (1e-10, "10⁻¹⁰"),
    (0.0099, "9.9·10⁻³"), (0.0, "0"),
])
def test_short(x, text):
    assert P.short(x) == text


def test_short_refuses_nan():
    with pytest.raises(ValueError, match="cannot write"):
        P.short(float("nan"))


def test_contour_png_keeps_the_star_yellow():
    from io import BytesIO

    from PIL import Image

    img = Image.open(BytesIO(P.contour_png(P.SETTINGS["quadratic"].make()))).convert("RGB")
    px = np.asarray(img).reshape(-1, 3).astype(int)
    yellow = (np.abs(px - np.array([0xF0, 0xE4, 0x42])).max(1) < 40).sum()
    assert yellow > 20  # the minimiser's star, not turned grey by the palette


def test_quick_methods_cover_the_page():
    assert set(P.QUICK_METHODS) <= set(P.METHODS)
    assert P.METHODS["rmsprop"].beta_label.startswith("ρ")  # notation.md: ρ is RMSProp's coefficient
