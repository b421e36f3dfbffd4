"""The book's own Sphinx extension (_ext/book_ru.py): the pure parts, without a build."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_ext"))
import book_ru  # noqa: E402

N = book_ru.NARROW_NBSP


@pytest.mark.parametrize("text, expected", [
    ("26,122", f"26{N}122"),
    ("1,234,567 параметров", f"1{N}234{N}567 параметров"),
    ("12,345.678", f"12{N}345.678"),
    ("0.5, 3", "0.5, 3"),          # a list, not a number
    ("3,5", "3,5"),                # a decimal comma stays
    ("1,2345", "1,2345"),          # four digits after the comma: not a group
    ("x,123", "x,123"),
])
def test_digit_groups_take_a_narrow_space(text, expected):
    assert book_ru.russian_digit_groups(text) == expected
