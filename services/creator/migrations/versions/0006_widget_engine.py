"""Which engine answers a chat widget: the workspace's or the built-in one.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "creator"


def upgrade() -> None:
    op.add_column(
        "chat_widgets",
        sa.Column("engine", sa.String(32), nullable=False, server_default="workspace"),
        schema=SCHEMA,
    )
    op.alter_column("chat_widgets", "engine", server_default=None, schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("chat_widgets", "engine", schema=SCHEMA)
