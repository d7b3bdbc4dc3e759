"""Routes of the returning witness: the codename form, the mailbox, its JSON API and the
JavaScript-off follow-up (what each does: app/web/mailbox.py)."""

from __future__ import annotations

import urllib.parse

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from python_multipart.multipart import parse_options_header

from app.crypto.mailbox import CodenameError, normalize_codename

from ..errors import (
    MSG,
    BadForm,
    CrossSite,
    FieldTooLong,
    FormExpired,
    Refusal,
    Stalled,
    WrongContentType,
)
from ..forms import cross_site
from ..jsonbody import read_json_object
from ..mailbox import (
    API_BODY_BYTES,
    CODENAME_REFUSALS,
    ShownReply,
    derive,
    mailbox_answer,
    mailbox_token,
    read_replies,
)
from ..pacing import BodyStalled, paced_body
from ..rendering import render, translate
from ..sealing_request import seal_request
from ..state import Web, WebDep

SMALL_FORM_BYTES = 8 * 1024

router = APIRouter()


@router.get("/return", response_class=HTMLResponse)
async def return_form(request: Request, web: WebDep) -> Response:
    return render(web, request.scope, "return.html", token=web.tokens.issue(),
                  js=web.return_js, max_files=web.settings.max_files,
                  max_file_bytes=web.settings.max_file_bytes)


@router.post("/return", response_class=HTMLResponse)
async def return_check(request: Request, web: WebDep) -> Response:
    form = await read_small_form(web, request)
    if web.tokens.check(form.get("csrf", "")) is None:
        raise FormExpired()
    typed = form.pop("codename", "")
    try:
        codename = normalize_codename(typed)
    except CodenameError as err:
        raise Refusal(422, MSG[CODENAME_REFUSALS[err.code]]) from None
    del typed
    replies, ticket = await anyio.to_thread.run_sync(_open_mailbox, web, codename)
    del codename
    return _mailbox_page(web, request, replies, ticket)


def _open_mailbox(web: Web, normalized: str) -> tuple[list[ShownReply], str]:
    """On a worker thread: derive the mailbox, read its replies, seal the follow-up ticket."""
    token, seed = derive(web.kdf_slots, normalized)
    try:
        return read_replies(web.store, token, seed), web.tickets.seal(normalized)
    finally:
        del token, seed


def _mailbox_page(web: Web, request: Request, replies: list[ShownReply] | None, ticket: str,
                  refusal: Refusal | None = None) -> Response:
    """The mailbox; after a refused follow-up (``refusal``), only its follow-up form,
    refilled from memory with what the witness wrote, the reason on top."""
    kept = (refusal.form or {}) if refusal is not None else {}
    return render(
        web, request.scope, "mailbox.html", refusal.status if refusal else 200,
        replies=replies, token=web.tokens.issue(), ticket=ticket,
        max_files=web.settings.max_files, max_file_bytes=web.settings.max_file_bytes,
        max_text_chars=web.settings.max_text_chars,
        kept=kept, refusal=refusal.message if refusal else None,
        refusal_status=refusal.status if refusal else None,
        text_lost="testimony" not in kept,
    )


@router.post("/api/mailbox")
async def api_mailbox(request: Request, web: WebDep) -> Response:
    try:
        token = await _api_token(request)
    except Refusal as exc:
        return JSONResponse({"error": translate(web, request.scope, exc.message)},
                            status_code=exc.status)
    answer = await anyio.to_thread.run_sync(mailbox_answer, web.store, token)
    del token
    return JSONResponse(answer)


async def _api_token(request: Request) -> bytes:
    """The mailbox token of a ``{"token": "<64 hex>"}`` body; Refusal otherwise."""
    return mailbox_token(await read_json_object(request, API_BODY_BYTES))


@router.post("/mailbox/follow-up", response_class=HTMLResponse)
async def follow_up(request: Request, web: WebDep) -> Response:
    try:
        receipt = await seal_request(web, request, follow_up=web.tickets.open)
    except Refusal as exc:
        if exc.form is None:
            raise
        page = _mailbox_page(web, request, None, exc.form.get("mailbox", ""), exc)
        exc.form = None
        return page
    files = receipt.files
    del receipt
    return render(web, request.scope, "followup_received.html", files=files)


async def read_small_form(web: Web, request: Request) -> dict[str, str]:
    """A urlencoded form of at most a few KiB, read without ``request.form()``."""
    ctype = request.headers.get("content-type", "")
    if parse_options_header(ctype)[0] != b"application/x-www-form-urlencoded":
        raise WrongContentType()
    if cross_site(dict(request.headers), request.headers.get("host")):
        raise CrossSite()
    body = bytearray()
    try:
        async for chunk in paced_body(request.stream(), web.pacing):
            body += chunk
            if len(body) > SMALL_FORM_BYTES:
                raise FieldTooLong()
    except BodyStalled:
        raise Stalled() from None
    try:
        pairs = urllib.parse.parse_qsl(body.decode("ascii"), keep_blank_values=True,
                                       strict_parsing=False, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        raise BadForm() from None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form
