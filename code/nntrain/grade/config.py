"""Where an assignment lives and how it is graded (``grading.yml``), checked on load.

Why: a typo in ``grading.yml`` or a wrong assignment name must stop the teacher at once with a
clear message, not after grading a folder with the wrong limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .sandbox import Limits

REPO = Path(__file__).resolve().parents[3]
ASSIGNMENTS = REPO / "assignments"
_KEYS = {"timeout_s", "call_timeout_s", "memory_mb", "forbidden"}


class GradeConfigError(ValueError):
    """Raised for an unknown assignment, a missing file or a bad ``grading.yml``."""


@dataclass
class GradingConfig:
    """The validated content of ``grading.yml``."""

    limits: Limits = field(default_factory=Limits)
    forbidden: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Assignment:
    """One assignment folder: ``master.ipynb`` + ``grading.yml``."""

    name: str
    folder: Path
    config: GradingConfig

    @property
    def master(self) -> Path:
        return self.folder / "master.ipynb"


def known_assignments(root: Path = ASSIGNMENTS) -> list[str]:
    """Names of the folders of ``root`` that hold a master notebook."""
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob("*/master.ipynb"))


def find_assignment(name: str, root: Path = ASSIGNMENTS) -> Assignment:
    """The assignment called ``name`` under ``root``, with its grading settings."""
    folder = root / name
    if not (folder / "master.ipynb").is_file():
        known = ", ".join(known_assignments(root)) or "none"
        raise GradeConfigError(f"unknown assignment {name!r} in {root} (known: {known})")
    return Assignment(name, folder, load_config(folder / "grading.yml"))


def _positive(data: dict, key: str, default: float, kind: type) -> Any:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise GradeConfigError(f"grading.yml: {key} must be a positive number, got {value!r}")
    return kind(value)


def _forbidden(value: Any) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GradeConfigError("grading.yml: forbidden must map question names to lists")
    out = {}
    for question, names in value.items():
        if not isinstance(names, list) or not all(
            isinstance(n, str) and n and all(part.isidentifier() for part in n.split("."))
            for n in names
        ):
            raise GradeConfigError(
                f"grading.yml: forbidden[{question!r}] must be a list of dotted names")
        out[str(question)] = list(names)
    return out


def load_config(path: Path) -> GradingConfig:
    """Parse and check ``grading.yml``; a missing file means the defaults."""
    if not path.is_file():
        return GradingConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise GradeConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise GradeConfigError(f"{path}: expected a mapping at the top")
    unknown = set(data) - _KEYS
    if unknown:
        raise GradeConfigError(f"{path}: unknown keys {sorted(unknown)} (allowed: {sorted(_KEYS)})")
    limits = Limits(
        timeout_s=_positive(data, "timeout_s", 60, float),
        call_timeout_s=_positive(data, "call_timeout_s", 10, float),
        memory_mb=_positive(data, "memory_mb", 4096, int),
    )
    return GradingConfig(limits, _forbidden(data.get("forbidden")))
