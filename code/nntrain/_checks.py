"""Argument checks shared by the package: one wording for the same mistake everywhere."""

from __future__ import annotations

from typing import Any, Collection


def check_choice(name: str, value: Any, options: Collection) -> None:
    """Raise ValueError naming the valid options when ``value`` is not one of them."""
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; expected one of {sorted(options)}")


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is a positive int (bools refused), else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value
