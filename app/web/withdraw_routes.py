"""The witness deletes the editors' replies in their mailbox: ``POST /mailbox/delete-replies``
(JavaScript off) and ``POST /api/mailbox/delete-replies`` (JavaScript on).

The mailbox page (opened with the codename) offers it only when it shows replies, behind a
required confirmation. The form carries the same sealed mailbox ticket as the follow-up form
(app/web/mailbox_routes.py), never the codename; the server opens it, derives the mailbox
under the bounded KDF, deletes the replies and leaves tombstones (app/store/withdrawals.py).
The answer is the same whether or not anything was left to delete, so it tells nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from python_multipart.multipart import parse_options_header

from app.crypto.mailbox import token_hash
from app.protocol.ids import HEX64, is_a

from .errors import MSG, N_, Refusal
from .forms import cross_site
from .jsonbody import BadJson, parse_json

CONFIRM_FIELD = "confirm_delete"
API_BODY_BYTES = 1024
WMSG = {
    "confirm": N_(
        "Nothing was deleted. To delete the replies, tick the box that says you want them "
        "deleted for good, then press the button again."
    ),
}


def withdraw_router(web: Any, open_ticket: Callable[[str], str],
                    derive: Callable[[Any, str], tuple[bytes, bytes]],
                    small_form: Any, render: Any) -> APIRouter:
    """The route, bound to the app's shared state and the mailbox page's ticket opener."""
    router = APIRouter()

    @router.post("/mailbox/delete-replies", response_class=HTMLResponse)
    async def delete_replies(request: Request) -> Response:
        form = await small_form(request)
        if web.tokens.check(form.get("csrf", "")) is None:
            raise Refusal(403, MSG["csrf"])
        codename = open_ticket(form.get("mailbox", ""))
        if form.get(CONFIRM_FIELD) != "yes":
            raise Refusal(422, WMSG["confirm"])

        def work(normalized: str) -> None:
            token, _seed = derive(web, normalized)
            web.store.withdraw_replies(token_hash(token))

        await anyio.to_thread.run_sync(work, codename)
        del codename
        return render(web, request.scope, "replies_deleted.html")

    @router.post("/api/mailbox/delete-replies")
    async def api_delete_replies(request: Request) -> Response:
        """JavaScript on: ``{"token": "<64 hex>", "confirm": true}`` → ``{"deleted": true}``.
        The browser derived the token itself; the codename never reaches the server."""
        def refuse(status: int, message: str) -> Response:
            lang = web.catalogs.pick(request.scope.get("guwah.lang")).code
            return JSONResponse({"error": web.catalogs.get(lang).gettext(message)},
                                status_code=status)

        if cross_site(dict(request.headers), request.headers.get("host")):
            return refuse(403, MSG["cross_site"])
        if parse_options_header(request.headers.get("content-type", ""))[0] != b"application/json":
            return refuse(415, MSG["content_type"])
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > API_BODY_BYTES:
                return refuse(413, MSG["bad_form"])
        try:
            doc = parse_json(bytes(body), "ascii")
        except BadJson:
            return refuse(400, MSG["bad_form"])
        if not isinstance(doc, dict):
            return refuse(400, MSG["bad_form"])
        hexed = doc.get("token")
        if not isinstance(hexed, str) or not is_a(HEX64, hexed):
            return refuse(400, MSG["bad_form"])
        if doc.get("confirm") is not True:
            return refuse(422, WMSG["confirm"])
        await anyio.to_thread.run_sync(web.store.withdraw_replies,
                                       token_hash(bytes.fromhex(hexed)))
        return JSONResponse({"deleted": True})

    return router
