"""No route tells whether a codename's mailbox was ever used, against a real `guwah serve`.

A person made to hand over a codename must be able to say it was never used. So every route
that takes a codename-derived value is sent, over a socket, a codename whose mailbox holds a
submission (and no reply: replies are what a used mailbox shows by nature) and a codename
nobody used; status, body (form tokens and tickets aside, and the new submission's random
id) and time (within a generous bound: the machine is loaded) must match. With one desk and
with two, where a mailbox's desk is a secret too. SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.crypto import encrypt, parse_recipient
from app.crypto.mailbox import derive_mailbox, new_codename
from app.settings import load_settings
from app.store import Store
from tests.conftest import run_guwah_server
from tests.test_uploads import create, form_token, patch

pytestmark = [pytest.mark.database, pytest.mark.slow]

TOKEN_VALUE = re.compile(r'value="v1\.[^"]+"')  # form tokens and mailbox tickets
ROUNDS = 3


def _normal(r: httpx.Response) -> tuple[int, Any]:
    if r.headers.get("content-type", "").startswith("application/json"):
        body = r.json()
        if isinstance(body, dict):
            body.pop("id", None)  # a new submission's random id
        return r.status_code, body
    return r.status_code, TOKEN_VALUE.sub('value="…"', r.text)


def _upload(client: httpx.Client, data: bytes, desk: str) -> str:
    r = create(client, len(data), desk=desk)
    assert r.status_code == 201, r.text
    assert patch(client, r.headers["Location"], 0, data).status_code == 204
    return r.headers["Location"].rsplit("/", 1)[1]


def _commit(client: httpx.Client, desk: Any, codename: str, **extra: Any) -> httpx.Response:
    mailbox = derive_mailbox(codename, "X25519")
    recipients = [parse_recipient(r) for r in desk["recipients"]]
    message = _upload(client, encrypt(b" " * 256, recipients), desk["name"])
    body = {"csrf": form_token(client), "desk": desk["name"], "message_upload": message,
            "files": [], "token_hash": mailbox.token_hash,
            "reply_recipient": str(mailbox.reply_recipient)}
    body.update({k: (v(mailbox) if callable(v) else v) for k, v in extra.items()})
    return client.post("/api/submissions", json=body)


def _return(client: httpx.Client, codename: str) -> httpx.Response:
    page = client.get("/return").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    return client.post("/return", data={"csrf": csrf, "codename": codename})


def _follow_up(client: httpx.Client, codename: str) -> httpx.Response:
    page = _return(client, codename).text
    form = page[page.index('id="follow-up-form"'):]
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    ticket = re.search(r'name="mailbox" value="([^"]+)"', form).group(1)
    return client.post("/mailbox/follow-up", files=[
        ("csrf", (None, csrf)), ("mailbox", (None, ticket)), ("lang", (None, "en")),
        ("website", (None, "")), ("testimony", (None, "a follow-up"))])


def _routes(desk: dict[str, Any]) -> dict[str, Callable[[httpx.Client, str], httpx.Response]]:
    other = str(derive_mailbox(new_codename(), "X25519").reply_recipient)
    return {  # first the routes that leave no new first submission in the used mailbox
        "POST /api/mailbox": lambda c, n: c.post(
            "/api/mailbox", json={"token": derive_mailbox(n, "X25519").token.hex()}),
        "POST /return": _return,
        "POST /mailbox/follow-up": _follow_up,
        "POST /api/submissions, token_hash": lambda c, n: _commit(c, desk, n),
        "POST /api/submissions, mailbox_token": lambda c, n: _commit(
            c, desk, n, token_hash="", mailbox_token=lambda m: m.token.hex()),
        "POST /api/submissions, mailbox_token, another reply key": lambda c, n: _commit(
            c, desk, n, token_hash="", mailbox_token=lambda m: m.token.hex(),
            reply_recipient=other),
        "POST /api/submissions, token_hash, unknown uploads": lambda c, n: _commit(
            c, desk, n, message_upload="no-such-upload"),
    }


def _used_codename(client: httpx.Client, desk_name: str) -> str:
    """A mailbox with one JavaScript-off submission (on ``desk_name``) and no reply."""
    page = client.get("/submit").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = client.post("/submit", files=[
        ("csrf", (None, csrf)), ("desk", (None, desk_name)), ("lang", (None, "en")),
        ("website", (None, "")), ("testimony", (None, "the first testimony")),
        ("kept_codename", (None, "yes"))])
    assert r.status_code == 200, r.text[:300]
    return re.search(r'id="codename"[^>]*>([^<]+)<', r.text).group(1).strip()


def _orphan(server: Any, desk: str) -> None:
    """Remove every editor key of ``desk`` (its submissions stay)."""
    with Store(load_settings(server.data_dir, database_url=server.database_url)) as store:
        for key in store.get_desk(desk).recipients:
            store.remove_recipient(desk, key.fingerprint)


@pytest.mark.parametrize("setup", ["one desk", "two desks", "two desks, the used one keyless"])
def test_used_and_unused_mailboxes_get_the_same_answers(
    tmp_path: Path, database_url: str, setup: str
) -> None:
    desks = 1 if setup == "one desk" else 2
    with run_guwah_server(tmp_path, database_url, desks=desks) as server, \
            httpx.Client(base_url=server.url, timeout=120) as client:
        names = ["default"] if desks == 1 else ["desk-1", "desk-2"]
        recipient = str(server.identity.recipient())  # type: ignore[attr-defined]
        first = {"name": names[0], "recipients": [recipient]}
        used = _used_codename(client, names[-1])  # with two desks: not the first one
        if setup.endswith("keyless"):
            _orphan(server, names[-1])
        for name, route in _routes(first).items():
            answers: dict[str, list[tuple[int, Any]]] = {"used": [], "unused": []}
            times: dict[str, list[float]] = {"used": [], "unused": []}
            for _ in range(ROUNDS):
                for kind in ("used", "unused"):
                    codename = used if kind == "used" else new_codename()
                    start = time.perf_counter()
                    r = route(client, codename)
                    times[kind].append(time.perf_counter() - start)
                    assert r.status_code < 500, (name, r.text[:300])
                    answers[kind].append(_normal(r))
            assert answers["used"] == answers["unused"], name
            a, b = statistics.median(times["used"]), statistics.median(times["unused"])
            assert abs(a - b) < max(0.5, 1.5 * min(a, b)), (name, times)
