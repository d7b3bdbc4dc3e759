"""Resumable uploads: ciphertext arriving in chunks, adopted by one atomic commit.

An upload is a row in ``uploads`` (random id, random blob name, desk, role, declared length,
day of the last write) plus its bytes:

* ``fs``: ``blob_dir/uploads/<ref>`` (0600), appended to by each PATCH and fsynced at the end
  of it, so an acknowledged offset survives a crash. The row is inserted *before* the file is
  created, so ``FsBlobStore.cleanup`` (which keeps every referenced name) never removes a live
  upload, and a file without a row is debris it removes.
* ``db``: a ``blob_staging`` row and ``blob_chunks`` (at most 1 MiB each), so several app
  nodes see the same upload.

Adoption (the commit) moves the bytes into a submission without copying: fs renames
``uploads/<ref>`` to the blob's final name (the same name the rows then reference), db just
drops the staging row; the upload rows are deleted and the submission rows inserted in ONE
transaction, so an upload is either still an upload or part of a visible submission.

The offset protocol is what guarantees that no byte is stored twice: a write is accepted only
at the current end of the upload (``UploadConflict`` otherwise), one writer at a time.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from sqlalchemy import delete, func, insert, select, update

from app.protocol.utcday import stamp, today

from .blobs import CHUNK, FsBlobStore, _DbReader, fsync_dir, new_ref
from .disktimes import list_quietly, open_quietly
from .errors import AlreadyUsed, NotFound, NotStored, StoreError
from .models import BlobChunkRow, BlobStagingRow, SubmissionFileRow, SubmissionRow, UploadRow

if TYPE_CHECKING:
    from .store import Store

UPLOADS_DIR = "uploads"


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


_active: set[str] = set()
_active_lock = threading.Lock()


class UploadAppender:
    """Appends to one upload at its current end; ``finish()`` makes the bytes durable.

    One appender per upload at a time (in-process set, plus ``flock`` on the file for fs).
    """

    def __init__(self, area: UploadArea, row: Any) -> None:
        self._area = area
        self.id: str = row.id
        self.ref: str = row.blob_ref
        self.length: int = row.length
        self._day: dt.date = row.day
        self._fd: int | None = None
        self._buffer = bytearray()
        self._seq = 0
        with _active_lock:
            if self.id in _active:
                raise UploadConflict("another request is writing to this upload")
            _active.add(self.id)
        try:
            if area.fs:
                path = area.path(self.ref)
                try:
                    self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
                except FileNotFoundError:
                    raise NotFound("no such upload") from None
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise UploadConflict("another request is writing to this upload") from None
                self.start = os.fstat(self._fd).st_size
            else:
                self.start, self._seq = area.db_offset(self.ref)
            self._initial_seq = self._seq
        except BaseException:
            self.close()
            raise
        self.offset = self.start

    def expires(self, hours: int) -> dt.datetime:
        return expires_at(self._day, hours)

    @property
    def direct(self) -> bool:
        """True when ``write`` only appends to a file (no database round trip)."""
        return self._fd is not None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        if self.offset + len(view) > self.length:
            raise UploadTooLong("more bytes than the upload's declared length")
        if self._fd is not None:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self.offset += n
            return
        self._buffer += view
        self.offset += len(view)
        while len(self._buffer) >= CHUNK:
            self._flush_chunk(bytes(self._buffer[:CHUNK]))
            del self._buffer[:CHUNK]

    def _flush_chunk(self, chunk: bytes) -> None:
        with self._area.engine.begin() as conn:
            conn.execute(insert(BlobChunkRow).values(ref=self.ref, seq=self._seq, data=chunk))
        self._seq += 1

    def finish(self) -> int:
        """Make everything written so far durable (fsync / last chunk) and return the offset."""
        if self._fd is not None:
            stamp(self._fd)  # the day, not the second of this PATCH
            os.fsync(self._fd)
        elif self._buffer:
            self._flush_chunk(bytes(self._buffer))
            self._buffer.clear()
        if self._day != today():  # the day of the last write, updated at most once a day
            self._area.touch(self.id)
            self._day = today()
        return self.offset

    def rollback(self) -> None:
        """Forget what this appender wrote (the PATCH was refused as a whole)."""
        if self._fd is not None:
            os.ftruncate(self._fd, self.start)
            os.fsync(self._fd)
        else:
            self._buffer.clear()
            with self._area.engine.begin() as conn:
                # the chunks this appender added are those from the seq it started at
                conn.execute(
                    delete(BlobChunkRow).where(
                        BlobChunkRow.ref == self.ref, BlobChunkRow.seq >= self._initial_seq
                    )
                )
            self._seq = self._initial_seq
        self.offset = self.start

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also releases the flock
            self._fd = None
        with _active_lock:
            _active.discard(self.id)

    def __enter__(self) -> UploadAppender:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class UploadArea:
    """Upload rows + bytes for one Store (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine
        self.fs = isinstance(store.blobs, FsBlobStore)
        self.dir = Path(store.settings.blob_path) / UPLOADS_DIR

    # ------------------------------------------------------------------ helpers
    def path(self, ref: str) -> Path:
        return self.dir / ref

    def db_offset(self, ref: str) -> tuple[int, int]:
        """(bytes stored, next chunk seq) of a db upload."""
        with self.engine.connect() as conn:
            size, last = conn.execute(
                select(
                    func.coalesce(func.sum(func.length(BlobChunkRow.data)), 0),
                    func.max(BlobChunkRow.seq),
                ).where(BlobChunkRow.ref == ref)
            ).one()
        return int(size), (-1 if last is None else int(last)) + 1

    def _row(self, upload_id: str) -> Any:
        if not isinstance(upload_id, str) or not upload_id or len(upload_id) > 32:
            raise NotFound("no such upload")
        with self.engine.connect() as conn:
            row = conn.execute(select(UploadRow).where(UploadRow.id == upload_id)).first()
        if row is None:
            raise NotFound("no such upload")
        return row

    def _offset(self, row: Any, durable: bool = False) -> int:
        """Bytes stored. ``durable``: fsync first, so the answer never counts bytes a crash
        could still lose (a PATCH in progress writes before it syncs)."""
        if self.fs:
            try:
                if not durable:
                    return self.path(row.blob_ref).stat().st_size
                fd = os.open(self.path(row.blob_ref), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    size = os.fstat(fd).st_size
                    os.fsync(fd)
                    return size
                finally:
                    os.close(fd)
            except FileNotFoundError:
                raise NotFound("no such upload") from None
        return self.db_offset(row.blob_ref)[0]  # chunks count once their insert committed

    def _info(self, row: Any, durable: bool = False) -> UploadInfo:
        hours = self.store.settings.upload_expiry_hours
        return UploadInfo(
            row.id, row.desk_id, row.role, row.length, self._offset(row, durable), row.day,
            expires_at(row.day, hours),
        )

    def touch(self, upload_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(UploadRow).where(UploadRow.id == upload_id).values(day=today()))

    # ------------------------------------------------------------------ API
    def create(self, desk_id: int, role: str, length: int) -> UploadInfo:
        from .store import new_id

        upload_id, ref = new_id(), new_ref()
        with self.engine.begin() as conn:
            conn.execute(
                insert(UploadRow).values(
                    id=upload_id, blob_ref=ref, desk_id=desk_id, role=role, length=length,
                    day=today(),
                )
            )
            if not self.fs:
                conn.execute(insert(BlobStagingRow).values(ref=ref, day=today()))
        if self.fs:
            try:
                if not self.dir.is_dir():
                    self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                    fsync_dir(self.dir.parent)
                fd = os.open(self.path(ref), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                             0o600)
                try:
                    stamp(fd)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                stamp(self.dir)
                fsync_dir(self.dir)
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
        row = self._row(upload_id)
        if self.fs:
            return open_quietly(self.path(row.blob_ref))
        import io

        return io.BufferedReader(_DbReader(self.engine, row.blob_ref), buffer_size=CHUNK)  # type: ignore[return-value]

    def delete(self, upload_id: str) -> None:
        row = self._row(upload_id)
        self._remove([row])

    def _remove(self, rows: list[Any]) -> int:
        if not rows:
            return 0
        refs = [r.blob_ref for r in rows]
        with self.engine.begin() as conn:
            conn.execute(delete(UploadRow).where(UploadRow.id.in_([r.id for r in rows])))
            if not self.fs:
                conn.execute(delete(BlobChunkRow).where(BlobChunkRow.ref.in_(refs)))
                conn.execute(delete(BlobStagingRow).where(BlobStagingRow.ref.in_(refs)))
        if self.fs:
            for ref in refs:
                self.path(ref).unlink(missing_ok=True)
            if self.dir.is_dir():
                stamp(self.dir)
                fsync_dir(self.dir)
        return len(rows)

    def expire(self, now: dt.datetime | None = None) -> int:
        """Remove uploads past their expiry; returns how many."""
        now = now or dt.datetime.now(dt.UTC)
        hours = self.store.settings.upload_expiry_hours
        with self.engine.connect() as conn:
            rows = list(conn.execute(select(UploadRow.id, UploadRow.blob_ref, UploadRow.day)))
        return self._remove([r for r in rows if expires_at(r.day, hours) <= now])

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
        """Ids of the uploads that exist and the bytes they hold so far (either backend)."""
        with self.engine.connect() as conn:
            ids = {r for (r,) in conn.execute(select(UploadRow.id))}
            if self.fs:
                return ids, self.stored_bytes()
            total = conn.execute(
                select(func.coalesce(func.sum(func.length(BlobChunkRow.data)), 0)).where(
                    BlobChunkRow.ref.in_(select(UploadRow.blob_ref))
                )
            ).scalar_one()
        return ids, int(total)

    def stored_bytes(self) -> int:
        """Bytes on disk in fs uploads (db uploads are counted by the blob store's staging)."""
        if not self.fs or not self.dir.is_dir():
            return 0
        total = 0
        for entry in list_quietly(self.dir):
            if entry.is_file:
                with suppress(FileNotFoundError):  # adopted or removed meanwhile
                    total += os.stat(entry.path).st_size
        return total

    def adopt(
        self,
        desk: Any,
        token_hash: str,
        reply_recipient: str,
        parent_id: str | None,
        files: dict[str, tuple[str, str]],
    ) -> str:
        """Make a submission of complete uploads: ``files`` = {role: (upload_id, sha256)}.

        One transaction deletes the upload rows and inserts the submission's rows; fs blobs
        are renamed (no copy) into place and fsynced before it. Nothing is visible before the
        commit; on failure, everything stays an upload.
        """
        if "message" not in files:
            raise StoreError("a submission needs its message")
        pending = self.store.begin_submission(desk, token_hash, reply_recipient, parent_id)
        pending._done = True  # its own writer API is not used: the bytes are already here
        rows: dict[str, Any] = {}
        for role, (upload_id, _sha) in files.items():
            row = self._row(upload_id)
            if row.desk_id != pending.desk.id or row.role != role:
                raise StoreError("an upload belongs to another desk or role")
            if self._offset(row) != row.length:
                raise StoreError("an upload is not complete")
            rows[role] = row
        moved: list[Any] = []
        try:
            if self.fs:
                blobs = self.store.blobs
                assert isinstance(blobs, FsBlobStore)
                dirs: set[Path] = set()
                for row in rows.values():
                    final = blobs.path_of(row.blob_ref)
                    if not final.parent.is_dir():
                        final.parent.mkdir(mode=0o700, exist_ok=True)
                        fsync_dir(blobs.root)
                    os.rename(self.path(row.blob_ref), final)
                    moved.append(row)
                    dirs.add(final.parent)
                for path in sorted(dirs | {self.dir}):
                    stamp(path)  # a rename dates its directories to the second
                    fsync_dir(path)
            ids = [r.id for r in rows.values()]
            refs = [r.blob_ref for r in rows.values()]
            with self.engine.begin() as conn:
                gone = conn.execute(delete(UploadRow).where(UploadRow.id.in_(ids))).rowcount
                if gone != len(ids):
                    raise AlreadyUsed("an upload was already used by another submission")
                conn.execute(
                    insert(SubmissionRow).values(
                        id=pending.id, desk_id=pending.desk.id, day=today(),
                        token_hash=pending.token_hash, reply_recipient=pending.reply_recipient,
                        parent_id=parent_id,
                    )
                )
                conn.execute(
                    insert(SubmissionFileRow),
                    [
                        {"submission_id": pending.id, "role": role, "blob_ref": row.blob_ref,
                         "size": row.length, "sha256": files[role][1]}
                        for role, row in sorted(rows.items())
                    ],
                )
                if not self.fs:
                    conn.execute(delete(BlobStagingRow).where(BlobStagingRow.ref.in_(refs)))
        except BaseException as exc:
            first_ref = next(iter(rows.values())).blob_ref
            committed = self.store._row_exists(SubmissionFileRow.blob_ref, first_ref)
            if committed:
                return pending.id
            if self.fs and committed is False:
                blobs = self.store.blobs
                assert isinstance(blobs, FsBlobStore)
                for row in moved:  # back where they were: still uploads, nothing visible
                    try:
                        os.rename(blobs.path_of(row.blob_ref), self.path(row.blob_ref))
                    except OSError:
                        pass
            if isinstance(exc, StoreError):
                raise
            if isinstance(exc, Exception):
                raise NotStored("the submission could not be stored; nothing was kept") from exc
            raise
        return pending.id
