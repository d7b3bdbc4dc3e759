"""Initial schema: desks, editor keys, submissions + files, replies, tombstones, exports,
database blobs. Every temporal column is a Date (no time of day is ever stored).

Revision ID: 0001
Revises: (none)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blob_chunks",
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("ref", "seq", name=op.f("pk_blob_chunks")),
    )
    op.create_table(
        "blob_staging",
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("ref", name=op.f("pk_blob_staging")),
    )
    op.create_table(
        "desks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desks")),
        sa.UniqueConstraint("name", name=op.f("uq_desks_name")),
    )
    op.create_table(
        "replies",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("blob_ref", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replies")),
        sa.UniqueConstraint("blob_ref", name=op.f("uq_replies_blob_ref")),
    )
    op.create_index(op.f("ix_replies_token_hash"), "replies", ["token_hash"], unique=False)

    op.create_table(
        "tombstones",
        sa.Column("submission_id", sa.String(length=32), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("submission_id", name=op.f("pk_tombstones")),
    )
    op.create_table(
        "editor_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("desk_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("age_recipient", sa.Text(), nullable=False),
        sa.Column("ed25519_public", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["desk_id"], ["desks.id"], name=op.f("fk_editor_keys_desk_id_desks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_editor_keys")),
        sa.UniqueConstraint("desk_id", "fingerprint", name="uq_editor_keys_desk_fp"),
    )
    op.create_index(op.f("ix_editor_keys_desk_id"), "editor_keys", ["desk_id"], unique=False)

    op.create_table(
        "exports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("desk_id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("submission_ids", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["desk_id"], ["desks.id"], name=op.f("fk_exports_desk_id_desks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exports")),
        sa.UniqueConstraint("desk_id", "sequence", name="uq_exports_desk_sequence"),
    )
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("desk_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("reply_recipient", sa.Text(), nullable=False),
        sa.Column("parent_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["desk_id"], ["desks.id"], name=op.f("fk_submissions_desk_id_desks")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["submissions.id"],
            name=op.f("fk_submissions_parent_id_submissions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submissions")),
    )
    op.create_index(op.f("ix_submissions_day"), "submissions", ["day"], unique=False)
    op.create_index(op.f("ix_submissions_desk_id"), "submissions", ["desk_id"], unique=False)
    op.create_index("ix_submissions_parent_id", "submissions", ["parent_id"], unique=False)
    op.create_index(op.f("ix_submissions_token_hash"), "submissions", ["token_hash"], unique=False)

    op.create_table(
        "submission_files",
        sa.Column("submission_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("blob_ref", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submissions.id"],
            name=op.f("fk_submission_files_submission_id_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("submission_id", "role", name=op.f("pk_submission_files")),
        sa.UniqueConstraint("blob_ref", name=op.f("uq_submission_files_blob_ref")),
    )


def downgrade() -> None:
    op.drop_table("submission_files")
    op.drop_index(op.f("ix_submissions_token_hash"), table_name="submissions")
    op.drop_index("ix_submissions_parent_id", table_name="submissions")
    op.drop_index(op.f("ix_submissions_desk_id"), table_name="submissions")
    op.drop_index(op.f("ix_submissions_day"), table_name="submissions")

    op.drop_table("submissions")
    op.drop_table("exports")
    op.drop_index(op.f("ix_editor_keys_desk_id"), table_name="editor_keys")

    op.drop_table("editor_keys")
    op.drop_table("tombstones")
    op.drop_index(op.f("ix_replies_token_hash"), table_name="replies")

    op.drop_table("replies")
    op.drop_table("desks")
    op.drop_table("blob_staging")
    op.drop_table("blob_chunks")
