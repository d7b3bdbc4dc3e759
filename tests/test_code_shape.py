"""The shape of the code under app/, checked on every run (docs/architecture.md says why).

- no import cycle among app modules (module-level imports, as Python runs them);
- no function longer than 60 lines;
- no import statement inside a function (an import hidden there is usually a cycle dodged);
- ``python -m mypy app`` exits 0 (its settings are in pyproject.toml).

Each test prints every offender, so a failure is a to-do list, not a riddle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
MAX_FUNCTION_LINES = 60
# Python written by a tool, not by hand (none today: the built JavaScript bundles under
# app/web/static/js are generated, but they are not Python).
GENERATED: frozenset[Path] = frozenset()


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every Python module under app/."""
    out = {}
    for path in sorted(APP.rglob("*.py")):
        if path in GENERATED:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports Python runs when the module loads: top level, and inside top-level
    if/try/with blocks, but not under ``if TYPE_CHECKING:`` and not in a def or class body."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _module_level_imports(block)
            for handler in node.handlers:
                yield from _module_level_imports(handler.body)
        elif isinstance(node, ast.With):
            yield from _module_level_imports(node.body)


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The app modules one import statement needs finished."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in MODULES}
    base = node.module or ""
    if node.level:
        package = _package_of(name, path)
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if node.module else package
    submodules = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
    # `from pkg import mod` needs only pkg.mod (pkg is its parent, loaded first anyway);
    # `from pkg import name` needs pkg's __init__ to have run to its end: an edge to pkg.
    whole = base in MODULES and len(submodules) < len(node.names)
    return submodules | ({base} if whole else set())


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text("utf-8"), str(path))
        edges: set[str] = set()
        for node in _module_level_imports(tree.body):
            edges |= _targets(name, path, node)
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_checker_sees_a_cycle_and_a_clean_graph() -> None:
    """The cycle finder itself: a loop through three modules is found, a tree is not."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []
    graph = import_graph()
    assert "app.editor.commands" in graph["app.editor.cli"]  # `from . import commands`
    assert "app.durable" in graph["app.bundles.bundle"]  # `from app import durable`


def test_no_import_cycle_among_app_modules() -> None:
    found = cycles(import_graph())
    assert not found, f"{len(found)} import cycle(s) in app/:\n" + "\n".join(
        " <-> ".join(component) for component in found
    )


def test_no_function_in_app_is_longer_than_60_lines() -> None:
    long = []
    for path in MODULES.values():
        for fn in _functions(ast.parse(path.read_text("utf-8"), str(path))):
            length = (fn.end_lineno or fn.lineno) - fn.lineno + 1
            if length > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name} ({length} lines)")
    assert not long, f"{len(long)} function(s) over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(
        sorted(long)
    )


def test_no_import_inside_a_function_in_app() -> None:
    hidden: dict[tuple[str, int], str] = {}
    for path in MODULES.values():
        for fn in _functions(ast.parse(path.read_text("utf-8"), str(path))):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    hidden.setdefault((str(path.relative_to(ROOT)), node.lineno), fn.name)
    hidden = [f"{where}:{line} in {fn}" for (where, line), fn in sorted(hidden.items())]
    assert not hidden, f"{len(hidden)} import(s) inside functions:\n" + "\n".join(hidden)


@pytest.mark.slow
def test_mypy_is_clean_on_app() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "app"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-20000:] + proc.stderr[-2000:]


# docs/architecture.md, "Who may import whom": the packages of app/ each program may use.
ALLOWED_IMPORTS: dict[str, set[str]] = {
    "crypto": set(),
    "protocol": {"crypto"},
    "libc": set(),
    "diskio": {"libc"},
    "durable": {"diskio"},
    "bundles": {"crypto", "protocol", "durable"},
    "store": {"crypto", "protocol", "durable", "diskio", "settings"},
    "web": {"store", "crypto", "protocol", "durable", "diskio", "settings"},
    "editor": {"bundles", "crypto", "protocol", "durable", "diskio", "cli_help"},
    "server_cli": {"store", "bundles", "crypto", "protocol", "durable", "settings", "cli_help",
                   "web", "libc"},
}


def test_packages_import_only_what_the_architecture_allows() -> None:
    """Never upwards, never sideways between programs: the offline editor imports nothing of
    the store, the web or the server CLI; crypto and libc import nothing of app; diskio only libc."""
    wrong = []
    for path in sorted(APP.rglob("*.py")):
        parts = path.relative_to(APP).with_suffix("").parts
        package = parts[0]
        if package not in ALLOWED_IMPORTS:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                     and node.module else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                top = name.split(".")
                if top[0] == "app" and len(top) > 1 and top[1] != package and (
                        top[1] not in ALLOWED_IMPORTS[package]):
                    wrong.append(f"{path.relative_to(ROOT)}: {package} imports {name}")
    assert not wrong, "\n".join(wrong)
