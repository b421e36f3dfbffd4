"""Russian for the words the themes and extensions leave in English («Solution», tooltips, launch buttons).

sphinx-exercise's Russian catalog lacks the plain «Solution», and sphinx-book-theme's lacks the
launch-button tooltips. This extension adds the missing messages as fallback catalogs, compiled
at build time (babel comes with Sphinx), so that nothing of the themes is patched.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo

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


def setup(app):
    locale_dir = Path(tempfile.mkdtemp(prefix="book_ru_locale_"))
    for domain, messages in MESSAGES.items():
        _compile(locale_dir, domain, "ru", messages)
        app.add_message_catalog(domain, str(locale_dir))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
