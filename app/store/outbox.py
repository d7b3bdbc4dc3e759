"""An editor's outbox applied as one unit of work: replies stored, finished submissions
deleted, the bundle id recorded so that it never applies twice (``guwah import``).

The caller (app/server_cli/importing.py) verifies the signed bundle and streams each reply
into ``reply_writer``; ``commit`` then writes every row in one transaction. Leaving the
``with`` block without ``commit`` discards every staged reply: nothing is half-imported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from app.protocol.utcday import today

from . import replies, submissions
from .blobs import BlobStore, BlobWriter
from .desks import Desk
from .errors import AlreadyUsed, Invalid, NotFound
from .models import OutboxBundleRow, ReplyRow, SubmissionRow, TombstoneRow
from .unit import UnitOfWork


@dataclass
class OutboxOutcome:
    replies: int = 0
    deleted: int = 0
    notes: list[str] = field(default_factory=list)


def _replayed(bundle_id: str, how: str) -> AlreadyUsed:
    return AlreadyUsed(f"outbox bundle {bundle_id} {how}: replay refused")


class OutboxImport:
    """One outbox bundle of ``desk`` naming ``submission_ids`` (replies and "done")."""

    def __init__(self, engine: Engine, blobs: BlobStore, desk: Desk, bundle_id: str,
                 submission_ids: Iterable[str]) -> None:
        self.desk = desk
        self.bundle_id = bundle_id
        self._engine = engine
        self._uow = UnitOfWork(engine, blobs, ReplyRow.blob_ref, "the outbox bundle")
        self._staged: list[tuple[BlobWriter, str]] = []
        self._mailboxes = self._check(set(submission_ids))

    def __enter__(self) -> OutboxImport:
        return self

    def __exit__(self, *_: object) -> None:
        self._uow.__exit__()

    def _check(self, named: set[str]) -> dict[str, str]:
        """Refuse a replay and foreign or unknown submissions; returns {live id: mailbox}."""
        with self._engine.connect() as conn:
            if conn.execute(select(OutboxBundleRow.bundle_id).where(
                    OutboxBundleRow.bundle_id == self.bundle_id)).first():
                raise _replayed(self.bundle_id, "was imported before")
            rows = {sid: (desk_id, token) for sid, desk_id, token in conn.execute(
                select(SubmissionRow.id, SubmissionRow.desk_id, SubmissionRow.token_hash)
                .where(SubmissionRow.id.in_(named)))}
            gone = {sid for (sid,) in conn.execute(select(TombstoneRow.submission_id).where(
                TombstoneRow.submission_id.in_(named)))}
        for sid in sorted(named):
            if sid in rows and rows[sid][0] != self.desk.id:
                raise Invalid(f"submission {sid} is not on desk {self.desk.name}: refused")
            if sid not in rows and sid not in gone:
                raise NotFound(f"the bundle names an unknown submission {sid}: refused")
        return {sid: token for sid, (_desk, token) in rows.items()}

    def reply_writer(self, submission_id: str) -> BlobWriter:
        """A staged blob for one reply's age file (streamed while the bundle is verified)."""
        writer = self._uow.stage()
        self._staged.append((writer, submission_id))
        return writer

    def commit(self, reply_ids: Iterable[str], done: Iterable[str]) -> OutboxOutcome:
        """Apply it all in one transaction; ``reply_ids`` name the staged replies in order."""
        outcome = OutboxOutcome()
        keep: list[tuple[BlobWriter, str]] = []
        for (writer, sid), rid in zip(self._staged, reply_ids, strict=True):
            if sid in self._mailboxes:
                keep.append((writer, sid))
            else:
                self._uow.drop(writer)
                outcome.notes.append(
                    f"reply {rid} not delivered: submission {sid} was deleted earlier")
        doomed = [sid for sid in done if sid in self._mailboxes]
        outcome.notes += [f"submission {sid} was deleted already"
                          for sid in done if sid not in self._mailboxes]

        def rows(conn: Connection) -> list[str]:
            self._record(conn)
            for writer, sid in keep:
                replies.insert_row(conn, self._mailboxes[sid], self.desk.id, writer)
            return submissions.delete_rows(conn, doomed)

        doomed_refs = self._uow.commit(rows)
        self._uow.blobs.delete(doomed_refs or [])
        outcome.replies, outcome.deleted = len(keep), len(doomed)
        return outcome

    def _record(self, conn: Connection) -> None:
        """The bundle id first: a second import of this same bundle racing on another node
        blocks here and then fails on the primary key, before changing anything."""
        try:
            conn.execute(insert(OutboxBundleRow).values(
                bundle_id=self.bundle_id, desk_id=self.desk.id, day=today()))
        except IntegrityError:
            raise _replayed(self.bundle_id, "was applied by another import at the same "
                            "time, nothing changed") from None
