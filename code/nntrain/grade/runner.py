"""Grade one submission, or a folder of them in parallel, into rows of the CSV.

Why this order: everything that can be decided without running the code (is it a notebook, of
this assignment, does it parse, does it use a forbidden API or touch the grader) is decided first
in the trusted process; then the cells run in the sandbox; then the trusted tests ask the sandbox
for answers. A submission can fail in any way and still gets a row; the run goes on.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable

from . import wire
from .config import ASSIGNMENTS, REPO, Assignment
from .material import Question, load_questions, otter_assign
from .sandbox import Sandbox, isolation_note
from .scan import Scan, code_cells, scan
from .trusted import run_questions

MAX_NOTEBOOK_MB = 50
# The most serious first; a row lists all that apply.
SEVERITY = ["tampering suspected", "forbidden API", "not a notebook", "wrong assignment",
            "kernel died", "timeout", "memory limit", "syntax error", "exception in cell",
            "output missing"]
_MEMORY_WORDS = ("can't allocate memory", "out of memory", "cannot allocate memory")


def label(reason: str) -> str:
    """The reason without its numbers ("exception in cell 5" → "exception in cell")."""
    return next((s for s in SEVERITY if reason.startswith(s)), reason)


def severity(reason: str) -> int:
    return SEVERITY.index(label(reason)) if label(reason) in SEVERITY else len(SEVERITY)


@dataclass
class Material:
    """What a worker needs: the questions (with hidden cases), limits, names to hide."""

    assignment: Assignment
    tests_dir: Path
    hide: list[str]
    workroot: str
    setup: str | None = None  # the release's setup cell (trusted when unchanged)
    mask: list[str] = field(default_factory=list)  # not needed by the student: hidden if possible

    def questions(self) -> list[Question]:
        return load_questions(self.tests_dir)


@dataclass
class Row:
    submission: str
    points: dict[str, float]
    max_points: float
    reasons: list[str] = field(default_factory=list)
    detail: str = ""
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return round(sum(self.points.values()), 6)

    @property
    def reason(self) -> str:
        if not self.reasons:
            return "ok"
        return "; ".join(sorted(dict.fromkeys(self.reasons), key=severity))


def not_regular(path: Path) -> str | None:
    """Why ``path`` is not a plain file of its own (a link, a FIFO, …), or None.

    Why: a symbolic link in the folder (an unpacked archive keeps them) could make the grader
    read, and grade as a submission, the reference notebook or any file of the machine."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if stat.S_ISLNK(mode):
        return "a symbolic link, not a file (not followed)"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def read_notebook(path: Path) -> dict | None:
    """The submission as a validated nbformat-4 dict, or None if it is not a notebook."""
    import nbformat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_NOTEBOOK_MB * 2**20:
                return None
            text = f.read(MAX_NOTEBOOK_MB * 2**20 + 1).decode("utf-8")
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception:  # noqa: BLE001 - any failure here means "not a notebook"
        return None
    return json.loads(nbformat.writes(nb))


def wrong_assignment(nb: dict, found: Scan, name: str, questions: list[Question]) -> str | None:
    """Why this notebook belongs to another assignment, or None."""
    declared = nb.get("metadata", {}).get("otter", {}).get("assignment_name")
    if isinstance(declared, str) and declared != name:
        return f"the notebook is of assignment {declared!r}"
    extra = found.checked_questions - {q.name for q in questions}
    if extra:
        return f"checks questions this assignment lacks: {sorted(extra)}"
    return None


def _run_reasons(report, errors: list[dict], syntax: list[int]) -> tuple[list[str], list[str]]:
    reasons, detail = [], []
    if syntax:
        reasons.append(f"syntax error (cell {syntax[0]})")
    run_errors = [e for e in errors if e["cell"] not in syntax]
    if any(e["type"] == "MemoryError" or any(w in e["message"].lower() for w in _MEMORY_WORDS)
           for e in run_errors):
        reasons.append("memory limit")
    if run_errors:
        first = run_errors[0]
        reasons.append(f"exception in cell {first['cell']}")
        detail.append(f"cell {first['cell']}: {first['type']}: {first['message'][:200]}")
    if report.status != "ok":
        reasons.append(report.status)
        where = f" (cell {report.last_cell})" if report.last_cell else ""
        detail.append(f"{report.status} while running the cells{where}")
    return reasons, detail


def grade_one(path: Path, material: Material, questions: list[Question]) -> Row:
    """One submission → one row. Never raises for anything the submission does."""
    start = time.monotonic()
    config = material.assignment.config
    row = Row(path.name, {q.name: 0.0 for q in questions}, sum(q.points for q in questions))
    odd = not_regular(path)
    nb = None if odd else read_notebook(path)
    if nb is None:
        row.reasons = ["not a notebook"]
        row.detail = odd or "not a valid .ipynb (JSON, nbformat 4)"
        return row
    found = scan(nb, config.forbidden, material.setup)
    wire_mb = len(json.dumps(found.cells)) / 2**20  # as the run message will carry them
    if wire_mb > wire.MAX_FRAME / 2**20 - 1:
        row.reasons = ["not a notebook"]
        row.detail = f"its code cells are too large to run ({wire_mb:.0f} MB once encoded)"
        return row
    why = wrong_assignment(nb, found, material.assignment.name, questions)
    if why:
        row.reasons, row.detail = ["wrong assignment"], why
        return row
    detail = []
    if found.forbidden:
        row.reasons.append(f"forbidden API ({', '.join(sorted(found.forbidden))})")
        detail += [f"{q}: uses {', '.join(v)}" for q, v in sorted(found.forbidden.items())]
    with Sandbox(config.limits, material.hide, mask=material.mask) as box:
        report = box.run_cells(found.cells)
        reasons, run_detail = _run_reasons(report, report.errors, found.syntax_errors)
        if report.status == "kernel died":
            run_detail.append(f"last output: {box.output_tail(300)!r}")
        row.reasons += reasons
        detail += run_detail
        limits = config.limits
        outcome = run_questions(questions, box, set(found.forbidden),
                                3 * limits.call_timeout_s + 30, test_budget_s(limits))
        forged = box.forged
        if box.oom_kills():
            row.reasons.append("memory limit")
            detail.append(f"the memory cgroup killed {box.oom_kills()} process(es)")
    row.points.update(outcome.points)
    if outcome.gone is not None and report.status == "ok":
        row.reasons.append(outcome.gone.reason)
        detail.append(f"{outcome.gone.reason} while testing: {outcome.gone}")
    if outcome.missing:
        row.reasons.append("output missing")
        detail.append(f"not defined: {', '.join(sorted(outcome.missing))}")
    if found.tampering or forged:
        row.reasons.append("tampering suspected")
        signs = found.tampering[:4] + ([f"{forged} forged messages"] if forged else [])
        detail.append("signs: " + "; ".join(signs))
    detail += outcome.failures[:3]
    row.detail = " | ".join(detail)[:1500]
    row.seconds = time.monotonic() - start
    return row


# ---- many submissions --------------------------------------------------------------------

_WORKER: dict = {}


def test_budget_s(limits) -> float:
    """Wall clock for all the tests of one submission (a function just under call_timeout_s per
    call must not make one submission take many minutes)."""
    return limits.timeout_s + 6 * limits.call_timeout_s + 60


def _init_worker(material: Material) -> None:
    """Each worker loads the tests once; one torch thread (workers share the cores)."""
    import torch

    from .trusted import warm_up

    torch.set_num_threads(1)
    if any("torch.optim" in p.read_text("utf-8") for p in material.tests_dir.glob("*.py")):
        warm_up()
    _WORKER["material"] = material
    _WORKER["questions"] = material.questions()


def _grade_in_worker(path: str) -> Row:
    material, questions = _WORKER["material"], _WORKER["questions"]
    try:
        return grade_one(Path(path), material, questions)
    except Exception as err:  # noqa: BLE001 - a grader bug must not lose the other rows
        row = Row(Path(path).name, {q.name: 0.0 for q in questions},
                  sum(q.points for q in questions), ["kernel died"], f"grader error: {err!r}")
        return row


def hidden_paths(assignment: Assignment, submissions: Path, workroot: str) -> list[str]:
    """What the sandbox must not see: the assignments, the repository's history and tests,
    the trusted temp dir, the submissions, and every temp directory."""
    repo = assignment.folder.resolve().parent.parent
    candidates = [assignment.folder.resolve().parent, submissions.resolve(), Path(workroot),
                  Path(tempfile.gettempdir()), Path("/tmp"), repo / ".git", repo / "tests",
                  ASSIGNMENTS, REPO / ".git", REPO / "tests"]
    keep = [Path(sys.prefix).resolve(), Path(__file__).resolve().parent]
    out = []
    for c in candidates:
        c = c.resolve()
        if c.exists() and not any(k == c or c in k.parents for k in keep) and str(c) not in out:
            out.append(str(c))
    return out


def _needed() -> list[Path]:
    """What the student process needs to read: Python, its packages, the harness, nntrain."""
    import nntrain

    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             Path(__file__).resolve().parent, Path(nntrain.__file__).resolve().parent.parent,
             Path(sys.executable).resolve().parent.parent]
    repo = REPO.resolve()
    for entry in sys.path:  # site-packages and the like; not the repository's own folders
        path = Path(entry or ".").resolve()
        if path.is_dir() and path != repo and repo not in path.parents:
            paths.append(path)
    return sorted({Path(p).resolve() for p in paths})


def mask_paths(anchors: list[Path], keep: list[Path]) -> list[str]:
    """Everything under the folders of ``anchors`` and their parents (below ``/``) that is not
    on the way to a path of ``keep``: siblings of the repository (another clone, a shared
    folder), the rest of the home folder, the repository's files other than the package.

    Why: copies of masters and solutions live in such places on a teacher's machine; the
    student process needs only Python, its packages and the package's code."""
    roots: set[Path] = set()
    for anchor in anchors:
        anchor = anchor.resolve()
        roots |= {p for p in [anchor, *anchor.parents] if p != Path(p.anchor)}
    out: list[str] = []

    def walk(folder: Path) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.is_symlink():
                continue  # its target is masked (or needed) where it lives
            if any(k == entry or entry in k.parents for k in keep):
                if entry not in keep and entry.is_dir():
                    walk(entry)
                continue
            if any(entry in k.parents for k in roots) or entry in roots:
                walk(entry)
                continue
            out.append(str(entry))

    for root in sorted(roots, key=lambda p: len(p.parts)):
        if not any(r in root.parents for r in roots):  # the top ones; walk goes down
            walk(root)
    return out


def prepare(assignment: Assignment, submissions: Path, workroot: str) -> Material:
    """Generate all tests of the master privately (otter assign) and decide what to hide."""
    out = otter_assign(assignment.master.resolve(), Path(workroot) / "assign")
    student = json.loads((out / "student" / "master.ipynb").read_text(encoding="utf-8"))
    cells = code_cells(student)
    hide = hidden_paths(assignment, submissions, workroot)
    tmp = Path(tempfile.gettempdir()).resolve()
    covered = [Path(h) for h in hide] + [tmp, Path("/tmp")]
    mask = [m for m in mask_paths([REPO, Path.home()], _needed())
            if not any(Path(m) == c or Path(m).is_relative_to(c) for c in covered)]
    return Material(assignment, out / "autograder" / "tests", hide, workroot,
                    cells[0][1] if cells else None, mask)


def submissions_in(folder: Path) -> list[Path]:
    """Every ``.ipynb`` directly in ``folder`` that is not a folder (sorted: the CSV is
    reproducible); links and other odd entries get a row "not a notebook" and are not opened."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no such submissions folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix == ".ipynb"
                  and (p.is_symlink() or not p.is_dir()))


def _run_pool(paths: list[Path], material: Material, jobs: int, bar) -> list[Row]:
    """Rows of ``paths`` from worker processes; if a worker dies (the pool breaks), the
    unfinished submissions are retried in a fresh pool, at most three times."""
    rows: list[Row] = []
    pending = list(paths)
    for _ in range(3):
        if not pending:
            break
        ctx = get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(material,)) as pool:
            futures = {pool.submit(_grade_in_worker, str(p)): p for p in pending}
            try:
                for future in as_completed(futures):
                    rows.append(future.result())
                    pending.remove(futures[future])
                    bar.update()
            except BrokenProcessPool:
                pass
    return rows


def grade_folder(folder: Path, assignment: Assignment, jobs: int | None = None,
                 progress: bool = True) -> list[Row]:
    """Grade every submission of ``folder`` with ``jobs`` worker processes (default: cores)."""
    from tqdm.auto import tqdm

    paths = submissions_in(folder)
    jobs = max(1, min(jobs or os.cpu_count() or 1, max(1, len(paths))))
    workroot = tempfile.mkdtemp(prefix="nntrain-grade-")
    os.chmod(workroot, 0o700)
    try:
        material = prepare(assignment, folder, workroot)
        questions = material.questions()  # fail here, clearly, if a test file does not load
        with tqdm(total=len(paths), desc=f"grading {assignment.name}", unit="nb",
                  disable=not progress or None) as bar:
            rows = _run_pool(paths, material, jobs, bar)
        for path in paths:  # a worker that died again and again: its submissions still get a row
            if path.name not in {r.submission for r in rows}:
                rows.append(Row(path.name, {q.name: 0.0 for q in questions},
                                sum(q.points for q in questions), ["kernel died"],
                                "the grading worker died on this submission"))
        rows.sort(key=lambda r: r.submission)
        return rows
    finally:
        shutil.rmtree(workroot, ignore_errors=True)


def question_names(rows: Iterable[Row]) -> list[str]:
    for row in rows:
        return list(row.points)
    return []


def write_csv(rows: list[Row], out: Path, questions: list[str]) -> None:
    """Columns: submission, q1…qN, total, max, reason, detail. Text cells that a spreadsheet
    would read as a formula (a file named ``=HYPERLINK(…).ipynb``) get a leading ``'``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", *questions, "total", "max", "reason", "detail"])
        for r in rows:
            writer.writerow([_text(r.submission),
                             *(_num(r.points.get(q, 0.0)) for q in questions),
                             _num(r.total), _num(r.max_points), _text(r.reason),
                             _text(r.detail)])


def _text(x: str) -> str:
    """A cell a spreadsheet shows as text: no formula prefix, no control characters."""
    x = "".join(ch if ch.isprintable() else " " if ch.isspace() else "\ufffd" for ch in x)
    return "'" + x if x[:1] in ("=", "+", "-", "@") else x


def _num(x: float) -> str:
    return f"{x:g}"


def summary(rows: list[Row], seconds: float) -> str:
    """Counts per reason and the mean score, for the terminal."""
    counts = Counter(label(reason) for r in rows for reason in r.reason.split("; "))
    mean = sum(r.total for r in rows) / len(rows) if rows else 0.0
    top = rows[0].max_points if rows else 0.0
    lines = [f"graded {len(rows)} submissions in {seconds:.1f} s; mean score {mean:.2f} / {top:g}",
             isolation_note()]
    lines += [f"  {count:4d}  {reason}" for reason, count in counts.most_common()]
    return "\n".join(lines)
