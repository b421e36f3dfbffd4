"""Static scan of a submission, in the trusted process: syntax, forbidden calls, tampering signs.

Why: some things are seen better in the source than at run time, and the source cannot lie
about itself. The scan never raises a score: forbidden APIs zero a question, tampering signs
only add the reason "tampering suspected" for the teacher to look at.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

# What the student notebook may do with otter: make the Notebook and call these on it.
GRADER_METHODS = {"check", "check_all", "export"}
SUSPICIOUS_ATTRS = {"f_back", "f_globals", "f_locals", "f_builtins", "tb_frame", "gi_frame",
                    "__subclasses__", "__globals__", "__code__", "__closure__", "__builtins__",
                    "__import__", "__loader__", "__spec__", "__dict__", "__getattribute__"}
# Attribute access by a name computed at run time hides what is used from this scan.
DYNAMIC_ATTR_FUNCS = {"getattr", "hasattr", "setattr", "delattr"}
DYNAMIC_ATTR_CALLS = {"operator.attrgetter", "operator.methodcaller", "pkgutil.resolve_name",
                      "runpy", "inspect.getattr_static"}
SUSPICIOUS_CALLS = {"sys._getframe", "sys.settrace", "sys.setprofile", "sys.modules",
                    "sys.exit",
                    "gc.get_objects", "gc.get_referrers", "gc.get_referents",
                    "inspect.currentframe", "inspect.stack", "inspect.getouterframes",
                    "os._exit", "os.kill", "os.killpg", "os.fork", "os.forkpty", "os.system",
                    "os.popen", "os.setsid", "os.remove", "os.unlink", "os.rmdir", "os.dup2",
                    "os.write", "os.close", "os.open", "os.listdir", "os.walk", "os.scandir",
                    "shutil.rmtree", "importlib", "builtins", "ctypes", "signal", "socket",
                    "multiprocessing", "pty", "resource", "pickle", "marshal", "threading",
                    "subprocess", "json", "io.open"}
PROCESS_PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn")
SUSPICIOUS_BUILTINS = {"exec", "eval", "compile", "__import__", "globals", "breakpoint",
                       "setattr", "delattr", "open", "vars"}
SETUP_ONLY = {"subprocess", "sys.modules", "os.system", "sys.executable", "shutil.copytree",
              "shutil.rmtree",
              "os.listdir", "os.walk", "os.scandir", "os.remove", "os.unlink", "json", "open"}
DUNDER_NAMES = {"__builtins__", "__import__", "__loader__", "__spec__"}
PATH_WORDS = re.compile(r"master|autograder|hidden|grading|/proc/|results\.json|nntrain\.grade",
                        re.IGNORECASE)


@dataclass
class Scan:
    """The findings; ``cells`` are the code cells as run (1-based index in the notebook)."""

    cells: list[tuple[int, str]] = field(default_factory=list)
    syntax_errors: list[int] = field(default_factory=list)
    forbidden: dict[str, list[str]] = field(default_factory=dict)
    tampering: list[str] = field(default_factory=list)
    checked_questions: set[str] = field(default_factory=set)


def drop_magics(source: str) -> str | None:
    """Plain Python of a cell: IPython ``!``/``%`` lines become ``pass``; ``%%`` cells vanish."""
    if source.lstrip().startswith("%%"):
        return None
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("!", "%")):
            line = line[: len(line) - len(stripped)] + "pass"
        lines.append(line)
    return "\n".join(lines)


def code_cells(nb: dict) -> list[tuple[int, str]]:
    """(index, source) of the code cells, the index counting every cell from 1."""
    out = []
    for index, cell in enumerate(nb.get("cells", []), start=1):
        if cell.get("cell_type") == "code":
            source = drop_magics(_text(cell.get("source", "")))
            if source is not None:
                out.append((index, source))
    return out


def _text(source: object) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


class _Names(ast.NodeVisitor):
    """Resolves names to dotted paths through the imports (``import torch.optim as o`` …)."""

    def __init__(self) -> None:
        self.alias: dict[str, str] = {}
        self.used: list[str] = []  # every dotted name used (imports included)
        self.strings: list[str] = []
        self.calls: list[str] = []
        self.attrs: set[str] = set()
        self.assigned: list[str] = []  # dotted targets of assignments
        self.dynamic: list[str] = []  # attribute access by computed names
        self._called: set[int] = set()  # ids of Name nodes that are the function of a call

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            root = a.name.split(".")[0]
            self.alias[a.asname or root] = a.name if a.asname else root
            self.used.append(a.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = "." * node.level + (node.module or "")
        for a in node.names:
            full = f"{base}.{a.name}" if base else a.name
            self.alias[a.asname or a.name] = full
            self.used.append(full)

    def dotted(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.alias.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "getattr"):
            if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                base = self.dotted(node.args[0])
                return f"{base}.{node.args[1].value}" if base else None
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.attrs.add(node.attr)
        name = self.dotted(node)
        if name:
            self.used.append(name)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        self.used.append(self.alias.get(node.id, node.id))
        if (node.id in DYNAMIC_ATTR_FUNCS and node.id not in self.alias
                and id(node) not in self._called):
            self.dynamic.append(f"passes {node.id} around")

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name):
            self._called.add(id(node.func))
            if (node.func.id in DYNAMIC_ATTR_FUNCS and node.func.id not in self.alias
                    and len(node.args) >= 2 and not (isinstance(node.args[1], ast.Constant)
                                                     and isinstance(node.args[1].value, str))):
                self.dynamic.append(f"{node.func.id}() with a computed attribute name")
        name = self.dotted(node.func) or self.dotted(node)
        if name:
            self.calls.append(name)
        getattr_name = self.dotted(node)
        if getattr_name and getattr_name != name:
            self.used.append(getattr_name)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            self.strings.append(node.value)

    def _targets(self, targets: list[ast.AST]) -> None:
        for t in targets:
            if isinstance(t, (ast.Attribute, ast.Subscript)):
                name = self.dotted(t.value if isinstance(t, ast.Subscript) else t)
                if name:
                    self.assigned.append(name)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._targets(node.targets)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._targets([node.target])
        self.generic_visit(node)


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _banned_use(names: _Names, banned: str) -> bool:
    """A dotted entry matches that name or below; a bare one also any attribute of that name."""
    if any(_matches(u, banned) for u in names.used):
        return True
    if "." not in banned:
        return banned in names.attrs
    return any(banned in s for s in names.strings)  # getattr/importlib with a string


def _forbidden_hits(names: _Names, forbidden: dict[str, list[str]]) -> dict[str, list[str]]:
    hits: dict[str, list[str]] = {}
    for question, banned in forbidden.items():
        found = sorted(b for b in set(banned) if _banned_use(names, b))
        if found:
            hits[question] = found
    return hits


def _tampering(names: _Names, setup: bool, grader_names: set[str]) -> list[str]:
    signs = []
    modules = {v.split(".")[0] for v in names.alias.values()}
    for used in set(names.used) | set(names.calls):
        if used.startswith("otter") and used not in ("otter", "otter.Notebook"):
            signs.append(f"uses {used}")
        root, _, attr = used.partition(".")
        if root in grader_names and attr and attr.split(".")[0] not in GRADER_METHODS:
            signs.append(f"uses the grader's {attr}")
        if setup and any(_matches(used, s) for s in SETUP_ONLY):
            continue
        if any(_matches(used, s) for s in SUSPICIOUS_CALLS) or used.startswith(PROCESS_PREFIXES):
            if root in modules:
                signs.append(f"uses {used}")
        if used in DUNDER_NAMES:
            signs.append(f"uses {used}")
    for call in names.calls:
        if call in SUSPICIOUS_BUILTINS and call not in names.alias and not setup:
            signs.append(f"calls {call}()")
    signs += [f"touches .{a}" for a in sorted(names.attrs & SUSPICIOUS_ATTRS)]
    signs += names.dynamic
    signs += [f"uses {u}" for u in sorted(set(names.used) | set(names.calls))
              if any(_matches(u, d) for d in DYNAMIC_ATTR_CALLS)]
    signs += [f"assigns to {t}" for t in names.assigned if t.split(".")[0] in modules]
    signs += [f"mentions {s[:60]!r}" for s in names.strings
              if PATH_WORDS.search(s) and ("/" in s or "." in s or "\\" in s)]
    return signs


def _grader_names(tree: ast.AST, names: _Names) -> set[str]:
    """Names bound to ``otter.Notebook(...)`` (usually ``grader``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            if names.dotted(node.value.func) == "otter.Notebook":
                out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return out


def _checked(names: _Names, tree: ast.AST, grader_names: set[str]) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "check" and isinstance(node.func.value, ast.Name)
                and node.func.value.id in grader_names and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.add(node.args[0].value)
    return out


def scan(nb: dict, forbidden: dict[str, list[str]], setup: str | None = None) -> Scan:
    """Parse every code cell. The first code cell is the setup cell: if it is the release's
    own (``setup``), only its imports count; if edited, it may still use subprocess & co."""
    result = Scan(cells=code_cells(nb))
    names = _Names()
    grader_names: set[str] = {"grader"}
    for position, (index, source) in enumerate(result.cells):
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            result.syntax_errors.append(index)
            continue
        cell_names = _Names()
        cell_names.alias = names.alias
        cell_names.visit(tree)
        grader_names |= _grader_names(tree, cell_names)
        if position == 0 and setup is not None and source.strip() == setup.strip():
            continue
        result.tampering += _tampering(cell_names, position == 0, grader_names)
        result.checked_questions |= _checked(cell_names, tree, grader_names)
        for attr in ("used", "strings", "calls"):
            getattr(names, attr).extend(getattr(cell_names, attr))
        names.attrs |= cell_names.attrs
    result.forbidden = _forbidden_hits(names, forbidden)
    result.tampering = list(dict.fromkeys(result.tampering))
    return result
