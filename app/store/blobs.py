"""Blob stores: where the ciphertext lives. Ciphertext only (age v1), under random names.

Two implementations behind one interface, chosen by the setting ``blob_backend``:

* ``fs`` (default, one machine): ``blob_dir/staging/<ref>.part`` while being written, then
  ``blob_dir/<ref[:2]>/<ref>``. Blobs of at most 256 KiB (``INLINE_MAX``) are kept in memory
  and committed into ``blob_chunks`` with the rows instead (one fsync instead of three).
* ``db`` (several app nodes on one PostgreSQL): chunks of 1 MiB in ``blob_chunks``, a
  ``blob_staging`` row while being written.

How a commit stays atomic (the database row is what makes a blob *visible*):

1. every blob is written under a staging name and fsynced when its writer is closed;
2. ``before_commit``: fs renames each staging file into place and fsyncs the directories
   (db: nothing to do — the chunks are already durable);
3. the database transaction inserts the rows that reference the blobs, and (db) deletes their
   staging rows, then commits.

A crash before 3 leaves blobs that no row references: nothing is visible, and
``cleanup`` removes the staging files and these orphans. A crash after 3 loses nothing: the
renames were fsynced before the commit. If the transaction fails, ``discard`` removes the blobs.

Debris has no age: a writer holds its blob's lock (app/store/reflocks.py) from ``stage()`` until
``release()``, after its commit finished or was undone, and ``cleanup`` removes only blobs whose
lock it can claim, so it never takes an upload in progress, in any process, and removes a dead
process's leftovers at once. Files carry their UTC day only (app.protocol.utcday).
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection, Engine

from app.protocol.utcday import stamp, today

from .disktimes import Entry, list_quietly, open_quietly
from .models import BlobChunkRow, BlobStagingRow
from .reflocks import RefLocks

CHUNK = 1024 * 1024
INLINE_MAX = 256 * 1024  # fs backend: blobs up to this size are stored in the database
STAGING_SUFFIX = ".part"


def new_ref() -> str:
    """A random blob name: 128 bits, says nothing about its content or its submission."""
    return secrets.token_hex(16)


class StagingLost(OSError):
    """A staged blob vanished before its commit (cleanup took it for a dead writer's)."""


@dataclass
class CleanupReport:
    """What a cleanup removed, as counts only (a name could tie a blob to a witness)."""

    staging: int = 0  # partial blobs of writers that died
    unreferenced: int = 0  # complete blobs no row references (crash between rename and commit)
    upload_files: int = 0  # resumable-upload files without their row
    expired_uploads: int = 0  # resumable uploads past their expiry (rows and bytes)
    in_progress: int = 0  # left alone: a live writer holds them
    restamped: int = 0  # files and directories set back to their UTC day

    @property
    def removed(self) -> int:
        return self.staging + self.unreferenced + self.upload_files + self.expired_uploads


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobWriter(io.RawIOBase):
    """A writable binary file for one blob. ``close()`` = flush + fsync, then ``size``/``sha256``.

    Hands itself to ``app.crypto.Encryptor`` as its sink: only ciphertext ever passes through.
    """

    def __init__(self, ref: str, locks: RefLocks | None = None) -> None:
        super().__init__()
        self.ref = ref
        self.size = 0
        self._hash = hashlib.sha256()
        self._sha256: str | None = None
        self._locks = locks
        if locks is not None:
            locks.hold(ref)  # before the first byte exists anywhere

    def release(self) -> None:
        """Let cleanup see this blob as done: call once its commit finished or was undone."""
        locks, self._locks = self._locks, None
        if locks is not None:
            locks.release(self.ref)

    def __del__(self) -> None:
        # a writer dropped without release() (a bug, or an exception path) must not keep its
        # blob from cleanup for the life of the process
        self.release()
        super().__del__()

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            raise ValueError("the blob is still open: close it before reading its SHA-256")
        return self._sha256

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to a closed blob")
        view = memoryview(data).cast("B")
        self._write(view)
        self._hash.update(view)
        self.size += len(view)
        return len(view)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._finish()
            self._sha256 = self._hash.hexdigest()
        finally:
            super().close()

    def abort(self) -> None:
        """Close without finishing (the blob will be discarded)."""
        if not self.closed:
            try:
                self._abort()
            finally:
                super().close()

    @abstractmethod
    def _write(self, data: memoryview) -> None: ...

    @abstractmethod
    def _finish(self) -> None: ...

    def _abort(self) -> None:
        return None


class BlobStore(ABC):
    """The interface the Store uses; see the module docstring for the commit protocol."""

    backend: str

    @abstractmethod
    def stage(self) -> BlobWriter:
        """Start a new blob under a staging name."""

    @abstractmethod
    def before_commit(self, refs: Iterable[str]) -> None:
        """Make closed, staged blobs durable under their final names (before the DB commit)."""

    def in_commit(self, conn: Connection, refs: Iterable[str]) -> None:
        """Inside the DB transaction that inserts the referencing rows."""
        return None

    @abstractmethod
    def discard(self, refs: Iterable[str]) -> None:
        """Remove blobs of a commit that did not happen (staged or already renamed)."""

    @abstractmethod
    def open(self, ref: str) -> BinaryIO:
        """Read a committed blob."""

    @abstractmethod
    def delete(self, refs: Iterable[str]) -> None:
        """Remove committed blobs whose rows were deleted (call after that commit)."""

    def release(self, writers: Iterable[BlobWriter]) -> None:
        """Writers whose commit finished or was undone: their blobs are no longer in progress."""
        for writer in writers:
            writer.release()

    @abstractmethod
    def cleanup(self, referenced: Callable[[], set[str]]) -> CleanupReport:
        """Remove, at any age, blobs no live writer holds and no row references."""

    @abstractmethod
    def pending_bytes(self) -> int:
        """Bytes held in staging (uploads in progress or abandoned)."""

    @abstractmethod
    def exists(self, ref: str) -> bool:
        """Whether a committed blob is present."""


# --------------------------------------------------------------------------- filesystem


def _unlink(path: str) -> bool:
    """Remove ``path``; False if it was gone already (committed or removed meanwhile)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


class _FsWriter(BlobWriter):
    """A small blob stays in memory; past ``inline_max`` it spills to a 0600 staging file."""

    def __init__(self, ref: str, path: Path, inline_max: int, locks: RefLocks | None) -> None:
        super().__init__(ref, locks)
        self.path = path
        self._inline_max = inline_max
        self._buffer = bytearray()
        self._fd: int | None = None
        self._spilled = False
        if inline_max <= 0:
            self._spill()

    @property
    def inline(self) -> bool:
        """True while the blob lives in memory only (it then commits into the database)."""
        return not self._spilled

    def inline_data(self) -> bytes:
        return bytes(self._buffer)

    def _spill(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o600)
        self._spilled = True
        buffered, self._buffer = memoryview(bytes(self._buffer)), bytearray()
        self._write_fd(buffered)

    def _write_fd(self, data: memoryview) -> None:
        assert self._fd is not None
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def _write(self, data: memoryview) -> None:
        if self._fd is None:
            if len(self._buffer) + len(data) <= self._inline_max:
                self._buffer += data
                return
            self._spill()
        self._write_fd(data)

    def _finish(self) -> None:
        if self._fd is None:
            return
        try:
            stamp(self._fd)  # the UTC day, not the nanosecond it arrived
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None

    def _abort(self) -> None:
        self._buffer = bytearray()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)


class FsBlobStore(BlobStore):
    """Blobs as files under ``root`` (directories 0700, files 0600).

    Small blobs (at most ``inline_max`` bytes, e.g. a text-only testimony) never touch the
    filesystem: they are inserted into ``blob_chunks`` *inside* the commit transaction, so such
    a submission costs one fsync (the database commit) instead of three (file, directory,
    commit). Larger blobs go through staging files as described in the module docstring.
    """

    backend = "fs"

    def __init__(
        self,
        root: Path,
        engine: Engine | None = None,
        inline_max: int = INLINE_MAX,
        locks: RefLocks | None = None,
    ):
        self.root = Path(root)
        self.locks = locks
        self.staging = self.root / "staging"
        self.engine = engine
        self.inline_max = inline_max if engine is not None else 0
        self._pending: weakref.WeakValueDictionary[str, _FsWriter] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        self._dirs_ready = False

    def ensure_dirs(self) -> None:
        if self._dirs_ready:
            return
        for path in (self.root, self.staging):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dirs_ready = True

    def _final(self, ref: str) -> Path:
        if len(ref) < 3 or not all(c in "0123456789abcdef" for c in ref):
            raise ValueError("not a blob name")
        return self.root / ref[:2] / ref

    def _staged(self, ref: str) -> Path:
        return self.staging / (ref + STAGING_SUFFIX)

    def stage(self) -> BlobWriter:
        self.ensure_dirs()
        ref = new_ref()
        writer = _FsWriter(ref, self._staged(ref), self.inline_max, self.locks)
        with self._lock:
            self._pending[ref] = writer
        return writer

    def _inline_writer(self, ref: str) -> _FsWriter | None:
        with self._lock:
            writer = self._pending.get(ref)
        return writer if writer is not None and writer.inline else None

    def before_commit(self, refs: Iterable[str]) -> None:
        dirs: set[Path] = set()
        for ref in refs:
            if self._inline_writer(ref) is not None:
                continue  # goes into the database with the rows
            final = self._final(ref)
            if not final.parent.is_dir():
                final.parent.mkdir(mode=0o700, exist_ok=True)
                fsync_dir(self.root)
            os.rename(self._staged(ref), final)
            dirs.add(final.parent)
        # The new names must be durable before the rows commit. The staging dir needs no
        # fsync: if the old name comes back after a crash, cleanup unlinks just that name.
        # A rename sets its directories' mtime to now: back to the day (cleanup does the rest).
        for path in sorted(dirs):
            stamp(path)
            fsync_dir(path)
        if dirs:
            stamp(self.staging)

    def in_commit(self, conn: Connection, refs: Iterable[str]) -> None:
        for ref in refs:
            writer = self._inline_writer(ref)
            if writer is not None:
                conn.execute(insert(BlobChunkRow).values(ref=ref, seq=0, data=writer.inline_data()))
                with self._lock:
                    self._pending.pop(ref, None)

    def discard(self, refs: Iterable[str]) -> None:
        # Inline blobs exist only inside the commit transaction: nothing to undo there.
        for ref in refs:
            with self._lock:
                self._pending.pop(ref, None)
            self._staged(ref).unlink(missing_ok=True)
            self._final(ref).unlink(missing_ok=True)

    def _has_chunks(self, ref: str) -> bool:
        if self.engine is None:
            return False
        with self.engine.connect() as conn:
            row = conn.execute(
                select(BlobChunkRow.seq).where(BlobChunkRow.ref == ref, BlobChunkRow.seq == 0)
            ).first()
        return row is not None

    def open(self, ref: str) -> BinaryIO:
        try:
            return open_quietly(self._final(ref))
        except FileNotFoundError:
            if self.engine is not None and self._has_chunks(ref):
                return io.BufferedReader(_DbReader(self.engine, ref), buffer_size=CHUNK)  # type: ignore[return-value]
            raise

    def exists(self, ref: str) -> bool:
        return self._final(ref).is_file() or self._has_chunks(ref)

    def is_inline(self, ref: str) -> bool:
        """Whether a committed blob lives in the database rather than in a file."""
        return not self._final(ref).is_file() and self._has_chunks(ref)

    def delete(self, refs: Iterable[str]) -> None:
        refs = list(refs)
        dirs: set[Path] = set()
        for ref in refs:
            path = self._final(ref)
            path.unlink(missing_ok=True)
            dirs.add(path.parent)
        for path in dirs:
            if path.is_dir():
                stamp(path)
                fsync_dir(path)
        if self.engine is not None and refs:
            with self.engine.begin() as conn:
                conn.execute(delete(BlobChunkRow).where(BlobChunkRow.ref.in_(refs)))

    def _listing(self) -> tuple[list[Entry], list[Entry]]:
        """(staging files, files in the blob and upload dirs): listed before any row is read."""
        staged = [e for e in list_quietly(self.staging) if e.is_file]
        stored = [
            entry
            for sub in list_quietly(self.root)
            if sub.is_dir and sub.name != "staging"
            for entry in list_quietly(sub.path)
            if entry.is_file
        ]
        return staged, stored

    def cleanup(self, referenced: Callable[[], set[str]]) -> CleanupReport:
        report = CleanupReport()
        assert self.locks is not None, "cleanup needs the store's blob locks"
        # List first, then read rows: a file listed here that a commit adopts meanwhile is
        # referenced by the time ``referenced()`` runs (rows are inserted before upload files
        # are created, and blob files are renamed before their rows are committed).
        staged, stored = self._listing()
        chunk_refs: set[str] = set()
        if self.engine is not None:
            with self.engine.connect() as conn:
                chunk_refs = {r for (r,) in conn.execute(select(BlobChunkRow.ref).distinct())}
        keep = referenced()
        dirs: set[str] = set()
        for entry in staged:
            with self.locks.claim(entry.name.removesuffix(STAGING_SUFFIX)) as free:
                if not free:
                    report.in_progress += 1
                    continue
                if _unlink(entry.path):
                    report.staging += 1
                    dirs.add(os.path.dirname(entry.path))
        suspects = [e for e in stored if e.name not in keep]
        with ExitStack() as stack:
            claimed = []
            for entry in suspects:
                if stack.enter_context(self.locks.claim(entry.name)):
                    claimed.append(entry)
                else:
                    report.in_progress += 1
            # no writer of a claimed blob can still commit it: what rows say now is final
            keep = referenced() if claimed else keep
            for entry in claimed:
                if entry.name not in keep and _unlink(entry.path):
                    dirs.add(os.path.dirname(entry.path))
                    if os.path.basename(os.path.dirname(entry.path)) == "uploads":
                        report.upload_files += 1
                    else:
                        report.unreferenced += 1
        for path in sorted(dirs):
            fsync_dir(Path(path))
        # Inline chunks are written only by a commit that also inserts their rows, so an
        # unreferenced one is debris (e.g. a reply or submission deleted without its blobs).
        orphans = sorted(chunk_refs - keep)
        if orphans and self.engine is not None:
            with self.engine.begin() as conn:
                conn.execute(delete(BlobChunkRow).where(BlobChunkRow.ref.in_(orphans)))
            report.unreferenced += len(orphans)
        return report

    def pending_bytes(self) -> int:
        total = 0
        for entry in list_quietly(self.staging):
            if entry.is_file:
                with suppress(FileNotFoundError):  # committed or removed meanwhile
                    total += os.stat(entry.path).st_size
        with self._lock:
            writers = list(self._pending.values())
        total += sum(len(w._buffer) for w in writers if not w.closed and w.inline)
        return total

    def all_refs(self) -> list[str]:
        """Every committed blob file (for backups and checks)."""
        return [
            entry.name
            for sub in list_quietly(self.root)
            if sub.is_dir and sub.name != "staging"
            for entry in list_quietly(sub.path)
        ]

    def path_of(self, ref: str) -> Path:
        return self._final(ref)


# --------------------------------------------------------------------------- database


class _DbWriter(BlobWriter):
    def __init__(self, ref: str, engine: Engine, locks: RefLocks | None) -> None:
        super().__init__(ref, locks)
        self._engine = engine
        self._buffer = bytearray()
        self._seq = 0
        with engine.begin() as conn:
            conn.execute(insert(BlobStagingRow).values(ref=ref, day=today()))

    def _write(self, data: memoryview) -> None:
        self._buffer += data
        while len(self._buffer) >= CHUNK:
            self._flush_chunk(bytes(self._buffer[:CHUNK]))
            del self._buffer[:CHUNK]

    def _flush_chunk(self, chunk: bytes) -> None:
        # One short transaction per chunk: a 4 GiB upload must not hold one open for minutes.
        with self._engine.begin() as conn:
            conn.execute(insert(BlobChunkRow).values(ref=self.ref, seq=self._seq, data=chunk))
        self._seq += 1

    def _finish(self) -> None:
        if self._buffer:
            self._flush_chunk(bytes(self._buffer))
            self._buffer.clear()

    def _abort(self) -> None:
        self._buffer.clear()


class _DbReader(io.RawIOBase):
    def __init__(self, engine: Engine, ref: str) -> None:
        super().__init__()
        self._engine = engine
        self._ref = ref
        self._seq = 0
        self._pending = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if not self._pending and not self._eof:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(BlobChunkRow.data).where(
                        BlobChunkRow.ref == self._ref, BlobChunkRow.seq == self._seq
                    )
                ).first()
            if row is None:
                self._eof = True
            else:
                self._pending = bytes(row[0])
                self._seq += 1
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


class DbBlobStore(BlobStore):
    """Blobs in the database, so that several stateless app nodes share them."""

    backend = "db"

    def __init__(self, engine: Engine, locks: RefLocks | None = None) -> None:
        self.engine = engine
        self.locks = locks

    def stage(self) -> BlobWriter:
        return _DbWriter(new_ref(), self.engine, self.locks)

    def before_commit(self, refs: Iterable[str]) -> None:
        return None  # chunks are committed as they are written

    def in_commit(self, conn: Connection, refs: Iterable[str]) -> None:
        refs = list(refs)
        if refs:
            gone = conn.execute(delete(BlobStagingRow).where(BlobStagingRow.ref.in_(refs)))
            if gone.rowcount != len(refs):  # cleanup removed it: its chunks may be gone too
                raise StagingLost("a staged blob was removed before its commit")

    def discard(self, refs: Iterable[str]) -> None:
        refs = list(refs)
        if not refs:
            return
        with self.engine.begin() as conn:
            conn.execute(delete(BlobChunkRow).where(BlobChunkRow.ref.in_(refs)))
            conn.execute(delete(BlobStagingRow).where(BlobStagingRow.ref.in_(refs)))

    def open(self, ref: str) -> BinaryIO:
        if not self.exists(ref):
            raise FileNotFoundError(ref)
        return io.BufferedReader(_DbReader(self.engine, ref), buffer_size=CHUNK)  # type: ignore[return-value]

    def exists(self, ref: str) -> bool:
        with self.engine.connect() as conn:
            staged = conn.execute(
                select(BlobStagingRow.ref).where(BlobStagingRow.ref == ref)
            ).first()
            if staged is not None:
                return False
            # An empty blob has no chunk; the caller knows it from its row. Check chunk 0.
            return (
                conn.execute(
                    select(BlobChunkRow.seq).where(BlobChunkRow.ref == ref, BlobChunkRow.seq == 0)
                ).first()
                is not None
            )

    def delete(self, refs: Iterable[str]) -> None:
        refs = list(refs)
        if refs:
            with self.engine.begin() as conn:
                conn.execute(delete(BlobChunkRow).where(BlobChunkRow.ref.in_(refs)))

    def cleanup(self, referenced: Callable[[], set[str]]) -> CleanupReport:
        report = CleanupReport()
        assert self.locks is not None, "cleanup needs the store's blob locks"
        # Order matters with concurrent writers: chunks present, then staged, then referenced
        # (a blob that moves from staged to referenced in between is seen by the later query).
        with self.engine.connect() as conn:
            present = {r for (r,) in conn.execute(select(BlobChunkRow.ref).distinct())}
        with self.engine.connect() as conn:
            staged = {r for (r,) in conn.execute(select(BlobStagingRow.ref))}
        keep = referenced()
        for ref in sorted(staged - keep):
            with self.locks.claim(ref) as free:
                if not free:
                    report.in_progress += 1
                    continue
                # The staging row decides: a commit deletes it in the transaction that inserts
                # the rows, so if it is already gone the blob was committed and stays.
                with self.engine.begin() as conn:
                    gone = conn.execute(delete(BlobStagingRow).where(BlobStagingRow.ref == ref))
                    if gone.rowcount:
                        conn.execute(delete(BlobChunkRow).where(BlobChunkRow.ref == ref))
                        report.staging += 1
        orphans = sorted(present - staged - keep)
        if orphans:
            with self.engine.begin() as conn:
                conn.execute(delete(BlobChunkRow).where(BlobChunkRow.ref.in_(orphans)))
            report.unreferenced += len(orphans)
        return report

    def pending_bytes(self) -> int:
        with self.engine.connect() as conn:
            total = conn.execute(
                select(func.coalesce(func.sum(func.length(BlobChunkRow.data)), 0)).where(
                    BlobChunkRow.ref.in_(select(BlobStagingRow.ref))
                )
            ).scalar_one()
        return int(total)
