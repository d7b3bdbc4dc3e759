"""The filesystem blob store (``blob_backend = "fs"``): see app/store/blobs.py for the protocol.

``blob_dir/staging/<ref>.part`` while a blob is written, ``blob_dir/<ref[:2]>/<ref>`` once
committed, ``blob_dir/uploads/<ref>`` for appendable blobs (resumable uploads). Directories
0700, files 0600, every time a UTC day (app.protocol.utcday).
"""

from __future__ import annotations

import fcntl
import io
import os
import threading
import weakref
from collections.abc import Callable, Iterable
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection, Engine

from app.diskio import FileWriter
from app.durable import fsync_dir, open_new
from app.protocol.utcday import stamp

from .blobs import (
    CHUNK,
    INLINE_MAX,
    STAGING_SUFFIX,
    UPLOADS_DIR,
    AppendBusy,
    BlobAppender,
    BlobStore,
    BlobWriter,
    CleanupReport,
    new_ref,
)
from .dbblobs import DbReader
from .disktimes import Entry, list_quietly, open_quietly
from .models import BlobChunkRow
from .reflocks import RefLocks


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
        self._writer: FileWriter | None = None  # with _fd
        if inline_max <= 0:
            self._spill()

    @property
    def inline(self) -> bool:
        """True while the blob lives in memory only (it then commits into the database)."""
        return not self._spilled

    def inline_data(self) -> bytes:
        return bytes(self._buffer)

    def _spill(self) -> None:
        self._fd = open_new(self.path)
        self._writer = FileWriter(self._fd)
        self._spilled = True
        buffered, self._buffer = memoryview(bytes(self._buffer)), bytearray()
        self._write_fd(buffered)

    def _write_fd(self, data: memoryview) -> None:
        assert self._fd is not None and self._writer is not None
        self._writer.write(data)

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
            assert self._writer is not None
            self._writer.end()
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
        self.uploads = self.root / UPLOADS_DIR
        self.engine = engine
        self.inline_max = inline_max if engine is not None else 0
        self._pending: weakref.WeakValueDictionary[str, _FsWriter] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        self._dirs_ready = False

    def ensure_dirs(self) -> None:
        """The blob and staging dirs (0700); ``guwah init`` and the first blob create them."""
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
        moves = [
            (self._staged(ref), ref) for ref in refs if self._inline_writer(ref) is None
        ]  # inline blobs go into the database with the rows
        # The staging dir needs no fsync: if the old name comes back after a crash, cleanup
        # unlinks just that name.
        if self._move_into_place(moves):
            stamp(self.staging)

    def _move_into_place(self, moves: list[tuple[Path, str]], *also: Path) -> bool:
        """Rename each source to its blob's final name, then make the new names durable before
        the rows commit. A rename sets its directories' mtime to now: back to the day."""
        dirs: set[Path] = set(also)
        for source, ref in moves:
            final = self._final(ref)
            if not final.parent.is_dir():
                final.parent.mkdir(mode=0o700, exist_ok=True)
                fsync_dir(self.root)
            os.rename(source, final)
            dirs.add(final.parent)
        for path in sorted(dirs):
            stamp(path)
            fsync_dir(path)
        return bool(moves)

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
                return io.BufferedReader(DbReader(self.engine, ref), buffer_size=CHUNK)
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
        """Staging files, inline blobs being written, and appendable blobs (uploads)."""
        total = self._dir_bytes(self.staging) + self._dir_bytes(self.uploads)
        with self._lock:
            writers = list(self._pending.values())
        total += sum(len(w._buffer) for w in writers if not w.closed and w.inline)
        return total

    @staticmethod
    def _dir_bytes(directory: Path) -> int:
        total = 0
        for entry in list_quietly(directory):
            if entry.is_file:
                with suppress(FileNotFoundError):  # committed or removed meanwhile
                    total += os.stat(entry.path).st_size
        return total

    # ------------------------------------------------------------ appendable blobs (uploads)

    def _appendable(self, ref: str) -> Path:
        self._final(ref)  # the same name check
        return self.uploads / ref

    def create_appendable(self, ref: str) -> None:
        if not self.uploads.is_dir():
            self.uploads.mkdir(mode=0o700, parents=True, exist_ok=True)
            fsync_dir(self.uploads.parent)
        fd = open_new(self._appendable(ref))
        try:
            stamp(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        stamp(self.uploads)
        fsync_dir(self.uploads)

    def open_append(self, ref: str) -> BlobAppender:
        return _FsAppender(ref, self._appendable(ref))

    def appended_size(self, ref: str, durable: bool = False) -> int:
        path = self._appendable(ref)
        if not durable:
            return path.stat().st_size
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            os.fsync(fd)  # a PATCH in progress writes before it syncs
            return size
        finally:
            os.close(fd)

    def open_appendable(self, ref: str) -> BinaryIO:
        return open_quietly(self._appendable(ref))

    def remove_appendable(self, refs: Iterable[str]) -> None:
        for ref in refs:
            self._appendable(ref).unlink(missing_ok=True)
        if self.uploads.is_dir():
            stamp(self.uploads)
            fsync_dir(self.uploads)

    def appendable_bytes(self, refs: Iterable[str]) -> int:
        """What the uploads dir holds (a file without its row counts until cleanup)."""
        return self._dir_bytes(self.uploads)

    def adopt(self, refs: Iterable[str]) -> None:
        refs = list(refs)
        if refs:
            self._move_into_place([(self._appendable(ref), ref) for ref in refs], self.uploads)

    def unadopt(self, refs: Iterable[str]) -> None:
        for ref in refs:  # those not moved yet fail here: they are where they were
            with suppress(OSError):
                os.rename(self._final(ref), self._appendable(ref))


class _FsAppender(BlobAppender):
    """Appends to ``uploads/<ref>``; ``flock`` keeps other processes out while it is open."""

    def __init__(self, ref: str, path: Path) -> None:
        self.ref = ref
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise AppendBusy("another request is writing to this upload") from None
        self.start = os.fstat(self._fd).st_size
        self._writer = FileWriter(self._fd, self.start)

    def _fileno(self) -> int:
        if self._fd is None:
            raise ValueError("the upload is closed")
        return self._fd

    def write(self, data: memoryview) -> None:
        self._fileno()  # raises once closed
        self._writer.write(data)

    def finish(self) -> None:
        fd = self._fileno()
        self._writer.end()
        stamp(fd)  # the day, not the second of this write
        os.fsync(fd)

    def rollback(self) -> None:
        fd = self._fileno()
        os.ftruncate(fd, self.start)
        os.fsync(fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also releases the flock
            self._fd = None
