"""Where each generation job stands in the credits saga with billing.

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

SCHEMA = "creator"


def upgrade() -> None:
    op.add_column(
        "generation_jobs",
        sa.Column("credits", sa.String(16), nullable=False, server_default="none"),
        schema=SCHEMA,
    )
    op.alter_column("generation_jobs", "credits", server_default=None, schema=SCHEMA)
    op.create_index("ix_generation_jobs_credits", "generation_jobs", ["credits"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_index("ix_generation_jobs_credits", "generation_jobs", schema=SCHEMA)
    op.drop_column("generation_jobs", "credits", schema=SCHEMA)
