"""The database schema: what the server keeps, and — by omission — what it never keeps.

Stored per submission, and nothing else about a witness:

* a random id (``secrets.token_urlsafe(16)``), never derived from anything the witness sent;
* the desk it was addressed to;
* the **day** of arrival (UTC date). No time of day anywhere in this schema: every temporal
  column is a ``Date`` (tests/test_store.py inspects the schema and fails on any DateTime);
* per file: its role (``message``, ``file-1``, …), the ciphertext's padded size and SHA-256, and
  the random name of the blob that holds it (ciphertext only, age v1);
* the hash of the mailbox token (``SHA-256("guwah.org/v1/token" || token)``, hex) — the token
  itself and the codename never reach this database;
* the witness's age reply *recipient* (public; the identity is derived from the codename);
* the parent submission id for a follow-up in the same mailbox.

No IP address, user agent, referrer, language, cookie, timing or client fingerprint columns
exist, and none may be added (docs/threat-model.md, what is stored).

Tables for the editor round trip are here already so that it needs no schema change
to start: ``replies`` (ciphertext to a mailbox), ``tombstones`` (which ids editors deleted, so a
later export does not resurrect them), ``exports`` (what each desk's bundles covered) and
``outbox_bundles`` (editor bundles already applied, so a replay is refused).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names so that migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class DeskRow(Base):
    """A desk: a team of editors a witness can address. Its keys are all X25519 or all hybrid."""

    __tablename__ = "desks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")

    keys: Mapped[list[EditorKeyRow]] = relationship(
        back_populates="desk", cascade="all, delete-orphan", order_by="EditorKeyRow.id"
    )


class EditorKeyRow(Base):
    """An editor's public keys: age recipient (encrypt to) and Ed25519 (verify their bundles)."""

    __tablename__ = "editor_keys"
    __table_args__ = (UniqueConstraint("desk_id", "fingerprint", name="uq_editor_keys_desk_fp"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # "X25519" | "mlkem768x25519"
    age_recipient: Mapped[str] = mapped_column(Text)
    ed25519_public: Mapped[str] = mapped_column(String(64))  # base64 of 32 bytes
    fingerprint: Mapped[str] = mapped_column(String(64))

    desk: Mapped[DeskRow] = relationship(back_populates="keys")


class SubmissionRow(Base):
    """One submission. See the module docstring for why these columns and no others."""

    __tablename__ = "submissions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id"), index=True)
    day: Mapped[dt.date] = mapped_column(Date, index=True)
    token_hash: Mapped[str] = mapped_column(String(64), index=True)
    reply_recipient: Mapped[str] = mapped_column(Text)
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("submissions.id", ondelete="SET NULL"), nullable=True
    )

    files: Mapped[list[SubmissionFileRow]] = relationship(
        back_populates="submission", cascade="all, delete-orphan", order_by="SubmissionFileRow.role"
    )


class SubmissionFileRow(Base):
    """One age file of a submission: role, padded ciphertext size, SHA-256, blob name."""

    __tablename__ = "submission_files"

    submission_id: Mapped[str] = mapped_column(
        ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    blob_ref: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))

    submission: Mapped[SubmissionRow] = relationship(back_populates="files")


class ReplyRow(Base):
    """An editor's reply (age file to the witness's reply recipient and the desk)."""

    __tablename__ = "replies"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), index=True)
    day: Mapped[dt.date] = mapped_column(Date)
    blob_ref: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # set by guwah import (migration 0004): exported to the desk's editors even after the
    # submission it answers was deleted; None for replies stored before 0004
    desk_id: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)


class TombstoneRow(Base):
    """A submission editors deleted (signed request): id and day of deletion only."""

    __tablename__ = "tombstones"

    submission_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date)


class ExportRow(Base):
    """One export bundle of a desk: its sequence number and the submission ids it carried."""

    __tablename__ = "exports"
    __table_args__ = (UniqueConstraint("desk_id", "sequence", name="uq_exports_desk_sequence"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"))
    sequence: Mapped[int] = mapped_column(Integer)
    day: Mapped[dt.date] = mapped_column(Date)
    submission_ids: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    reply_ids: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")  # JSON list


class OutboxBundleRow(Base):
    """An editor outbox bundle already applied (migration 0002): replays are refused."""

    __tablename__ = "outbox_bundles"

    bundle_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(Date)


class BlobStagingRow(Base):
    """Database blob backend: a blob still being written (not yet part of a commit)."""

    __tablename__ = "blob_staging"

    ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date)


class BlobChunkRow(Base):
    """Database blob backend: ciphertext in chunks of at most 1 MiB, ordered by ``seq``."""

    __tablename__ = "blob_chunks"

    ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


Index("ix_submissions_parent_id", SubmissionRow.parent_id)


class UploadRow(Base):
    """A resumable upload in progress (migration 0003): ciphertext only.

    Kept until a commit adopts it into a submission or it expires. ``day`` is the UTC day of
    the last write (expiry counts from the end of that day); no time of day is stored. The
    bytes live in ``blob_dir/uploads/<blob_ref>`` (fs) or in ``blob_chunks`` with a
    ``blob_staging`` row (db), never anywhere else.
    """

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    blob_ref: Mapped[str] = mapped_column(String(64), unique=True)
    desk_id: Mapped[int] = mapped_column(ForeignKey("desks.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    length: Mapped[int] = mapped_column(BigInteger)
    day: Mapped[dt.date] = mapped_column(Date, index=True)
