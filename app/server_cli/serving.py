"""The serving process: uvicorn on the web app, with nothing of the command line loaded.

``guwah serve`` first does what can refuse with one clear line (the data dir, the schema
revision, TMPDIR, crash debris), then :func:`become_server` replaces its process image with
``python -P -m app.server_cli.serving`` (``execve``: the same PID, so systemd's ``Type=exec`` unit,
the demo script and a test's ``Popen`` keep holding the server).

Why a new image and not the same process: the command line's process has Typer, Rich,
Alembic with Mako, and every command's modules loaded, and Python cannot unload a module.
They were about 16 MiB of the server's resident set, all of it idle. The serving image imports
the web app and what it needs, and no module that imports Alembic (app/store/schema.py owns
it; tests/test_server_cli.py checks). Why not ``multiprocessing`` or a child process: a second
process would double what both import and would have to forward signals; a replaced image
needs neither.

The serving image reads the data dir from ``GUWAH_DATA_DIR`` (``guwah serve`` sets it) and
the address from its arguments, which only :func:`become_server` writes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import uvicorn

import app
from app.settings import Settings, load_settings
from app.web.h11_limits import guarded_protocol
from app.web.security import UVICORN_OPTIONS

from .logconfig import log_config
from .malloc import tune_malloc


def become_server(*, port: int | None, socket: Path | None) -> NoReturn:
    """Replace this process with the serving image (flushes stdout and stderr first).

    ``-P`` keeps the working directory off ``sys.path`` (a file there could shadow a module);
    ``PYTHONPATH`` starts with the folder this ``app`` package was imported from, so the image
    serves the code that checked the schema, installed or run from a checkout.
    """
    where = ["--socket", str(socket)] if socket is not None else ["--port", str(port)]
    root = str(Path(app.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    command = [sys.executable, "-P", "-m", __name__, *where]
    os.execve(sys.executable, command, env)  # noqa: S606 - our interpreter, no shell, fixed args


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's settings: Guwah's h11 protocol (app/web/h11_limits.py), no access log."""
    options: dict[str, Any] = dict(UVICORN_OPTIONS)
    # a header-read deadline and security headers on uvicorn's own 400s (see its docstring)
    options["http"] = guarded_protocol(settings.header_timeout_seconds, settings.body_idle_seconds)
    options.update(
        access_log=False,
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        date_header=False,
        log_config=log_config(),
        log_level="info",
        workers=1,
    )
    return options


def main(argv: list[str] | None = None) -> None:
    """Serve on the address :func:`become_server` passed; malloc is tuned before any thread."""
    tune_malloc()  # fewer resident pages, no refaulted buffers (malloc.py)
    parser = argparse.ArgumentParser(prog="guwah serve")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int)
    where.add_argument("--socket", type=Path)
    args = parser.parse_args(argv)
    options = uvicorn_options(load_settings(None))
    if args.socket is not None:
        options["uds"] = str(args.socket)
    else:
        options.update(host="127.0.0.1", port=args.port)
    uvicorn.run("app.web.app:create_app", factory=True, **options)


if __name__ == "__main__":
    main()
