"""The database blob store (``blob_backend = "db"``): see app/store/blobs.py for the protocol.

Chunks of 1 MiB in ``blob_chunks``; a ``blob_staging`` row while a blob is written or an upload
is appendable, so several stateless app nodes on one PostgreSQL share every blob.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import BinaryIO

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection, Engine

from app.protocol.utcday import today

from .blobs import CHUNK, BlobAppender, BlobStore, BlobWriter, CleanupReport, StagingLost, new_ref
from .models import BlobChunkRow, BlobStagingRow
from .reflocks import RefLocks


class _Chunks:
    """Bytes of one blob cut into ``CHUNK``-sized rows, one short transaction per row: a
    4 GiB upload must not hold one open for minutes."""

    def __init__(self, engine: Engine, ref: str, seq: int = 0) -> None:
        self.engine = engine
        self.ref = ref
        self.seq = seq
        self._buffer = bytearray()

    def add(self, data: memoryview) -> None:
        self._buffer += data
        while len(self._buffer) >= CHUNK:
            self._insert(bytes(self._buffer[:CHUNK]))
            del self._buffer[:CHUNK]

    def flush(self) -> None:
        if self._buffer:
            self._insert(bytes(self._buffer))
            self._buffer.clear()

    def drop_buffer(self) -> None:
        self._buffer.clear()

    def _insert(self, chunk: bytes) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(BlobChunkRow).values(ref=self.ref, seq=self.seq, data=chunk))
        self.seq += 1


class _DbWriter(BlobWriter):
    def __init__(self, ref: str, engine: Engine, locks: RefLocks | None) -> None:
        super().__init__(ref, locks)
        self._chunks = _Chunks(engine, ref)
        with engine.begin() as conn:
            conn.execute(insert(BlobStagingRow).values(ref=ref, day=today()))

    def _write(self, data: memoryview) -> None:
        self._chunks.add(data)

    def _finish(self) -> None:
        self._chunks.flush()

    def _abort(self) -> None:
        self._chunks.drop_buffer()


class DbReader(io.RawIOBase):
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
        return io.BufferedReader(DbReader(self.engine, ref), buffer_size=CHUNK)

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

    # ------------------------------------------------------------ appendable blobs (uploads)

    def reserve_appendable(self, conn: Connection, ref: str) -> None:
        conn.execute(insert(BlobStagingRow).values(ref=ref, day=today()))

    def _offset(self, ref: str) -> tuple[int, int]:
        """(bytes stored, next chunk seq): chunks count once their insert committed."""
        with self.engine.connect() as conn:
            size, last = conn.execute(
                select(
                    func.coalesce(func.sum(func.length(BlobChunkRow.data)), 0),
                    func.max(BlobChunkRow.seq),
                ).where(BlobChunkRow.ref == ref)
            ).one()
        return int(size), (-1 if last is None else int(last)) + 1

    def open_append(self, ref: str) -> BlobAppender:
        return _DbAppender(self.engine, ref, *self._offset(ref))

    def appended_size(self, ref: str, durable: bool = False) -> int:
        return self._offset(ref)[0]  # a committed chunk is durable

    def open_appendable(self, ref: str) -> BinaryIO:
        return io.BufferedReader(DbReader(self.engine, ref), buffer_size=CHUNK)

    def remove_appendable(self, refs: Iterable[str]) -> None:
        self.discard(refs)

    def appendable_bytes(self, refs: Iterable[str]) -> int:
        refs = list(refs)
        if not refs:
            return 0
        with self.engine.connect() as conn:
            total = conn.execute(
                select(func.coalesce(func.sum(func.length(BlobChunkRow.data)), 0)).where(
                    BlobChunkRow.ref.in_(refs)
                )
            ).scalar_one()
        return int(total)

    def adopt(self, refs: Iterable[str]) -> None:
        return None  # the chunks are durable; in_commit drops the staging rows

    def unadopt(self, refs: Iterable[str]) -> None:
        return None  # the rolled-back transaction kept the staging rows


class _DbAppender(BlobAppender):
    """Appends chunks after the ones stored; ``rollback`` deletes those it added."""

    def __init__(self, engine: Engine, ref: str, start: int, seq: int) -> None:
        self.ref = ref
        self.start = start
        self._initial_seq = seq
        self._chunks = _Chunks(engine, ref, seq)

    def write(self, data: memoryview) -> None:
        self._chunks.add(data)

    def finish(self) -> None:
        self._chunks.flush()

    def rollback(self) -> None:
        self._chunks.drop_buffer()
        with self._chunks.engine.begin() as conn:
            conn.execute(
                delete(BlobChunkRow).where(
                    BlobChunkRow.ref == self.ref, BlobChunkRow.seq >= self._initial_seq
                )
            )
        self._chunks.seq = self._initial_seq
