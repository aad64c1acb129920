"""Generation jobs and content versions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "creator"


def _stamp(name: str, *, now: bool = True) -> sa.Column:  # type: ignore[type-arg]  # any type
    default = sa.func.now() if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=not now, server_default=default)


def upgrade() -> None:
    op.create_table(
        "generation_jobs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("post_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("inputs", postgresql.JSONB(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _stamp("next_attempt_at"),
        _stamp("created_at"),
        _stamp("updated_at"),
        _stamp("completed_at", now=False),
        sa.PrimaryKeyConstraint("id", name="pk_generation_jobs"),
        sa.UniqueConstraint("request_id", name="uq_generation_jobs_request_id"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_generation_jobs_queue", "generation_jobs", ["state", "next_attempt_at"], schema=SCHEMA
    )
    op.create_index(
        "ix_generation_jobs_post", "generation_jobs", ["post_id", "created_at"], schema=SCHEMA
    )
    op.create_table(
        "content_versions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("post_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("content", postgresql.JSONB(), nullable=False),
        _stamp("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_content_versions"),
        sa.ForeignKeyConstraint(
            ["job_id"],
            [f"{SCHEMA}.generation_jobs.id"],
            name="fk_content_versions_job_id_generation_jobs",
        ),
        sa.UniqueConstraint("post_id", "version", name="uq_content_versions_post_id_version"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("content_versions", schema=SCHEMA)
    op.drop_table("generation_jobs", schema=SCHEMA)
