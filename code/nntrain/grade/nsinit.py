"""First process of a sandbox inside new user, network, mount and PID namespaces.

Why: it runs before any student code, as root of a fresh user namespace, and prepares the view
the student gets: every mount read-only, a private writable ``/tmp`` (the working directory),
the grading material covered by empty mounts, then a second user+mount namespace so that the
student can neither unmount the covers nor make a mount writable again (mounts inherited from a
more privileged namespace are locked). In that namespace the student is uid/gid 1000, not 0, so
the harness it becomes by ``execv`` has no capabilities at all: no new mounts (a tmpfs would hold
memory outside every rlimit), no ``setuid``; ``no_new_privs`` is set too.

Run by :mod:`nntrain.grade.sandbox` as
``unshare --user --map-root-user --net --mount --pid --fork --kill-child --mount-proc
python -I nsinit.py CONFIG_JSON``; standard library only.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME = 16384, 1 << 18, 1 << 21
CLONE_NEWNS, CLONE_NEWUSER = 0x20000, 0x10000000
PR_SET_NO_NEW_PRIVS = 38
STUDENT_ID = 1000  # uid and gid of the student inside the innermost namespace (not root)
_KEEP = (
    (os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME),
)
libc = ctypes.CDLL(None, use_errno=True)


def _b(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    if libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    return sorted(set(points), key=len)


def make_read_only() -> None:
    """Remount every mount read-only, keeping the flags the kernel locked (nosuid, nodev, …)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for point in mount_points():
        if point == "/proc" or point.startswith("/proc/"):
            continue
        try:
            flags = os.statvfs(point).f_flag
            keep = sum(ms for st, ms in _KEEP if flags & st)
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)
        except OSError:
            pass  # e.g. a mount we cannot see into; it stays as it was


def hide(path: str) -> None:
    """Cover a directory with an empty read-only tmpfs, a file with /dev/null (a symbolic link
    is left alone: mounting on it would cover its target)."""
    if os.path.islink(path):
        return
    if os.path.isdir(path):
        mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=0555")
    elif os.path.exists(path):
        mount("/dev/null", path, None, MS_BIND)
        mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)


def private_tmp(where: str, size_mb: int) -> str:
    """A fresh writable tmpfs of bounded size at ``where`` (``/tmp`` when /tmp is hidden, else
    the sandbox's own folder), and a fresh /dev/shm; returns the working directory."""
    mount("tmpfs", where, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode=1777")
    try:
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    except OSError:
        pass
    workdir = os.path.join(where, "work") if where == "/tmp" else where
    os.makedirs(workdir, exist_ok=True)
    return workdir


def lock() -> None:
    """Enter a nested user+mount namespace: the mounts above become locked for the student, who
    is uid/gid STUDENT_ID there (mapped onto our 0), so that ``execv`` drops every capability."""
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{STUDENT_ID} 0 1"),
                       ("gid_map", f"{STUDENT_ID} 0 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl: {os.strerror(err)}")


def main(config: dict) -> None:
    make_read_only()
    for path in config["hide"]:
        if path != "/tmp":
            try:
                hide(path)
            except OSError as err:
                print(f"nsinit: cannot hide {path}: {err}", file=sys.stderr)
                os._exit(3)
    for path in config.get("mask", []):  # defence in depth: what is not needed, if we can
        try:
            hide(path)
        except OSError:
            pass
    workdir = private_tmp(config["writable"], config["tmp_mb"])
    lock()
    os.chdir(workdir)
    os.execv(config["argv"][0], config["argv"])


if __name__ == "__main__":
    try:
        main(json.loads(sys.argv[1]))
    except OSError as err:
        print(f"nsinit: {err}", file=sys.stderr)
        os._exit(3)
