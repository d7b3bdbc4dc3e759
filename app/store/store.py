"""The Store: the one object the web app and the CLIs call (one per process, thread-safe).

What is stored about a witness is exactly what app/store/models.py lists, and nothing else.
Each area has its own module (desks, submissions, replies, exports, outbox, uploads); every
write that makes blobs visible is one unit of work (app/store/unit.py), which runs the commit
protocol of app/store/blobs.py.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from app.settings import Settings

from . import desks, exports, replies, submissions, withdrawals
from .blobs import BlobStore, CleanupReport
from .db import make_engine, sqlite_pragmas
from .dbblobs import DbBlobStore
from .desks import Desk, EditorKey
from .disktimes import restamp_tree
from .errors import NotFound
from .fsblobs import FsBlobStore
from .models import DeskRow, ReplyRow, SubmissionFileRow, SubmissionRow, TombstoneRow
from .outbox import OutboxImport
from .reflocks import ref_locks_for
from .replies import ReplyInfo
from .submissions import PendingSubmission, SubmissionInfo
from .unit import UnitOfWork
from .uploads import UploadArea

# Every blob a row references, with its SHA-256; and the blobs held inline in the database.
# Plain SQL, so that a backup can ask it of an SQLite snapshot file too (app/store/backup.py).
BLOB_QUERY = (
    "SELECT blob_ref, sha256 FROM submission_files UNION ALL SELECT blob_ref, sha256 FROM replies"
)
INLINE_QUERY = "SELECT DISTINCT ref FROM blob_chunks"
BlobList = tuple[list[tuple[str, str]], set[str]]


class Store:
    """Entry point for the web app and the CLI. Thread-safe (one engine, short transactions)."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings.database_url)
        self.blobs: BlobStore
        locks = ref_locks_for(self.engine, settings.blob_backend, settings.data_dir)
        if settings.blob_backend == "db":
            self.blobs = DbBlobStore(self.engine, locks)
        else:
            self.blobs = FsBlobStore(settings.blob_path, engine=self.engine, locks=locks)
        self.uploads = UploadArea(self.engine, self.blobs, settings)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def protect_sqlite_files(self) -> None:
        """0600 on the SQLite file (SQLite gives -wal/-shm the same mode)."""
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            path = Path(self.engine.url.database)
            for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                if candidate.exists():
                    candidate.chmod(0o600)

    def unit_of_work(self, proof: object, what: str) -> UnitOfWork:
        """A unit of work on this store's database and blobs (see app/store/unit.py)."""
        return UnitOfWork(self.engine, self.blobs, proof, what)

    # ------------------------------------------------------------------ upkeep

    def cleanup(self, *, expire: bool = True, restamp: bool = True) -> CleanupReport:
        """``guwah cleanup``: crash debris at any age, expired uploads, and the disk's times.

        Debris is what no row references and no live writer holds (app/store/reflocks.py), so
        this is safe while servers on the same data run. ``restamp`` sets every file and
        directory under the data dir back to its UTC day in one batch (app/store/disktimes.py).
        """
        expired = self.uploads.expire() if expire else 0  # past their Upload-Expires
        report = self.blobs.cleanup(self.referenced_refs)
        report.expired_uploads = expired
        if restamp:
            report.restamped = self.restamp()
        return report

    def cleanup_staging(self) -> int:
        """Start-up: remove crash debris (not expired uploads); returns how many."""
        return self.cleanup(expire=False).removed

    def cleanup_expired(self) -> int:
        """Crash debris and uploads past their expiry; returns how many were removed."""
        return self.cleanup().removed

    def restamp(self) -> int:
        """Every file and directory of the data (and blob dir) back to its UTC day."""
        roots = [self.settings.data_dir]
        if self.blobs.backend == "fs":
            roots.append(self.settings.blob_path)
        return restamp_tree(roots)

    def referenced_refs(self) -> set[str]:
        """Every blob a row references. Uploads are read first: adoption moves a blob from an
        upload row to a file row in one commit, so reading them the other way round could
        miss a blob adopted between the two reads."""
        refs = self.uploads.refs()  # live resumable uploads are not orphans
        with self.engine.connect() as conn:
            refs.update(r for (r,) in conn.execute(select(SubmissionFileRow.blob_ref)))
            refs.update(r for (r,) in conn.execute(select(ReplyRow.blob_ref)))
        return refs

    def blob_digests(self) -> BlobList:
        """(every referenced blob with its SHA-256, the blobs held in ``blob_chunks``)."""
        with self.engine.connect() as conn:
            refs = [(str(r), str(h)) for r, h in conn.execute(text(BLOB_QUERY))]
            inline = {str(r) for (r,) in conn.execute(text(INLINE_QUERY))}
        return refs, inline

    def pending_bytes(self) -> int:
        """Bytes in unfinished uploads and blobs being written (for ``max_pending_bytes``)."""
        return self.blobs.pending_bytes()

    def free_bytes(self) -> int:
        """Free disk space where blobs are written (for ``min_free_bytes`` -> 507)."""
        path = self.settings.blob_path if self.blobs.backend == "fs" else self.settings.data_dir
        while not path.exists() and path != path.parent:
            path = path.parent
        return shutil.disk_usage(path).free

    # ------------------------------------------------------------------ desks and keys

    def add_desk(self, name: str, description: str = "") -> Desk:
        return desks.add_desk(self.engine, name, description)

    def remove_desk(self, name: str) -> None:
        """Remove a desk that never received a submission."""
        desks.remove_desk(self.engine, name)

    def list_desks(self) -> list[Desk]:
        return desks.list_desks(self.engine)

    def get_desk(self, name: str) -> Desk:
        return desks.get_desk(self.engine, name)

    def add_recipient(self, desk_name: str, editor_name: str, age_recipient: str,
                      ed25519_pub: str, fingerprint: str) -> EditorKey:
        """Add an editor's public keys to a desk (see app/store/desks.py)."""
        return desks.add_recipient(self.engine, desk_name, editor_name, age_recipient,
                                   ed25519_pub, fingerprint)

    def remove_recipient(self, desk_name: str, fingerprint: str) -> None:
        desks.remove_recipient(self.engine, desk_name, fingerprint)

    # ------------------------------------------------------------------ submissions

    def begin_submission(
        self,
        desk: Desk | str,
        token_hash: str,
        reply_recipient: str,
        parent_id: str | None = None,
    ) -> PendingSubmission:
        """Start a submission to ``desk`` (a Desk or its name). See PendingSubmission."""
        desk = self.get_desk(desk if isinstance(desk, str) else desk.name)
        new = submissions.check_new(self.engine, desk, token_hash, reply_recipient, parent_id)
        uow = self.unit_of_work(SubmissionFileRow.blob_ref, "the submission")
        return PendingSubmission(uow, new)

    def submission(self, submission_id: str) -> SubmissionInfo:
        return submissions.submission(self.engine, submission_id)

    def list_submissions(
        self, desk_name: str | None = None, token_hash: str | None = None
    ) -> list[SubmissionInfo]:
        """Submissions (optionally of one desk or one mailbox), oldest day first."""
        return submissions.list_submissions(self.engine, desk_name, token_hash)

    def mailbox_exists(self, token_hash: str) -> bool:
        """Whether any submission belongs to this mailbox (a returning witness)."""
        return submissions.mailbox_exists(self.engine, token_hash)

    def open_blob_for_read(self, submission_id: str, role: str) -> BinaryIO:
        return self.blobs.open(submissions.blob_ref(self.engine, submission_id, role))

    def tombstones(self) -> list[tuple[str, dt.date]]:
        return submissions.tombstones(self.engine)

    # ------------------------------------------------------------------ replies and outbox

    def replies(self, token_hash: str) -> list[ReplyInfo]:
        return replies.mailbox_replies(self.engine, token_hash)

    def open_reply(self, reply_id: str, token_hash: str) -> BinaryIO:
        """The reply's age file, only for the mailbox it belongs to."""
        return self._open_reply(replies.blob_ref(self.engine, reply_id, token_hash))

    def open_reply_by_id(self, reply_id: str) -> BinaryIO:
        """A reply's age file for an export to its desk's editors (no mailbox check)."""
        return self._open_reply(replies.blob_ref(self.engine, reply_id))

    def _open_reply(self, ref: str | None) -> BinaryIO:
        if ref is None:
            raise NotFound("no such reply")
        return self.blobs.open(ref)

    def desk_replies(self, desk_name: str) -> list[ReplyInfo]:
        """Every reply of a desk, oldest first (see app/store/replies.py)."""
        return replies.desk_replies(self.engine, self.get_desk(desk_name))

    def begin_outbox(
        self, desk_name: str, bundle_id: str, submission_ids: set[str]
    ) -> OutboxImport:
        """Apply an editor's verified outbox bundle as one unit of work (app/store/outbox.py).
        Refuses a bundle id applied before (AlreadyUsed) and submissions of other desks."""
        desk = self.get_desk(desk_name)
        return OutboxImport(self.engine, self.blobs, desk, bundle_id, submission_ids)

    # ------------------------------------------------------------------ exports

    def next_export_sequence(self, desk_name: str) -> int:
        """The number the desk's next export bundle carries (1, 2, …)."""
        return exports.next_sequence(self.engine, self.get_desk(desk_name))

    def record_export(
        self,
        desk_name: str,
        submission_ids: list[str],
        sequence: int | None = None,
        *,
        only_new: bool = False,
        reply_ids: list[str] | None = None,
    ) -> int:
        """Record a desk's export bundle; returns its sequence number (1, 2, …).

        ``sequence`` is the number the bundle already carries; with ``only_new`` none of the
        submissions may have been recorded by another export yet. If another export took either in
        the meantime (two app nodes exporting at once, docs/multinode.md), nothing is recorded
        and Conflict says so: a row recorded under another number would mark submissions
        as exported that no surviving bundle carries. The desk row is locked for the
        transaction (PostgreSQL; SQLite has one writer anyway) and the unique (desk, sequence)
        constraint is the last word.
        """
        desk = self.get_desk(desk_name)
        return exports.record_export(
            self.engine, desk, submission_ids, sequence, only_new, reply_ids or []
        )

    def exported_ids(self, desk_name: str) -> set[str]:
        return exports.exported(self.engine, self.get_desk(desk_name), "submission_ids")

    def exported_reply_ids(self, desk_name: str) -> set[str]:
        return exports.exported(self.engine, self.get_desk(desk_name), "reply_ids")

    # ------------------------------------------------------------------ a witness's deletions

    def withdraw_replies(self, token_hash: str) -> list[str]:
        """Delete the mailbox's replies, leaving tombstones (app/store/withdrawals.py)."""
        return withdrawals.withdraw_replies(self.engine, self.blobs, token_hash)

    def withdrawn_replies(self, reply_ids: set[str]) -> list[tuple[str, dt.date]]:
        """The tombstones among ``reply_ids`` (say, a desk's exported replies): (id, day)."""
        return withdrawals.withdrawn_replies(self.engine, reply_ids)

    # ------------------------------------------------------------------ operator views

    def stats(self) -> dict[str, Any]:
        """Counts per desk and per day, sizes; nothing that identifies anyone."""
        with self.engine.connect() as conn:
            per_desk = {
                name: int(n)
                for name, n in conn.execute(
                    select(DeskRow.name, func.count(SubmissionRow.id))
                    .join(SubmissionRow, SubmissionRow.desk_id == DeskRow.id, isouter=True)
                    .group_by(DeskRow.name)
                    .order_by(DeskRow.name)
                )
            }
            per_day = {
                day.isoformat(): int(n)
                for day, n in conn.execute(
                    select(SubmissionRow.day, func.count())
                    .group_by(SubmissionRow.day)
                    .order_by(SubmissionRow.day)
                )
            }
            files, size = conn.execute(
                select(func.count(), func.coalesce(func.sum(SubmissionFileRow.size), 0))
            ).one()
            replies_n = conn.execute(select(func.count()).select_from(ReplyRow)).scalar_one()
            tombstones = conn.execute(select(func.count()).select_from(TombstoneRow)).scalar_one()
        return {
            "submissions": sum(per_day.values()),
            "by_desk": per_desk,
            "by_day": per_day,
            "files": int(files),
            "ciphertext_bytes": int(size),
            "replies": int(replies_n),
            "deleted": int(tombstones),
            "pending_bytes": self.pending_bytes(),
        }

    def pragmas(self) -> dict[str, object]:
        """SQLite pragmas as a live connection sees them (for self-check and tests)."""
        return sqlite_pragmas(self.engine)

