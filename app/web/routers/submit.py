"""The submission form and its JavaScript-off post (sealed on the server, app/web/sealing.py).

With JavaScript on, the page encrypts in the browser and uses app/web/routers/uploads.py and
app/web/routers/commit.py instead.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.crypto.codename import numbers_for as codename_numbers

from ..codename_ahead import receipt_again
from ..errors import AlreadySent, NoDesks, Refusal
from ..rendering import render
from ..sealing_request import seal_request
from ..state import Web, WebDep

router = APIRouter()


@router.get("/submit", response_class=HTMLResponse)
async def submit_form(request: Request, web: WebDep) -> Response:
    return await _form_page(web, request)


@router.post("/submit", response_class=HTMLResponse)
async def submit(request: Request, web: WebDep) -> Response:
    try:
        receipt = await seal_request(web, request, ahead=web.ahead.words_for)
    except AlreadySent as again:  # the same form again: the same receipt, nothing stored
        return await _receipt_again(web, request, again)
    except Refusal as exc:
        if exc.form is None:
            raise
        return await _submit_again(web, request, exc)
    response = render(
        web, request.scope, "receipt.html",
        codename=receipt.codename, codename_numbers=codename_numbers(receipt.codename),
        desk=receipt.desk, files=receipt.files, protection="server-sealed",
    )
    del receipt  # the codename is now only in the page on its way to the witness
    return response


async def _receipt_again(web: Web, request: Request, again: AlreadySent) -> Response:
    """The receipt of a JS-off form sent again (app/web/codename_ahead.py); 409 when nothing
    was stored under its token after all."""
    found = None if again.nonce is None else await receipt_again(web.ahead, web.store,
                                                                  again.nonce)
    if found is None:
        raise AlreadySent() from None
    return render(web, request.scope, "receipt.html", protection="server-sealed", **found)


async def _submit_again(web: Web, request: Request, refusal: Refusal) -> Response:
    """The form again after a refusal: the reason on top, the witness's words refilled
    from memory (rendered into this answer, then dropped), the same token while it is still
    good (the codename shown before Send stays), else a fresh one."""
    kept, refusal.form = refusal.form or {}, None
    token, changed = web.ahead.token_again(kept)
    return await _form_page(
        web, request, refusal.status, token=token, ahead_changed=changed,
        kept=kept, refusal=refusal.message, refusal_status=refusal.status,
        text_lost="testimony" not in kept,
    )


async def _form_page(web: Web, request: Request, status: int = 200, *,
                     token: str | None = None, **extra: Any) -> Response:
    """The submission form with ``token`` (a fresh one when None) and the codename it stands
    for (app/web/codename_ahead.py); 503 while no desk can receive."""
    available = await anyio.to_thread.run_sync(web.desks)
    if not available:
        raise NoDesks()
    if token is None:
        token = web.tokens.issue()
    settings = web.settings
    return render(
        web, request.scope, "submit.html", status,
        desks=available, token=token, js=web.js, **web.ahead.page(token),
        max_files=settings.max_files, max_file_bytes=settings.max_file_bytes,
        max_text_chars=settings.max_text_chars, **extra,
    )
