"""Per-tenant engine settings; dispatch and deadline times on generation jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "creator"


def upgrade() -> None:
    for column in ("dispatched_at", "deadline_at"):
        op.add_column(
            "generation_jobs",
            sa.Column(column, sa.DateTime(timezone=True), nullable=True),
            schema=SCHEMA,
        )
    op.create_index(
        "ix_generation_jobs_deadline", "generation_jobs", ["state", "deadline_at"], schema=SCHEMA
    )
    op.create_table(
        "engine_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("webhook_url", sa.String(2000), nullable=True),
        sa.Column("secret", sa.LargeBinary(), nullable=True),
        sa.Column("accept_secret_header", sa.Boolean(), nullable=False),
        sa.Column("deadline_seconds", sa.Integer(), nullable=False),
        sa.Column("base_url", sa.String(2000), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("api_key", sa.LargeBinary(), nullable=True),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_engine_settings"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("engine_settings", schema=SCHEMA)
    op.drop_index("ix_generation_jobs_deadline", "generation_jobs", schema=SCHEMA)
    for column in ("deadline_at", "dispatched_at"):
        op.drop_column("generation_jobs", column, schema=SCHEMA)
