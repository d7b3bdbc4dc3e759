"""One look for the help screens of ``guwah`` and ``guwah-editor``: plain text, click style.

Typer (0.29) labels every option with a Python type tag (``--desk <str>``, ``--todo <bool>``
in its boxed "rich" layout). Both tools use click's plain layout instead and name what an
option takes the way Unix tools do (``--desk TEXT``, ``--to PATH``; flags take nothing), so the
operator's and the editor's screens read alike. No web imports: the editor laptop uses it.
"""

from __future__ import annotations

from typing import Any

import typer

TYPER_STYLE = {
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
}
_NAMES = {"str": "TEXT", "int": "N", "float": "NUMBER", "path": "PATH", "file": "FILE",
          "directory": "DIR", "list[path]": "PATH", "list[str]": "TEXT"}  # fmt: skip


def _no_type_tag(ctx: Any) -> None:
    """Replaces typer's ``<path>`` tag after an argument's name (called as ``ctx=``)."""
    del ctx


def _plain(command: Any) -> None:
    ctx = typer.Context(command)
    for param in command.params:
        display = getattr(param, "display_type", None)
        if param.metavar is not None or display is None:
            continue
        if param.param_type_name == "argument":
            # an argument is named by what it is (BUNDLE, FILES), never by a type tag
            param.metavar = str(param.name).upper()
            param.display_type_rich = _no_type_tag
        elif not getattr(param, "is_flag", False):
            label = str(display(ctx)).strip("<>")
            param.metavar = _NAMES.get(label, label.upper())
    for sub in getattr(command, "commands", {}).values():
        _plain(sub)


def command_of(app: typer.Typer) -> Any:
    """The click command of ``app`` with plain metavars everywhere (call it in ``main``)."""
    command = typer.main.get_command(app)
    _plain(command)
    return command
