"""``POST /mailbox/delete-replies``: the witness deletes the editors' replies in their mailbox.

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
from fastapi.responses import HTMLResponse, Response

from app.crypto.mailbox import token_hash
from app.store.withdrawals import withdraw_replies

from .errors import MSG, N_, Refusal

CONFIRM_FIELD = "confirm_delete"
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
            withdraw_replies(web.store, token_hash(token))

        await anyio.to_thread.run_sync(work, codename)
        del codename
        return render(web, request.scope, "replies_deleted.html")

    return router
