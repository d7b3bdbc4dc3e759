"""The unit of work: the blob commit protocol of app/store/blobs.py, written once.

Every write that makes blobs visible goes through here: stage new blobs (or adopt appendable
ones), then ``commit(write_rows)`` runs "make the blobs durable under their final names, insert
the rows in one transaction, commit", and if anything fails checks whether the commit reached
the database anyway before it discards a single blob. Leaving the ``with`` block without a
commit discards everything staged. The domain modules (submissions, replies, outbox, uploads)
only say which rows to write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from .blobs import BlobStore, BlobWriter
from .errors import NotStored, StoreError

T = TypeVar("T")


class UnitOfWork:
    """Blobs staged or adopted for one commit, and the transaction that makes them visible.

    ``proof`` is a column that holds blob names (e.g. ``SubmissionFileRow.blob_ref``): our
    blob names are random and ours alone, so a committed row naming one proves the commit.
    """

    def __init__(self, engine: Engine, blobs: BlobStore, proof: Any, what: str) -> None:
        self.engine = engine
        self._what = what
        self.blobs = blobs
        self._proof = proof
        self._writers: list[BlobWriter] = []
        self._adopted: list[str] = []
        self._finished = False

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(self, *_: object) -> None:
        if not self._finished:
            self.abort()

    @property
    def finished(self) -> bool:
        return self._finished

    def stage(self) -> BlobWriter:
        """A new blob for this commit (staging name, random)."""
        if self._finished:
            raise StoreError("this write is already finished")
        writer = self.blobs.stage()
        self._writers.append(writer)
        return writer

    def drop(self, writer: BlobWriter) -> None:
        """A staged blob this commit will not use after all: discarded now."""
        self._writers.remove(writer)
        writer.abort()
        self.blobs.discard([writer.ref])
        self.blobs.release([writer])

    def adopt(self, ref: str) -> None:
        """A complete appendable blob (an upload) that this commit makes committed."""
        self._adopted.append(ref)

    @property
    def refs(self) -> list[str]:
        return [w.ref for w in self._writers] + self._adopted

    def commit(self, write_rows: Callable[[Connection], T]) -> T:
        """Make the blobs visible with the rows ``write_rows`` inserts, or keep nothing.

        A failure the database may still have committed (the connection dropped before the
        acknowledgement) is checked against ``proof``: committed is success. A store error
        raised by ``write_rows`` passes through; any other failure (disk, database) is
        NotStored, with the cause chained (``is_disk_full`` reads it).
        """
        if self._finished:
            raise StoreError("this write is already finished")
        self._finished = True
        refs = self.refs
        result: T | None = None
        try:
            for writer in self._writers:
                writer.close()  # flush + fsync (no-op when the caller closed it)
            self.blobs.before_commit([w.ref for w in self._writers])
            self.blobs.adopt(self._adopted)
            with self.engine.begin() as conn:
                result = write_rows(conn)
                self.blobs.in_commit(conn, refs)
        except BaseException as exc:
            if refs and self._committed(refs[0]):
                return result  # type: ignore[return-value]
            if isinstance(exc, StoreError) or not isinstance(exc, Exception):
                raise
            raise NotStored(f"{self._what} could not be stored; nothing was kept") from exc
        finally:
            self.blobs.release(self._writers)
        return result

    def _committed(self, ref: str) -> bool:
        """Whether a row names ``ref``. If not, the blobs go; if the database cannot tell,
        they stay for ``cleanup`` (never delete a blob a committed row may reference)."""
        try:
            with self.engine.connect() as conn:
                found = conn.execute(select(self._proof).where(self._proof == ref)).first()
        except SQLAlchemyError:
            return False
        if found is not None:
            return True
        for writer in self._writers:
            writer.abort()
        self.blobs.discard([w.ref for w in self._writers])
        self.blobs.unadopt(self._adopted)
        return False

    def abort(self) -> None:
        """Discard every staged blob; adopted ones stay appendable."""
        self._finished = True
        for writer in self._writers:
            writer.abort()
        self.blobs.discard([w.ref for w in self._writers])
        self.blobs.release(self._writers)
