"""The grader (nntrain.grade) on a toy assignment: honest, broken and hostile submissions.

Everything is built in a temporary folder: a two-question master (a function and a value), its
release, and ~30 submissions graded in one run with two workers. Each hostile submission must get
its reason and no more points than its honest answers earn, and the run must go on.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "grading"))

import hostile  # noqa: E402
import toy  # noqa: E402
from nntrain.grade import cli, wire  # noqa: E402
from nntrain.grade.config import GradeConfigError, find_assignment, load_config  # noqa: E402
from nntrain.grade.material import otter_assign  # noqa: E402
from nntrain.grade.release import build, check_release, drift, leaks, write_release  # noqa: E402
from nntrain.grade.runner import grade_folder, question_names, write_csv  # noqa: E402
from nntrain.grade.sandbox import Limits, Sandbox, namespaces_available  # noqa: E402
from nntrain.grade.scan import scan  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ISOLATED = namespaces_available()


def _tmp_hide() -> list[str]:
    """Hide /tmp from the student unless Python or this clone lives under it (a clone in /tmp)."""
    tmp = Path("/tmp").resolve()
    needed = [Path(sys.prefix).resolve(), REPO]
    return [] if any(tmp == p or tmp in p.parents for p in needed) else ["/tmp"]


TMP_HIDE = _tmp_hide()


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = toy.write_master(tmp_path_factory.mktemp("assignments"))
    write_release(root)
    return root


def _paths(root: Path, subs: Path) -> dict[str, str]:
    master = root / "toy" / "master.ipynb"
    return {"master": str(master), "master_dir": str(master.parent), "subs": str(subs),
            "repo": str(REPO), "tests_glob": str(root / "release" / "toy" / "tests" / "*.py"),
            "shadow": "/etc/shadow"}


@pytest.fixture(scope="module")
def graded(toy_root, tmp_path_factory):
    """One grading run over every case (the slow part of this file: ~40 sandboxes), shared by
    the pytest-xdist workers of one session when they split this file's tests."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _grade_cases(toy_root, tmp_path_factory)
    from dataclasses import asdict

    from filelock import FileLock

    from nntrain.grade.runner import Row

    shared = tmp_path_factory.getbasetemp().parent  # this session's, common to the workers
    with FileLock(str(shared / "grade-cases.lock")):
        cache = shared / "grade-cases.json"
        if cache.is_file():
            data = json.loads(cache.read_text())
            return {k: Row(**v) for k, v in data["rows"].items()}, Path(data["subs"])
        rows, subs = _grade_cases(toy_root, tmp_path_factory)
        cache.write_text(json.dumps({"rows": {k: asdict(r) for k, r in rows.items()},
                                     "subs": str(subs)}))
        return rows, subs


def _grade_cases(toy_root, tmp_path_factory):
    subs = tmp_path_factory.mktemp("submissions")
    blank = toy.student_notebook(toy_root / "release" / "toy" / "toy.ipynb")
    cases = [c for c in hostile.CASES if ISOLATED or not c.namespaces_only]
    for case in cases:
        path = subs / f"{case.name}.ipynb"
        if case.link:
            path.symlink_to(_paths(toy_root, subs)[case.link])
        elif case.fifo:
            os.mkfifo(path)
        else:
            path.write_text(case.text(blank, _paths(toy_root, subs)))
    rows = grade_folder(subs, find_assignment("toy", toy_root), jobs=2, progress=False)
    return {Path(r.submission).stem: r for r in rows}, subs


@pytest.mark.parametrize("case", hostile.CASES, ids=lambda c: c.name)
def test_each_submission_gets_its_reason_and_no_unearned_points(graded, case):
    rows, _ = graded
    if case.namespaces_only and not ISOLATED:
        pytest.skip("needs namespaces (unshare) to be safe")
    row = rows[case.name]
    if case.reasons == ("ok",):
        assert row.reason == "ok", (row.reason, row.detail)
    for expected in case.reasons:
        assert expected in row.reason, (case.name, row.reason, row.detail)
    assert row.total == pytest.approx(case.total), (case.name, row.points, row.reason, row.detail)
    assert "grader error" not in row.detail, (case.name, row.detail)


def test_the_run_survives_and_cleans_up(graded, toy_root):
    rows, subs = graded
    assert len(rows) == len([c for c in hostile.CASES if ISOLATED or not c.namespaces_only])
    assert (toy_root / "toy" / "master.ipynb").is_file() and subs.is_dir()
    table = " ".join(p.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                     for p in Path("/proc").glob("[0-9]*/cmdline") if _readable(p))
    assert hostile.MARK_CHILD not in table and hostile.MARK_DAEMON not in table


def _readable(p: Path) -> bool:
    try:
        p.read_bytes()
        return True
    except OSError:
        return False


def test_ordinary_submission_is_fast(graded):
    rows, _ = graded
    assert rows["solved"].seconds < 30


def test_csv_has_the_documented_columns(graded, tmp_path):
    rows = list(graded[0].values())
    out = tmp_path / "grades.csv"
    write_csv(sorted(rows, key=lambda r: r.submission), out, question_names(rows))
    with open(out, newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["submission", "q1", "q2", "total", "max", "reason", "detail"]
    solved = next(r for r in table if r["submission"] == "solved.ipynb")
    assert (solved["q1"], solved["q2"], solved["total"], solved["max"]) == ("3", "1", "4", "4")
    names = [r["submission"] for r in table]  # no cell a spreadsheet would run as a formula
    assert "'=HYPERLINK(1)+formula.ipynb" in names
    assert not any(r[k][:1] in "=+-@" for r in table for k in ("submission", "reason", "detail")
                   if r[k])


@pytest.mark.skipif(not ISOLATED, reason="needs namespaces (unshare)")
def test_sandbox_cannot_read_material_nor_reach_the_network(toy_root, tmp_path):
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir()
    (secret_dir / "hidden_tests.py").write_text("SECRET = 1")
    probe = f"""
import glob, os, socket
report = {{}}
for path in [{str(toy_root / 'toy' / 'master.ipynb')!r}, {str(secret_dir / 'hidden_tests.py')!r},
             {str(REPO / '.git' / 'HEAD')!r}, {str(REPO / 'tests' / 'test_grade.py')!r}]:
    try:
        open(path).read(1); report[path] = 'read'
    except OSError as e:
        report[path] = type(e).__name__
try:
    socket.create_connection(('1.1.1.1', 53), timeout=2); report['net'] = 'connected'
except OSError as e:
    report['net'] = type(e).__name__
try:
    open({str(REPO / 'README.md')!r}, 'a'); report['write'] = 'opened'
except OSError as e:
    report['write'] = type(e).__name__
report['pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
"""
    hide = [str(toy_root), str(secret_dir), str(REPO / ".git"), str(REPO / "tests")] + TMP_HIDE
    with Sandbox(Limits(timeout_s=20, call_timeout_s=5), hide) as box:
        assert box.run_cells([(1, probe)]).status == "ok"
        report = wire.decode(box.request("get", "report")["value"])
    assert "read" not in [v for k, v in report.items() if k.startswith("/")], report
    assert report["net"] != "connected" and report["write"] != "opened", report
    assert report["pids"] == [1], report  # its own PID namespace


def test_wire_round_trip_keeps_types_and_special_floats():
    import numpy as np
    import torch

    data = {"t32": torch.arange(3, dtype=torch.float32), "t64": torch.ones(2, 2, dtype=torch.float64),
            "bf": torch.tensor([1.5], dtype=torch.bfloat16), "b": torch.tensor([True]),
            "nd": np.arange(4.0).reshape(2, 2), "np": np.float32(2.5), "tuple": (1, 2.0, "x"),
            "special": [float("nan"), float("inf"), -float("inf")], 3: None, "c": 1 + 2j}
    back = wire.decode(wire.loads(wire.dumps({"v": wire.encode(data)})[4:])["v"])
    assert back["t32"].dtype == torch.float32 and torch.equal(back["t32"], data["t32"])
    assert back["bf"].dtype == torch.bfloat16 and back["b"].dtype == torch.bool
    assert isinstance(back["np"], np.float32) and back["tuple"] == (1, 2.0, "x")
    assert np.isnan(back["special"][0]) and back["special"][1:] == [float("inf"), -float("inf")]
    assert back[3] is None and back["c"] == 1 + 2j


def _deep(n: int) -> list:
    tree: list = [1]
    for _ in range(n):
        tree = [tree]
    return tree


@pytest.mark.parametrize("tree", [
    {"$nd": "gASVAAAA"}, {"$evil": 1}, {"$torch": "", "dtype": "__class__"}, _deep(40),
], ids=["pickle-bytes", "unknown-tag", "bad-dtype", "too-deep"])
def test_wire_refuses_what_is_not_plain(tree):
    with pytest.raises(wire.WireError):
        wire.decode(tree)


def test_wire_refuses_object_arrays_and_pickles():
    import numpy as np

    with pytest.raises(wire.WireError):
        wire.encode(np.array([object()], dtype=object))
    with pytest.raises(wire.WireError):
        wire.encode(object())
    with pytest.raises(wire.WireError):
        wire.loads(b'{"x": NaN}')
    with pytest.raises(wire.WireError):  # Python's int digit limit is a plain ValueError
        wire.loads(b'{"x": ' + b"9" * 5000 + b"}")
    with pytest.raises(wire.WireError):
        wire.dumps({"x": 10 ** 5000})


def _nb(*sources: str) -> dict:
    import nbformat

    return json.loads(nbformat.writes(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(s) for s in sources])))


@pytest.mark.parametrize("source", [
    "import torch\nopt = torch.optim.Adam", "from torch.optim import Adam",
    "import torch.optim as o", "from torch import optim", "import torch\ngetattr(torch, 'optim')",
])
def test_scan_finds_forbidden_apis_however_imported(source):
    found = scan(_nb("import otter", source), {"q2": ["torch.optim"], "q1": ["backward"]})
    assert found.forbidden == {"q2": ["torch.optim"]}


def test_scan_bare_name_and_trusted_setup_cell():
    setup = "import subprocess, sys\nif 'google.colab' in sys.modules:\n    subprocess.run(['x'])"
    found = scan(_nb(setup, "loss.backward()"), {"q1": ["backward"]}, setup=setup)
    assert found.forbidden == {"q1": ["backward"]} and not found.tampering
    found = scan(_nb("x = 1", "import subprocess\nsubprocess.run(['ls'])"), {})
    assert found.tampering


def test_scan_drops_magics_and_reports_syntax_errors():
    found = scan(_nb("!pip install x\n%matplotlib inline\nx = 1", "def f(:\n    pass"), {})
    assert found.syntax_errors == [2] and "pass" in found.cells[0][1]


def test_release_is_reproducible_and_checked(toy_root, tmp_path):
    assert check_release(toy_root) == []
    master = toy_root / "toy" / "master.ipynb"
    dist = otter_assign(master, tmp_path / "dist")
    fresh = build(toy_root, "toy", tmp_path / "fresh", dist)
    bad = tmp_path / "bad" / "toy"
    shutil.copytree(toy_root / "release" / "toy", bad)
    notebook = bad / "toy.ipynb"
    notebook.write_text(notebook.read_text().replace("...", "twice = 2 * x  # BEGIN SOLUTION"))
    (bad / "extra.txt").write_text("x")
    shutil.copyfile(dist / "autograder" / "tests" / "q2.py", bad / "tests" / "q2.py")
    assert "out of date: toy.ipynb" in drift(bad, fresh)
    problems = " ".join(leaks(bad, master, dist / "autograder" / "tests"))
    for expected in ["BEGIN SOLUTION", "solution line", "extra file", "hidden test q2.",
                     "hidden=True"]:
        assert expected in problems, (expected, problems)
    public = (toy_root / "release" / "toy" / "tests" / "q1.py").read_text()
    assert "test_q1_basic" in public and "test_q1_array_dtype" not in public


def test_clear_errors_on_bad_input(toy_root, tmp_path, capsys):
    assert cli.main([str(tmp_path), "--assignment", "nope", "--assignments-dir", str(toy_root)]) == 2
    assert "unknown assignment 'nope'" in capsys.readouterr().err
    assert cli.main([str(tmp_path / "missing"), "--assignment", "toy",
                     "--assignments-dir", str(toy_root)]) == 2
    assert "no such submissions folder" in capsys.readouterr().err
    bad = tmp_path / "grading.yml"
    for text in ["timeout_s: -1", "typo_s: 3", "forbidden: [a]", "forbidden: {q1: [1]}", "[x"]:
        bad.write_text(text)
        with pytest.raises(GradeConfigError):
            load_config(bad)


@pytest.mark.skipif(not ISOLATED, reason="needs namespaces (unshare)")
def test_fork_bomb_is_capped_and_killed(tmp_path):
    from nntrain.grade.sandbox import NPROC, PIDS_V1

    bomb = """
import os, time
kids = 0
for i in range(2000):
    try:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        kids += 1
    except OSError:
        break
"""
    with Sandbox(Limits(timeout_s=30, call_timeout_s=5), TMP_HIDE) as box:
        assert box.run_cells([(1, bomb)]).status == "ok"
        kids = wire.decode(box.request("get", "kids")["value"])
        group, folder = box.cgroup, box.dir
    assert not folder.exists()  # the temporary directory is deleted
    if (PIDS_V1 / "cgroup.procs").is_file():
        assert kids < NPROC, kids
        assert group is not None and not group.exists()
    assert kids > 0


def _toy_material(toy_root, tmp_path):
    from nntrain.grade.runner import prepare

    subs = tmp_path / "subs"
    subs.mkdir()
    return prepare(find_assignment("toy", toy_root), subs, str(tmp_path)), subs


def test_code_too_large_for_the_wire_is_a_clear_row(toy_root, tmp_path, monkeypatch):
    from nntrain.grade.runner import grade_one

    material, subs = _toy_material(toy_root, tmp_path)
    blank = toy.student_notebook(toy_root / "release" / "toy" / "toy.ipynb")
    nb = toy.fill(blank, {"answer": "answer = '" + "é" * 2**19 + "'"})  # ×6 once ASCII-escaped
    (subs / "big.ipynb").write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setattr(wire, "MAX_FRAME", 2**21)
    row = grade_one(subs / "big.ipynb", material, material.questions())
    assert row.reason == "not a notebook" and "too large" in row.detail, (row.reason, row.detail)


def _case(name, func):
    from nntrain.grade.material import Case

    return Case(name, 1.0, True, func)


def test_late_reply_after_a_case_timeout_is_not_forgery_and_tests_have_a_total_budget():
    from nntrain.grade.material import Question
    from nntrain.grade.trusted import Outcome, run_case, run_questions

    cell = ("import time\ncalls = [0]\ndef slow(x):\n    calls[0] += 1\n"
            "    time.sleep(1.5 if calls[0] == 1 else 0.8)\n    return x")

    def case(slow):
        assert slow(2) == 2

    with Sandbox(Limits(timeout_s=20, call_timeout_s=5), TMP_HIDE) as box:
        assert box.run_cells([(1, cell)]).status == "ok"
        outcome = Outcome()
        assert not run_case(_case("first", case), box, outcome, 0.5)  # its alarm fires
        assert run_case(_case("second", case), box, outcome, 5.0)  # the late reply is dropped
        assert box.forged == 0, box.forged
        many = Question("q", [_case(f"c{i}", case) for i in range(6)])
        outcome = run_questions([many], box, set(), 5.0, total_s=2.0)
    assert outcome.gone is not None and outcome.gone.reason == "timeout", outcome.failures
    assert outcome.points["q"] < 6 and any("no time left" in f for f in outcome.failures)


@pytest.mark.skipif(os.geteuid() != 0, reason="the best-effort uid drop applies to root")
def test_best_effort_as_root_runs_the_student_as_nobody_where_it_can():
    from nntrain.grade.sandbox import isolation_note, nobody_can_run_python

    probe = """import os
uid = os.getuid()
try:
    os.kill(os.getppid(), 0)
    signal_parent = 'allowed'
except OSError as e:
    signal_parent = type(e).__name__
try:
    open(os.path.join(os.getcwd(), 'x.txt'), 'w').write('x')
    writes_home = True
except OSError:
    writes_home = False
"""
    box = Sandbox(Limits(timeout_s=20, call_timeout_s=5), [])
    box.isolated = False  # as on a machine without namespaces
    with box:
        assert box.run_cells([(1, probe)]).status == "ok"
        got = {n: wire.decode(box.request("get", n)["value"])
               for n in ("uid", "signal_parent", "writes_home")}
    if nobody_can_run_python():
        assert got == {"uid": 65534, "signal_parent": "PermissionError", "writes_home": True}
    else:  # Python under a private home (pyenv in /root): root, and the summary says so
        assert got["uid"] == 0 and got["writes_home"], got
    if not ISOLATED:
        assert ("as nobody" if nobody_can_run_python() else "as root") in isolation_note()


@pytest.mark.skipif(not ISOLATED, reason="needs namespaces (unshare)")
def test_sandbox_has_no_capabilities_and_masks_the_rest_of_the_disk(tmp_path):
    from nntrain.grade.runner import REPO as GRADER_REPO, _needed, mask_paths

    probe = """import os
caps = [line.split()[1] for line in open('/proc/self/status') if line.startswith('CapEff')][0]
seen = {}
for path in PATHS:
    try:
        seen[path] = sorted(os.listdir(path)) if os.path.isdir(path) else open(path).read(20)
    except OSError as e:
        seen[path] = type(e).__name__
"""
    mask = mask_paths([GRADER_REPO], _needed())
    paths = [str(GRADER_REPO / "README.md"), str(GRADER_REPO / "chapters")]
    assert set(paths) <= set(mask) and str(GRADER_REPO / "code") not in mask
    with Sandbox(Limits(timeout_s=20, call_timeout_s=5), TMP_HIDE, mask=mask) as box:
        assert box.run_cells([(1, f"PATHS = {paths!r}\n" + probe)]).status == "ok"
        caps = wire.decode(box.request("get", "caps")["value"])
        seen = wire.decode(box.request("get", "seen")["value"])
    assert int(caps, 16) == 0, caps
    assert all(v in ("", []) for v in seen.values()), seen
