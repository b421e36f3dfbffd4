"""Typeset the book's formulas with KaTeX when the HTML is written (scripts/katex_prerender.mjs).

A reader then sees typeset formulas at once, with no math typeset in the browser: MathJax needed
~2.5 s per chapter on a desktop and far longer on a phone. It needs Node.js and the npm package
KaTeX in ``.cache/katex`` (``make book`` installs it). Without them the book is unchanged and
MathJax typesets it in the browser, as it would anyway for a formula KaTeX cannot read.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
KATEX = ROOT / ".cache" / "katex" / "node_modules" / "katex"
SCRIPT = ROOT / "scripts" / "katex_prerender.mjs"


def prerender(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    node = shutil.which("node")
    if node is None or not (KATEX / "dist" / "katex.js").exists():
        logger.info("katex: Node.js or .cache/katex is missing; formulas are left to MathJax in the browser")
        return
    done = subprocess.run([node, str(SCRIPT), app.outdir, str(KATEX)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"katex_prerender.mjs failed:\n{done.stderr[-3000:]}")
    logger.info(done.stdout.strip())


def setup(app):
    app.connect("build-finished", prerender)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
