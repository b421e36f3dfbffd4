"""Numbers and figures that the book's prose refers to: myst-nb's ``glue``, without depending on myst-nb.

A chapter computes a number in a cell and *glues* it: ``book.glue("n_params", n)``; the prose
then writes ``{glue:text}`n_params:,```, so that no number in a sentence is typed by hand.
A figure is glued with ``book.figure("fig-name", fig)`` in a cell tagged ``remove-output`` and
shown in the page by a ``{glue:figure}`` block with a numbered caption and alt text.
In Colab or Jupyter the reader simply sees the figure under the cell.

The output format is myst-nb's own (a display with ``scrapbook`` metadata), so the book builds
with ``execute_notebooks: off`` from the committed outputs, while Colab needs no myst-nb.
"""

from __future__ import annotations

from typing import Any

# The prefix myst-nb gives to a glued value that is stored but not displayed.
HIDDEN_PREFIX = "application/papermill.record/"


def _bundle(value: Any) -> tuple[dict, dict]:
    """The mime bundle of ``value``, as IPython would display it.

    A string is stored as its repr: myst-nb reads the text back with ``literal_eval``, which takes
    the quotes off again, while a bare ``36, 129`` would come back as a tuple.
    """
    from IPython.core.formatters import format_display_data

    return format_display_data(value)


def _plain(value: Any) -> Any:
    """A NumPy or 0-d torch scalar as the Python number it holds: NumPy 2 prints ``np.float64(0.5)``,
    which myst-nb cannot format with ``:.3f``."""
    item = getattr(value, "item", None)
    shape = getattr(value, "shape", None)
    if callable(item) and shape == () and type(value).__module__ in {"numpy", "torch"}:
        return item()
    return value


def glue(name: str, value: Any, display: bool = False) -> Any:
    """Store ``value`` under ``name`` for ``{glue:text}`name``` in the prose; return ``value``.

    Numbers keep their type, so the prose chooses the format (``{glue:text}`ratio:.2f```).
    Bad names are an error here rather than a silent miss in the built page.
    """
    from IPython.display import display as ipy_display

    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"a glue name is letters, digits, '_' and '-', got {name!r}")
    value = _plain(value)
    bundle, metadata = _bundle(value)
    prefix = "" if display else HIDDEN_PREFIX
    metadata = {**metadata, "scrapbook": {"name": name, "mime_prefix": prefix}}
    ipy_display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)
    return value


def figure(name: str, fig) -> None:
    """Show ``fig`` under the cell and glue it as ``name`` for a captioned ``{glue:figure}`` in the page.

    The cell is tagged ``remove-output`` so that the page shows the figure once, with its caption.
    """
    import matplotlib.pyplot as plt

    glue(name, fig, display=True)
    plt.close(fig)


def count(n: int, one: str, few: str, many: str) -> str:
    """``n`` with the Russian noun form it takes: ``count(42, "итерация", "итерации", "итераций")``.

    Russian has three forms after a number (1 итерация, 2 итерации, 5 итераций; 11–14 take the
    third), so a glued count in a sentence must bring its own noun.
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"count needs an int, got {type(n).__name__}")
    last, last_two = abs(n) % 10, abs(n) % 100
    if last == 1 and last_two != 11:
        form = one
    elif 2 <= last <= 4 and not 12 <= last_two <= 14:
        form = few
    else:
        form = many
    return f"{n} {form}"


def sci(x: float, digits: int = 1) -> str:
    """``x`` as the prose writes it, ``4.1·10⁻⁶``, where a float format would give ``4.1e-06``."""
    mantissa, exponent = f"{float(x):.{digits}e}".split("e")
    superscript = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
    return f"{mantissa}·10{str(int(exponent)).translate(superscript)}"
