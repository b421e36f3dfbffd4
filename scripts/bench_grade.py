"""Time the grader: a folder of 20 submissions of one assignment, one worker per core.

    python scripts/bench_grade.py [--assignment part1] [--n 20] [--jobs N]

The folder mixes reference solutions, blank notebooks and references with a failing cell (the
ordinary cases); it prints the wall time of the whole folder and the time of each kind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nntrain.grade.config import ASSIGNMENTS, find_assignment
from nntrain.grade.material import reference_submission
from nntrain.grade.runner import grade_folder


def make_folder(part: str, n: int, folder: Path) -> None:
    """``n`` submissions: 60 % reference, 20 % blank, 20 % reference + a raising cell."""
    reference = reference_submission(ASSIGNMENTS / part / "master.ipynb", folder / "_ref.json")
    solved = json.loads(reference.read_text(encoding="utf-8"))
    blank = json.loads((ASSIGNMENTS / "release" / part / f"{part}.ipynb").read_text("utf-8"))
    broken = json.loads(json.dumps(solved))
    broken["cells"].append({"cell_type": "code", "execution_count": None, "id": "boom",
                            "metadata": {}, "outputs": [], "source": "raise RuntimeError('x')"})
    for i in range(n):
        kind, nb = (("reference", solved) if i % 5 < 3 else
                    ("blank", blank) if i % 5 == 3 else ("broken", broken))
        (folder / f"{i:02d}-{kind}.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    reference.unlink()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assignment", default="part1")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--jobs", type=int, default=None)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    folder = Path(tempfile.mkdtemp(prefix="nntrain-bench-"))
    try:
        make_folder(args.assignment, args.n, folder)
        start = time.monotonic()
        rows = grade_folder(folder, find_assignment(args.assignment), args.jobs)
        wall = time.monotonic() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{args.assignment}: {len(rows)} submissions in {wall:.1f} s "
          f"({args.jobs or os.cpu_count()} workers, {os.cpu_count()} cores)")
    for kind in ("reference", "blank", "broken"):
        times = [r.seconds for r in rows if kind in r.submission]
        totals = sorted({r.total for r in rows if kind in r.submission})
        reasons = sorted({r.reason for r in rows if kind in r.submission})
        if times:
            print(f"  {kind:9s} n={len(times):2d}  per submission: "
                  f"median {statistics.median(times):.1f} s,"
                  f" max {max(times):.1f} s; totals {totals}; reasons {reasons}")
    return 0 if wall < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
