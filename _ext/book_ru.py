"""Russian for the words the themes and extensions leave in English, and references that decline.

* sphinx-exercise's Russian catalog lacks the plain «Solution», and sphinx-book-theme's lacks the
  launch-button tooltips: the missing messages are added as fallback catalogs, compiled at build
  time (babel comes with Sphinx), so that nothing of the themes is patched.
* ``{prf:ref}`label``` always prints «Теорема 2.3», which a Russian sentence cannot use after
  «по», «из», «в»: ``{prf:ref}`по теореме %s <label>``` puts the number in place of ``%s``, as
  ``{numref}`` does, so the case is the author's and the number stays the toc's.
* A glued number formatted with ``:,`` comes out as «26,122», which a Russian reader takes for a
  decimal comma: in pasted glue text the digit groups are separated by a narrow no-break space
  («26 122»), as Russian typography does.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from docutils import nodes
from sphinx import addnodes
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform

NARROW_NBSP = "\u202f"
_GROUP_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def russian_digit_groups(text: str) -> str:
    """«26,122» → «26 122» (narrow no-break space); «0.5, 3» and a decimal «3,5» are left alone."""
    return _GROUP_COMMA.sub(NARROW_NBSP, text)


class RussianDigitGroups(SphinxTransform):
    """Apply :func:`russian_digit_groups` to the text that ``{glue:text}`` pastes (myst-nb's
    ``pasted-text`` inline nodes), so that ``{glue:text}`n:,``` reads as a Russian number."""

    default_priority = 700

    def apply(self, **kwargs) -> None:
        for node in self.document.findall(nodes.inline):
            if "pasted-text" not in node.get("classes", []):
                continue
            for text in list(node.findall(nodes.Text)):
                new = russian_digit_groups(str(text))
                if new != str(text):
                    text.parent.replace(text, nodes.Text(new))

MESSAGES = {
    "exercise": {"Solution": "Решение", "Exercise": "Упражнение"},
    "booktheme": {
        "Launch on": "Открыть в",
        "Launch interactive content": "Запустить ноутбук",
        "Source repository": "Репозиторий книги",
        "Download this page": "Скачать страницу",
        "Print to PDF": "Печать в PDF",
        "Fullscreen mode": "Во весь экран",
        "Download source file": "Скачать исходный файл",
        "By": "",
    },
}


def _compile(directory: Path, domain: str, language: str, messages: dict[str, str]) -> None:
    catalog = Catalog(locale=language, domain=domain)
    for msgid, msgstr in messages.items():
        catalog.add(msgid, msgstr)
    out = directory / language / "LC_MESSAGES"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{domain}.mo", "wb") as f:
        write_mo(f, catalog)


class NumberedProofTitles(SphinxPostTransform):
    """Fill ``%s`` in the explicit title of a ``prf:ref`` with the number of its target."""

    default_priority = 5  # before Sphinx resolves the references (priority 10)

    def run(self, **kwargs) -> None:
        proofs = getattr(self.env, "proof_list", {})
        for node in self.document.findall(addnodes.pending_xref):
            if node.get("refdomain") != "prf" or "%s" not in node.astext():
                continue
            target = node["reftarget"]
            if target not in proofs:
                continue  # sphinx-proof itself warns about an unknown label
            docname = proofs[target]["docname"]
            countertype = proofs[target]["countertype"]
            numbers = self.env.toc_fignumbers.get(docname, {}).get(countertype, {})
            if target not in numbers:
                continue  # an unnumbered theorem has no number to put in
            number = ".".join(map(str, numbers[target]))
            for text in list(node.findall(nodes.Text)):
                if "%s" in text:
                    text.parent.replace(text, nodes.Text(text.replace("%s", number)))


def setup(app):
    app.add_post_transform(NumberedProofTitles)
    app.add_transform(RussianDigitGroups)
    locale_dir = Path(tempfile.mkdtemp(prefix="book_ru_locale_"))
    for domain, messages in MESSAGES.items():
        _compile(locale_dir, domain, "ru", messages)
        app.add_message_catalog(domain, str(locale_dir))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
