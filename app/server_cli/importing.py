"""``guwah import``: apply an editor's signed outbox bundle (replies + deletions), atomically.

Accepted only when the manifest's ``editor_key`` is the Ed25519 key of an editor of the named
desk and its signature verifies; a ``bundle_id`` applied before is refused (table
``outbox_bundles``, migration 0002). Every submission the bundle names must belong to that
desk (or be deleted already).

One pass: reply ciphertexts are streamed into staging blobs while the reader checks every
hash; only when the whole bundle verified does one database transaction insert the replies,
delete the "done" submissions (rows, then their blobs; SQLite runs with ``secure_delete``),
write tombstones and record the bundle id. Any failure discards the staged blobs: nothing is
half-imported.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy import update as sa_update
from sqlalchemy.exc import IntegrityError

from app.bundles import OUTBOX_FORMAT, BundleError, open_bundle
from app.crypto import AgeError, read_header
from app.protocol.utcday import today
from app.settings import Settings
from app.store import Store, StoreError
from app.store.models import (
    OutboxBundleRow,
    ReplyRow,
    SubmissionFileRow,
    SubmissionRow,
    TombstoneRow,
)
from app.store.store import new_id


class OutboxReplayError(BundleError):
    """This outbox bundle was applied before (a folder import skips it, a file import fails)."""


@dataclass
class ImportOutboxResult:
    desk: str
    bundle_id: str
    replies: int = 0
    deleted: int = 0
    notes: list[str] = field(default_factory=list)


def _editor_key_check(store: Store) -> Any:
    def check(manifest: dict[str, Any]) -> bytes:
        desk_name = manifest.get("desk")
        try:
            raw = base64.b64decode(str(manifest.get("editor_key", "")), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not isinstance(desk_name, str) or len(raw) != 32:
            raise BundleError("the outbox manifest names no valid desk or editor key")
        try:
            desk = store.get_desk(desk_name)
        except StoreError:
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
    import io

    try:
        header = read_header(io.BytesIO(data_head))
    except AgeError as exc:
        raise BundleError(f"{what} is not an age file: {exc}") from None
    types = {s.type for s in header.stanzas}
    if kind and types != {kind}:
        raise BundleError(f"{what} is not encrypted to {kind} recipients only: refused")


def import_outbox(store: Store, settings: Settings, path: Path) -> ImportOutboxResult:
    """Verify and apply one outbox bundle; all of it or nothing."""
    if not path.is_file():
        raise BundleError(f"{path} is not a file")
    staged: list[Any] = []
    try:
        with open(path, "rb") as fh:
            bundle = open_bundle(fh, OUTBOX_FORMAT, _editor_key_check(store))
            m = bundle.manifest
            desk = store.get_desk(m["desk"])
            result = ImportOutboxResult(desk.name, m["bundle_id"])
            with store.engine.connect() as conn:
                if conn.execute(
                    select(OutboxBundleRow.bundle_id).where(
                        OutboxBundleRow.bundle_id == m["bundle_id"]
                    )
                ).first():
                    raise OutboxReplayError(
                        f"outbox bundle {m['bundle_id']} was imported before: replay refused"
                    )
                named = {r["submission_id"] for r in m["replies"]} | set(m["done"])
                rows = {
                    sid: (desk_id, token)
                    for sid, desk_id, token in conn.execute(
                        select(
                            SubmissionRow.id, SubmissionRow.desk_id, SubmissionRow.token_hash
                        ).where(SubmissionRow.id.in_(named))
                    )
                }
                gone = {
                    sid
                    for (sid,) in conn.execute(
                        select(TombstoneRow.submission_id).where(
                            TombstoneRow.submission_id.in_(named)
                        )
                    )
                }
            for sid in sorted(named):
                if sid in rows and rows[sid][0] != desk.id:
                    raise BundleError(f"submission {sid} is not on desk {desk.name}: refused")
                if sid not in rows and sid not in gone:
                    raise BundleError(f"the bundle names an unknown submission {sid}: refused")
            by_path = {r["path"]: r for r in m["replies"]}
            for entry, stream in bundle.members():
                reply = by_path[entry.path]
                writer = store.blobs.stage()
                staged.append((writer, reply))
                head = stream.read(64 * 1024)
                _check_reply_header(head, desk.kind, f"reply {reply['id']}")
                writer.write(head)
                while chunk := stream.read(1024 * 1024):
                    writer.write(chunk)
                writer.close()
        # The whole bundle verified: apply it in one transaction.
        keep = [(w, r) for w, r in staged if r["submission_id"] in rows]
        for _w, r in staged:
            if r["submission_id"] not in rows:
                result.notes.append(
                    f"reply {r['id']} not delivered: submission {r['submission_id']} was "
                    "deleted earlier"
                )
        refs = [w.ref for w, _ in keep]
        dropped = [w.ref for w, r in staged if r["submission_id"] not in rows]
        store.blobs.discard(dropped)
        store.blobs.before_commit(refs)
        doomed = [sid for sid in m["done"] if sid in rows]
        for sid in m["done"]:
            if sid not in rows:
                result.notes.append(f"submission {sid} was deleted already")
        doomed_refs: list[str] = []
        try:
            with store.engine.begin() as conn:
                # the bundle id first: a second import of this same bundle racing on another
                # node blocks here and then fails on the primary key, before changing anything
                conn.execute(
                    insert(OutboxBundleRow).values(
                        bundle_id=m["bundle_id"], desk_id=desk.id, day=today()
                    )
                )
                for w, r in keep:
                    conn.execute(
                        insert(ReplyRow).values(
                            id=new_id(),
                            token_hash=rows[r["submission_id"]][1],
                            desk_id=desk.id,
                            day=today(),
                            blob_ref=w.ref,
                            size=w.size,
                            sha256=w.sha256,
                        )
                    )
                store.blobs.in_commit(conn, refs)
                if doomed:
                    doomed_refs = [
                        ref
                        for (ref,) in conn.execute(
                            select(SubmissionFileRow.blob_ref).where(
                                SubmissionFileRow.submission_id.in_(doomed)
                            )
                        )
                    ]
                    conn.execute(
                        sa_update(SubmissionRow)
                        .where(SubmissionRow.parent_id.in_(doomed))
                        .values(parent_id=None)
                    )
                    conn.execute(
                        delete(SubmissionFileRow).where(SubmissionFileRow.submission_id.in_(doomed))
                    )
                    conn.execute(delete(SubmissionRow).where(SubmissionRow.id.in_(doomed)))
                    conn.execute(
                        insert(TombstoneRow),
                        [{"submission_id": sid, "day": today()} for sid in doomed],
                    )
        except IntegrityError:
            raise OutboxReplayError(
                f"outbox bundle {m['bundle_id']} was applied by another import at the same "
                "time: replay refused, nothing changed"
            ) from None
        store.blobs.release(w for w, _ in staged)
        staged = []
        store.blobs.delete(doomed_refs)
        result.replies, result.deleted = len(keep), len(doomed)
        return result
    except BaseException:
        for writer, _r in staged:
            writer.abort()
        store.blobs.discard([w.ref for w, _ in staged])
        store.blobs.release(w for w, _ in staged)
        raise
