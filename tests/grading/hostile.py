"""Broken and hostile submissions of the toy assignment, each with the verdict it must get.

Each case: how to build the notebook from the blank release, the reason labels its row must
show, and the exact total (never more than the honest answers in it earn).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import nbformat

from toy import SOLVED, fill

BLANK: dict[str, str] = {}
MARK_CHILD, MARK_DAEMON = "7777.25", "7778.25"  # sleep arguments: unique in the process table


@dataclass
class Hostile:
    name: str
    answers: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)  # code cells appended at the end
    reasons: tuple[str, ...] = ("ok",)
    total: float = 0.0
    raw: str | None = None  # the file's text instead of a notebook
    metadata: dict | None = None
    namespaces_only: bool = False
    link: str | None = None  # make a symbolic link to this path (a key of the paths) instead
    fifo: bool = False  # make a named pipe instead of a file

    def text(self, blank: dict, paths: dict[str, str]) -> str:
        if self.raw is not None:
            return self.raw
        nb = fill(blank, self.answers)
        nb["cells"] += [nbformat.v4.new_code_cell(_fmt(src, paths)) for src in self.extra]
        if self.metadata is not None:
            nb["metadata"].update(self.metadata)
        return json.dumps(nb)


def _fmt(source: str, paths: dict[str, str]) -> str:
    for key, value in paths.items():
        source = source.replace("{" + key + "}", value)
    return source


READ_ATTEMPT = """import glob, os
leaked = []
for pattern in ["{master}", "{master_dir}/*", "{tests_glob}", "/tmp/nntrain-grade-*/assign/*/tests/*.py",
                "/tmp/nntrain-grade-*/*/*/*/*.py", "{repo}/.git/HEAD", "{repo}/assignments/*/master.ipynb",
                "/proc/*/root{master}", "/proc/*/cwd/../assign/autograder/tests/*.py",
                "{subs}/*.ipynb"]:
    for path in glob.glob(pattern):
        try:
            with open(path, "rb") as f:
                f.read(10)
            leaked.append(path)
        except OSError:
            pass
answer = 42 if leaked else None"""

MOUNT_ATTEMPT = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs('m', exist_ok=True)
if libc.mount(b'tmpfs', b'm', b'tmpfs', 0, b'size=64g') == 0:  # memory outside every rlimit
    def double(x):
        return 0 * x"""
FORGED_BIG_INT = """import os, struct, sys
body = ('{"op": "cell", "cell": ' + '9' * 5000 + '}').encode()
os.write(int(sys.argv[2]), struct.pack('>I', len(body)) + body)"""
EVADES_SCAN = {"def double": "import numpy as np\n_m = getattr(np, 'multi' + 'ply')\n"
               "def double(x):\n    return _m(x, 2)", "answer": "answer = 42"}

CASES = [
    Hostile("solved", SOLVED, total=4.0),
    Hostile("blank", BLANK, total=0.0),
    Hostile("syntax_error", {"def double": "def double(x)\n    return 2 * x", "answer": "answer = 42"},
            reasons=("syntax error",), total=1.0),
    Hostile("raises", {"def double": "raise ValueError('boom')", "answer": "answer = 42"},
            reasons=("exception in cell", "output missing"), total=1.0),
    Hostile("infinite_loop", SOLVED, ["while True:\n    pass"], reasons=("timeout",)),
    Hostile("sleeps", SOLVED, ["import time\ntime.sleep(10**6)"], reasons=("timeout",)),
    Hostile("sleeps_in_call", {"def double": "def double(x):\n    import time\n"
                               "    time.sleep(10**6)", "answer": "answer = 42"},
            reasons=("timeout",)),
    Hostile("terabytes_numpy", SOLVED, ["import numpy as np\nbig = np.ones(10**13)"],
            reasons=("memory limit", "exception in cell"), total=4.0),
    Hostile("terabytes_torch", SOLVED, ["import torch\nbig = torch.empty(10**13)"],
            reasons=("memory limit",), total=4.0),
    Hostile("prints_megabytes", SOLVED, ["for _ in range(40):\n    print('x' * 10**6)"],
            reasons=("exception in cell",), total=4.0),
    Hostile("returns_nan", {"def double": "def double(x):\n    return x * float('nan')",
                            "answer": "answer = 42"}, total=1.0),
    Hostile("wrong_shape", {"def double": "def double(x):\n    return [2 * x, 0.0]",
                            "answer": "answer = 42"}, total=1.0),
    Hostile("huge_return", {"def double": "def double(x):\n    import numpy as np\n"
                            "    return np.zeros(10**8)", "answer": "answer = 42"}, total=1.0),
    Hostile("empty_notebook", raw=nbformat.writes(nbformat.v4.new_notebook()),
            reasons=("output missing",)),
    Hostile("not_json", raw="this is not {json", reasons=("not a notebook",)),
    Hostile("json_not_notebook", raw='{"cells": 5, "nbformat": 4}', reasons=("not a notebook",)),
    Hostile("other_assignment", SOLVED, metadata={"otter": {"assignment_name": "part2"}},
            reasons=("wrong assignment",)),
    Hostile("patches_otter", BLANK, ["import otter\notter.Notebook.check = lambda *a: 'all passed'\n"
                                     "otter.test_files = None\ngrader._points = 100"],
            reasons=("tampering suspected",)),
    Hostile("patches_builtins_json", BLANK, [
        "import builtins, json\nbuiltins.isinstance = lambda *a: True\n"
        "json.dumps = lambda *a, **k: '{\"kind\": \"value\", \"value\": 42}'\n"
        "json.loads = lambda *a, **k: {'kind': 'value', 'value': 42}"],
        reasons=("tampering suspected",)),
    Hostile("fake_results_file", BLANK, [
        "import json, os\nfake = {'score': 4, 'tests': [{'name': 'q1', 'score': 3}]}\n"
        "for path in ['results.json', '/autograder/results/results.json', '{subs}/results.json']:\n"
        "    try:\n        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)\n"
        "        open(path, 'w').write(json.dumps(fake))\n    except OSError:\n        pass"],
        reasons=("tampering suspected",)),
    Hostile("reads_hidden_tests", BLANK, [READ_ATTEMPT], reasons=("tampering suspected",),
            namespaces_only=True),
    Hostile("deletes_files", BLANK, [
        "import shutil\nfor p in ['{master_dir}', '{subs}', '{repo}/tests/grading']:\n"
        "    shutil.rmtree(p, ignore_errors=True)"], reasons=("tampering suspected",),
        namespaces_only=True),
    Hostile("spawns_processes", BLANK, [
        "import os, subprocess\nsubprocess.Popen(['sleep', '" + MARK_CHILD + "'])\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.execvp('sleep', ['sleep', '" + MARK_DAEMON + "'])\n    os._exit(0)"],
        reasons=("tampering suspected",)),
    Hostile("os_exit", SOLVED, ["import os\nos._exit(0)"], reasons=("kernel died",)),
    Hostile("sys_exit", SOLVED, ["import sys\nsys.exit(1)"],
            reasons=("exception in cell", "tampering suspected"), total=4.0),
    Hostile("forges_replies", BLANK, [
        "import json, os, struct\n"
        "def frame(m):\n    b = json.dumps(m).encode()\n    return struct.pack('>I', len(b)) + b\n"
        "for fd in range(3, 40):\n    for i in range(1, 40):\n        try:\n"
        "            os.write(fd, frame({'op': 'ran', 'nonce': 'x', 'errors': []}))\n"
        "            os.write(fd, frame({'id': i, 'nonce': 'x', 'kind': 'value', 'value': 42}))\n"
        "        except OSError:\n            break"],
        reasons=("tampering suspected",)),
    Hostile("evil_eq", {"answer": "class Sly(int):\n    def __eq__(self, other):\n"
                        "        return True\nanswer = Sly(7)"}, total=0.5),
    Hostile("pickle_payload", {"answer": "import os\nclass P:\n    def __reduce__(self):\n"
                               "        return (os.system, ('touch /tmp/pwned',))\nanswer = P()"},
            reasons=("tampering suspected",)),
    Hostile("closes_channel", SOLVED, ["import os\nfor fd in range(3, 64):\n    try:\n"
                                       "        os.close(fd)\n    except OSError:\n        pass"],
            reasons=("kernel died", "tampering suspected")),
    Hostile("kills_everything", SOLVED, ["import os, signal\nos.kill(-1, signal.SIGKILL)"],
            reasons=("tampering suspected",), total=4.0, namespaces_only=True),
    # found by the red-team review (/tmp/review_grader.md): each was a hole before its fix
    Hostile("link_to_master", link="master", reasons=("not a notebook",)),
    Hostile("link_to_shadow", link="shadow", reasons=("not a notebook",)),
    Hostile("named_pipe", fifo=True, reasons=("not a notebook",)),
    Hostile("=HYPERLINK(1)+formula", SOLVED, total=4.0),
    Hostile("evades_scan_by_getattr", EVADES_SCAN, reasons=("tampering suspected",), total=4.0),
    Hostile("mounts_tmpfs", SOLVED, [MOUNT_ATTEMPT], reasons=("tampering suspected",),
            total=4.0, namespaces_only=True),
    Hostile("forges_big_int", BLANK, [FORGED_BIG_INT],
            reasons=("kernel died", "tampering suspected")),
    Hostile("returns_big_int", {"def double": "def double(x):\n    if isinstance(x, float):\n"
                                "        return 10 ** 5000\n    return x + x",
                                "answer": "answer = 42"}, total=3.0),
]
