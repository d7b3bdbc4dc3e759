"""Blob stores: where the ciphertext lives. Ciphertext only (age v1), under random names.

Two implementations behind one interface (app/store/fsblobs.py, app/store/dbblobs.py), chosen
by the setting ``blob_backend``:

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

``app/store/unit.py`` (``Store.unit_of_work()``) is the one place that runs these steps, checks
whether a failed commit reached the database anyway, and discards on failure.

Appendable blobs (resumable uploads) grow across requests: ``reserve_appendable`` in the
transaction that inserts their row, ``create_appendable`` after it, ``open_append`` for each
piece. ``adopt`` moves finished ones into place without a copy (fs: a rename from
``blob_dir/uploads/``; db: the staging row is dropped by ``in_commit``), ``unadopt`` undoes it.

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
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy.engine import Connection

from .reflocks import RefLocks

CHUNK = 1024 * 1024
INLINE_MAX = 256 * 1024  # fs backend: blobs up to this size are stored in the database
STAGING_SUFFIX = ".part"
UPLOADS_DIR = "uploads"  # fs: appendable blobs, under the blob dir


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


class AppendBusy(Exception):
    """Another writer holds this appendable blob (one writer at a time)."""


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

    def ensure_dirs(self) -> None:
        """Create what the store needs before its first blob (fs: its directories)."""
        return None

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

    # ------------------------------------------------------------ appendable blobs (uploads)

    def reserve_appendable(self, conn: Connection, ref: str) -> None:
        """Inside the transaction that inserts the upload's row."""
        return None

    def create_appendable(self, ref: str) -> None:
        """After that commit: the empty blob, durable (the row exists first, so cleanup keeps
        it)."""
        return None

    @abstractmethod
    def open_append(self, ref: str) -> BlobAppender:
        """The one writer of an appendable blob (FileNotFoundError, AppendBusy)."""

    @abstractmethod
    def appended_size(self, ref: str, durable: bool = False) -> int:
        """Bytes stored; ``durable``: only bytes a crash cannot lose (FileNotFoundError)."""

    @abstractmethod
    def open_appendable(self, ref: str) -> BinaryIO:
        """Read an appendable blob's bytes so far."""

    @abstractmethod
    def remove_appendable(self, refs: Iterable[str]) -> None:
        """Remove appendable blobs whose rows were deleted."""

    @abstractmethod
    def appendable_bytes(self, refs: Iterable[str]) -> int:
        """Bytes held by these appendable blobs."""

    @abstractmethod
    def adopt(self, refs: Iterable[str]) -> None:
        """Before the commit that makes appendable blobs committed ones: durable, in place."""

    @abstractmethod
    def unadopt(self, refs: Iterable[str]) -> None:
        """That commit did not happen: the blobs are appendable again, as they were."""


class BlobAppender(ABC):
    """Appends to one appendable blob at its current end; ``finish()`` makes it durable."""

    ref: str
    start: int  # bytes stored when it was opened

    @abstractmethod
    def write(self, data: memoryview) -> None: ...

    @abstractmethod
    def finish(self) -> None:
        """Everything written so far survives a crash."""

    @abstractmethod
    def rollback(self) -> None:
        """Forget everything written since ``start``."""

    def close(self) -> None:
        return None


