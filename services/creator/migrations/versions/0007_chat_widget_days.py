"""A widget's daily message count in one row per UTC day.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Before this, each visitor message counted the widget's messages of the last 24 hours, a
scan that grew with the widget's traffic (up to its limit of a million a day). Today's
row is seeded from today's messages, so a widget keeps its count across the upgrade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "creator"


def upgrade() -> None:
    op.create_table(
        "chat_widget_days",
        sa.Column("widget_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("widget_id", "day", name="pk_chat_widget_days"),
        sa.ForeignKeyConstraint(
            ["widget_id"],
            [f"{SCHEMA}.chat_widgets.id"],
            name="fk_chat_widget_days_widget_id_chat_widgets",
        ),
        schema=SCHEMA,
    )
    op.execute(
        """
        INSERT INTO creator.chat_widget_days (widget_id, day, messages)
        SELECT widget_id, (now() AT TIME ZONE 'UTC')::date, count(*)
        FROM creator.chat_messages
        WHERE role = 'visitor'
            AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        GROUP BY widget_id
        """
    )


def downgrade() -> None:
    op.drop_table("chat_widget_days", schema=SCHEMA)
