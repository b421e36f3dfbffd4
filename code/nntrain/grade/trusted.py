"""Run the master's test cases in the trusted process, against proxies of the student's answers.

Why: otter runs its tests inside the student's kernel, where a submission can patch them. Here a
test function runs in the grader's own process; each parameter that names a student answer gets
either the answer's value (decoded plain data) or a proxy that calls the student's function in
the sandbox on the arguments the test made. ``np``, ``numpy``, ``torch``, ``math`` get the real
modules. Pass or fail is decided here, and nowhere else.
"""

from __future__ import annotations

import math
import signal
from dataclasses import dataclass, field
from typing import Any

import numpy
import torch

from . import wire
from .material import Case, Question
from .sandbox import Sandbox, SandboxGone

LIBRARIES = {"np": numpy, "numpy": numpy, "torch": torch, "math": math}


def warm_up() -> None:
    """Pay torch's lazy imports once per worker (the first optimizer step loads torch._dynamo,
    seconds), not inside the first submission's first test."""
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.1)
    (w * w).sum().backward()
    opt.step()


class StudentError(Exception):
    """The student's object failed: it raised, is missing, or gave back something not plain."""


class CaseTimeout(Exception):
    """A test case ran past its wall-clock budget in the trusted process."""


class StudentFunction:
    """Stands for a function of the student's: calling it calls the real one in the sandbox."""

    def __init__(self, sandbox: Sandbox, name: str) -> None:
        self._sandbox, self._name = sandbox, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            payload = {"args": wire.encode(list(args)), "kwargs": wire.encode(dict(kwargs))}
        except wire.WireError as err:
            raise TypeError(f"grader bug: test passed non-plain data to {self._name}: {err}")
        return _unwrap(self._name, self._sandbox.request("call", self._name, **payload))

    def __repr__(self) -> str:
        return f"<student function {self._name}>"


def _unwrap(name: str, reply: dict) -> Any:
    kind = reply.get("kind")
    if kind == "value":
        try:
            return wire.decode(reply.get("value"))
        except wire.WireError as err:
            raise StudentError(f"{name} gave back data that is not plain: {err}") from None
    if kind == "raised":
        raise StudentError(f"{name} raised {str(reply.get('type'))[:80]}: "
                           f"{str(reply.get('message'))[:300]}")
    if kind == "missing":
        raise StudentError(f"{name} is not defined")
    raise StudentError(f"{name}: {str(reply.get('message', 'bad reply'))[:300]}")


@dataclass
class Outcome:
    """Points per question and what went wrong, for the CSV."""

    points: dict[str, float] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    gone: SandboxGone | None = None


def _argument(sandbox: Sandbox, name: str, outcome: Outcome) -> Any:
    if name in LIBRARIES:
        return LIBRARIES[name]
    reply = sandbox.request("get", name)
    if reply.get("kind") == "missing":
        outcome.missing.add(name)
        return None
    if reply.get("kind") == "callable":
        return StudentFunction(sandbox, name)
    return _unwrap(name, reply)


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout("the test ran too long")


def run_case(case: Case, sandbox: Sandbox, outcome: Outcome, budget_s: float) -> bool:
    """True if the case passes; any exception (ours, the student's, a timeout) fails it."""
    import inspect

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, budget_s)
    try:
        params = inspect.signature(case.func).parameters
        kwargs = {name: _argument(sandbox, name, outcome) for name in params}
        case.func(**kwargs)
        return True
    except SandboxGone as gone:
        outcome.gone = outcome.gone or gone
        outcome.failures.append(f"{case.name}: {gone}")
    except Exception as err:  # noqa: BLE001 - a failed assertion or a student error alike
        outcome.failures.append(f"{case.name}: {type(err).__name__}: {str(err)[:200]}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return False


def run_questions(questions: list[Question], sandbox: Sandbox, zeroed: set[str],
                  budget_s: float, total_s: float = math.inf) -> Outcome:
    """Points of every question; a question in ``zeroed`` (forbidden API) is not run. Each case
    has ``budget_s``, all of them together ``total_s``: past it the remaining cases fail and
    the sandbox is killed (reason "timeout")."""
    import time

    outcome = Outcome()
    end = time.monotonic() + total_s
    for question in questions:
        if question.name in zeroed:
            outcome.points[question.name] = 0.0
            continue
        earned = 0.0
        for case in question.cases:
            left = end - time.monotonic()
            if left <= 0 and outcome.gone is None:
                outcome.gone = sandbox._fail("timeout", f"the tests ran past {total_s:g} s")
            if outcome.gone is not None and left <= 0:
                outcome.failures.append(f"{case.name}: not run (no time left)")
                continue
            if run_case(case, sandbox, outcome, min(budget_s, left)):
                earned += case.points
        outcome.points[question.name] = round(earned, 6)
    return outcome
