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


def test_strings_are_glued_without_quotes(shown):
    book.glue("device", "cpu (x86_64, 2 cores)")
    assert shown[0][0] == {book.HIDDEN_PREFIX + "text/plain": "cpu (x86_64, 2 cores)"}


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
