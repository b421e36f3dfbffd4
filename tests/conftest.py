"""Shared test set-up: quick mode, no progress bars, the book's tools importable."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

os.environ.setdefault("NNTRAIN_QUICK", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

BROWSER_SUMMARY = ROOT / "test-reports" / "browser" / "summary.txt"


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller, not an xdist worker
        BROWSER_SUMMARY.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter):
    """Print the browser check's table (first-screen typeset time per page, page weight)."""
    if BROWSER_SUMMARY.exists():
        terminalreporter.section("browser check: time to typeset the first screen (ms), page weight (KB)")
        terminalreporter.write_line(BROWSER_SUMMARY.read_text(encoding="utf-8"))
