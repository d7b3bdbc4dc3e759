"""``guwah import``: apply an editor's signed outbox bundle (replies + deletions), atomically.

Accepted only when the manifest's ``editor_key`` is the Ed25519 key of an editor of the named
desk and its signature verifies; a ``bundle_id`` applied before is refused (table
``outbox_bundles``, migration 0002). Every submission the bundle names must belong to that
desk (or be deleted already).

One pass: reply ciphertexts are streamed into staging blobs while the reader checks every
hash; only when the whole bundle verified does the store's outbox unit of work
(``Store.begin_outbox``, app/store/outbox.py) insert the replies, delete the "done" submissions
(rows, then their blobs; SQLite runs with ``secure_delete``), write tombstones and record the
bundle id in one transaction. Any failure discards the staged blobs: nothing is half-imported.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.bundles import OUTBOX_FORMAT, BundleError, open_bundle
from app.bundles.bundle import OpenedBundle
from app.crypto import AgeError, read_header
from app.settings import Settings
from app.store import AlreadyUsed, Desk, NotFound, OutboxImport, Store

HEADER_PEEK = 64 * 1024  # an age header is far smaller: read it before storing anything
COPY_CHUNK = 1024 * 1024


class OutboxReplayError(BundleError):
    """This outbox bundle was applied before (a folder import skips it, a file import fails)."""


@dataclass
class ImportOutboxResult:
    desk: str
    bundle_id: str
    replies: int = 0
    deleted: int = 0
    notes: list[str] = field(default_factory=list)


def _raw_editor_key(manifest: dict[str, Any]) -> tuple[str, bytes]:
    desk_name = manifest.get("desk")
    try:
        raw = base64.b64decode(str(manifest.get("editor_key", "")), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not isinstance(desk_name, str) or len(raw) != 32:
        raise BundleError("the outbox manifest names no valid desk or editor key")
    return desk_name, raw


def _editor_key_check(store: Store) -> Callable[[dict[str, Any]], bytes]:
    """The signer must be an editor of the desk the manifest names."""

    def check(manifest: dict[str, Any]) -> bytes:
        desk_name, raw = _raw_editor_key(manifest)
        try:
            desk = store.get_desk(desk_name)
        except NotFound:
            raise BundleError(f"the bundle names an unknown desk {desk_name!r}") from None
        for key in desk.recipients:
            try:
                known = base64.b64decode(key.ed25519_public, validate=True)
            except (binascii.Error, ValueError):
                continue
            if known == raw:
                return raw
        raise BundleError(
            f"the bundle is signed by a key that is not an editor of desk {desk_name!r}: refused"
        )

    return check


def _check_reply_header(data_head: bytes, kind: str | None, what: str) -> None:
    """A reply must be an age file to recipients of the desk's kind (we cannot read it)."""
    try:
        header = read_header(io.BytesIO(data_head))
    except AgeError as exc:
        raise BundleError(f"{what} is not an age file: {exc}") from None
    types = {s.type for s in header.stanzas}
    if kind and types != {kind}:
        raise BundleError(f"{what} is not encrypted to {kind} recipients only: refused")


def _begin(store: Store, desk: Desk, manifest: dict[str, Any]) -> OutboxImport:
    named = {r["submission_id"] for r in manifest["replies"]} | set(manifest["done"])
    try:
        return store.begin_outbox(desk.name, manifest["bundle_id"], named)
    except AlreadyUsed as exc:
        raise OutboxReplayError(str(exc)) from None


def _stage_replies(bundle: OpenedBundle, desk: Desk, outbox: OutboxImport) -> list[str]:
    """Stream every reply into a staged blob while the reader checks its hash; returns the
    reply ids in the order they were staged."""
    by_path = {r["path"]: r for r in bundle.manifest["replies"]}
    staged: list[str] = []
    for entry, stream in bundle.members():
        reply = by_path[entry.path]
        writer = outbox.reply_writer(reply["submission_id"])
        staged.append(reply["id"])
        head = stream.read(HEADER_PEEK)
        _check_reply_header(head, desk.kind, f"reply {reply['id']}")
        writer.write(head)
        while chunk := stream.read(COPY_CHUNK):
            writer.write(chunk)
        writer.close()
    return staged


def import_outbox(store: Store, settings: Settings, path: Path) -> ImportOutboxResult:
    """Verify and apply one outbox bundle; all of it or nothing."""
    if not path.is_file():
        raise BundleError(f"{path} is not a file")
    with open(path, "rb") as fh:
        bundle = open_bundle(fh, OUTBOX_FORMAT, _editor_key_check(store))
        manifest = bundle.manifest
        desk = store.get_desk(manifest["desk"])
        with _begin(store, desk, manifest) as outbox:
            staged = _stage_replies(bundle, desk, outbox)
            try:
                outcome = outbox.commit(staged, manifest["done"])
            except AlreadyUsed as exc:
                raise OutboxReplayError(str(exc)) from None
    return ImportOutboxResult(
        desk.name, manifest["bundle_id"], outcome.replies, outcome.deleted, outcome.notes
    )
