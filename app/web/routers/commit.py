"""``POST /api/submissions``: turn complete uploads into one submission, atomically.

The checks on each upload (an age file for exactly this desk) are in app/web/commit.py; this
route reads the request, runs them on a worker thread, and lets the store adopt the uploads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from python_multipart.multipart import parse_options_header

from app.crypto.mailbox import token_hash as hash_token
from app.protocol.followup import first_submission
from app.protocol.ids import HEX64, ID, is_a
from app.store import Desk, NotFound, Store, StoreError
from app.store.uploads import UploadArea

from ..codename_ahead import repeated_soon
from ..commit import CMSG, Invalid, check_age_file
from ..errors import (
    AlreadySent,
    BadForm,
    CrossSite,
    FieldTooLong,
    FormExpired,
    Refusal,
    UnknownDesk,
    WrongContentType,
    refusal_for,
)
from ..forms import cross_site
from ..jsonbody import BadJson, parse_json
from ..state import Web, WebDep
from ..uploads import refuse

MAX_JSON = 64 * 1024

router = APIRouter()


@dataclass(frozen=True)
class Committed:
    submission_id: str
    desk: Desk


@router.post("/api/submissions")
async def commit(request: Request, web: WebDep) -> Response:
    """Validate the named uploads and make them one visible submission; 201 {"id", ...}."""
    try:
        data = await _read_request(web, request)
        nonce = web.tokens.check(data["csrf"])
        if nonce is None:
            raise FormExpired()
        again = web.ahead.repeated(nonce, data)  # sent again after a lost answer: same receipt
        if again is not None:
            return JSONResponse(again, status_code=201)
        if web.tokens.is_spent(nonce):
            raise AlreadySent()
    except Refusal as exc:
        return refuse(web, request, exc.status, exc.message)
    roles = {"message": data["message_upload"]}
    roles.update({f["role"]: f["upload"] for f in data["files"]})
    try:
        result = await anyio.to_thread.run_sync(_commit_sync, web, data, roles)
    except Refusal as exc:
        again = await repeated_soon(web.ahead, nonce, data)  # a twin request stored it first
        if again is None:
            return refuse(web, request, exc.status, exc.message)
        return JSONResponse(again, status_code=201)
    if not web.tokens.spend(nonce):
        # a second commit with the same form raced this one; both hold distinct uploads,
        # and this one is stored: report success (the witness has one codename either way)
        pass
    desk = result.desk
    answer = {
        "id": result.submission_id,
        "desk": desk.name,
        "keys": [{"name": k.name, "fingerprint": k.fingerprint} for k in desk.recipients],
    }
    web.ahead.remember(nonce, data, answer)
    return JSONResponse(answer, status_code=201)


async def _read_request(web: Web, request: Request) -> dict[str, Any]:
    """The commit request's JSON, checked for shape; Refusal otherwise."""
    ctype = parse_options_header(request.headers.get("content-type", ""))[0]
    if ctype != b"application/json":
        raise WrongContentType()
    if cross_site(dict(request.headers), request.headers.get("host")):
        raise CrossSite()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON:
            raise FieldTooLong()
    data = _parse(bytes(body), web.settings.max_files)
    if data is None:
        raise BadForm()
    return data


def _parse(body: bytes, max_files: int) -> dict[str, Any] | None:
    """The commit request, checked for shape; None when malformed."""
    try:
        data = parse_json(body)
    except BadJson:
        return None
    if not isinstance(data, dict):
        return None
    strings = ("csrf", "desk", "message_upload", "token_hash", "reply_recipient")
    if any(not isinstance(data.get(k), str) for k in strings):
        return None
    files = data.get("files", [])
    if not isinstance(files, list) or len(files) > max_files:
        return None
    uploads = [data["message_upload"]]
    for i, item in enumerate(files, start=1):
        if not isinstance(item, dict) or set(item) != {"role", "upload"}:
            return None
        if item["role"] != f"file-{i}" or not isinstance(item["upload"], str):
            return None
        uploads.append(item["upload"])
    if any(not is_a(ID, u) for u in uploads) or len(set(uploads)) != len(uploads):
        return None
    token = data.get("mailbox_token")
    if token is not None and not is_a(HEX64, token):
        return None
    if not is_a(HEX64, data["token_hash"]) and token is None:
        return None
    return data


def _commit_sync(web: Web, data: dict[str, Any], roles: dict[str, str]) -> Committed:
    """On a worker thread: check every upload, then adopt them as one submission."""
    store = web.store
    desk = _desk(store, data["desk"])
    token_hash, parent_id = _mailbox(store, data)
    if token_hash is None:
        raise Refusal(422, CMSG["mailbox"])
    hashes = _checked_uploads(store.uploads, desk, roles)
    area = store.uploads
    try:
        try:
            submission_id = area.adopt(desk, token_hash, data["reply_recipient"], parent_id,
                                       hashes)
        except NotFound:  # the first submission was deleted meanwhile: start the mailbox anew
            submission_id = area.adopt(desk, token_hash, data["reply_recipient"], None, hashes)
    except StoreError as exc:  # used, bad key or hash, disk full, ...: one table answers
        raise refusal_for(exc) from None
    return Committed(submission_id, desk)


def _desk(store: Store, name: str) -> Desk:
    """The named desk, when it can receive; UnknownDesk otherwise."""
    try:
        desk = store.get_desk(name)
    except NotFound:
        raise UnknownDesk() from None
    if not desk.recipients:
        raise UnknownDesk()
    return desk


def _checked_uploads(area: UploadArea, desk: Desk,
                     roles: dict[str, str]) -> dict[str, tuple[str, str]]:
    """role -> (upload id, SHA-256) once every named upload passed the checks; Refusal
    otherwise (and an upload that is not for this desk removes them all)."""
    now = dt.datetime.now(dt.UTC)
    hashes: dict[str, tuple[str, str]] = {}
    for role, upload_id in roles.items():
        try:
            info = area.info(upload_id)
        except NotFound:
            raise Refusal(422, CMSG["incomplete"]) from None
        if info.expires <= now:
            raise Refusal(410, CMSG["incomplete"])
        if info.desk_id != desk.id or info.role != role:
            _remove(area, roles)
            raise Refusal(422, CMSG["wrong_desk"])
        if not info.complete:
            raise Refusal(422, CMSG["incomplete"])
        try:
            with area.open(upload_id) as src:
                sha = check_age_file(src, info.length, desk)
        except Invalid as exc:
            _remove(area, roles)
            raise Refusal(422, CMSG[exc.key]) from None
        hashes[role] = (upload_id, sha)
    return hashes


def _mailbox(store: Store, data: dict[str, Any]) -> tuple[str | None, str | None]:
    """(token hash, parent id) of the commit; (None, None) if token and hash disagree.

    No answer may depend on whether the mailbox was used before (a person made to hand over
    a codename must be able to say it was never used): a first submission whose token hash
    names a used mailbox is stored like any other, and a follow-up (``mailbox_token``) into a
    mailbox nobody used starts it, with whatever reply recipient it brings, exactly as the
    JavaScript-off paths do. Only a follow-up proves the token, so only it is linked.
    """
    token_hash: str = data["token_hash"]
    if data.get("mailbox_token") is None:
        return token_hash, None
    computed = hash_token(bytes.fromhex(data["mailbox_token"]))
    if token_hash and token_hash != computed:
        return None, None
    first = first_submission(store.list_submissions(token_hash=computed))
    return computed, (first.id if first is not None else None)


def _remove(area: UploadArea, roles: dict[str, str]) -> None:
    """Drop every upload a refused commit named: nothing of it is kept."""
    for upload_id in roles.values():
        try:
            area.delete(upload_id)
        except NotFound:
            pass
