"""Editors' replies: age files for a witness's mailbox, stored by ``guwah import``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine

from app.protocol.utcday import today

from .blobs import BlobWriter
from .desks import Desk
from .models import ReplyRow, SubmissionRow
from .submissions import new_id


@dataclass(frozen=True)
class ReplyInfo:
    id: str
    day: dt.date
    size: int
    sha256: str


def insert_row(conn: Connection, token_hash: str, desk_id: int, writer: BlobWriter) -> str:
    """Inside the commit transaction: the row that makes a staged reply visible."""
    reply_id = new_id()
    conn.execute(
        insert(ReplyRow).values(
            id=reply_id,
            token_hash=token_hash,
            desk_id=desk_id,
            day=today(),
            blob_ref=writer.ref,
            size=writer.size,
            sha256=writer.sha256,
        )
    )
    return reply_id


def _infos(conn: Connection, where: object) -> list[ReplyInfo]:
    rows = conn.execute(
        select(ReplyRow.id, ReplyRow.day, ReplyRow.size, ReplyRow.sha256)
        .where(where)  # type: ignore[arg-type]
        .order_by(ReplyRow.day, ReplyRow.id)
    )
    return [ReplyInfo(*r) for r in rows]


def mailbox_replies(engine: Engine, token_hash: str) -> list[ReplyInfo]:
    with engine.connect() as conn:
        return _infos(conn, ReplyRow.token_hash == token_hash)


def desk_replies(engine: Engine, desk: Desk) -> list[ReplyInfo]:
    """Every reply of a desk, oldest first: those ``guwah import`` tagged with the desk,
    and older untagged ones whose mailbox belongs to one of the desk's submissions."""
    tokens = select(SubmissionRow.token_hash).where(SubmissionRow.desk_id == desk.id)
    with engine.connect() as conn:
        return _infos(
            conn,
            (ReplyRow.desk_id == desk.id)
            | (ReplyRow.desk_id.is_(None) & ReplyRow.token_hash.in_(tokens)),
        )


def blob_ref(engine: Engine, reply_id: str, token_hash: str | None = None) -> str | None:
    """The reply's blob; with ``token_hash`` only for the mailbox it belongs to."""
    query = select(ReplyRow.blob_ref).where(ReplyRow.id == reply_id)
    if token_hash is not None:
        query = query.where(ReplyRow.token_hash == token_hash)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else str(row[0])
