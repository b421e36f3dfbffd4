"""Tools for the book's notebooks: the bootstrap cell, execution, metadata hygiene.

    python scripts/booktools.py run chapters/01_backprop/backprop.ipynb   # execute at full size, clean
    python scripts/booktools.py run --quick NOTEBOOK                       # quick size (never commit that)
    python scripts/booktools.py clean [NOTEBOOK...]                        # strip volatile metadata
    python scripts/booktools.py bootstrap                                  # rewrite every bootstrap cell
    python scripts/booktools.py status                                     # write status.md from the notebooks

The bootstrap cell is generated from ``_config.yml`` (repository.url), the one place the URL lives.
Tests import this module to check the committed notebooks.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
BOOTSTRAP_TAG = "remove-cell"
# nbval compares the outputs of cells with this tag; a tag, unlike a `# NBVAL_CHECK_OUTPUT` comment, stays out of the reader's view.
CHECK_TAG = "nbval-check-output"
CELL_TIMEOUT = 600
MAX_CODE_LINE = 88  # the code column of a page holds about 88 characters
MAX_FIGURE_PIXELS = 800  # nntrain.plot.MAX_PIXELS: wider figures are shrunk below legibility

# Notebook-level metadata that may stay; everything else (widgets state, papermill, ...) goes.
KEEP_NB_METADATA = {"kernelspec", "language_info", "colab", "accelerator", "nntrain"}
STATUS_PAGE = ROOT / "status.md"
# Chapters whose point needs a GPU open in Colab on a GPU runtime (Colab reads this metadata).
GPU_CHAPTERS = {"03_memory", "07_mixed_precision", "08_muon"}
COLAB_GPU = {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}}
# Cell-level metadata that may stay.
KEEP_CELL_METADATA = {"tags"}
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def repository_url() -> str:
    """The book's repository URL from ``_config.yml``."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    return config["repository"]["url"].rstrip("/")


def bootstrap_source(url: str | None = None) -> str:
    """The identical first code cell of every notebook.

    In Colab it installs the package; elsewhere, where the package is missing (a Jupyter outside
    the repository, VS Code, Kaggle), it says in one line how to install it.
    """
    url = url or repository_url()
    spec = f"nntrain @ git+{url}@main#subdirectory=code"
    return (
        "# Colab: install the book's package `nntrain` (Colab's own torch is kept).\n"
        "import importlib.util\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install -q "{spec}"\n'
        'elif importlib.util.find_spec("nntrain") is None:\n'
        f"    print('Пакет книги не установлен: %pip install \"{spec}\"')"
    )


def notebooks() -> list[Path]:
    """Every chapter notebook, in a stable order."""
    return sorted(p for p in CHAPTERS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def first_code_cell(nb) -> nbformat.NotebookNode | None:
    return next((c for c in nb.cells if c.cell_type == "code"), None)


def set_bootstrap(nb) -> None:
    """Make the first code cell the bootstrap cell (insert it if the notebook has none)."""
    cell = first_code_cell(nb)
    if cell is None or "google.colab" not in cell.source:
        cell = nbformat.v4.new_code_cell()
        position = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
        nb.cells.insert(position, cell)
    cell.source = bootstrap_source()
    cell.metadata["tags"] = [BOOTSTRAP_TAG]
    cell.outputs = []


def _is_progress_output(out) -> bool:
    """A tqdm bar: an ipywidget display, or a stderr stream of carriage-return updates."""
    if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
        return True
    return out.get("output_type") == "stream" and out.get("name") == "stderr" and re.search(r"\d+%\|", out.get("text", "")) is not None


def separate_display_math(source: str) -> str:
    """Put blank lines around every ``$$ ... $$`` block of a markdown cell.

    jupyter-book's MyST parses ``$$`` that continues a paragraph as two inline ``$`` signs, which
    garbles the page; as a block of its own it is display math. Code fences are left alone,
    MyST directive fences (```{exercise}, ````{solution}) are treated as markdown.
    """
    lines, out = source.split("\n"), []
    fences: list[tuple[int, bool]] = []  # open fences: (number of backticks, is code)
    inside_math = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        ticks = len(stripped) - len(stripped.lstrip("`"))
        if ticks >= 3 and not inside_math:
            info = stripped[ticks:].strip()
            if not info and fences and ticks >= fences[-1][0]:
                fences.pop()
            else:
                fences.append((ticks, not info.startswith("{")))
            out.append(line)
            continue
        in_code = any(is_code for _, is_code in fences)
        if in_code or not (stripped.startswith("$$") or (inside_math and stripped.endswith("$$"))):
            out.append(line)
            continue
        opens = not inside_math
        closes = inside_math or (len(stripped) > 4 and stripped.endswith("$$"))
        if opens and out and out[-1].strip():
            out.append("")
        out.append(line)
        inside_math = opens and not closes
        if closes and i + 1 < len(lines) and lines[i + 1].strip():
            out.append("")
    return "\n".join(out)


def drop_empty_cells(nb) -> None:
    """Remove cells with no source: an empty code cell would never get an execution count."""
    nb.cells = [c for c in nb.cells if c.source.strip()]


def wants_gpu(path: Path | str) -> bool:
    return Path(path).parent.name in GPU_CHAPTERS


def clean(nb, path: Path | str = "") -> None:
    """Strip volatile metadata, keep outputs and execution counts (nbval needs the counts)."""
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_NB_METADATA - set(COLAB_GPU)}
    if wants_gpu(path):
        nb.metadata.update(copy.deepcopy(COLAB_GPU))
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.nbformat, nb.nbformat_minor = 4, 5
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            cell.source = separate_display_math(cell.source)
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in KEEP_CELL_METADATA}
        cell["id"] = f"cell-{i:03d}"  # stable ids: no diff noise between runs
        if cell.cell_type != "code":
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
            continue
        cell.outputs = [out for out in cell.outputs if not _is_progress_output(out)]


def run_record(seconds: float) -> dict:
    """What the status page says about one execution: time, date, device, versions."""
    import platform
    from datetime import date

    import torch

    from nntrain.runtime import describe_device

    return {"seconds": round(seconds, 1), "date": date.today().isoformat(), "device": describe_device(),
            "torch": torch.__version__, "python": platform.python_version()}


def run(path: Path, quick: bool = False, timeout: int = CELL_TIMEOUT) -> float:
    """Execute ``path`` top to bottom in a fresh kernel; return seconds taken.

    At full size the notebook is rewritten with its outputs (the published ones). In quick mode
    the outputs are thrown away and only the time is recorded in the notebook's metadata.
    """
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    set_bootstrap(nb)
    drop_empty_cells(nb)
    env_backup = dict(os.environ)
    os.environ["NNTRAIN_QUICK"] = "1" if quick else "0"
    os.environ["TQDM_DISABLE"] = "1"  # a progress bar frozen in a published page says nothing
    # The book's CPU tensors are small: one torch thread avoids thread overhead and, on a busy
    # machine, OpenMP threads that wait for each other (seen: 10-60x slower). Same as `make test`.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    start = time.perf_counter()
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    elapsed = time.perf_counter() - start
    size = "quick" if quick else "full"
    if quick:  # keep the committed (full-size) outputs; record the time only
        nb = nbformat.read(path, as_version=4)
    nb.metadata.setdefault("nntrain", {})[size] = run_record(elapsed)
    clean(nb, path)
    nbformat.write(nb, path)
    for problem in check(nb, path):  # e.g. an error output: say so now, not only in the tests
        print(problem, file=sys.stderr)
    return elapsed


def png_width(data: str) -> int:
    """The width in pixels of a base64 PNG, read from its header."""
    import base64

    head = base64.b64decode(data[:64])
    return int.from_bytes(head[16:20], "big")


def check(nb, path: Path | str = "") -> list[str]:
    """Problems that make a committed notebook unacceptable (empty list when it is fine)."""
    problems = []
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code_cells]
    if counts != list(range(1, len(code_cells) + 1)):
        problems.append(f"{path}: execution counts are {counts}, not 1..{len(code_cells)} (run it top to bottom)")
    for i, c in enumerate(code_cells, 1):
        for out in c.outputs:
            if out.get("output_type") == "error":
                problems.append(f"{path}: code cell {i} has an error output ({out.get('ename')})")
            if out.get("output_type") == "stream" and out.get("name") == "stderr" and re.search(r"Traceback|Error:", out.get("text", "")):
                problems.append(f"{path}: code cell {i} printed an error to stderr")
    extra = set(nb.metadata) - KEEP_NB_METADATA
    if extra:
        problems.append(f"{path}: volatile notebook metadata {sorted(extra)}")
    gpu = {k: nb.metadata.get(k) for k in COLAB_GPU}
    if wants_gpu(path) and gpu != COLAB_GPU:
        problems.append(f"{path}: a GPU chapter must open on a Colab GPU runtime (`booktools.py clean` sets it)")
    if not wants_gpu(path) and any(gpu.values()):
        problems.append(f"{path}: Colab GPU metadata on a chapter that does not need a GPU")
    for i, c in enumerate(nb.cells):
        extra = set(c.metadata) - KEEP_CELL_METADATA
        if extra:
            problems.append(f"{path}: cell {i} has volatile metadata {sorted(extra)}")
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and "NBVAL_" in c.source:
            problems.append(f"{path}: cell {i} has an nbval marker comment that readers would see; tag the cell {CHECK_TAG!r}")
        if c.cell_type == "markdown" and separate_display_math(c.source) != c.source:
            problems.append(f"{path}: cell {i} has $$ display math glued to a paragraph (`booktools.py clean` fixes it)")
        if c.cell_type == "markdown" and re.search(r"^#{2,6} \d+(\.\d+)*\.? ", c.source, flags=re.M):
            problems.append(f"{path}: cell {i} numbers a heading by hand; the toc numbers sections "
                            "(label it `(name)=` and refer with {numref})")
    first = first_code_cell(nb)
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code" or c is first:
            continue
        long = [n for n, line in enumerate(c.source.split("\n"), 1) if len(line) > MAX_CODE_LINE]
        if long:
            problems.append(f"{path}: cell {i} has code lines longer than {MAX_CODE_LINE} characters (lines {long})")
        for out in c.get("outputs", []):
            for key, data in out.get("data", {}).items():
                if key.endswith("image/png") and png_width(data) > MAX_FIGURE_PIXELS:
                    problems.append(f"{path}: cell {i} has a figure {png_width(data)} px wide "
                                    f"(at most {MAX_FIGURE_PIXELS}: use nntrain.plot.subplots)")
    if first is None or first.source != bootstrap_source():
        problems.append(f"{path}: the first code cell is not the bootstrap cell (run `python scripts/booktools.py bootstrap`)")
    elif BOOTSTRAP_TAG not in first.metadata.get("tags", []):
        problems.append(f"{path}: the bootstrap cell is not tagged {BOOTSTRAP_TAG!r}")
    return problems


def status_page() -> str:
    """The book's status page: each notebook's last execution, from its own metadata."""
    rows = []
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        meta = nb.metadata.get("nntrain", {})
        full, quick = meta.get("full", {}), meta.get("quick", {})
        rel = path.relative_to(ROOT).with_suffix("").as_posix()

        def secs(r):
            return f"{r['seconds']:.0f}" if "seconds" in r else "—"

        rows.append(f"| {{doc}}`/{rel}` | {secs(quick)} | {secs(full)} | {full.get('device', '—')} | "
                    f"{full.get('torch', '—')} | {full.get('date', '—')} |")
    return "\n".join([
        "# Состояние книги",
        "",
        "Когда и где в последний раз выполнялся каждый ноутбук. Опубликованные выводы — это полный",
        "размер; быстрый (`NNTRAIN_QUICK=1`) выполняют тесты. Время — в секундах, вместе с запуском ядра.",
        "Страницу пишет `python scripts/booktools.py status` из метаданных самих ноутбуков, а тест",
        "проверяет, что она с ними совпадает.",
        "",
        "| ноутбук | быстрый, с | полный, с | устройство | torch | дата |",
        "|---|---:|---:|---|---|---|",
        *rows,
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="execute notebooks in place (full size unless --quick) and clean them")
    p_run.add_argument("paths", nargs="+", type=Path)
    p_run.add_argument("--quick", action="store_true", help="quick size (for timing only; commit full-size outputs)")
    p_clean = sub.add_parser("clean", help="strip volatile metadata")
    p_clean.add_argument("paths", nargs="*", type=Path)
    sub.add_parser("bootstrap", help="rewrite the bootstrap cell of every notebook from _config.yml")
    sub.add_parser("check", help="report hygiene problems of every notebook")
    sub.add_parser("status", help="write the status page status.md from the notebooks' metadata")
    args = parser.parse_args(argv)

    if args.command == "run":
        for path in args.paths:
            print(f"{path}: {run(path, quick=args.quick):.1f} s", flush=True)
    elif args.command in ("clean", "bootstrap"):
        for path in (args.paths if args.command == "clean" and args.paths else notebooks()):
            nb = nbformat.read(path, as_version=4)
            if args.command == "bootstrap":
                set_bootstrap(nb)
            clean(nb, path)
            nbformat.write(nb, path)
    elif args.command == "status":
        STATUS_PAGE.write_text(status_page(), encoding="utf-8")
    elif args.command == "check":
        problems = [p for path in notebooks() for p in check(nbformat.read(path, as_version=4), path)]
        print("\n".join(problems) or "all notebooks are clean")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
