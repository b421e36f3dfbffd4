"""The grading material of an assignment: every test case of the master, loaded in trusted code.

Why: the trusted process must hold the hidden tests and never show them to the student process.
``otter assign`` (the same tool that makes the student release) writes all test files into a
private temporary directory; they are parsed with otter's own loader, so points and hidden flags
mean exactly what they mean in otter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .config import GradeConfigError

ASSIGN_TIMEOUT_S = 300


@dataclass
class Case:
    """One test case: a function whose parameters name what it needs."""

    name: str
    points: float
    hidden: bool
    func: Callable[..., None]


@dataclass
class Question:
    name: str
    cases: list[Case]

    @property
    def points(self) -> float:
        return sum(c.points for c in self.cases)


def _cache_dir(master: Path) -> Path:
    """Private cache of ``otter assign`` outputs, keyed by the master's bytes and otter's version.

    Why: otter assign takes seconds to tens of seconds (it imports nbconvert, pandas, …), and a
    grading run, the release and its check all need the same output of the same master."""
    import hashlib
    import importlib.metadata
    import os
    import tempfile

    key = hashlib.sha256(master.read_bytes())
    key.update(importlib.metadata.version("otter-grader").encode())
    root = Path(tempfile.gettempdir()) / f"nntrain-otter-cache-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    info = root.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise GradeConfigError(f"refusing the otter cache {root}: not private to this user")
    return root / key.hexdigest()[:32]


def otter_assign(master: Path, out: Path) -> Path:
    """``otter assign`` of ``master`` into ``out`` (from the private cache when it has it).

    Tests are not re-run by otter: the grader's own tests grade the solutions."""
    import shutil

    cached = _cache_dir(master)
    if not (cached / "autograder" / "tests").is_dir():
        partial = cached.with_name(cached.name + f".{os.getpid()}.tmp")
        shutil.rmtree(partial, ignore_errors=True)
        _run_otter_assign(master, partial)
        try:
            partial.rename(cached)
        except OSError:  # another process filled the cache first
            shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(cached, out, dirs_exist_ok=True)
    return out


def _run_otter_assign(master: Path, out: Path) -> Path:
    cmd = [sys.executable, "-m", "otter", "assign", "--no-run-tests", "--no-pdfs",
           str(master), str(out)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=ASSIGN_TIMEOUT_S,
                              cwd=master.parent)
    except subprocess.TimeoutExpired:
        raise GradeConfigError(f"otter assign {master} took over {ASSIGN_TIMEOUT_S} s") from None
    if done.returncode != 0 or not (out / "autograder" / "tests").is_dir():
        tail = (done.stderr or done.stdout)[-2000:]
        raise GradeConfigError(f"otter assign failed on {master}:\n{tail}")
    return out


def load_questions(tests_dir: Path) -> list[Question]:
    """Every question (file ``qN.py``) with all its cases, in otter's order."""
    from otter.test_files.exception_test import ExceptionTestFile

    questions = []
    for path in sorted(tests_dir.glob("*.py"), key=_natural):
        try:
            test_file = ExceptionTestFile.from_file(str(path))
        except Exception as err:  # noqa: BLE001 - a broken master must say where
            raise GradeConfigError(f"cannot load test file {path.name}: {err}") from None
        cases = [Case(getattr(tc.body.test_func, "__name__", tc.name), float(tc.points or 0),
                      bool(tc.hidden), tc.body.test_func)
                 for tc in test_file.test_cases]
        questions.append(Question(test_file.name, cases))
    if not questions:
        raise GradeConfigError(f"no test files in {tests_dir}")
    return questions


def _natural(path: Path) -> tuple:
    stem = path.stem
    digits = "".join(ch for ch in stem if ch.isdigit())
    return (stem.rstrip("0123456789"), int(digits) if digits else -1, stem)


def reference_submission(master: Path, dest: Path) -> Path:
    """The master's solutions as a student would submit them (otter's autograder notebook).

    Why: the reference must score full marks; tests and the benchmark grade it like any other.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nntrain-reference-") as tmp:
        out = otter_assign(master.resolve(), Path(tmp) / "dist")
        dest.write_bytes((out / "autograder" / "master.ipynb").read_bytes())
    return dest
