"""The plan of each tenant, as billing last announced it (rate-limit tiers follow it).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "gateway"


def upgrade() -> None:
    op.add_column("tenants", sa.Column("plan", sa.String(32), nullable=True), schema=SCHEMA)
    op.add_column("tenants", sa.Column("plan_changed_at", sa.Float(), nullable=True), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("tenants", "plan_changed_at", schema=SCHEMA)
    op.drop_column("tenants", "plan", schema=SCHEMA)
