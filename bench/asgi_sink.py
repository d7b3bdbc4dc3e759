"""A bare ASGI app that reads every request body and drops it, served as ``guwah serve`` serves
Guwah: the same malloc settings, uvicorn options and h11 protocol class with the default
deadlines.  What it costs to receive a body is then the HTTP stack's share alone, the part of a
benchmark's floor (bench/floors.py) that no Guwah code adds to.

    .venv/bin/python bench/asgi_sink.py PORT
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.server_cli.malloc import tune_malloc
from app.settings import Settings
from app.web.h11_limits import guarded_protocol
from app.web.security import UVICORN_OPTIONS


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def main() -> None:
    tune_malloc()  # before any thread, as the serving process does
    fields = Settings.model_fields
    protocol = guarded_protocol(fields["header_timeout_seconds"].default,
                                fields["body_idle_seconds"].default)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http=protocol, **UVICORN_OPTIONS)


if __name__ == "__main__":
    main()
