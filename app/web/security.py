"""Security headers on every response, and the uvicorn options that keep addresses out of logs.

The headers are added by a pure-ASGI middleware (not ``BaseHTTPMiddleware``) so that they are
on *every* response the app sends: pages, static files, 404/405/413 answers, and the error
page rendered for an unexpected exception.  docs/threat-model.md lists them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("guwah.web")

# The site's policy (docs/threat-model.md), plus two same-origin additions that
# ``default-src 'none'`` would forbid: ``connect-src 'self'`` (the JavaScript-on path uploads
# ciphertext with fetch()) and ``font-src 'self'`` (the bundled Arabic-script font for
# Uyghur).  Neither allows any other origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer", "ambient-light-sensor", "autoplay", "battery", "bluetooth", "camera",
        "display-capture", "encrypted-media", "fullscreen", "geolocation", "gyroscope", "hid",
        "idle-detection", "magnetometer", "microphone", "midi", "payment", "picture-in-picture",
        "publickey-credentials-get", "screen-wake-lock", "serial", "usb", "xr-spatial-tracking",
        "clipboard-read", "clipboard-write", "web-share",
    )
)
SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": CSP,
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": PERMISSIONS_POLICY,
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}
_REPLACED = {k.encode("latin-1") for k in SECURITY_HEADERS} | {b"server", b"pragma", b"expires"}
_ENCODED = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]

# Keyword arguments for uvicorn: no access log (it would record client addresses), no
# proxy headers (X-Forwarded-For must never be believed or kept), no Server version, and
# no Date header (the server has no reason to tell the time to the second).
UVICORN_OPTIONS: dict[str, Any] = {
    "access_log": False,
    "proxy_headers": False,
    "server_header": False,
    "date_header": False,
    "log_level": "warning",
}


class SecurityHeadersMiddleware:
    """Set the security headers on every HTTP response start, replacing any the app set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() not in _REPLACED
                ]
                headers.extend(_ENCODED)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class StripClientMiddleware:
    """Forget the client's address and proxy headers before any other code sees the request.

    uvicorn puts the peer address in ``scope["client"]``; behind Tor it is 127.0.0.1 anyway,
    but nothing in Guwah needs it, so it is removed rather than trusted to stay unused.
    """

    _DROP = frozenset({b"x-forwarded-for", b"x-real-ip", b"forwarded", b"x-forwarded-host",
                       b"x-forwarded-proto", b"via", b"true-client-ip", b"cf-connecting-ip"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["client"] = None
            scope["headers"] = [
                (k, v) for k, v in scope.get("headers", []) if k.lower() not in self._DROP
            ]
        await self.app(scope, receive, send)
