"""Launch and talk to one student process, isolated as far as this machine allows.

Why: a submission is arbitrary code. It runs in its own process group and session, in a
temporary directory deleted afterwards, under ``RLIMIT_AS``/``RLIMIT_FSIZE``/``RLIMIT_NPROC``,
with a wall-clock limit that kills the whole group. Where Linux namespaces are available
(``unshare`` as root, or unprivileged user namespaces) it also gets no network, its own PID
namespace (every process it spawns, daemons included, dies with it), a read-only file system,
and the grading material (masters, tests, the trusted temp dir, the submissions, ``/tmp``)
covered by empty mounts, everything else along the repository's path masked, and no
capabilities (it is uid 1000, not root, in its innermost namespace). Where cgroup v1 ``pids`` and
``memory`` controllers are writable, the whole process tree gets a process cap and a memory cap
(RLIMIT_AS is per process: forked children would each get ``memory_mb`` again). Elsewhere these
last protections are missing (best effort, said in the summary): processes carrying the sandbox's
token are killed at the end, and when the grader is root the student runs as ``nobody``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import wire

HERE = Path(__file__).resolve().parent
UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork",
           "--kill-child", "--mount-proc"]
OUTPUT_MB = 16  # cap of the student's stdout+stderr file
TMP_MB = 512  # size of the sandbox's private /tmp
NPROC = 256
CGROUP_V1 = Path("/sys/fs/cgroup")
PIDS_V1 = CGROUP_V1 / "pids"  # a pids cgroup caps processes (RLIMIT_NPROC spares root)
MEMORY_SLACK_MB = TMP_MB + 64 + 256  # the tree's memory cap: memory_mb + private tmpfs + page cache
NOBODY = 65534  # best effort as root: the student's uid and gid
IMPORT_GRACE_S = 30  # the first request carrying arrays makes the harness import numpy/torch
TOKEN_ENV = "NNTRAIN_GRADE_TOKEN"
ISOLATION_ENV = "NNTRAIN_GRADE_ISOLATION"  # "namespaces" (default when possible) or "none"


class SandboxGone(RuntimeError):
    """The student process is dead, hung or broke the protocol; ``reason`` says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Limits:
    """Wall clock for the cells, for each call, and the address-space limit."""

    timeout_s: float = 60.0
    call_timeout_s: float = 10.0
    memory_mb: int = 4096


@dataclass
class RunReport:
    """What happened while the cells ran (as reported by the untrusted side: reasons only)."""

    status: str  # ok | timeout | kernel died
    errors: list[dict] = field(default_factory=list)
    last_cell: int | None = None
    seconds: float = 0.0


@lru_cache(maxsize=1)
def namespaces_available() -> bool:
    """Whether ``unshare`` can give us user+net+mount+pid namespaces here (tried once)."""
    if os.environ.get(ISOLATION_ENV, "namespaces") == "none" or not shutil.which("unshare"):
        return False
    try:
        done = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@lru_cache(maxsize=1)
def nobody_can_run_python() -> bool:
    """Whether we are root and ``nobody`` could read Python and its packages (every folder on
    the way world-searchable): then the student can run as ``nobody`` without namespaces."""
    if os.geteuid() != 0:
        return False
    import site

    paths = {Path(p) for p in (sys.prefix, sys.base_prefix, HERE, *site.getsitepackages())}
    paths.add(Path(sys.executable).resolve())
    for path in paths:
        for folder in [path, *path.parents]:
            try:
                mode = folder.stat().st_mode
            except OSError:
                return False
            need = 0o001 if folder != path else 0o005 if folder.is_dir() else 0o004
            if mode & need != need:  # others may not search (or read) it
                return False
    return True


def isolation_note() -> str:
    """One line for the summary: which isolation the submissions got."""
    groups = [c for c in ("pids", "memory") if _own_cgroup(c) is not None]
    caps = (f"cgroup v1 {'+'.join(groups)} caps on the process tree" if groups else
            "no cgroup caps (per-process rlimits only)")
    if namespaces_available():
        return ("isolation: user+net+mount+pid namespaces, no capabilities, read-only fs, "
                f"grading material hidden; {caps}")
    who = ("as nobody" if nobody_can_run_python() else
           "as root (Python is not readable by nobody here)" if os.geteuid() == 0 else
           "as the grader's own user")
    return ("isolation: BEST EFFORT (no namespaces here): process group, rlimits, temp dir, "
            f"student code runs {who}; the network and the file system are reachable from "
            f"submissions; {caps}")


def _environment(token: str, home: str) -> dict[str, str]:
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL") if k in os.environ}
    return {**keep, "HOME": home, "TMPDIR": home, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg", "TQDM_DISABLE": "1", "PYTHONDONTWRITEBYTECODE": "1",
            TOKEN_ENV: token}


class Sandbox:
    """One student process; use as a context manager so that it is always killed and cleaned."""

    def __init__(self, limits: Limits, hide: list[str], workroot: str | None = None,
                 mask: list[str] | None = None) -> None:
        self.limits = limits
        self.hide = hide
        self.mask = mask or []  # hidden if possible (not grading material, just not needed)
        self.token = secrets.token_hex(8)
        self.dir = Path(tempfile.mkdtemp(prefix="nntrain-grade-sbx-", dir=workroot))
        self.isolated = namespaces_available()
        self.proc: subprocess.Popen | None = None
        self.reader: wire.Reader | None = None
        self.forged = 0  # frames that answered no request of ours
        self._to_child = self._next_id = 0
        self.dead: SandboxGone | None = None
        self._graced: set[str] = set()
        self.cgroup: Path | None = None  # the pids group
        self.cgroups: list[Path] = []
        self._pending: dict[int, str] = {}  # requests whose reply has not been read (late ones)

    def __enter__(self) -> "Sandbox":
        self._start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _argv(self, fd_in: int, fd_out: int) -> list[str]:
        harness = [sys.executable, "-I", str(HERE / "harness.py"), str(fd_in), str(fd_out)]
        if not self.isolated:
            return harness
        config = {"hide": self.hide, "mask": self.mask, "tmp_mb": TMP_MB, "argv": harness,
                  "writable": self._writable()}
        return [*UNSHARE, sys.executable, "-I", str(HERE / "nsinit.py"), json.dumps(config)]

    def _writable(self) -> str:
        """Where the student may write: a private /tmp if /tmp is hidden, else its own folder."""
        return "/tmp" if self.isolated and "/tmp" in self.hide else str(self.dir / "work")

    def _home(self) -> str:
        writable = self._writable()
        return "/tmp/work" if writable == "/tmp" else writable

    def _start(self) -> None:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        output = open(self.dir / "output.txt", "wb")
        workdir = self.dir / "work"
        workdir.mkdir()
        if self._drop_to() is not None:  # nobody may reach its folder, not list ours
            os.chmod(self.dir, 0o711)
            os.chown(workdir, NOBODY, NOBODY)
        try:
            self.proc = subprocess.Popen(
                self._argv(req_r, rep_w), stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, pass_fds=(req_r, rep_w), cwd=workdir,
                env=_environment(self.token, self._home()), start_new_session=True)
        finally:
            os.close(req_r), os.close(rep_w), output.close()
        self._to_child = req_w
        self.reader = wire.Reader(rep_r)

    def _drop_to(self) -> int | None:
        """Best effort as root without namespaces: the uid the student runs as."""
        return NOBODY if not self.isolated and nobody_can_run_python() else None

    def output_tail(self, chars: int = 500) -> str:
        """The end of what the student printed (for the detail column)."""
        try:
            with open(self.dir / "output.txt", "rb") as f:
                f.seek(max(0, os.path.getsize(f.name) - chars))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _fail(self, reason: str, message: str) -> SandboxGone:
        self.dead = SandboxGone(reason, message)
        self.kill()
        return self.dead

    def _send(self, message: dict) -> None:
        try:
            wire.send(self._to_child, message)
        except OSError as err:
            raise self._fail("kernel died", f"the student process is gone ({err})") from None
        except wire.WireError as err:  # ours too large: say so, never crash the row
            raise self._fail("kernel died", f"cannot send to the student process: {err}") from None

    def _receive(self, deadline: float, accept: Any) -> dict:
        """The next frame that ``accept`` takes; others are counted as forged and dropped."""
        while True:
            try:
                message = self.reader.read(deadline)
            except TimeoutError:
                raise self._fail("timeout", "no answer in time") from None
            except EOFError:
                raise self._fail("kernel died", "the student process ended") from None
            except wire.WireError as err:
                self.forged += 1
                raise self._fail("kernel died", f"broken channel: {err}") from None
            if accept(message):
                return message
            ident = message.get("id")
            if type(ident) is int and ident in self._pending and \
                    self._pending[ident] == message.get("nonce"):
                del self._pending[ident]  # the late reply of an abandoned request
                continue
            self.forged += 1
            if self.forged > 1000:
                raise self._fail("kernel died", "flooded the channel")

    def run_cells(self, cells: list[tuple[int, str]]) -> RunReport:
        """Send the cells, wait for them to run (timeout_s); the sandbox stays up for requests."""
        start = time.monotonic()
        deadline = start + self.limits.timeout_s + 30  # + start-up (imports)
        nonce = secrets.token_hex(16)
        report = RunReport(status="ok")
        try:  # the harness is up and waits: its process tree is complete, and no student code ran
            self._receive(time.monotonic() + 60, lambda m: m.get("op") == "hello")
        except SandboxGone as gone:
            report.status = gone.reason
            return report
        self.cgroup = _join_cgroup("pids", self.token, self.proc.pid, {"pids.max": NPROC})
        memory = (self.limits.memory_mb + MEMORY_SLACK_MB) * 2**20
        group = _join_cgroup("memory", self.token, self.proc.pid,
                             {"memory.limit_in_bytes": memory})
        self.cgroups = [g for g in (self.cgroup, group) if g is not None]
        try:
            self._send({"op": "run", "nonce": nonce, "cells": [list(c) for c in cells],
                        "memory_mb": self.limits.memory_mb, "file_mb": OUTPUT_MB,
                        "nproc": NPROC, "uid": self._drop_to()})
            self._receive(deadline, lambda m: m.get("op") == "started" and m.get("nonce") == nonce)
            deadline = time.monotonic() + self.limits.timeout_s
            while True:
                message = self._receive(deadline, lambda m: m.get("op") in ("cell", "ran"))
                if message.get("op") == "cell":
                    cell = message.get("cell")
                    report.last_cell = cell if type(cell) is int else None
                    continue
                if message.get("nonce") != nonce:
                    self.forged += 1
                    continue
                report.errors = _clean_errors(message.get("errors"))
                break
        except SandboxGone as gone:
            report.status = gone.reason
        report.seconds = time.monotonic() - start
        return report

    def request(self, op: str, name: str, **fields: Any) -> dict:
        """One request (``get`` a name or ``call`` it); the reply must echo our id and nonce."""
        if self.dead is not None:
            raise self.dead
        self._next_id += 1
        ident, nonce = self._next_id, secrets.token_hex(16)
        self._pending[ident] = nonce  # stays if the caller is interrupted (a test's alarm)
        self._send({"op": op, "name": name, "id": ident, "nonce": nonce, **fields})
        deadline = time.monotonic() + self.limits.call_timeout_s + self._grace(fields)
        reply = self._receive(deadline, lambda m: m.get("id") == ident and m.get("nonce") == nonce)
        del self._pending[ident]
        return reply

    def _grace(self, fields: dict) -> float:
        """Extra time, once per library, for the harness to import numpy or torch (seconds)."""
        text = json.dumps(fields) if fields else ""
        new = {tag for tag in ('"$torch"', '"$nd"', '"$np"') if tag in text} - self._graced
        self._graced |= new
        return IMPORT_GRACE_S if new else 0.0

    def oom_kills(self) -> int:
        """How many processes of the tree the memory cgroup killed (0 without one)."""
        for group in self.cgroups:
            try:
                for line in (group / "memory.oom_control").read_text().splitlines():
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
            except (OSError, ValueError):
                pass
        return 0

    def kill(self) -> None:
        """Kill the whole process group (and, without namespaces, anything with our token)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if not self.isolated:
            _kill_by_token(self.token)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        """Kill, close our ends of the pipes, delete the temporary directory."""
        self.kill()
        for fd in (self._to_child, self.reader.fd if self.reader else -1):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        for group in self.cgroups:
            _remove_cgroup(group)


def _clean_errors(errors: Any) -> list[dict]:
    """Keep only well-formed error records (they come from the untrusted side)."""
    out = []
    for e in errors if type(errors) is list else []:
        if type(e) is dict and type(e.get("cell")) is int:
            out.append({"cell": e["cell"], "type": str(e.get("type", ""))[:100],
                        "message": str(e.get("message", ""))[:500]})
    return out[:1000]


def _kill_by_token(token: str) -> None:
    """Best effort without a PID namespace: kill processes whose environment has our token."""
    needle = f"{TOKEN_ENV}={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


@lru_cache(maxsize=None)
def _own_cgroup(controller: str) -> Path | None:
    """Our own cgroup v1 folder of ``controller`` if we may make groups in it, else None.

    Why our own and not the root: a group made at the root would move the student out of the
    limits that whoever runs the grader put on it."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            folder = CGROUP_V1 / controller / path.lstrip("/")
            if (folder / "cgroup.procs").is_file() and os.access(folder, os.W_OK):
                return folder
    return None


def _join_cgroup(controller: str, token: str, pid: int, settings: dict[str, int]) -> Path | None:
    """Best effort: put the new process tree in a fresh cgroup v1 group with ``settings``.

    Why: as root, RLIMIT_NPROC is not enforced, so a fork bomb would only meet the wall clock,
    and RLIMIT_AS is per process. Called before the cells are sent: the children that exist are
    moved, later ones inherit."""
    parent = _own_cgroup(controller)
    if parent is None:
        return None
    group = parent / f"nntrain-grade-{token}"
    try:
        group.mkdir()
        for key, value in settings.items():
            (group / key).write_text(str(value))
        for p in [pid, *_children(pid), *(c for k in _children(pid) for c in _children(k))]:
            try:
                (group / "cgroup.procs").write_text(str(p))
            except OSError:
                pass
    except OSError:
        _remove_cgroup(group)
        return None
    return group


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _remove_cgroup(group: Path | None) -> None:
    """Remove the (emptied) cgroup; its killed processes may take a moment to be reaped."""
    if group is None:
        return
    for _ in range(50):
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
