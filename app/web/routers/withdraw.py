"""The witness deletes the editors' replies in their mailbox: ``POST /mailbox/delete-replies``
(JavaScript off) and ``POST /api/mailbox/delete-replies`` (JavaScript on).

The mailbox page (opened with the codename) offers it only when it shows replies, behind a
required confirmation. The form carries the same sealed mailbox ticket as the follow-up form
(app/web/mailbox.py), never the codename; the server opens it, derives the mailbox under the
bounded KDF, deletes the replies and leaves tombstones (Store.withdraw_replies). The answer
is the same whether or not anything was left to delete, so it tells nothing more.
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from app.crypto.mailbox import token_hash

from ..errors import N_, FormExpired, Refusal
from ..jsonbody import read_json_object
from ..mailbox import API_BODY_BYTES, derive, mailbox_token
from ..rendering import render, translate
from ..state import Web, WebDep
from .mailbox import read_small_form

CONFIRM_FIELD = "confirm_delete"
WMSG = {
    "confirm": N_(
        "Nothing was deleted. To delete the replies, tick the box that says you want them "
        "deleted for good, then press the button again."
    ),
}

router = APIRouter()


@router.post("/mailbox/delete-replies", response_class=HTMLResponse)
async def delete_replies(request: Request, web: WebDep) -> Response:
    form = await read_small_form(web, request)
    if web.tokens.check(form.get("csrf", "")) is None:
        raise FormExpired()
    codename = web.tickets.open(form.get("mailbox", ""))
    if form.get(CONFIRM_FIELD) != "yes":
        raise Refusal(422, WMSG["confirm"])
    await anyio.to_thread.run_sync(_withdraw, web, codename)
    del codename
    return render(web, request.scope, "replies_deleted.html")


def _withdraw(web: Web, normalized: str) -> None:
    """On a worker thread: derive the mailbox (bounded KDF) and delete its replies."""
    token, _seed = derive(web.kdf_slots, normalized)
    web.store.withdraw_replies(token_hash(token))


@router.post("/api/mailbox/delete-replies")
async def api_delete_replies(request: Request, web: WebDep) -> Response:
    """JavaScript on: ``{"token": "<64 hex>", "confirm": true}`` → ``{"deleted": true}``.
    The browser derived the token itself; the codename never reaches the server."""
    try:
        token = await _api_token(request)
    except Refusal as exc:
        return JSONResponse({"error": translate(web, request.scope, exc.message)},
                            status_code=exc.status)
    await anyio.to_thread.run_sync(web.store.withdraw_replies, token_hash(token))
    return JSONResponse({"deleted": True})


async def _api_token(request: Request) -> bytes:
    """The mailbox token of a confirmed ``{"token": "<64 hex>", "confirm": true}`` body;
    Refusal otherwise."""
    doc = await read_json_object(request, API_BODY_BYTES)
    token = mailbox_token(doc)
    if doc.get("confirm") is not True:
        raise Refusal(422, WMSG["confirm"])
    return token
