"""The student release: made from the masters by ``otter assign``, normalised, and checked.

Why: Colab serves the committed release, so it must be exactly what the masters give (no drift)
and must hold nothing of the answers. ``otter assign`` gives cells random ids on every run; they
are replaced by ids derived from the position, outputs and volatile metadata are dropped, and the
JSON is written in one fixed style, so that the same master always gives the same bytes.
"""

from __future__ import annotations

import ast
import filecmp
import json
import shutil
import tempfile
from pathlib import Path

from .config import ASSIGNMENTS, GradeConfigError, known_assignments
from .material import otter_assign

LEAK_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "# SOLUTION", "BEGIN TESTS", "END TESTS",
                "BEGIN QUESTION", "BEGIN TEST CONFIG", "ASSIGNMENT CONFIG", "hidden=True")
VOLATILE_METADATA = ("execution", "widgets", "collapsed", "scrolled", "ExecuteTime")
MIN_SOLUTION_LINE = 12  # shorter solution lines ("return x") may appear in prompts too


def release_dir(root: Path) -> Path:
    return root / "release"


def normalise(nb: dict, name: str) -> str:
    """Stable text of a student notebook: ids from positions, no outputs, no timestamps."""
    for i, cell in enumerate(nb.get("cells", [])):
        cell["id"] = f"{name}-{i:03d}"
        for key in VOLATILE_METADATA:
            cell.get("metadata", {}).pop(key, None)
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    for key in VOLATILE_METADATA:
        nb.get("metadata", {}).pop(key, None)
    nb["nbformat"], nb["nbformat_minor"] = 4, max(5, nb.get("nbformat_minor", 5))
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def build(root: Path, name: str, out: Path, dist: Path | None = None) -> Path:
    """The release of one assignment into ``out/name`` (notebook ``name.ipynb`` + ``tests/``),
    from ``dist`` (an ``otter assign`` output) or from a fresh run of it."""
    with tempfile.TemporaryDirectory(prefix="nntrain-release-") as tmp:
        if dist is None:
            dist = otter_assign((root / name / "master.ipynb").resolve(), Path(tmp) / "dist")
        student = dist / "student"
        target = out / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for path in sorted(student.rglob("*")):
            if path.is_dir():
                continue
            rel = path.relative_to(student)
            dest = target / (f"{name}.ipynb" if rel == Path("master.ipynb") else rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if rel == Path("master.ipynb"):
                dest.write_text(normalise(json.loads(path.read_text("utf-8")), name), "utf-8")
            else:
                shutil.copyfile(path, dest)
    return target


def write_release(root: Path = ASSIGNMENTS) -> list[str]:
    """Regenerate ``root/release`` from every master; returns what was written."""
    names = known_assignments(root)
    if not names:
        raise GradeConfigError(f"no masters (*/master.ipynb) under {root}")
    for name in names:
        build(root, name, release_dir(root))
    stale = [p for p in release_dir(root).iterdir() if p.name not in names]
    for p in stale:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return [f"wrote {release_dir(root) / n}" for n in names]


def _tree(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file()}


def drift(committed: Path, fresh: Path) -> list[str]:
    """Files that differ between the committed release and a fresh one."""
    a, b = _tree(committed) if committed.is_dir() else {}, _tree(fresh)
    problems = [f"missing from the release: {k}" for k in sorted(set(b) - set(a))]
    problems += [f"not produced by the masters: {k}" for k in sorted(set(a) - set(b))]
    problems += [f"out of date: {k}" for k in sorted(set(a) & set(b))
                 if not filecmp.cmp(a[k], b[k], shallow=False)]
    return problems


def _bare(line: str) -> str:
    """A code line without indentation and trailing comment (enough for comparing lines)."""
    return line.split("#", 1)[0].strip()


def _solution_lines(master: dict) -> set[str]:
    """Lines of the master's solutions: in BEGIN/END SOLUTION blocks or marked # SOLUTION."""
    lines, in_cell = set(), False
    for cell in master.get("cells", []):
        text = "".join(cell.get("source", []))
        if cell.get("cell_type") == "raw":
            head = text.strip().upper()
            in_cell = head.startswith("# BEGIN SOLUTION") or (in_cell and not head.startswith(
                "# END SOLUTION"))
            continue
        if cell.get("cell_type") != "code" or not in_cell:
            continue
        inside = False
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("# BEGIN SOLUTION"):
                inside = True
            elif s.startswith("# END SOLUTION"):
                inside = False
            elif inside or s.endswith("# SOLUTION"):
                lines.add(_bare(s))
    return {s for s in lines if len(s) >= MIN_SOLUTION_LINE}


def _hidden_cases(tests_dir: Path) -> list[tuple[str, str]]:
    """(function name, source) of every hidden test case of the master."""
    out = []
    for path in sorted(tests_dir.glob("*.py")):
        source = path.read_text("utf-8")
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and any(
                    isinstance(k, ast.keyword) and k.arg == "hidden"
                    and isinstance(k.value, ast.Constant) and k.value.value is True
                    for d in node.decorator_list if isinstance(d, ast.Call) for k in d.keywords):
                body = ast.get_source_segment(source, node) or ""
                out.append((f"{path.stem}.{node.name}", body.split("\n", 1)[-1].strip()))
    return out


def leaks(release: Path, master: Path, all_tests: Path) -> list[str]:
    """What of the answers a release holds: markers, solution lines, hidden tests, extra files."""
    name = release.name
    files = _tree(release)
    allowed = {f"{name}.ipynb"} | {k for k in files if k.startswith("tests/") and k.endswith(".py")}
    problems = [f"{name}: extra file {k}" for k in sorted(set(files) - allowed)]
    texts = {k: p.read_text("utf-8", errors="replace") for k, p in files.items()}
    for k, text in texts.items():
        problems += [f"{name}/{k}: contains {m!r}" for m in LEAK_MARKERS if m in text]
    notebook = json.loads(texts.get(f"{name}.ipynb", "{}") or "{}")
    code = {_bare(line) for c in notebook.get("cells", []) if c.get("cell_type") == "code"
            for line in "".join(c.get("source", [])).splitlines()}
    solutions = _solution_lines(json.loads(master.read_text("utf-8")))
    problems += [f"{name}: solution line in the release: {s[:60]!r}"
                 for s in sorted(solutions & code)]
    for case, body in _hidden_cases(all_tests):
        if body and any(body in t for t in texts.values()):
            problems.append(f"{name}: hidden test {case} is in the release")
    return problems


def check_release(root: Path = ASSIGNMENTS) -> list[str]:
    """Problems with the committed release: drift from the masters, and any leak."""
    names = known_assignments(root)
    if not names:
        raise GradeConfigError(f"no masters (*/master.ipynb) under {root}")
    problems = []
    with tempfile.TemporaryDirectory(prefix="nntrain-release-check-") as tmp:
        fresh = Path(tmp) / "release"
        for name in names:
            master = root / name / "master.ipynb"
            dist = otter_assign(master.resolve(), Path(tmp) / f"dist-{name}")
            build(root, name, fresh, dist)
            target = release_dir(root) / name
            if target.is_dir():
                problems += leaks(target, master, dist / "autograder" / "tests")
        problems = drift(release_dir(root), fresh) + problems
    return problems
