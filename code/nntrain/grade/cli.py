"""Command line: grade a folder, or make / check the student release."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import ASSIGNMENTS, GradeConfigError, find_assignment


def _grade_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m nntrain.grade",
        description="Grade every .ipynb of a folder against an assignment's master "
                    "(also: python -m nntrain.grade release [--check]).")
    p.add_argument("submissions", type=Path, help="folder of submitted notebooks")
    p.add_argument("--assignment", required=True, help="e.g. part1")
    p.add_argument("--out", type=Path, default=Path("grades.csv"), help="CSV to write")
    p.add_argument("--jobs", type=int, default=None, help="parallel workers (default: cores)")
    p.add_argument("--assignments-dir", type=Path, default=ASSIGNMENTS,
                   help="folder with one subfolder per assignment (default: the repository's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _release_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nntrain.grade release",
                                description="Regenerate assignments/release from the masters.")
    p.add_argument("--check", action="store_true",
                   help="do not write: fail if the committed release differs or leaks")
    p.add_argument("--assignments-dir", type=Path, default=ASSIGNMENTS)
    return p


def grade_main(argv: list[str]) -> int:
    from .runner import grade_folder, question_names, summary, write_csv

    args = _grade_parser().parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        assignment = find_assignment(args.assignment, args.assignments_dir)
        start = time.monotonic()
        rows = grade_folder(args.submissions, assignment, args.jobs, not args.no_progress)
    except (GradeConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_csv(rows, args.out, question_names(rows))
    print(summary(rows, time.monotonic() - start))
    print(f"wrote {args.out}")
    return 0


def release_main(argv: list[str]) -> int:
    from .release import check_release, write_release

    args = _release_parser().parse_args(argv)
    try:
        problems = check_release(args.assignments_dir) if args.check else write_release(
            args.assignments_dir)
    except GradeConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem, file=sys.stderr if args.check else sys.stdout)
    if args.check:
        print("release: OK" if not problems else f"release: {len(problems)} problem(s)")
    return 1 if args.check and problems else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["release"]:
        return release_main(argv[1:])
    return grade_main(argv)
