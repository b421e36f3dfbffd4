"""Timings of the book (a benchmark, not a test: nothing here asserts).

    python scripts/bench.py               # everything below
    python scripts/bench.py notebooks     # quick-mode execution time of each notebook
    python scripts/bench.py build         # book build time from the committed outputs
    python scripts/bench.py optim muon    # the package's own benchmarks (scripts/bench_*.py)

Targets on a 2-core CPU: each notebook < 60 s in quick mode, the build < 60 s.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import booktools  # noqa: E402

NOTEBOOK_LIMIT_S = 60.0
BUILD_LIMIT_S = 60.0

def bench_notebooks() -> None:
    """Execute a copy of every notebook in quick mode and print its wall time."""
    print("Quick-mode execution time of each notebook (limit 60 s):")
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for path in booktools.notebooks():
            copy = Path(tmp) / path.relative_to(booktools.ROOT)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, copy)
            seconds = booktools.run(copy, quick=True)
            total += seconds
            flag = "ok" if seconds < NOTEBOOK_LIMIT_S else "SLOW"
            print(f"  {path.relative_to(booktools.ROOT)!s:55} {seconds:6.1f} s  {flag}", flush=True)
    print(f"  {'total':55} {total:6.1f} s")

def bench_build() -> None:
    """Build the book from the committed outputs into a temporary folder."""
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.run([jb, "build", str(booktools.ROOT), "--all", "-W", "-n", "--keep-going", "--path-output", tmp],
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
    status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    print(f"Book build from committed outputs: {seconds:.1f} s (limit {BUILD_LIMIT_S:.0f} s), {status}")

def bench_module(name: str) -> None:
    """Run ``scripts/bench_<name>.py``'s ``main()``."""
    print(f"--- scripts/bench_{name}.py")
    importlib.import_module(f"bench_{name}").main([])

def package_benchmarks() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))

def main(argv: list[str]) -> int:
    targets = argv or ["notebooks", "build", *package_benchmarks()]
    for target in targets:
        if target == "notebooks":
            bench_notebooks()
        elif target == "build":
            bench_build()
        elif target in package_benchmarks():
            bench_module(target)
        else:
            print(f"unknown benchmark {target!r}; available: notebooks, build, {', '.join(package_benchmarks())}")
            return 2
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
