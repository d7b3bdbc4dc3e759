"""The witness site's code keeps its shape: no import loop inside app/web, no import inside a
function, and no dispatch on an error's message text (errors are answered by type, through
the one table in app/web/errors.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import app.web
from app.store.errors import AlreadyUsed, BadReplyRecipient, NotStored
from app.web.errors import ERRORS, MSG, Busy, Refusal, refusal_for

WEB = Path(app.web.__file__).parent


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in WEB.rglob("*.py"):
        parts = path.relative_to(WEB.parent.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text())
    return out


def _imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The app.web modules ``name`` imports at module level."""
    package = name if name in {"app.web", "app.web.routers"} else name.rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            target = (base + "." + node.module if node.module else base) if node.level else (
                node.module or "")
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in known and m != name}


def test_no_import_loop_in_the_web_package():
    modules = _modules()
    graph = {name: _imports(name, tree, set(modules)) for name, tree in modules.items()}
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in graph[node]:
            assert state.get(nxt) != "open", " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [])


def test_no_import_inside_a_function():
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
                assert not inner, (name, node.name)


def test_errors_are_answered_by_type_from_one_table():
    assert (refusal_for(AlreadyUsed("x")).status, refusal_for(AlreadyUsed("x")).message) == (
        409, MSG["used"])
    assert refusal_for(BadReplyRecipient("x")).status == 422
    assert refusal_for(NotStored("x")).status == 500
    full = NotStored("the submission could not be stored")
    full.__cause__ = OSError(28, "No space left on device")
    assert (refusal_for(full).status, refusal_for(full).message) == (507, MSG["disk"])
    assert (Busy().status, Busy().message) == (503, MSG["busy"])
    assert Refusal(418, MSG["bad_form"]).status == 418
    assert all(key in MSG for _, key in ERRORS.values())
