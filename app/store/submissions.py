"""Submissions: a witness's age files (ciphertext only), their mailbox, their tombstones.

A submission becomes visible in one unit of work (app/store/unit.py): its blobs are written
first (``PendingSubmission``) or were uploaded before (``app/store/uploads.py``), and
``insert_rows`` adds the rows that reference them in the commit transaction.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, selectinload

from app.crypto import AgeError, parse_recipient
from app.protocol.ids import HEX64, ID, ROLE, is_a
from app.protocol.utcday import today

from .blobs import BlobWriter
from .desks import Desk
from .errors import BadReplyRecipient, BadTokenHash, Invalid, NotFound, StoreError
from .models import DeskRow, SubmissionFileRow, SubmissionRow, TombstoneRow
from .unit import UnitOfWork


def new_id() -> str:
    """A random submission/reply id (128 bits); it encodes nothing."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class FileInfo:
    role: str
    size: int
    sha256: str


@dataclass(frozen=True)
class SubmissionInfo:
    id: str
    desk: str
    day: dt.date
    parent_id: str | None
    files: list[FileInfo]
    token_hash: str = ""
    reply_recipient: str = ""


@dataclass(frozen=True)
class NewSubmission:
    """What a submission's rows say besides its files (checked by ``check_new``)."""

    id: str
    desk: Desk
    token_hash: str
    reply_recipient: str
    parent_id: str | None


def check_token_hash(token_hash: str) -> str:
    if not is_a(HEX64, token_hash):
        raise BadTokenHash("the mailbox token hash must be 64 lowercase hex characters")
    return token_hash


def check_new(
    engine: Engine, desk: Desk, token_hash: str, reply_recipient: str, parent_id: str | None
) -> NewSubmission:
    """A new submission to ``desk``, or the typed error that says why it cannot be."""
    if not desk.recipients:
        raise Invalid(f"desk {desk.name!r} has no editor keys yet")
    check_token_hash(token_hash)
    try:
        reply = parse_recipient(reply_recipient)
    except AgeError as exc:
        raise BadReplyRecipient(f"reply recipient: {exc}") from None
    if reply.type != desk.kind:
        raise BadReplyRecipient(
            f"the reply recipient must be {desk.kind}, like the keys of desk {desk.name!r}"
        )
    if parent_id is not None:
        with engine.connect() as conn:
            parent = conn.execute(
                select(SubmissionRow.token_hash).where(SubmissionRow.id == parent_id)
            ).first()
        if parent is None or not secrets.compare_digest(parent[0], token_hash):
            raise NotFound("no such earlier submission in this mailbox")
    return NewSubmission(new_id(), desk, token_hash, str(reply), parent_id)


def insert_rows(conn: Connection, new: NewSubmission, files: dict[str, FileInfo],
                refs: dict[str, str]) -> str:
    """Inside the commit transaction: the submission row and one row per file."""
    conn.execute(
        insert(SubmissionRow).values(
            id=new.id,
            desk_id=new.desk.id,
            day=today(),
            token_hash=new.token_hash,
            reply_recipient=new.reply_recipient,
            parent_id=new.parent_id,
        )
    )
    conn.execute(
        insert(SubmissionFileRow),
        [
            {"submission_id": new.id, "role": role, "blob_ref": refs[role],
             "size": info.size, "sha256": info.sha256}
            for role, info in sorted(files.items())
        ],
    )
    return new.id


class PendingSubmission:
    """A submission being written. Nothing of it is visible until ``commit()`` returns.

    Use as a context manager: leaving the block without ``commit()`` discards every blob.
    """

    def __init__(self, uow: UnitOfWork, new: NewSubmission) -> None:
        self._uow = uow
        self._new = new
        self.desk = new.desk
        self.token_hash = new.token_hash
        self.reply_recipient = new.reply_recipient
        self.parent_id = new.parent_id
        self.id = new.id
        self._writers: dict[str, BlobWriter] = {}

    def __enter__(self) -> PendingSubmission:
        return self

    def __exit__(self, *_: object) -> None:
        if not self._uow.finished:
            self.abort()

    def open_blob(self, role: str) -> BlobWriter:
        """A writable file for one age file of this submission (staging name, random)."""
        if self._uow.finished:
            raise StoreError("this submission is already finished")
        if not is_a(ROLE, role):
            raise Invalid(f"unknown file role {role!r}: use 'message' or 'file-N'")
        if role in self._writers:
            raise Invalid(f"the submission already has a {role!r}")
        writer = self._writers[role] = self._uow.stage()
        return writer

    @property
    def pending_bytes(self) -> int:
        return sum(w.size for w in self._writers.values())

    def commit(self) -> str:
        """Make the submission visible, with all its files, or raise and keep nothing."""
        if self._uow.finished:
            raise StoreError("this submission is already finished")
        if "message" not in self._writers:
            self.abort()
            raise Invalid("a submission needs its message")

        def rows(conn: Connection) -> str:
            files = {r: FileInfo(r, w.size, w.sha256) for r, w in self._writers.items()}
            refs = {r: w.ref for r, w in self._writers.items()}
            return insert_rows(conn, self._new, files, refs)

        self._uow.commit(rows)
        return self.id

    def abort(self) -> None:
        """Discard everything written so far."""
        self._uow.abort()


def _info(row: SubmissionRow, desk_name: str) -> SubmissionInfo:
    return SubmissionInfo(
        id=row.id,
        desk=desk_name,
        day=row.day,
        parent_id=row.parent_id,
        files=[FileInfo(f.role, f.size, f.sha256) for f in row.files],
        token_hash=row.token_hash,
        reply_recipient=row.reply_recipient,
    )


def submission(engine: Engine, submission_id: str) -> SubmissionInfo:
    if not is_a(ID, submission_id):
        raise NotFound("no such submission")
    with Session(engine) as s:
        row = s.scalars(
            select(SubmissionRow)
            .options(selectinload(SubmissionRow.files))
            .where(SubmissionRow.id == submission_id)
        ).first()
        if row is None:
            raise NotFound("no such submission")
        desk = s.get(DeskRow, row.desk_id)
        assert desk is not None
        return _info(row, desk.name)


def list_submissions(
    engine: Engine, desk_name: str | None = None, token_hash: str | None = None
) -> list[SubmissionInfo]:
    """Submissions (optionally of one desk or one mailbox), oldest day first."""
    with Session(engine) as s:
        query = (
            select(SubmissionRow, DeskRow.name)
            .join(DeskRow, DeskRow.id == SubmissionRow.desk_id)
            .options(selectinload(SubmissionRow.files))
            .order_by(SubmissionRow.day, SubmissionRow.id)
        )
        if desk_name is not None:
            query = query.where(DeskRow.name == desk_name)
        if token_hash is not None:
            query = query.where(SubmissionRow.token_hash == token_hash)
        return [_info(row, name) for row, name in s.execute(query)]


def mailbox_exists(engine: Engine, token_hash: str) -> bool:
    """Whether any submission belongs to this mailbox (a returning witness)."""
    with engine.connect() as conn:
        query = select(SubmissionRow.id).where(SubmissionRow.token_hash == token_hash).limit(1)
        return conn.execute(query).first() is not None


def blob_ref(engine: Engine, submission_id: str, role: str) -> str:
    with engine.connect() as conn:
        row = conn.execute(
            select(SubmissionFileRow.blob_ref).where(
                SubmissionFileRow.submission_id == submission_id,
                SubmissionFileRow.role == role,
            )
        ).first()
    if row is None:
        raise NotFound("no such file")
    return str(row[0])


def delete_rows(conn: Connection, ids: Iterable[str]) -> list[str]:
    """Inside a transaction: delete submissions, leave tombstones (id + day); returns the
    blobs to delete once it committed (SQLite runs with ``secure_delete``)."""
    ids = list(ids)
    if not ids:
        return []
    refs = [
        r for (r,) in conn.execute(
            select(SubmissionFileRow.blob_ref).where(SubmissionFileRow.submission_id.in_(ids))
        )
    ]
    conn.execute(
        update(SubmissionRow).where(SubmissionRow.parent_id.in_(ids)).values(parent_id=None)
    )
    conn.execute(delete(SubmissionFileRow).where(SubmissionFileRow.submission_id.in_(ids)))
    conn.execute(delete(SubmissionRow).where(SubmissionRow.id.in_(ids)))
    conn.execute(insert(TombstoneRow), [{"submission_id": sid, "day": today()} for sid in ids])
    return refs


def tombstones(engine: Engine) -> list[tuple[str, dt.date]]:
    with engine.connect() as conn:
        rows = conn.execute(select(TombstoneRow.submission_id, TombstoneRow.day))
        return [(sid, day) for sid, day in rows]
