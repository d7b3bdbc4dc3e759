"""The shared state of the witness site: one :class:`Web` per app, built by ``create_app``.

Routes reach it through the :data:`WebDep` dependency; middleware and exception handlers,
which FastAPI does not inject, call :func:`web_of` on the app. Why one object: every limit
that is shared between requests (KDF slots, sealing and writing threads, the byte budget, the
upload ledger) must exist once per app, never once per process or per router.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, Request
from jinja2 import Environment

from app.settings import Settings
from app.store import Desk, Store

from .budget import Budget
from .codename_ahead import Ahead
from .forms import FormTokens
from .i18n import Catalogs
from .mailbox import MailboxTickets
from .pacing import Pacing
from .quota import UploadLedger
from .scripts import PageScript


@dataclass
class Web:
    """Everything the request handlers share (one per app)."""

    settings: Settings
    store: Store
    catalogs: Catalogs
    env: Environment
    tokens: FormTokens
    tickets: MailboxTickets
    kdf_slots: threading.BoundedSemaphore
    seal_limiter: anyio.CapacityLimiter
    budget: Budget
    ledger: UploadLedger
    pacing: Pacing
    write_limiter: anyio.CapacityLimiter
    ahead: Ahead  # the codename before Send (app/web/codename_ahead.py)
    js: PageScript | None = None
    landing_js: PageScript | None = None
    return_js: PageScript | None = None

    def desks(self) -> list[Desk]:
        """The desks that can receive (they have at least one editor key); blocking I/O."""
        return [d for d in self.store.list_desks() if d.recipients]


def web_of(app: FastAPI) -> Web:
    """The app's shared state (set once by ``create_app``)."""
    web = app.state.web
    if not isinstance(web, Web):
        raise RuntimeError("the app was not built by create_app")
    return web


async def get_web(request: Request) -> Web:
    """The dependency every route takes (async: FastAPI runs it on the event loop, no thread)."""
    return web_of(request.app)


WebDep = Annotated[Web, Depends(get_web)]
