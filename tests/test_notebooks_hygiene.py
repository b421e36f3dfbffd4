"""Committed notebooks are executed top to bottom, clean and start with the same bootstrap cell."""

import re

import nbformat
import pytest
import yaml

import booktools

NOTEBOOKS = booktools.notebooks()
DRAFT_MARK = "*Глава пишется.*"
# Short extra pages of a chapter (an interactive page, say): they are not chapters, so no chapter shape.
EXTRA_PAGES = {"chapters/02_optimizers/playground.ipynb"}


def _ids(paths):
    return [str(p.relative_to(booktools.ROOT)) for p in paths]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert booktools.check(nb, path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_bootstrap_installs_from_the_configured_repository(path):
    first = booktools.first_code_cell(nbformat.read(path, as_version=4))
    urls = re.findall(r"git\+(\S+?)@main", first.source)
    assert urls and set(urls) == {booktools.repository_url()}


def test_pages_name_the_configured_repository():
    """The intro and README name the repository of _config.yml, not another one."""
    for page in ("intro.md", "README.md"):
        text = (booktools.ROOT / page).read_text(encoding="utf-8")
        for url in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", text):
            assert url.removesuffix(".git") == booktools.repository_url(), f"{page} names {url}"


def test_every_notebook_is_in_the_toc():
    toc = (booktools.ROOT / "_toc.yml").read_text(encoding="utf-8")
    files = set(re.findall(r"file:\s*(\S+)", toc))
    for path in NOTEBOOKS:
        assert str(path.relative_to(booktools.ROOT).with_suffix("")) in files, f"{path} is not in _toc.yml"
    for entry in files:
        candidates = [booktools.ROOT / f"{entry}{ext}" for ext in (".ipynb", ".md")]
        assert any(c.exists() for c in candidates), f"_toc.yml names {entry}, which does not exist"


def test_colab_settings():
    config = yaml.safe_load((booktools.ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["repository"]["branch"] == "main"
    assert config["repository"]["url"].startswith("https://github.com/")
    assert config["execute"]["execute_notebooks"] == "off"


def _prose_words(nb) -> int:
    text = " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
    text = re.sub(r"\$\$.*?\$\$|\$[^$]*\$|```.*?```", " ", text, flags=re.S)
    return len(re.findall(r"[А-Яа-яЁё]+(?:-[А-Яа-яЁё]+)*", text))


def _figures(nb) -> int:
    return sum("image/png" in out.get("data", {}) or "image/svg+xml" in out.get("data", {})
               for c in nb.cells if c.cell_type == "code" for out in c.outputs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_written_chapter_has_the_book_shape(path):
    """A chapter (not marked as a draft) has prose, figures, exercises with solutions and references."""
    nb = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    if DRAFT_MARK in markdown:
        pytest.skip("chapter is a draft")
    if path.relative_to(booktools.ROOT).as_posix() in EXTRA_PAGES:
        pytest.skip("an extra page of a chapter, not a chapter")
    assert _prose_words(nb) >= 2500, f"only {_prose_words(nb)} words of Russian prose"
    assert _figures(nb) >= 3, f"only {_figures(nb)} figures"
    exercises = len(re.findall(r"```\{exercise\}", markdown))
    solutions = len(re.findall(r"```\{solution\}", markdown))
    assert exercises >= 5 and solutions >= exercises, (exercises, solutions)
    assert "{footcite}" in markdown and "{footbibliography}" in markdown, \
        "no references: cite papers with {footcite}`key` (references.bib) and end with a {footbibliography}"
    assert any(booktools.CHECK_TAG in c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"), \
        "nothing is checked by nbval"


def test_status_page_matches_the_notebooks():
    page = booktools.STATUS_PAGE.read_text(encoding="utf-8")
    assert page == booktools.status_page(), "status.md is stale: run `python scripts/booktools.py status`"


def test_every_notebook_records_its_full_run():
    for path in NOTEBOOKS:
        meta = nbformat.read(path, as_version=4).metadata.get("nntrain", {})
        assert {"seconds", "date", "device", "torch"} <= set(meta.get("full", {})), \
            f"{path}: no record of its full-size run (execute it with `booktools.py run`)"


def _forbidden_patterns():
    lines = (booktools.ROOT / "tests" / "forbidden_terms.txt").read_text(encoding="utf-8").splitlines()
    return [re.compile(line, re.IGNORECASE) for line in lines if line.strip() and not line.startswith("#")]


def _reader_text(path):
    """What a reader reads on a page: markdown, and the text a notebook prints."""
    if path.suffix == ".md":
        return path.read_text(encoding="utf-8")
    nb = nbformat.read(path, as_version=4)
    parts = [c.source for c in nb.cells if c.cell_type == "markdown"]
    for c in nb.cells:
        for out in c.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            parts.append(text if isinstance(text, str) else "".join(text))
    return "\n".join(parts)


PAGES = NOTEBOOKS + sorted(p for p in booktools.ROOT.glob("**/*.md")
                           if p.parts[len(booktools.ROOT.parts)] in {"chapters", "intro.md", "status.md"})


@pytest.mark.parametrize("path", PAGES, ids=_ids(PAGES))
def test_no_forbidden_terms(path):
    """The notation page names the variants the book avoids; no other page uses them."""
    text = _reader_text(path)
    found = [f"{m.group(0)!r} near «{text[max(0, m.start() - 40):m.end() + 20]}»"
             for pattern in _forbidden_patterns() for m in pattern.finditer(text)]
    assert not found, "\n".join(found)
