"""A tiny otter master (two questions: a function and a value) and submissions made from it.

Used by tests/test_grade*.py: everything is written to a temporary folder at test time (no
.ipynb is stored under tests/, where nbval would collect it).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

CONFIG = """# ASSIGNMENT CONFIG
name: toy
runs_on: colab
init_cell: false
export_cell: false
check_all_cell: true
solutions_pdf: false
generate: false
tests:
  files: true
  ok_format: false
"""
SETUP = """import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "otter-grader==7.0.0"])
import otter
grader = otter.Notebook(tests_dir="tests")"""
Q1_SOLUTION = """def double(x):
    # BEGIN SOLUTION
    twice = 2 * x
    return twice
    # END SOLUTION"""
Q1_PUBLIC = '''""" # BEGIN TEST CONFIG
points: 1
""" # END TEST CONFIG
def test_q1_basic(double, np):
    assert np.isclose(double(3.0), 6.0)'''
Q1_HIDDEN = '''""" # BEGIN TEST CONFIG
points: 2
hidden: true
""" # END TEST CONFIG
def test_q1_array_dtype(double, np):
    x = np.linspace(-1.0, 1.0, 7, dtype=np.float32)
    y = double(x)
    assert y.dtype == np.float32 and np.array_equal(y, 2 * x)'''
Q2_SOLUTION = "answer = 42  # SOLUTION"
Q2_PUBLIC = '''""" # BEGIN TEST CONFIG
points: 0.5
""" # END TEST CONFIG
def test_q2_type(answer):
    assert isinstance(answer, int)'''
Q2_HIDDEN = '''""" # BEGIN TEST CONFIG
points: 0.5
hidden: true
""" # END TEST CONFIG
def test_q2_value(answer):
    assert answer == 42'''
GRADING_YML = """timeout_s: 5
call_timeout_s: 4
memory_mb: 3072
forbidden:
  q1: [numpy.multiply, torch.mul]
"""
MAX_POINTS = 4.0


def _cells() -> list:
    v4 = nbformat.v4
    raw, md, code = v4.new_raw_cell, v4.new_markdown_cell, v4.new_code_cell
    return [
        raw(CONFIG), md("# Toy assignment"), code(SETUP),
        raw("# BEGIN QUESTION\nname: q1\npoints: 3"),
        md("**Q1** (3 points). Write `double(x)`, for numbers and arrays."),
        raw("# BEGIN SOLUTION"), code(Q1_SOLUTION), raw("# END SOLUTION"),
        raw("# BEGIN TESTS"), code(Q1_PUBLIC), code(Q1_HIDDEN), raw("# END TESTS"),
        raw("# END QUESTION"),
        raw("# BEGIN QUESTION\nname: q2\npoints: 1"),
        md("**Q2** (1 point). Set `answer`."),
        raw("# BEGIN SOLUTION"), code(Q2_SOLUTION), raw("# END SOLUTION"),
        raw("# BEGIN TESTS"), code(Q2_PUBLIC), code(Q2_HIDDEN), raw("# END TESTS"),
        raw("# END QUESTION"),
    ]


def write_master(root: Path, name: str = "toy") -> Path:
    """``root/name/master.ipynb`` and ``grading.yml``; returns the assignments root."""
    nb = nbformat.v4.new_notebook(cells=_cells())
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    text = nbformat.writes(nb).replace("name: toy", f"name: {name}")
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "master.ipynb").write_text(text, encoding="utf-8")
    (folder / "grading.yml").write_text(GRADING_YML, encoding="utf-8")
    return root


def student_notebook(release_nb: Path) -> dict:
    """The blank student notebook (as a dict) from a built release."""
    return json.loads(release_nb.read_text(encoding="utf-8"))


def fill(nb: dict, answers: dict[str, str]) -> dict:
    """Replace the answer cells (tagged ``otter_answer_cell`` or holding ``x = ...``)."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        source = "".join(cell.get("source", []))
        for key, code in answers.items():
            if cell["cell_type"] == "code" and source.lstrip().startswith(key):
                cell["source"] = code
    return nb


SOLVED = {"def double": "def double(x):\n    return x + x", "answer": "answer = 42"}
