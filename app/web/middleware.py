"""The outer layers of the witness site: language prefixes, the last-line guard, and the
exception handlers that turn every error into the translated error page.

Order, outside in (``GuwahApp.build_middleware_stack``): security headers
(app/web/security.py), the guard, client stripping, the language, then Starlette's stack.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from .errors import MSG, Refusal
from .rendering import render_error
from .security import (
    Message,
    Receive,
    Scope,
    SecurityHeadersMiddleware,
    Send,
    StripClientMiddleware,
)
from .state import web_of

log = logging.getLogger("guwah.web")

Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


class GuwahApp(FastAPI):
    """FastAPI with Guwah's outer layers *outside* Starlette's ServerErrorMiddleware.

    Starlette answers an unhandled exception from its outermost middleware, so headers added
    by a normal ``add_middleware`` would be missing from the 500 page; wrapping the built
    stack puts them on every response, and the guard turns any escaped exception into the
    translated error page (with no traceback anywhere).
    """

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        return SecurityHeadersMiddleware(GuardMiddleware(
            StripClientMiddleware(LanguageMiddleware(inner, self)), self))


class LanguageMiddleware:
    """``/ug/submit`` → path ``/submit`` with language ``ug``; ``?lang=`` wins over the prefix."""

    def __init__(self, app: ASGIApp, owner: FastAPI) -> None:
        self.app, self.owner = app, owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            catalogs = web_of(self.owner).catalogs
            path: str = scope.get("path", "/")
            prefix = path.split("/", 2)[1] if path.count("/") >= 1 else ""
            chosen = None
            if prefix in catalogs:
                chosen = prefix
                rest = path[len(prefix) + 1:] or "/"
                scope["path"] = rest
                scope["raw_path"] = rest.encode("utf-8")
            query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
            asked = (query.get("lang") or [None])[0]
            scope["guwah.lang"] = catalogs.pick(asked, chosen).code
        await self.app(scope, receive, send)


class GuardMiddleware:
    """Last line: an exception that escaped everything becomes the translated 500 page."""

    def __init__(self, app: ASGIApp, owner: FastAPI) -> None:
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
                response = render_error(web_of(self.owner), scope, 500, MSG["server"])
                await response(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    message = {404: MSG["not_found"], 405: MSG["method"]}.get(status, MSG["bad_form"])
    if status >= 500:
        message = MSG["server"]
    return render_error(web_of(request.app), request.scope, status, message)


async def _validation_error(request: Request, exc: Exception) -> Response:
    return render_error(web_of(request.app), request.scope, 422, MSG["bad_form"])


async def _refusal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return render_error(web_of(request.app), request.scope, exc.status, exc.message)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return render_error(web_of(request.app), request.scope, 500, MSG["server"])


EXCEPTION_HANDLERS: dict[int | type[Exception], Handler] = {
    StarletteHTTPException: _http_error,
    RequestValidationError: _validation_error,
    Refusal: _refusal,
    Exception: _unexpected,
}
