"""Resumable uploads: ciphertext being uploaded in chunks, adopted at commit.

Only a random id, the blob name, the desk, the role, the declared length and the day of the
last write are kept; no time of day, nothing about the witness.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("blob_ref", sa.String(length=64), nullable=False),
        sa.Column("desk_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["desk_id"],
            ["desks.id"],
            name=op.f("fk_uploads_desk_id_desks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
        sa.UniqueConstraint("blob_ref", name=op.f("uq_uploads_blob_ref")),
    )
    op.create_index(op.f("ix_uploads_desk_id"), "uploads", ["desk_id"], unique=False)
    op.create_index(op.f("ix_uploads_day"), "uploads", ["day"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_uploads_day"), table_name="uploads")
    op.drop_index(op.f("ix_uploads_desk_id"), table_name="uploads")
    op.drop_table("uploads")
