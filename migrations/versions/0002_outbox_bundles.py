"""Applied outbox bundles: the ids of editor bundles already imported.

``guwah import`` refuses an outbox bundle whose ``bundle_id`` is listed here, so a replayed
bundle can never store a reply twice. Only the random id, the desk and the day are kept.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_bundles",
        sa.Column("bundle_id", sa.String(length=64), nullable=False),
        sa.Column("desk_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["desk_id"],
            ["desks.id"],
            name=op.f("fk_outbox_bundles_desk_id_desks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bundle_id", name=op.f("pk_outbox_bundles")),
    )


def downgrade() -> None:
    op.drop_table("outbox_bundles")
