"""Replies travel to the whole desk: each reply knows its desk, each export its replies.

``replies.desk_id`` is set by ``guwah import`` so that a reply can still be exported to the
desk's other editors after the submission it answers was deleted (a reply and a "done" often
arrive in the same outbox). ``exports.reply_ids`` lists the replies an export carried, so the
next ``--since-last`` export sends only new ones. No foreign key on ``desk_id``: a desk with
replies always holds (or held) submissions and is never removed.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("replies", sa.Column("desk_id", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_replies_desk_id"), "replies", ["desk_id"], unique=False)
    op.add_column(
        "exports", sa.Column("reply_ids", sa.Text(), nullable=False, server_default="[]")
    )


def downgrade() -> None:
    with op.batch_alter_table("exports") as batch:
        batch.drop_column("reply_ids")
    op.drop_index(op.f("ix_replies_desk_id"), table_name="replies")
    with op.batch_alter_table("replies") as batch:
        batch.drop_column("desk_id")
