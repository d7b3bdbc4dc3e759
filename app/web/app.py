"""The witness site: ``create_app(settings)`` builds the FastAPI app ``guwah serve`` runs.

Run it only with :data:`app.web.security.UVICORN_OPTIONS` (no access log, no proxy headers,
no Server/Date header).  Pages work without JavaScript; the optional script (browser encryption) is
referenced from the submit page with Subresource Integrity.

Where things are: the shared state in app/web/state.py, pages and the error page in
app/web/rendering.py, the error family and its table in app/web/errors.py, the outer layers
in app/web/middleware.py, and the routes in app/web/routers/.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import anyio.to_thread
from fastapi import FastAPI

from app.settings import Settings, load_settings
from app.store import Store, startup_checks

from .budget import Budget, disk_path, free_bytes
from .codename_ahead import Ahead
from .forms import FormTokens
from .housekeeping import housekeeping
from .i18n import catalogs_for
from .mailbox import MailboxTickets
from .middleware import EXCEPTION_HANDLERS, GuwahApp
from .pacing import Pacing
from .quota import UploadLedger
from .rendering import STATIC_DIR, load_sri, make_env
from .routers import commit, mailbox, pages, submit, uploads, withdraw
from .security import UVICORN_OPTIONS
from .state import Web
from .static_files import PrecompressedStaticFiles

log = logging.getLogger("guwah.web")

SEAL_THREADS = 32  # pieces sealed at once; a piece is taken only once it has arrived
WRITE_THREADS = 16  # tus PATCH pieces written at once (waited for, never refused)


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               translations_dir: Path | None = None) -> GuwahApp:
    """Build the witness site for ``settings`` (``load_settings()`` when None).

    Refuses to start (``app.store.StartupError``, one sentence) when TMPDIR is not a private
    directory or the data dir is open to others; warns when TMPDIR is not on tmpfs.
    """
    if settings is None:
        settings = load_settings()
    for warning in startup_checks(settings):
        log.warning("%s", warning)
    if store is None:
        store = Store(settings)
    web = make_web(settings, store, translations_dir)
    app = GuwahApp(
        title="Guwah",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_lifespan(web),
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.web = web
    for area in (pages, submit, mailbox, withdraw, uploads, commit):
        app.include_router(area.router)
    app.mount("/static", PrecompressedStaticFiles(directory=str(STATIC_DIR)), name="static")
    return app


def _lifespan(web: Web) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """Clear staging left by a crash, then run the housekeeping loop while the app serves."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(web.store.cleanup_staging)
        async with anyio.create_task_group() as tg:
            tg.start_soon(housekeeping, web)
            yield
            tg.cancel_scope.cancel()

    return lifespan


def make_web(settings: Settings, store: Store, translations_dir: Path | None) -> Web:
    """The shared state: catalogs, templates, form tokens, and the resource limits."""
    key = form_key(settings)
    tokens = FormTokens(key)
    return Web(
        settings=settings,
        store=store,
        catalogs=catalogs_for(settings, translations_dir),
        env=make_env(),
        tokens=tokens,
        tickets=MailboxTickets(key),
        kdf_slots=threading.BoundedSemaphore(settings.kdf_concurrency),
        seal_limiter=anyio.CapacityLimiter(SEAL_THREADS),
        budget=Budget(settings.max_pending_bytes, settings.min_free_bytes,
                      lambda: free_bytes(disk_path(settings))),
        ledger=UploadLedger(per_token=settings.token_max_uploads,
                            bytes_per_token=settings.token_max_reserved_bytes,
                            max_open=settings.max_open_uploads,
                            idle_seconds=settings.upload_idle_seconds),
        pacing=Pacing.from_settings(settings),
        write_limiter=anyio.CapacityLimiter(WRITE_THREADS),
        ahead=Ahead(tokens),
        js=load_sri("submit.js"),
        landing_js=load_sri("landing.js"),
        return_js=load_sri("return.js"),
    )


def form_key(settings: Settings) -> bytes:
    """HMAC key for form tokens and mailbox tickets: derived from the server key when there
    is one.

    Several app nodes behind one onion share the data dir's server key, so their tokens agree;
    without a server key (tests, a fresh dir) a random key lasts as long as the process.
    """
    path = settings.server_key_file
    try:
        if path is not None and Path(path).is_file():
            return hashlib.sha256(b"form-key\x00" + Path(path).read_bytes()).digest()
    except OSError:
        pass
    return secrets.token_bytes(32)


__all__ = ["UVICORN_OPTIONS", "create_app"]
