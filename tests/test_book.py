"""nntrain.book writes the same glue outputs as myst-nb, so the book builds from committed outputs."""

import matplotlib.pyplot as plt
import pytest
from IPython import display as ipd

from nntrain import book


@pytest.fixture
def shown(monkeypatch):
    calls = []
    monkeypatch.setattr(ipd, "display", lambda obj, raw, metadata: calls.append((obj, metadata)))
    return calls


def test_glue_matches_myst_nb_format(shown):
    myst_glue = pytest.importorskip("myst_nb.ext.glue")
    assert book.HIDDEN_PREFIX == myst_glue.GLUE_PREFIX
    assert book.glue("ratio", 0.25) == 0.25
    (bundle, meta), = shown
    assert bundle == {book.HIDDEN_PREFIX + "text/plain": "0.25"}
    assert meta["scrapbook"] == {"name": "ratio", "mime_prefix": book.HIDDEN_PREFIX}


@pytest.mark.parametrize("text", ["cpu (x86_64, ядер: 2)", "36, 129 и 368", "1.5", "True"])
def test_strings_come_back_as_themselves(shown, text):
    """myst-nb literal_evals the stored text: a string must survive that unchanged."""
    variables = pytest.importorskip("myst_nb.core.variables")
    book.glue("s", text)
    stored = shown[0][0][book.HIDDEN_PREFIX + "text/plain"]
    assert variables.format_plain_text(stored, "") == text


def test_displayed_glue_has_no_prefix(shown):
    book.glue("n", 3, display=True)
    assert shown[0][0] == {"text/plain": "3"} and shown[0][1]["scrapbook"]["mime_prefix"] == ""


def test_figure_is_glued_shown_and_closed(shown):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    book.figure("fig-test", fig)
    bundle, meta = shown[0]  # (outside a kernel the bundle holds text/plain only; in a notebook, the PNG)
    assert not any(k.startswith(book.HIDDEN_PREFIX) for k in bundle) and meta["scrapbook"]["name"] == "fig-test"
    assert not plt.fignum_exists(fig.number)


@pytest.mark.parametrize("name", ["", "a b", "x.y", None, 3, "two\nlines"])
def test_bad_names_are_refused(shown, name):
    with pytest.raises(ValueError, match="glue name"):
        book.glue(name, 1)
    assert shown == []


@pytest.mark.parametrize("n, expected", [(1, "1 итерация"), (2, "2 итерации"), (5, "5 итераций"),
                                         (11, "11 итераций"), (12, "12 итераций"), (21, "21 итерация"),
                                         (22, "22 итерации"), (42, "42 итерации"), (111, "111 итераций"),
                                         (0, "0 итераций"), (104, "104 итерации")])
def test_count_takes_the_russian_plural(n, expected):
    assert book.count(n, "итерация", "итерации", "итераций") == expected


def test_count_refuses_non_integers():
    with pytest.raises(TypeError):
        book.count(2.0, "a", "b", "c")


@pytest.mark.parametrize("x, digits, expected", [(4.1e-6, 1, "4.1·10⁻⁶"), (1.3e4, 1, "1.3·10⁴"),
                                                 (-2.5e-12, 2, "-2.50·10⁻¹²"), (1.0, 0, "1·10⁰")])
def test_sci_writes_powers_of_ten(x, digits, expected):
    assert book.sci(x, digits) == expected


def test_numpy_and_torch_scalars_are_glued_as_python_numbers(shown):
    import numpy as np
    import torch

    from nntrain import book

    for value, text in [(np.float64(0.25), "0.25"), (np.int64(7), "7"), (torch.tensor(1.5), "1.5"), (np.bool_(True), "True")]:
        shown.clear()
        book.glue("x", value)
        ((bundle, _),) = shown
        assert bundle["application/papermill.record/text/plain"] == text
