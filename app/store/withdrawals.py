"""A witness deletes the editors' replies in their mailbox ("delete my replies").

Why the witness can: a reply kept on the server is readable by anyone who later gets the
codename (a coerced witness, a seized note). The mailbox's replies are deleted with their
ciphertext, and each leaves a tombstone in the same ``tombstones`` table editors' deletions
use (app/store/models.py): the reply's random id and the UTC day of deletion, nothing else.
Reply ids and submission ids are drawn the same way and never collide in practice; a
tombstone is a reply's when the id was a reply's (an export's ``reply_ids`` names it).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from app.protocol.utcday import today

from .blobs import BlobStore
from .models import ReplyRow, TombstoneRow


def withdraw_replies(engine: Engine, blobs: BlobStore, token_hash: str) -> list[str]:
    """Delete every reply of the mailbox ``token_hash``; return the ids now tombstoned.

    One transaction removes the rows and writes the tombstones; the ciphertext is deleted
    after it (a crash in between leaves an unreferenced blob that cleanup removes, never a
    reply without its tombstone). A mailbox without replies changes nothing.
    """
    with engine.begin() as conn:
        rows = conn.execute(
            select(ReplyRow.id, ReplyRow.blob_ref).where(ReplyRow.token_hash == token_hash)
        ).all()
        ids = [r[0] for r in rows]
        if ids:
            conn.execute(delete(ReplyRow).where(ReplyRow.id.in_(ids)))
            known = set(conn.scalars(
                select(TombstoneRow.submission_id).where(TombstoneRow.submission_id.in_(ids))))
            fresh = [{"submission_id": i, "day": today()} for i in ids if i not in known]
            if fresh:
                conn.execute(insert(TombstoneRow), fresh)
    blobs.delete([r[1] for r in rows])
    return sorted(ids)


def withdrawn_replies(engine: Engine, reply_ids: set[str]) -> list[tuple[str, dt.date]]:
    """The tombstones among ``reply_ids`` (say, a desk's exported replies): (id, day)."""
    if not reply_ids:
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            select(TombstoneRow.submission_id, TombstoneRow.day)
            .where(TombstoneRow.submission_id.in_(sorted(reply_ids)))
            .order_by(TombstoneRow.day, TombstoneRow.submission_id)
        )
        return [(r[0], r[1]) for r in rows]
