"""The book's assignments through the grader: reference solutions score full marks, the blank
student notebook scores zero, and the committed release is what the masters give (no leak).

One quick submission set per assignment (the reference and the blank), graded in this process;
the hostile cases are in test_grade.py on a toy assignment.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from nntrain.grade.config import ASSIGNMENTS, find_assignment, known_assignments
from nntrain.grade.release import check_release
from nntrain.grade.runner import grade_one, prepare
from nntrain.grade.trusted import warm_up

PARTS = known_assignments()
pytestmark = pytest.mark.skipif(not PARTS, reason="no assignments/*/master.ipynb yet")


def test_release_is_up_to_date_and_holds_no_solution():
    assert check_release(ASSIGNMENTS) == []


@pytest.mark.parametrize("part", PARTS)
def test_reference_gets_full_marks_and_blank_gets_zero(part, tmp_path):
    assignment = find_assignment(part)
    subs = tmp_path / "subs"
    subs.mkdir()
    workroot = tempfile.mkdtemp(prefix="nntrain-grade-")
    try:
        material = prepare(assignment, subs, workroot)
        dist = Path(workroot) / "assign"
        shutil.copyfile(dist / "autograder" / "master.ipynb", subs / "reference.ipynb")
        shutil.copyfile(ASSIGNMENTS / "release" / part / f"{part}.ipynb", subs / "blank.ipynb")
        questions = material.questions()
        warm_up()
        reference = grade_one(subs / "reference.ipynb", material, questions)
        blank = grade_one(subs / "blank.ipynb", material, questions)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    assert reference.reason == "ok", reference.detail
    assert reference.total == reference.max_points > 0, (reference.points, reference.detail)
    assert reference.seconds < 30
    assert blank.total == 0, (blank.points, blank.detail)
    assert "tampering" not in blank.reason and "forbidden" not in blank.reason, blank.reason
    declared = json.loads((subs / "blank.ipynb").read_text())["metadata"]["otter"]
    assert declared["assignment_name"] == part
