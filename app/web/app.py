"""The witness site: ``create_app(settings)`` builds the FastAPI app ``guwah serve`` runs.

Run it only with :data:`app.web.security.UVICORN_OPTIONS` (no access log, no proxy headers,
no Server/Date header).  Pages work without JavaScript; the optional script (browser encryption) is
referenced from the submit page with Subresource Integrity.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import shutil
import threading
import urllib.parse
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from python_multipart.multipart import parse_options_header
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.crypto.codename import numbers_for as codename_numbers

from .budget import Budget, Ticket
from .codename_ahead import Ahead, AlreadySent, receipt_again
from .errors import MSG, Refusal
from .forms import FormTokens, cross_site
from .housekeeping import housekeeping
from .i18n import DEFAULT, Catalogs, Language, bdi, catalogs_for, plural_samples
from .pacing import BodyStalled, Pacing, paced_body
from .quota import UploadLedger
from .scripts import PageScript, page_script
from .sealing import (  # noqa: F401 - tests patch KDF_WAIT_SECONDS here
    KDF_WAIT_SECONDS,
    MAX_BOUNDARY_BYTES,
    Limits,
    Sealer,
)
from .security import (
    UVICORN_OPTIONS,
    Message,
    Receive,
    Scope,
    SecurityHeadersMiddleware,
    Send,
    StripClientMiddleware,
)
from .static_files import PrecompressedStaticFiles

log = logging.getLogger("guwah.web")

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
# templates/ at the top of the source tree (the layout reads like the architecture); a wheel
# can carry them as app/web/templates, which wins when present.
TEMPLATES_DIR = next(
    (p for p in (WEB_DIR / "templates", WEB_DIR.parent.parent / "templates") if p.is_dir()),
    WEB_DIR.parent.parent / "templates",
)
# received bytes handed to a sealing thread at a time: why 1 MiB and not smaller, each hand-off
# wakes the event loop and a thread (at 128 KiB that was a fifth of the server's profile)
FEED_CHUNK = 1024 * 1024
DRAIN_LIMIT = 64 * 1024 * 1024  # after a refusal, read at most this much more so the page shows
SMALL_FORM_BYTES = 8 * 1024
SALVAGE_BYTES = 256 * 1024  # after a budget refusal, text read beyond the testimony's cap
SALVAGE_SECONDS = 30
SEAL_THREADS = 32  # pieces sealed at once; a piece is taken only once it has arrived
WRITE_THREADS = 16  # tus PATCH pieces written at once (waited for, never refused)

_current: ContextVar[Any] = ContextVar("guwah_translations")


@dataclass
class Web:
    """Everything the request handlers share (one per app)."""

    settings: Any
    store: Any
    catalogs: Catalogs
    env: Environment
    tokens: FormTokens
    kdf_slots: threading.BoundedSemaphore
    seal_limiter: anyio.CapacityLimiter
    budget: Budget
    ledger: UploadLedger
    pacing: Pacing
    write_limiter: anyio.CapacityLimiter
    ahead: Ahead
    js: dict[str, str] | None = None
    landing_js: dict[str, str] | None = None


class GuwahApp(FastAPI):
    """FastAPI with Guwah's outer layers *outside* Starlette's ServerErrorMiddleware.

    Starlette answers an unhandled exception from its outermost middleware, so headers added
    by a normal ``add_middleware`` would be missing from the 500 page; wrapping the built
    stack puts them on every response, and the guard turns any escaped exception into the
    translated error page (with no traceback anywhere).
    """

    def build_middleware_stack(self) -> Any:
        inner = super().build_middleware_stack()
        return SecurityHeadersMiddleware(GuardMiddleware(
            StripClientMiddleware(LanguageMiddleware(inner, self)), self))


class LanguageMiddleware:
    """``/ug/submit`` → path ``/submit`` with language ``ug``; ``?lang=`` wins over the prefix."""

    def __init__(self, app: Any, owner: GuwahApp) -> None:
        self.app, self.owner = app, owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            web: Web = self.owner.state.web
            path: str = scope.get("path", "/")
            prefix = path.split("/", 2)[1] if path.count("/") >= 1 else ""
            chosen = None
            if prefix in web.catalogs:
                chosen = prefix
                rest = path[len(prefix) + 1:] or "/"
                scope["path"] = rest
                scope["raw_path"] = rest.encode("utf-8")
            query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
            asked = (query.get("lang") or [None])[0]
            scope["guwah.lang"] = web.catalogs.pick(asked, chosen).code
        await self.app(scope, receive, send)


class GuardMiddleware:
    """Last line: an exception that escaped everything becomes the translated 500 page."""

    def __init__(self, app: Any, owner: GuwahApp) -> None:
        self.app, self.owner = app, owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            # the type only: a message or traceback could quote what the witness sent
            log.error("unexpected %s while answering a request", type(exc).__name__)
            if not started:
                web: Web = self.owner.state.web
                response = render_error(web, scope, 500, MSG["server"])
                await response(scope, receive, send)


# --------------------------------------------------------------------------- rendering
def _gettext(message: str) -> str:
    return _current.get().gettext(message)


def _ngettext(singular: str, plural: str, n: int) -> str:
    return _current.get().ngettext(singular, plural, n)


def make_env(templates_dir: Path = TEMPLATES_DIR) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters["plainsize"] = plain_size
    env.filters["bdi"] = bdi
    return env


def plain_size(n: int) -> str:
    """A size in the words witnesses know ("4 GB", "500 MB"): why not Jinja's
    ``filesizeformat``: "4.0 GiB" reads as jargon."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{round(n / scale, 1):g} {unit}"
    return f"{n} B"


def page_context(web: Web, scope: Scope) -> dict[str, Any]:
    lang: Language = web.catalogs.pick(scope.get("guwah.lang"))
    path = local_path(scope.get("path", "/"))
    languages = [(other, web.catalogs.url_base(other.code) + path)
                 for other in web.catalogs.available]
    return {
        "lang": lang,
        "base": web.catalogs.url_base(lang.code),
        "path": path,
        "draft_translation": web.catalogs.is_draft(lang.code),
        "languages": languages,
        "english_url": next((url for other, url in languages if other.code == DEFAULT), None),
        "plurals": plural_samples(lang.code),
    }


def local_path(path: str) -> str:
    """``path`` as a link that can only stay on this site.

    Language links are built from the request path; ``/ug//evil.example/x`` would otherwise
    give ``//evil.example/x``, which a browser reads as another host (so would ``/\\evil``).
    """
    return "/" + path.replace("\\", "/").lstrip("/")


def render(web: Web, scope: Scope, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    context = page_context(web, scope)
    context.update(ctx)
    token = _current.set(web.catalogs.get(context["lang"].code))
    try:
        html = web.env.get_template(template).render(**context)
    finally:
        _current.reset(token)
    return HTMLResponse(html, status_code=status)


def render_error(web: Web, scope: Scope, status: int, message: str) -> HTMLResponse:
    try:
        return render(web, scope, "error.html", status, code=status, message=message)
    except Exception as exc:  # a broken template must not turn into a traceback
        log.error("error page failed to render (%s)", type(exc).__name__)
        return HTMLResponse("<!doctype html><title>Error</title><p>Error.</p>", status)


# --------------------------------------------------------------------------- factory
def create_app(settings: Any = None, *, store: Any = None,
               translations_dir: Path | None = None) -> GuwahApp:
    """Build the witness site for ``settings`` (``load_settings()`` when None).

    Refuses to start (``app.store.StartupError``, one sentence) when TMPDIR is not a private
    directory or the data dir is open to others; warns when TMPDIR is not on tmpfs.
    """
    from app.store import startup_checks

    if settings is None:
        from app.settings import load_settings

        settings = load_settings()
    for warning in startup_checks(settings):
        log.warning("%s", warning)
    if store is None:
        from app.store import Store

        store = Store(settings)

    web = _make_web(settings, store, translations_dir)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        cleanup = getattr(store, "cleanup_staging", None)
        if cleanup is not None:
            await anyio.to_thread.run_sync(cleanup)
        async with anyio.create_task_group() as tg:
            tg.start_soon(housekeeping, web)
            yield
            tg.cancel_scope.cancel()

    app = GuwahApp(
        title="Guwah",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        exception_handlers={
            StarletteHTTPException: _http_error,
            RequestValidationError: _validation_error,
            Refusal: _refusal,
            Exception: _unexpected,
        },
    )
    app.state.web = web
    _routes(app, web)
    from .commit import router as commit_router  # browser-encrypted submissions
    from .uploads import router as uploads_router

    app.include_router(uploads_router)
    app.include_router(commit_router)
    app.mount("/static", PrecompressedStaticFiles(directory=str(STATIC_DIR)), name="static")
    return app


def _make_web(settings: Any, store: Any, translations_dir: Path | None) -> Web:
    """The shared state: catalogs, templates, form tokens, and the resource limits."""
    tokens = FormTokens(_form_key(settings))
    return Web(
        settings=settings,
        store=store,
        catalogs=catalogs_for(settings, translations_dir),
        env=make_env(),
        tokens=tokens,
        kdf_slots=threading.BoundedSemaphore(settings.kdf_concurrency),
        seal_limiter=anyio.CapacityLimiter(SEAL_THREADS),
        budget=Budget(settings.max_pending_bytes, settings.min_free_bytes,
                      lambda: _free_bytes(_disk_path(settings))),
        ledger=UploadLedger(per_token=settings.token_max_uploads,
                            bytes_per_token=settings.token_max_reserved_bytes,
                            max_open=settings.max_open_uploads,
                            idle_seconds=settings.upload_idle_seconds),
        pacing=Pacing.from_settings(settings),
        write_limiter=anyio.CapacityLimiter(WRITE_THREADS),
        ahead=Ahead(tokens),
        js=_load_sri(),
        landing_js=_load_sri("landing.js"),
    )


def _form_key(settings: Any) -> bytes:
    """HMAC key for form tokens: derived from the server key when there is one.

    Several app nodes behind one onion share the data dir's server key, so their tokens agree;
    without a server key (tests, a fresh dir) a random key lasts as long as the process.
    """
    path = getattr(settings, "server_key_file", None)
    try:
        if path is not None and Path(path).is_file():
            return hashlib.sha256(b"form-key\x00" + Path(path).read_bytes()).digest()
    except OSError:
        pass
    return secrets.token_bytes(32)


def _load_sri(name: str = "submit.js") -> PageScript | None:
    """A built script, its integrity hash and its shared modules, when built."""
    return page_script(STATIC_DIR / "js", name)


# --------------------------------------------------------------------------- errors
async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    message = {404: MSG["not_found"], 405: MSG["method"]}.get(status, MSG["bad_form"])
    if status >= 500:
        message = MSG["server"]
    return render_error(request.app.state.web, request.scope, status, message)


async def _validation_error(request: Request, exc: Exception) -> Response:
    return render_error(request.app.state.web, request.scope, 422, MSG["bad_form"])


async def _refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return render_error(request.app.state.web, request.scope, exc.status, exc.message)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return render_error(request.app.state.web, request.scope, 500, MSG["server"])


# --------------------------------------------------------------------------- routes
def _routes(app: GuwahApp, web: Web) -> None:
    settings = web.settings

    def desks() -> list[Any]:
        return [d for d in web.store.list_desks() if d.recipients]

    @app.get("/", response_class=HTMLResponse)
    async def landing(request: Request) -> Response:
        return render(web, request.scope, "landing.html", js=web.landing_js)

    @app.get("/submit", response_class=HTMLResponse)
    async def submit_form(request: Request) -> Response:
        available = await anyio.to_thread.run_sync(desks)
        if not available:
            raise Refusal(503, MSG["no_desks"])
        token = web.tokens.issue()
        return render(
            web, request.scope, "submit.html",
            desks=available, token=token, js=web.js, **web.ahead.page(token),
            max_files=settings.max_files, max_file_bytes=settings.max_file_bytes,
            max_text_chars=settings.max_text_chars,
        )

    @app.post("/submit", response_class=HTMLResponse)
    async def submit(request: Request) -> Response:
        try:
            receipt = await _seal_request(web, request, desks, ahead=web.ahead.words_for)
        except AlreadySent as again:  # the same form again: the same receipt, nothing stored
            return await _receipt_again(web, request, again)
        except Refusal as exc:
            if exc.form is None:
                raise
            return await submit_again(request, exc)
        response = render(
            web, request.scope, "receipt.html",
            codename=receipt.codename, codename_numbers=codename_numbers(receipt.codename),
            desk=receipt.desk, files=receipt.files, protection="server-sealed",
        )
        del receipt  # the codename is now only in the page on its way to the witness
        return response

    async def submit_again(request: Request, refusal: Refusal) -> Response:
        """The form again after a refusal: the reason on top, the witness's words refilled
        from memory (rendered into this answer, then dropped), a fresh token."""
        kept, refusal.form = refusal.form or {}, None
        available = await anyio.to_thread.run_sync(desks)
        if not available:
            raise Refusal(503, MSG["no_desks"])
        token, changed = web.ahead.token_again(kept)
        return render(
            web, request.scope, "submit.html", refusal.status,
            desks=available, token=token, js=web.js, **web.ahead.page(token),
            ahead_changed=changed,
            max_files=settings.max_files, max_file_bytes=settings.max_file_bytes,
            max_text_chars=settings.max_text_chars,
            kept=kept, refusal=refusal.message, refusal_status=refusal.status,
            text_lost="testimony" not in kept,
        )

    # GET/POST /return, /api/mailbox and /mailbox/follow-up: app/web/mailbox_routes.py
    from .mailbox_routes import mailbox_router

    app.include_router(mailbox_router(web))

    @app.get("/tor", response_class=HTMLResponse)
    async def tor_guidance(request: Request) -> Response:
        return render(web, request.scope, "tor.html")

    @app.get("/leave", response_class=HTMLResponse)
    async def leave(request: Request) -> Response:
        response = render(web, request.scope, "leave.html")
        # ask the browser to drop anything it kept for this site (secure contexts: .onion
        # in Tor Browser, localhost); the page itself is blank and neutral
        response.headers["Clear-Site-Data"] = '"cache", "storage"'
        return response


async def _receipt_again(web: Web, request: Request, again: AlreadySent) -> Response:
    """The receipt of a JS-off form sent again (app/web/codename_ahead.py); 409 when nothing
    was stored under its token after all."""
    found = await receipt_again(web.ahead, web.store, again.nonce)
    if found is None:
        raise Refusal(409, MSG["used"]) from None
    return render(web, request.scope, "receipt.html", protection="server-sealed", **found)


async def _small_form(request: Request) -> dict[str, str]:
    """A urlencoded form of at most a few KiB, read without ``request.form()``."""
    ctype = request.headers.get("content-type", "")
    if parse_options_header(ctype)[0] != b"application/x-www-form-urlencoded":
        raise Refusal(415, MSG["content_type"])
    if cross_site(dict(request.headers), request.headers.get("host")):
        raise Refusal(403, MSG["cross_site"])
    body = bytearray()
    web: Web = request.app.state.web
    try:
        async for chunk in paced_body(request.stream(), web.pacing):
            body += chunk
            if len(body) > SMALL_FORM_BYTES:
                raise Refusal(413, MSG["field_long"])
    except BodyStalled:
        raise Refusal(408, MSG["stalled"]) from None
    try:
        pairs = urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True,
                                       strict_parsing=False, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        raise Refusal(400, MSG["bad_form"]) from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


# --------------------------------------------------------------------------- sealing glue
async def _seal_request(web: Web, request: Request,
                        desks: Callable[[], list[Any]], **sealer_options: Any) -> Any:
    """Stream the multipart body, piece by piece, into a Sealer run on worker threads.

    Nothing is reserved from ``Content-Length``: each received piece is charged to the budget
    (app/web/budget.py) before it is sealed, and a sealing thread is taken only for a piece
    that has arrived (why: a connection that sends headers and then nothing must hold no
    thread and no budget).  A body that stalls is cut off (app/web/pacing.py).
    ``sealer_options`` go to the Sealer (``follow_up=`` for a follow-up into a mailbox).
    A refusal after the form's own checks carries ``form``: the witness's text fields, from
    memory, so the route can answer with the form again (never written, never logged).
    """
    settings = web.settings
    boundary = _multipart_boundary(request)
    largest = (settings.max_files * settings.max_file_bytes
               + 4 * (settings.max_text_chars + 20_000) + 1024 * 1024)
    # more than any acceptable form: its text is still read (to show the form again with
    # it), its first file is refused before a byte of it is sealed
    oversize = _declared_length(request) > largest
    feeder = _Feeder(web, desks, boundary, dict(sealer_options, oversize=oversize))
    body = paced_body(_received(request, feeder), web.pacing)
    ticket = web.budget.open()
    complete = False
    try:
        async for chunk in body:
            try:
                await web.budget.take(ticket, len(chunk), settings.budget_wait_seconds)
            except Refusal:
                feeder.batch.append(chunk)  # never charged nor sealed: only its text is read
                await feeder.salvage(body)
                raise
            await feeder.add(chunk, ticket)
        complete = True
        return await feeder.finish(ticket)
    except BodyStalled:  # the client went quiet: no drain, nothing kept, 408
        await feeder.salvage(None)
        stalled = Refusal(408, MSG["stalled"])
        stalled.form = feeder.kept()
        await feeder.abort(stalled)
        raise stalled from None
    except BaseException as exc:
        kept = feeder.kept()
        await feeder.abort(exc)
        if not isinstance(exc, Refusal):
            raise
        if oversize and exc.keeps_form:  # whatever else went wrong, the size is the reason
            exc = Refusal(413, MSG["file_big"])
        if exc.keeps_form:
            exc.form = kept
        if not complete and not feeder.body_ended:
            await _drain(request)
        raise exc from None
    finally:
        web.budget.close(ticket)


def _multipart_boundary(request: Request) -> bytes:
    """The multipart boundary of a same-site form post; Refusal (plain page) otherwise."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise Refusal(415, MSG["content_type"])
    if len(boundary) > MAX_BOUNDARY_BYTES:  # the parser would raise: refuse it as bad input
        raise Refusal(400, MSG["bad_form"])
    if cross_site(dict(request.headers), request.headers.get("host")):
        raise Refusal(403, MSG["cross_site"])
    return bytes(boundary)


def _declared_length(request: Request) -> int:
    length_header = request.headers.get("content-length")
    try:
        declared = int(length_header) if length_header is not None else 0
    except ValueError:
        raise Refusal(400, MSG["bad_form"]) from None
    if declared < 0:
        raise Refusal(400, MSG["bad_form"])
    return declared


class _Feeder:
    """Batches received pieces and hands them to the Sealer on a sealing thread."""

    def __init__(self, web: Web, desks: Callable[[], list[Any]], boundary: bytes,
                 options: dict[str, Any]) -> None:
        self.web, self.desks, self.boundary, self.options = web, desks, boundary, options
        self.sealer: Sealer | None = None
        self.batch: list[bytes] = []  # received pieces, joined once when handed over
        self.batched = 0
        self.body_ended = False

    async def _sealer(self) -> Sealer:
        if self.sealer is None:
            web, settings = self.web, self.web.settings
            available = await anyio.to_thread.run_sync(self.desks)
            self.sealer = Sealer(
                boundary=self.boundary,
                store=web.store,
                desks=available,
                limits=Limits(settings.max_file_bytes, settings.max_files,
                              settings.max_text_chars, settings.min_free_bytes,
                              _disk_path(settings)),
                tokens=web.tokens,
                kdf_slots=web.kdf_slots,
                **self.options,
            )
        return self.sealer

    async def add(self, chunk: bytes, ticket: Ticket) -> None:
        self.batch.append(chunk)
        self.batched += len(chunk)
        if self.batched >= FEED_CHUNK:
            await self._flush(ticket)

    async def _flush(self, ticket: Ticket) -> None:
        sealer = await self._sealer()
        piece = self.batch[0] if len(self.batch) == 1 else b"".join(self.batch)
        self.batch, self.batched = [], 0
        await anyio.to_thread.run_sync(sealer.feed, piece, limiter=self.web.seal_limiter)
        self.web.budget.landed(ticket, len(piece))

    async def finish(self, ticket: Ticket) -> Any:
        if self.batch or self.sealer is None:
            await self._flush(ticket)
        assert self.sealer is not None
        return await anyio.to_thread.run_sync(self.sealer.finish, limiter=self.web.seal_limiter)

    async def salvage(self, rest: AsyncIterator[bytes] | None) -> None:
        """After a refusal from outside the Sealer (budget, stall): read the text fields still
        to come, at most ``SALVAGE_BYTES`` more, uncharged and never sealed, so the form can
        be shown again with the witness's words.  Files are skipped; nothing is stored."""
        sealer = await self._sealer()
        pending = b"".join(self.batch)
        self.batch, self.batched = [], 0
        more = await anyio.to_thread.run_sync(sealer.salvage, pending)
        if rest is None or not more:
            return
        limit = SALVAGE_BYTES + 4 * self.web.settings.max_text_chars
        read = 0
        with anyio.move_on_after(SALVAGE_SECONDS):
            try:
                async for chunk in rest:
                    read += len(chunk)
                    more = await anyio.to_thread.run_sync(sealer.salvage, chunk)
                    if not more or read > limit:
                        return
            except BodyStalled:
                return

    def kept(self) -> dict[str, str]:
        return self.sealer.kept_form() if self.sealer is not None else {}

    async def abort(self, exc: BaseException) -> None:
        """Roll the sealer back, even when the request is being cancelled."""
        self.batch, self.batched = [], 0
        if self.sealer is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.sealer.abort, exc)


async def _received(request: Request, feeder: _Feeder) -> AsyncIterator[bytes]:
    """The request body as it arrives, noting on ``feeder`` when it ended (why not
    ``request.stream()``: after a refusal, ``_drain`` must know whether anything is left,
    or it would wait for a disconnect that a waiting browser never sends)."""
    while not feeder.body_ended:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        if not message.get("more_body", False):
            feeder.body_ended = True
        if message.get("body"):
            yield message["body"]


async def _drain(request: Request) -> None:
    """Read (and drop) the rest of a refused upload, up to a bound, so the browser shows the
    error page instead of a reset connection."""
    drained = 0
    with anyio.move_on_after(30):
        while drained < DRAIN_LIMIT:
            message = await request.receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


def _disk_path(settings: Any) -> Path:
    blob = getattr(settings, "blob_path", None) or settings.data_dir
    path = Path(blob)
    return path if path.exists() else Path(settings.data_dir)


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 1 << 62


__all__ = ["UVICORN_OPTIONS", "create_app"]
