"""The Store: desks, editor keys, submissions (ciphertext only), replies — one object per process.

What is stored about a witness is exactly what app/store/models.py lists, and nothing else.
Every write is atomic; see app/store/blobs.py for the commit protocol.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload

from app.crypto import AgeError, parse_recipient
from app.protocol.ids import DESK_NAME, HEX64, ID, ROLE, is_a
from app.protocol.utcday import today
from app.settings import Settings

from .blobs import BlobStore, BlobWriter, CleanupReport, DbBlobStore, FsBlobStore
from .db import make_engine
from .disktimes import restamp_tree
from .errors import (
    BadReplyRecipient,
    BadTokenHash,
    Conflict,
    Invalid,
    NotFound,
    NotStored,
    StoreError,
)
from .models import (
    DeskRow,
    EditorKeyRow,
    ExportRow,
    ReplyRow,
    SubmissionFileRow,
    SubmissionRow,
    TombstoneRow,
)
from .reflocks import ref_locks_for

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"



def new_id() -> str:
    """A random submission/reply id (128 bits); it encodes nothing."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class EditorKey:
    name: str
    age_recipient: str
    ed25519_public: str  # base64 of the raw 32-byte key
    fingerprint: str
    kind: str  # "X25519" | "mlkem768x25519"


@dataclass(frozen=True)
class Desk:
    id: int
    name: str
    description: str
    kind: str | None  # None while the desk has no editor keys
    recipients: list[EditorKey] = field(default_factory=list)

    def age_recipients(self) -> list[Any]:
        """Parsed recipients, ready for ``app.crypto.Encryptor``."""
        return [parse_recipient(k.age_recipient) for k in self.recipients]


@dataclass(frozen=True)
class FileInfo:
    role: str
    size: int
    sha256: str


@dataclass(frozen=True)
class SubmissionInfo:
    id: str
    desk: str
    day: dt.date
    parent_id: str | None
    files: list[FileInfo]
    token_hash: str = ""
    reply_recipient: str = ""


@dataclass(frozen=True)
class ReplyInfo:
    id: str
    day: dt.date
    size: int
    sha256: str


def _desk(row: DeskRow) -> Desk:
    keys = [
        EditorKey(k.name, k.age_recipient, k.ed25519_public, k.fingerprint, k.kind)
        for k in row.keys
    ]
    return Desk(row.id, row.name, row.description, keys[0].kind if keys else None, keys)


def _submission(row: SubmissionRow, desk_name: str) -> SubmissionInfo:
    return SubmissionInfo(
        id=row.id,
        desk=desk_name,
        day=row.day,
        parent_id=row.parent_id,
        files=[FileInfo(f.role, f.size, f.sha256) for f in row.files],
        token_hash=row.token_hash,
        reply_recipient=row.reply_recipient,
    )


def _check_token_hash(token_hash: str) -> str:
    if not is_a(HEX64, token_hash):
        raise BadTokenHash("the mailbox token hash must be 64 lowercase hex characters")
    return token_hash


class PendingSubmission:
    """A submission being written. Nothing of it is visible until ``commit()`` returns.

    Use as a context manager: leaving the block without ``commit()`` discards every blob.
    """

    def __init__(
        self,
        store: Store,
        desk: Desk,
        token_hash: str,
        reply_recipient: str,
        parent_id: str | None,
    ) -> None:
        self._store = store
        self.desk = desk
        self.token_hash = token_hash
        self.reply_recipient = reply_recipient
        self.parent_id = parent_id
        self.id = new_id()
        self._writers: dict[str, BlobWriter] = {}
        self._done = False

    def __enter__(self) -> PendingSubmission:
        return self

    def __exit__(self, *_: object) -> None:
        if not self._done:
            self.abort()

    def open_blob(self, role: str) -> BlobWriter:
        """A writable file for one age file of this submission (staging name, random)."""
        if self._done:
            raise StoreError("this submission is already finished")
        if not is_a(ROLE, role):
            raise Invalid(f"unknown file role {role!r}: use 'message' or 'file-N'")
        if role in self._writers:
            raise StoreError(f"the submission already has a {role!r}")
        writer = self._store.blobs.stage()
        self._writers[role] = writer
        return writer

    @property
    def pending_bytes(self) -> int:
        return sum(w.size for w in self._writers.values())

    def commit(self) -> str:
        """Make the submission visible, with all its files, or raise and keep nothing."""
        if self._done:
            raise StoreError("this submission is already finished")
        if "message" not in self._writers:
            self.abort()
            raise StoreError("a submission needs its message")
        self._done = True
        try:
            return self._commit()
        finally:
            self._store.blobs.release(self._writers.values())

    def _commit(self) -> str:
        refs = [w.ref for w in self._writers.values()]
        try:
            for writer in self._writers.values():
                writer.close()  # flush + fsync (no-op when the caller closed it)
            self._store.blobs.before_commit(refs)
            with self._store.engine.begin() as conn:
                conn.execute(
                    insert(SubmissionRow).values(
                        id=self.id,
                        desk_id=self.desk.id,
                        day=today(),
                        token_hash=self.token_hash,
                        reply_recipient=self.reply_recipient,
                        parent_id=self.parent_id,
                    )
                )
                conn.execute(
                    insert(SubmissionFileRow),
                    [
                        {
                            "submission_id": self.id,
                            "role": role,
                            "blob_ref": w.ref,
                            "size": w.size,
                            "sha256": w.sha256,
                        }
                        for role, w in sorted(self._writers.items())
                    ],
                )
                self._store.blobs.in_commit(conn, refs)
        except BaseException as exc:
            # A failed COMMIT may still have reached the database (e.g. the connection dropped
            # before the acknowledgement): never delete blobs a committed row may reference.
            # Our blob names are random and ours alone: a file row naming one proves the commit.
            committed = self._store._row_exists(SubmissionFileRow.blob_ref, refs[0])
            if committed:
                return self.id
            if committed is False:
                self._store.blobs.discard(refs)
            # committed is None (database unreachable): leave the blobs to cleanup_staging()
            if isinstance(exc, SQLAlchemyError | OSError):
                raise NotStored("the submission could not be stored; nothing was kept") from exc
            raise
        return self.id

    def abort(self) -> None:
        """Discard everything written so far."""
        self._done = True
        for writer in self._writers.values():
            writer.abort()
        self._store.blobs.discard([w.ref for w in self._writers.values()])
        self._store.blobs.release(self._writers.values())


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

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def init(self) -> None:
        """Create the blob dirs and the schema (idempotent)."""
        if isinstance(self.blobs, FsBlobStore):
            self.blobs.ensure_dirs()
        self.migrate()
        self._protect_sqlite_files()

    def _protect_sqlite_files(self) -> None:
        """0600 on the SQLite file (SQLite gives -wal/-shm the same mode)."""
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            path = Path(self.engine.url.database)
            for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                if candidate.exists():
                    candidate.chmod(0o600)

    def migrate(self) -> None:
        """Alembic ``upgrade head`` with the scripts in migrations/ (see migrations/README)."""
        from alembic import command

        with self.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        from alembic.script import ScriptDirectory

        return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()

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

    @property
    def uploads(self) -> Any:
        """Resumable uploads: an ``app.store.uploads.UploadArea``."""
        area = self.__dict__.get("_uploads")
        if area is None:
            from .uploads import UploadArea

            area = self.__dict__["_uploads"] = UploadArea(self)
        return area

    def _row_exists(self, column: Any, value: str) -> bool | None:
        """Whether a row with ``column == value`` is committed; None if we cannot tell."""
        try:
            with self.engine.connect() as conn:
                return conn.execute(select(column).where(column == value)).first() is not None
        except SQLAlchemyError:
            return None

    def referenced_refs(self) -> set[str]:
        """Every blob a row references. Uploads are read first: adoption moves a blob from an
        upload row to a file row in one commit, so reading them the other way round could
        miss a blob adopted between the two reads."""
        refs = self.uploads.refs()  # live resumable uploads are not orphans
        with self.engine.connect() as conn:
            refs.update(r for (r,) in conn.execute(select(SubmissionFileRow.blob_ref)))
            refs.update(r for (r,) in conn.execute(select(ReplyRow.blob_ref)))
        return refs

    def pending_bytes(self) -> int:
        """Bytes in unfinished uploads (for ``max_pending_bytes``)."""
        return self.blobs.pending_bytes() + self.uploads.stored_bytes()

    def free_bytes(self) -> int:
        """Free disk space where blobs are written (for ``min_free_bytes`` -> 507)."""
        path = self.settings.blob_path if self.blobs.backend == "fs" else self.settings.data_dir
        while not path.exists() and path != path.parent:
            path = path.parent
        return shutil.disk_usage(path).free

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    # ------------------------------------------------------------------ desks and keys

    def add_desk(self, name: str, description: str = "") -> Desk:
        if not is_a(DESK_NAME, name):
            raise StoreError(
                "a desk name is 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                "or digit"
            )
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(DeskRow).values(name=name, description=description or ""))
        except IntegrityError:
            raise Conflict(f"a desk named {name!r} already exists") from None
        return self.get_desk(name)

    def update_desk(self, name: str, description: str) -> Desk:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(DeskRow).where(DeskRow.name == name).values(description=description)
            )
        if result.rowcount == 0:
            raise NotFound(f"no desk named {name!r}")
        return self.get_desk(name)

    def remove_desk(self, name: str) -> None:
        """Remove a desk that never received a submission."""
        desk = self.get_desk(name)
        with self.engine.begin() as conn:
            used = conn.execute(
                select(func.count())
                .select_from(SubmissionRow)
                .where(SubmissionRow.desk_id == desk.id)
            ).scalar_one()
            if used:
                raise StoreError(f"desk {name!r} holds submissions; it cannot be removed")
            conn.execute(delete(ExportRow).where(ExportRow.desk_id == desk.id))
            conn.execute(delete(EditorKeyRow).where(EditorKeyRow.desk_id == desk.id))
            conn.execute(delete(DeskRow).where(DeskRow.id == desk.id))

    def list_desks(self) -> list[Desk]:
        with self.session() as s:
            rows = s.scalars(
                select(DeskRow).options(selectinload(DeskRow.keys)).order_by(DeskRow.id)
            )
            return [_desk(r) for r in rows]

    def get_desk(self, name: str) -> Desk:
        with self.session() as s:
            row = s.scalars(
                select(DeskRow).options(selectinload(DeskRow.keys)).where(DeskRow.name == name)
            ).first()
            if row is None:
                raise NotFound(f"no desk named {name!r}")
            return _desk(row)

    def get_desk_by_id(self, desk_id: int) -> Desk:
        with self.session() as s:
            row = s.get(DeskRow, desk_id, options=[selectinload(DeskRow.keys)])
            if row is None:
                raise NotFound("no such desk")
            return _desk(row)

    def add_recipient(
        self,
        desk_name: str,
        editor_name: str,
        age_recipient: str,
        ed25519_pub: str,
        fingerprint: str,
    ) -> EditorKey:
        """Add an editor's public keys to a desk; refuses a mix of X25519 and hybrid keys."""
        try:
            recipient = parse_recipient(age_recipient)
        except AgeError as exc:
            raise StoreError(str(exc)) from None
        try:
            raw = base64.b64decode(ed25519_pub, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise StoreError("the Ed25519 public key must be base64 of 32 bytes")
        if not editor_name or len(editor_name) > 200 or "\n" in editor_name:
            raise StoreError("an editor name is 1-200 characters on one line")
        desk = self.get_desk(desk_name)
        if desk.kind is not None and desk.kind != recipient.type:
            raise StoreError(
                f"desk {desk_name!r} holds {desk.kind} keys; age never mixes X25519 and "
                f"post-quantum recipients in one file, so a {recipient.type} key cannot join it"
            )
        canonical = str(recipient)
        for key in desk.recipients:
            if key.fingerprint == fingerprint or key.age_recipient == canonical:
                raise Conflict(f"this key is already on desk {desk_name!r}")
        key = EditorKey(editor_name, canonical, ed25519_pub, fingerprint, recipient.type)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(EditorKeyRow).values(
                        desk_id=desk.id,
                        name=key.name,
                        kind=key.kind,
                        age_recipient=key.age_recipient,
                        ed25519_public=key.ed25519_public,
                        fingerprint=key.fingerprint,
                    )
                )
        except IntegrityError:
            raise Conflict(f"this key is already on desk {desk_name!r}") from None
        return key

    def remove_recipient(self, desk_name: str, fingerprint: str) -> None:
        desk = self.get_desk(desk_name)
        wanted = fingerprint.strip().upper()
        with self.engine.begin() as conn:
            result = conn.execute(
                delete(EditorKeyRow).where(
                    EditorKeyRow.desk_id == desk.id, func.upper(EditorKeyRow.fingerprint) == wanted
                )
            )
        if result.rowcount == 0:
            raise NotFound(f"no key with fingerprint {fingerprint} on desk {desk_name!r}")

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
        if not desk.recipients:
            raise StoreError(f"desk {desk.name!r} has no editor keys yet")
        _check_token_hash(token_hash)
        try:
            reply = parse_recipient(reply_recipient)
        except AgeError as exc:
            raise BadReplyRecipient(f"reply recipient: {exc}") from None
        if reply.type != desk.kind:
            raise BadReplyRecipient(
                f"the reply recipient must be {desk.kind}, like the keys of desk {desk.name!r}"
            )
        if parent_id is not None:
            with self.engine.connect() as conn:
                parent = conn.execute(
                    select(SubmissionRow.token_hash).where(SubmissionRow.id == parent_id)
                ).first()
            if parent is None or not secrets.compare_digest(parent[0], token_hash):
                raise NotFound("no such earlier submission in this mailbox")
        return PendingSubmission(self, desk, token_hash, str(reply), parent_id)

    def submission(self, submission_id: str) -> SubmissionInfo:
        if not is_a(ID, submission_id):
            raise NotFound("no such submission")
        with self.session() as s:
            row = s.scalars(
                select(SubmissionRow)
                .options(selectinload(SubmissionRow.files))
                .where(SubmissionRow.id == submission_id)
            ).first()
            if row is None:
                raise NotFound("no such submission")
            desk = s.get(DeskRow, row.desk_id)
            assert desk is not None
            return _submission(row, desk.name)

    def list_submissions(
        self, desk_name: str | None = None, token_hash: str | None = None
    ) -> list[SubmissionInfo]:
        """Submissions (optionally of one desk or one mailbox), oldest day first."""
        with self.session() as s:
            query = (
                select(SubmissionRow, DeskRow.name)
                .join(DeskRow, DeskRow.id == SubmissionRow.desk_id)
                .options(selectinload(SubmissionRow.files))
                .order_by(SubmissionRow.day, SubmissionRow.id)
            )
            if desk_name is not None:
                query = query.where(DeskRow.name == desk_name)
            if token_hash is not None:
                query = query.where(SubmissionRow.token_hash == token_hash)
            return [_submission(row, name) for row, name in s.execute(query)]

    def mailbox_exists(self, token_hash: str) -> bool:
        """Whether any submission belongs to this mailbox (a returning witness)."""
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(SubmissionRow.id).where(SubmissionRow.token_hash == token_hash).limit(1)
                ).first()
                is not None
            )

    def open_blob_for_read(self, submission_id: str, role: str) -> BinaryIO:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(SubmissionFileRow.blob_ref).where(
                    SubmissionFileRow.submission_id == submission_id,
                    SubmissionFileRow.role == role,
                )
            ).first()
        if row is None:
            raise NotFound("no such file")
        return self.blobs.open(row[0])

    def delete_submission(self, submission_id: str) -> None:
        """Delete a submission and its ciphertext; leave a tombstone (id + day) behind."""
        with self.engine.begin() as conn:
            refs = [
                r
                for (r,) in conn.execute(
                    select(SubmissionFileRow.blob_ref).where(
                        SubmissionFileRow.submission_id == submission_id
                    )
                )
            ]
            conn.execute(
                update(SubmissionRow)
                .where(SubmissionRow.parent_id == submission_id)
                .values(parent_id=None)
            )
            conn.execute(
                delete(SubmissionFileRow).where(SubmissionFileRow.submission_id == submission_id)
            )
            result = conn.execute(delete(SubmissionRow).where(SubmissionRow.id == submission_id))
            if result.rowcount == 0:
                raise NotFound("no such submission")
            exists = conn.execute(
                select(TombstoneRow.submission_id).where(
                    TombstoneRow.submission_id == submission_id
                )
            ).first()
            if exists is None:
                conn.execute(insert(TombstoneRow).values(submission_id=submission_id, day=today()))
        self.blobs.delete(refs)

    # ------------------------------------------------------------------ replies

    def add_reply(self, token_hash: str, ciphertext: bytes | BinaryIO) -> str:
        """Store an editor's reply (an age file) for a mailbox; returns the reply id."""
        _check_token_hash(token_hash)
        writer = self.blobs.stage()
        ref = writer.ref
        reply_id = new_id()
        try:
            if isinstance(ciphertext, bytes | bytearray | memoryview):
                writer.write(ciphertext)
            else:
                while chunk := ciphertext.read(1024 * 1024):
                    writer.write(chunk)
            writer.close()
            self.blobs.before_commit([ref])
            with self.engine.begin() as conn:
                conn.execute(
                    insert(ReplyRow).values(
                        id=reply_id,
                        token_hash=token_hash,
                        day=today(),
                        blob_ref=ref,
                        size=writer.size,
                        sha256=writer.sha256,
                    )
                )
                self.blobs.in_commit(conn, [ref])
        except BaseException:
            writer.abort()
            committed = self._row_exists(ReplyRow.blob_ref, ref)
            if committed:
                return reply_id
            if committed is False:
                self.blobs.discard([ref])
            raise
        finally:
            self.blobs.release([writer])
        return reply_id

    def replies(self, token_hash: str) -> list[ReplyInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ReplyRow.id, ReplyRow.day, ReplyRow.size, ReplyRow.sha256)
                .where(ReplyRow.token_hash == token_hash)
                .order_by(ReplyRow.day, ReplyRow.id)
            )
            return [ReplyInfo(*r) for r in rows]

    def open_reply(self, reply_id: str, token_hash: str) -> BinaryIO:
        """The reply's age file, only for the mailbox it belongs to."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ReplyRow.blob_ref).where(
                    ReplyRow.id == reply_id, ReplyRow.token_hash == token_hash
                )
            ).first()
        if row is None:
            raise NotFound("no such reply")
        return self.blobs.open(row[0])

    # ------------------------------------------------------------------ exports

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
        and StoreError says so: a row recorded under another number would mark submissions
        as exported that no surviving bundle carries. The desk row is locked for the
        transaction (PostgreSQL; SQLite has one writer anyway) and the unique (desk, sequence)
        constraint is the last word.
        """
        desk = self.get_desk(desk_name)
        conflict = (
            f"another export of desk {desk.name} ran at the same time: nothing recorded, "
            "run guwah export again"
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(select(DeskRow.id).where(DeskRow.id == desk.id).with_for_update())
                last = conn.execute(
                    select(func.max(ExportRow.sequence)).where(ExportRow.desk_id == desk.id)
                ).scalar_one()
                next_sequence = (last or 0) + 1
                if sequence is not None and sequence != next_sequence:
                    raise Conflict(conflict)
                # the caller chose its submissions before taking the lock: if another export
                # recorded any of them since, this bundle would hand them out twice
                # (``only_new``: a --since-last export, which must not repeat any of them)
                wanted = set(submission_ids) if only_new else set()
                if wanted:
                    earlier = conn.execute(
                        select(ExportRow.submission_ids).where(ExportRow.desk_id == desk.id)
                    )
                    if any(wanted & set(json.loads(blob)) for (blob,) in earlier):
                        raise Conflict(conflict)
                conn.execute(
                    insert(ExportRow).values(
                        desk_id=desk.id,
                        sequence=next_sequence,
                        day=today(),
                        submission_ids=json.dumps(sorted(submission_ids)),
                        reply_ids=json.dumps(sorted(reply_ids or [])),
                    )
                )
        except IntegrityError:
            raise Conflict(conflict) from None
        return next_sequence

    def exported_ids(self, desk_name: str) -> set[str]:
        desk = self.get_desk(desk_name)
        ids: set[str] = set()
        with self.engine.connect() as conn:
            for (blob,) in conn.execute(
                select(ExportRow.submission_ids).where(ExportRow.desk_id == desk.id)
            ):
                ids.update(json.loads(blob))
        return ids

    def exported_reply_ids(self, desk_name: str) -> set[str]:
        desk = self.get_desk(desk_name)
        ids: set[str] = set()
        with self.engine.connect() as conn:
            for (blob,) in conn.execute(
                select(ExportRow.reply_ids).where(ExportRow.desk_id == desk.id)
            ):
                ids.update(json.loads(blob))
        return ids

    def desk_replies(self, desk_name: str) -> list[ReplyInfo]:
        """Every reply of a desk, oldest first: those ``guwah import`` tagged with the desk,
        and older untagged ones whose mailbox belongs to one of the desk's submissions."""
        desk = self.get_desk(desk_name)
        tokens = select(SubmissionRow.token_hash).where(SubmissionRow.desk_id == desk.id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ReplyRow.id, ReplyRow.day, ReplyRow.size, ReplyRow.sha256)
                .where(
                    (ReplyRow.desk_id == desk.id)
                    | (ReplyRow.desk_id.is_(None) & ReplyRow.token_hash.in_(tokens))
                )
                .order_by(ReplyRow.day, ReplyRow.id)
            )
            return [ReplyInfo(*r) for r in rows]

    def open_reply_by_id(self, reply_id: str) -> BinaryIO:
        """A reply's age file for an export to its desk's editors (no mailbox check)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(ReplyRow.blob_ref).where(ReplyRow.id == reply_id)).first()
        if row is None:
            raise NotFound("no such reply")
        return self.blobs.open(row[0])

    def tombstones(self) -> list[tuple[str, dt.date]]:
        with self.engine.connect() as conn:
            return [
                tuple(r) for r in conn.execute(select(TombstoneRow.submission_id, TombstoneRow.day))
            ]  # type: ignore[misc]

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
            replies = conn.execute(select(func.count()).select_from(ReplyRow)).scalar_one()
            tombstones = conn.execute(select(func.count()).select_from(TombstoneRow)).scalar_one()
        return {
            "submissions": sum(per_day.values()),
            "by_desk": per_desk,
            "by_day": per_day,
            "files": int(files),
            "ciphertext_bytes": int(size),
            "replies": int(replies),
            "deleted": int(tombstones),
            "pending_bytes": self.pending_bytes(),
        }

    def pragmas(self) -> dict[str, Any]:
        """SQLite pragmas as a live connection sees them (for self-check and tests)."""
        if self.engine.dialect.name != "sqlite":
            return {}
        out: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for name in ("journal_mode", "secure_delete", "foreign_keys", "synchronous"):
                out[name] = conn.execute(text(f"PRAGMA {name}")).scalar()
        return out


def alembic_config(connection: Connection | None = None) -> Any:
    """An Alembic Config for migrations/ (no alembic.ini needed); binds ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config
