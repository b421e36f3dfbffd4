"""The book builds from the committed outputs without a single warning, with a Colab button."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import booktools


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.run([jb, "build", str(booktools.ROOT), "--all", "-W", "-n", "--keep-going", "--path-output", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    return proc, out / "_build" / "html"


def test_build_has_no_warnings(built):
    proc, _ = built
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert "WARNING" not in log and "ERROR" not in log, log[-5000:]


def test_every_notebook_page_has_a_colab_button(built):
    _, html = built
    url = booktools.repository_url().replace("https://github.com/", "https://colab.research.google.com/github/")
    for path in booktools.notebooks():
        rel = path.relative_to(booktools.ROOT)
        page = (html / rel.with_suffix(".html")).read_text(encoding="utf-8")
        assert f"{url}/blob/main/{rel.as_posix()}" in page, f"no Colab link on {rel}"
        assert "google.colab" not in page, f"the bootstrap cell is visible on {rel}"


def test_pages_read_well_in_a_real_browser(built):
    """Every page at desktop and phone width: math typeset, images load, nothing clipped or too wide, ☰ works."""
    import browser_check

    why = browser_check.missing_requirements()
    if why:
        pytest.skip(f"browser check not run: {why}")
    _, html = built
    shots = booktools.ROOT / "test-reports" / "browser"
    reports = browser_check.check_book(html, out_dir=shots)
    shots.mkdir(parents=True, exist_ok=True)
    (shots / "summary.txt").write_text(browser_check.summary(reports), encoding="utf-8")  # printed by conftest
    problems = [f"{r.page} [{r.width}]: {p}" for r in reports for p in r.problems]
    assert not problems, "\n".join(problems[:40]) + f"\n(screenshots in {shots})"
