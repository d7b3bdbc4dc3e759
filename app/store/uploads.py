"""Resumable uploads: ciphertext arriving in chunks, adopted by one atomic commit.

An upload is a row in ``uploads`` (random id, random blob name, desk, role, declared length,
day of the last write) plus its bytes:

* ``fs``: ``blob_dir/uploads/<ref>`` (0600), appended to by each PATCH and fsynced at the end
  of it, so an acknowledged offset survives a crash. The row is inserted *before* the file is
  created, so ``FsBlobStore.cleanup`` (which keeps every referenced name) never removes a live
  upload, and a file without a row is debris it removes.
* ``db``: a ``blob_staging`` row and ``blob_chunks`` (at most 1 MiB each), so several app
  nodes see the same upload.

The bytes are an appendable blob of the store's BlobStore (``open_append``); this module
handles only the rows. Adoption (the commit) is one unit of work (app/store/unit.py): the
blob store moves the bytes into place without copying (``adopt``), the upload rows are deleted
and the submission rows inserted in ONE transaction, so an upload is either still an upload
or part of a visible submission.

The offset protocol is what guarantees that no byte is stored twice: a write is accepted only
at the current end of the upload (``UploadConflict`` otherwise), one writer at a time.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from app.protocol.utcday import today
from app.settings import Settings

from . import desks, submissions
from .blobs import AppendBusy, BlobAppender, BlobStore, new_ref
from .desks import Desk
from .errors import AlreadyUsed, Invalid, NotFound
from .models import SubmissionFileRow, UploadRow
from .submissions import FileInfo, NewSubmission
from .unit import UnitOfWork


class UploadConflict(Exception):
    """The client's offset is not the upload's (tus: 409), or another PATCH is running."""


class UploadTooLong(Exception):
    """More bytes than the upload's declared length."""


@dataclass(frozen=True)
class UploadInfo:
    id: str
    desk_id: int
    role: str
    length: int
    offset: int
    day: dt.date
    expires: dt.datetime

    @property
    def complete(self) -> bool:
        return self.offset == self.length


def expires_at(day: dt.date, hours: int) -> dt.datetime:
    """Expiry of an upload last written on ``day``: the end of that day plus ``hours``."""
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    return midnight + dt.timedelta(hours=hours)


@dataclass(frozen=True)
class _Upload:
    """One ``uploads`` row."""

    id: str
    blob_ref: str
    desk_id: int
    role: str
    length: int
    day: dt.date


_active: set[str] = set()
_active_lock = threading.Lock()


class UploadAppender:
    """Appends to one upload at its current end; ``finish()`` makes the bytes durable.

    One appender per upload at a time: an in-process set, plus the blob store's own guard
    (``flock`` on the file for fs).
    """

    def __init__(self, area: UploadArea, row: _Upload) -> None:
        self._area = area
        self.id: str = row.id
        self.length: int = row.length
        self._day: dt.date = row.day
        self._blob: BlobAppender | None = None
        with _active_lock:
            if self.id in _active:
                raise UploadConflict("another request is writing to this upload")
            _active.add(self.id)
        try:
            self._blob = area.blobs.open_append(row.blob_ref)
        except FileNotFoundError:
            self.close()
            raise NotFound("no such upload") from None
        except AppendBusy as exc:
            self.close()
            raise UploadConflict(str(exc)) from None
        except BaseException:
            self.close()
            raise
        self.start = self.offset = self._blob.start

    @property
    def closed(self) -> bool:
        return self._blob is None

    @property
    def blob(self) -> BlobAppender:
        if self._blob is None:
            raise ValueError("the upload is closed")
        return self._blob

    def expires(self, hours: int) -> dt.datetime:
        return expires_at(self._day, hours)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        if self.offset + len(view) > self.length:
            raise UploadTooLong("more bytes than the upload's declared length")
        self.blob.write(view)
        self.offset += len(view)

    def finish(self) -> int:
        """Make everything written so far durable and return the offset."""
        self.blob.finish()
        if self._day != today():  # the day of the last write, updated at most once a day
            self._area.touch(self.id)
            self._day = today()
        return self.offset

    def rollback(self) -> None:
        """Forget what this appender wrote (the PATCH was refused as a whole)."""
        self.blob.rollback()
        self.offset = self.start

    def close(self) -> None:
        """Let the upload go; it is free for the next request even if closing the file failed."""
        blob, self._blob = self._blob, None
        try:
            if blob is not None:
                blob.close()
        finally:
            with _active_lock:
                _active.discard(self.id)

    def __enter__(self) -> UploadAppender:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class UploadArea:
    """Upload rows for one Store; their bytes are appendable blobs of its BlobStore."""

    def __init__(self, engine: Engine, blobs: BlobStore, settings: Settings) -> None:
        self.engine = engine
        self.blobs = blobs
        self.settings = settings

    def _row(self, upload_id: str) -> _Upload:
        if not isinstance(upload_id, str) or not upload_id or len(upload_id) > 32:
            raise NotFound("no such upload")
        with self.engine.connect() as conn:
            row = conn.execute(
                select(UploadRow.id, UploadRow.blob_ref, UploadRow.desk_id, UploadRow.role,
                       UploadRow.length, UploadRow.day).where(UploadRow.id == upload_id)
            ).first()
        if row is None:
            raise NotFound("no such upload")
        return _Upload(*row)

    def _offset(self, row: _Upload, durable: bool = False) -> int:
        """Bytes stored. ``durable``: never counts bytes a crash could still lose."""
        try:
            return self.blobs.appended_size(row.blob_ref, durable)
        except FileNotFoundError:
            raise NotFound("no such upload") from None

    def _info(self, row: _Upload, durable: bool = False) -> UploadInfo:
        hours = self.settings.upload_expiry_hours
        return UploadInfo(
            row.id, row.desk_id, row.role, row.length, self._offset(row, durable), row.day,
            expires_at(row.day, hours),
        )

    def touch(self, upload_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(UploadRow).where(UploadRow.id == upload_id).values(day=today()))

    def create(self, desk_id: int, role: str, length: int) -> UploadInfo:
        """A new, empty upload. The row first: cleanup keeps every blob a row names."""
        upload_id, ref = submissions.new_id(), new_ref()
        with self.engine.begin() as conn:
            conn.execute(
                insert(UploadRow).values(
                    id=upload_id, blob_ref=ref, desk_id=desk_id, role=role, length=length,
                    day=today(),
                )
            )
            self.blobs.reserve_appendable(conn, ref)
        try:
            self.blobs.create_appendable(ref)
        except BaseException:
            with self.engine.begin() as conn:
                conn.execute(delete(UploadRow).where(UploadRow.id == upload_id))
            raise
        return self.info(upload_id)

    def info(self, upload_id: str, durable: bool = False) -> UploadInfo:
        return self._info(self._row(upload_id), durable)

    def appender(self, upload_id: str) -> UploadAppender:
        return UploadAppender(self, self._row(upload_id))

    def open(self, upload_id: str) -> BinaryIO:
        """Read an upload's bytes (the commit checks the age header and hashes them)."""
        return self.blobs.open_appendable(self._row(upload_id).blob_ref)

    def delete(self, upload_id: str) -> None:
        row = self._row(upload_id)
        self._remove([(row.id, row.blob_ref)])

    def _remove(self, uploads: list[tuple[str, str]]) -> int:
        """Delete (id, blob name) uploads: the rows, then their bytes."""
        if not uploads:
            return 0
        with self.engine.begin() as conn:
            conn.execute(delete(UploadRow).where(UploadRow.id.in_([i for i, _r in uploads])))
        self.blobs.remove_appendable([ref for _i, ref in uploads])
        return len(uploads)

    def expire(self, now: dt.datetime | None = None) -> int:
        """Remove uploads past their expiry; returns how many."""
        now = now or dt.datetime.now(dt.UTC)
        hours = self.settings.upload_expiry_hours
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(UploadRow.id, UploadRow.blob_ref, UploadRow.day)))
        return self._remove(
            [(r.id, r.blob_ref) for r in rows if expires_at(r.day, hours) <= now]
        )

    def refs(self) -> set[str]:
        with self.engine.connect() as conn:
            return {r for (r,) in conn.execute(select(UploadRow.blob_ref))}

    def reserved_bytes(self) -> int:
        """Declared lengths of all uploads not yet committed (what they may still grow to)."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.coalesce(func.sum(UploadRow.length), 0))).scalar_one()
            )

    def live(self) -> tuple[set[str], int]:
        """Ids of the uploads that exist and the bytes they hold so far."""
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(UploadRow.id, UploadRow.blob_ref)))
        return {r.id for r in rows}, self.blobs.appendable_bytes(r.blob_ref for r in rows)

    def adopt(
        self,
        desk: Desk,
        token_hash: str,
        reply_recipient: str,
        parent_id: str | None,
        files: dict[str, tuple[str, str]],
    ) -> str:
        """Make a submission of complete uploads: ``files`` = {role: (upload_id, sha256)}.

        One unit of work: the blob store moves the bytes into place, one transaction deletes
        the upload rows and inserts the submission's rows. On failure everything stays an
        upload.
        """
        if "message" not in files:
            raise Invalid("a submission needs its message")
        desk = desks.get_desk(self.engine, desk.name)
        new = submissions.check_new(self.engine, desk, token_hash, reply_recipient, parent_id)
        rows = {role: self._complete_row(new, role, upload_id)
                for role, (upload_id, _sha) in files.items()}
        infos = {role: FileInfo(role, row.length, files[role][1]) for role, row in rows.items()}
        refs = {role: row.blob_ref for role, row in rows.items()}

        def write_rows(conn: Connection) -> str:
            ids = [r.id for r in rows.values()]
            gone = conn.execute(delete(UploadRow).where(UploadRow.id.in_(ids))).rowcount
            if gone != len(ids):
                raise AlreadyUsed("an upload was already used by another submission")
            return submissions.insert_rows(conn, new, infos, refs)

        with UnitOfWork(self.engine, self.blobs, SubmissionFileRow.blob_ref,
                        "the submission") as uow:
            for ref in refs.values():
                uow.adopt(ref)
            uow.commit(write_rows)
        return new.id

    def _complete_row(self, new: NewSubmission, role: str, upload_id: str
                      ) -> _Upload:
        row = self._row(upload_id)
        if row.desk_id != new.desk.id or row.role != role:
            raise Invalid("an upload belongs to another desk or role")
        if self._offset(row) != row.length:
            raise Invalid("an upload is not complete")
        return row
