"""Grading of the book's assignments: offline, in parallel, the verdict outside the student's
process.

``python -m nntrain.grade SUBMISSIONS_DIR --assignment part1 --out grades.csv`` grades a folder;
``python -m nntrain.grade release [--check]`` makes (or checks) the student release from the
masters. Layout: :mod:`.config` (assignments, ``grading.yml``), :mod:`.material` (all tests via
``otter assign``), :mod:`.scan` (static checks), :mod:`.sandbox` + ``harness.py`` + ``nsinit.py``
(the student process), :mod:`.wire` (plain data only), :mod:`.trusted` (tests with proxies),
:mod:`.runner` (rows, CSV, parallel), :mod:`.release`.
"""

from .config import GradeConfigError, find_assignment, known_assignments
from .runner import Row, grade_folder, grade_one, summary, write_csv

__all__ = ["GradeConfigError", "Row", "find_assignment", "grade_folder", "grade_one",
           "known_assignments", "summary", "write_csv"]
