"""The student's side of grading: run the notebook's code cells, then answer the grader.

Why a harness and not a kernel: the verdict must not be computed where student code runs. This
process only executes the cells (as plain Python, in one namespace, with a stub ``otter``) and
then answers two kinds of request from the trusted grader: the value of a name, and the result
of calling a name on arguments the grader chose. Everything crosses as plain data (``wire``).
Nothing this process says can raise a score above what the trusted tests compute from the
answers; a hostile cell can at most make its own answers wrong.

Run as ``python -I harness.py FD_IN FD_OUT`` by :mod:`nntrain.grade.sandbox` (inside namespaces
when available). It imports nothing from ``nntrain``.
"""

from __future__ import annotations

import builtins
import importlib.util
import os
import resource
import signal
import sys
import types
from pathlib import Path
from typing import Any, Callable

_spec = importlib.util.spec_from_file_location("_grade_wire", Path(__file__).with_name("wire.py"))
wire = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wire)

MESSAGE_CHARS = 2000


def _describe(err: BaseException) -> dict:
    """Type and message of an exception, robust to hostile __str__."""
    try:
        message = str(err)[:MESSAGE_CHARS]
    except BaseException:  # noqa: BLE001 - the student's exception may misbehave
        message = "<unprintable>"
    return {"type": type(err).__name__, "message": message}


def _stub_otter() -> types.ModuleType:
    """A fake ``otter`` so that ``grader.check`` cells run and do nothing (no tests here)."""

    class Notebook:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __getattr__(self, name: str) -> Callable[..., None]:
            return lambda *args, **kwargs: None

    module = types.ModuleType("otter")
    module.Notebook = Notebook
    module.__version__ = "7.0.0"
    return module


def _limit(memory_mb: int, file_mb: int, nproc: int) -> None:
    """Address space, file size, process count, no core dumps: soft = hard, so they stay."""
    for which, value in (
        (resource.RLIMIT_AS, memory_mb * 2**20),
        (resource.RLIMIT_FSIZE, file_mb * 2**20),
        (resource.RLIMIT_NPROC, nproc),
        (resource.RLIMIT_CORE, 0),
    ):
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # too much output: EFBIG, not death


def _drop_privileges(uid: Any) -> None:
    """Best effort without namespaces when the grader is root: become ``uid`` (nobody), so that
    the student can neither signal the grader nor write the grading material and its caches."""
    if type(uid) is not int:
        return
    for name in ("numpy", "torch"):  # the wire may need them once the files are out of reach
        try:
            __import__(name)
        except BaseException:  # noqa: BLE001
            pass
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _preload(cells: list[list]) -> None:
    """Import numpy/torch before the clock of the cells starts if the cells use them: their
    import takes seconds on a loaded machine and is not the student's time."""
    text = "\n".join(source for _, source in cells)
    for name in ("numpy", "torch"):
        if name in text:
            try:
                __import__(name)
            except BaseException:  # noqa: BLE001 - the cell will meet the same error itself
                pass


def run_cells(cells: list[list], namespace: dict, out_fd: int) -> list[dict]:
    """Execute each cell; a failing cell is recorded and the next one still runs (as otter)."""
    errors = []
    for index, source in cells:
        wire.send(out_fd, {"op": "cell", "cell": index})
        try:
            exec(compile(source, f"<cell {index}>", "exec"), namespace)
        except BaseException as err:  # noqa: BLE001 - SystemExit, KeyboardInterrupt too
            errors.append({"cell": index, **_describe(err)})
    return errors


def answer(request: dict, namespace: dict) -> dict:
    """The reply to one request: a name's value, or a call's result, as plain data."""
    name = request.get("name")
    if type(name) is not str or name not in namespace:
        return {"kind": "missing"}
    target = namespace[name]
    if request.get("op") == "get":
        return {"kind": "callable"} if callable(target) else _encoded(target)
    if request.get("op") == "call" and callable(target):
        try:
            args = wire.decode(request.get("args", []))
            kwargs = wire.decode(request.get("kwargs", {"$dict": []}))
            result = target(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001
            return {"kind": "raised", **_describe(err)}
        return _encoded(result)
    return {"kind": "error", "message": f"bad request for {name!r}"}


def _encoded(value: Any) -> dict:
    try:
        return {"kind": "value", "value": wire.encode(value)}
    except BaseException as err:  # noqa: BLE001 - a hostile object may raise anything
        return {"kind": "error", "message": _describe(err)["message"]}


def serve(reader: Any, out_fd: int, namespace: dict) -> None:
    """Answer requests until the grader closes the channel; echo each request's id and nonce."""
    while True:
        try:
            request = reader.read()
        except EOFError:
            return
        reply = answer(request, namespace)
        reply.update(id=request.get("id"), nonce=request.get("nonce"))
        try:
            wire.send(out_fd, reply)
        except wire.WireError as err:
            wire.send(out_fd, {"kind": "error", "message": str(err)[:MESSAGE_CHARS],
                               "id": request.get("id"), "nonce": request.get("nonce")})


def main(in_fd: int, out_fd: int) -> None:
    reader = wire.Reader(in_fd)
    wire.send(out_fd, {"op": "hello"})  # the grader may now put this process in its cgroup
    job = reader.read()
    _preload(job["cells"])
    _limit(job["memory_mb"], job["file_mb"], job["nproc"])
    _drop_privileges(job.get("uid"))
    sys.modules["otter"] = _stub_otter()
    sys.modules.pop("google.colab", None)
    namespace = {"__name__": "__main__", "__builtins__": builtins, "display": print}
    wire.send(out_fd, {"op": "started", "nonce": job["nonce"]})
    errors = run_cells(job["cells"], namespace, out_fd)
    wire.send(out_fd, {"op": "ran", "nonce": job["nonce"], "errors": errors})
    serve(reader, out_fd, namespace)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
    os._exit(0)  # skip interpreter teardown: student objects' __del__ must not run after us
