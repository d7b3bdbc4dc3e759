"""Which blobs are being written right now, by any process: per-blob locks that die with it.

``guwah cleanup`` must remove crash debris at any age (a staging file, a blob renamed but never
committed) and never an upload that is still running, in this process or another one, on this
node or another node sharing the data (docs/multinode.md). Age cannot tell them apart (a Tor
upload of gigabytes legitimately takes hours; a crash leaves fresh debris), and no time is kept
anyway. A lock can: a writer *holds* its blob's lock from before the first byte exists until its
commit has finished or been undone; the kernel (or PostgreSQL, when the connection drops) lets
go of it when the process dies. Cleanup removes only what it can *claim*.

* ``FileRefLocks``: POSIX record locks on one byte per blob (offset from a hash of its name)
  of one lock file, ``DATA_DIR/blob-locks`` (SQLite, or ``fs`` blobs). Why not ``flock`` on
  the blob file itself: the file would exist, unlocked, for an instant before its writer
  locked it; here the lock comes first. Record locks are what NFS shares between machines,
  so two nodes on one shared data dir see each other's.
* ``PgRefLocks``: PostgreSQL session advisory locks, all held on one dedicated autocommit
  connection per process (why not one per upload: a pool would run dry with 32 slow uploads).

POSIX locks never conflict inside one process, so each object also remembers what this process
holds; one object per lock file per process (closing any descriptor of the file would drop every
lock the process holds on it).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool


def _key(ref: str) -> int:
    """A 63-bit number for a blob name (names are random: collisions only cost a skip)."""
    return int.from_bytes(hashlib.sha256(ref.encode()).digest()[:8], "big") >> 1


class RefLocks(ABC):
    """Hold a blob's lock while writing it; claim it to remove debris."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held: set[str] = set()

    def holds(self, ref: str) -> bool:
        with self._mutex:
            return ref in self._held

    def hold(self, ref: str) -> None:
        """Take ``ref``'s lock for this writer (before the blob's first byte exists)."""
        with self._mutex:
            self._take(ref)
            self._held.add(ref)

    def release(self, ref: str) -> None:
        """The writer is done with ``ref`` (committed, discarded or given up)."""
        with self._mutex:
            if ref in self._held:
                self._held.discard(ref)
                self._drop(ref)

    @contextmanager
    def claim(self, ref: str) -> Iterator[bool]:
        """True while nobody else writes ``ref``: its debris may then be removed."""
        with self._mutex:
            if ref in self._held:
                got = False
            else:
                got = self._try(ref)
                if got:
                    self._held.add(ref)
        try:
            yield got
        finally:
            if got:
                self.release(ref)

    @abstractmethod
    def _take(self, ref: str) -> None: ...

    @abstractmethod
    def _try(self, ref: str) -> bool: ...

    @abstractmethod
    def _drop(self, ref: str) -> None: ...


class FileRefLocks(RefLocks):
    """One byte per blob in ``path`` (0600), locked with ``fcntl`` record locks."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def _take(self, ref: str) -> None:
        fcntl.lockf(self._file(), fcntl.LOCK_EX, 1, _key(ref), os.SEEK_SET)

    def _try(self, ref: str) -> bool:
        try:
            fcntl.lockf(self._file(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _key(ref), os.SEEK_SET)
        except (BlockingIOError, PermissionError):
            return False
        return True

    def _drop(self, ref: str) -> None:
        fcntl.lockf(self._file(), fcntl.LOCK_UN, 1, _key(ref), os.SEEK_SET)


class PgRefLocks(RefLocks):
    """Session advisory locks on one dedicated autocommit connection (no open transaction).

    The connection exists only while this process holds or claims something, so an idle
    process (or a test that made many stores) keeps no connection open for it.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = create_engine(engine.url, poolclass=NullPool)
        self._conn: Connection | None = None

    def _owner(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def _close_if_idle(self) -> None:
        if not self._held and self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _run(self, sql: str, ref: str) -> object:
        try:
            return self._owner().execute(text(sql), {"k": _key(ref)}).scalar()
        except DBAPIError:
            # The connection died (database restart): its locks went with it. Take every one
            # this process still holds again on a new connection, then retry once.
            self._conn = None
            owner = self._owner()
            for held in sorted(self._held - {ref}):
                owner.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _key(held)})
            return owner.execute(text(sql), {"k": _key(ref)}).scalar()

    def _take(self, ref: str) -> None:
        self._run("SELECT pg_advisory_lock(:k)", ref)

    def _drop(self, ref: str) -> None:
        try:
            self._run("SELECT pg_advisory_unlock(:k)", ref)
        finally:
            self._close_if_idle()

    def _try(self, ref: str) -> bool:
        # On the owner connection too: another session's lock blocks it, and this process's
        # own writers are excluded before (self._held).
        got = bool(self._run("SELECT pg_try_advisory_lock(:k)", ref))
        if not got:
            self._close_if_idle()
        return got


LOCK_FILE = "blob-locks"  # in the data dir: every process writing this data's blobs opens it
_registry: dict[str, RefLocks] = {}
_registry_lock = threading.Lock()


def ref_locks_for(engine: Engine, blob_backend: str, data_dir: Path) -> RefLocks:
    """The process's lock object for this data: one per lock file or database."""
    make: Callable[[], RefLocks]
    if blob_backend == "db" and engine.dialect.name == "postgresql":
        key = "pg:" + engine.url.render_as_string(hide_password=False)
        make = lambda: PgRefLocks(engine)  # noqa: E731
    else:
        path = data_dir / LOCK_FILE
        key = "file:" + os.path.realpath(path)
        make = lambda: FileRefLocks(path)  # noqa: E731
    with _registry_lock:
        locks = _registry.get(key)
        if locks is None:
            locks = _registry[key] = make()
        return locks
