"""Brands with a voice, campaign briefs and cadences, posts and their history,
schedule runs, client review links, publishing targets and jobs.

Campaigns made before brands existed get a "Default brand" (UTC) of their tenant.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "planner"


def _now(name: str) -> "sa.Column[datetime]":
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _stamp(name: str) -> "sa.Column[datetime]":
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    _brands()
    _campaigns()
    _posts()
    _reviews()
    _publishing()


def _brands() -> None:
    op.create_table(
        "brands",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("default_channels", postgresql.ARRAY(sa.String(32)), nullable=False),
        sa.Column("voice", postgresql.JSONB(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_brands"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_brands_tenant_created", "brands", ["tenant_id", "created_at", "id"], schema=SCHEMA
    )
    op.create_index(
        "uq_brands_tenant_lower_name",
        "brands",
        ["tenant_id", sa.text("lower(name)")],
        unique=True,
        schema=SCHEMA,
    )


def _campaigns() -> None:
    op.add_column("campaigns", sa.Column("brand_id", sa.Uuid(), nullable=True), schema=SCHEMA)
    op.add_column("campaigns", sa.Column("brief", sa.Text(), nullable=True), schema=SCHEMA)
    op.add_column(
        "campaigns",
        sa.Column("cadence", postgresql.JSONB(), nullable=False, server_default="{}"),
        schema=SCHEMA,
    )
    op.add_column("campaigns", _now("updated_at"), schema=SCHEMA)
    op.execute(
        """
        INSERT INTO planner.brands (id, tenant_id, name, timezone, default_channels, voice,
                                    created_by)
        SELECT gen_random_uuid(), tenant_id, 'Default brand', 'UTC', '{}', '{}', 'migration'
        FROM planner.campaigns GROUP BY tenant_id
        """
    )
    op.execute(
        """
        UPDATE planner.campaigns c SET brand_id = b.id
        FROM planner.brands b WHERE b.tenant_id = c.tenant_id AND c.brand_id IS NULL
        """
    )
    op.alter_column("campaigns", "brand_id", nullable=False, schema=SCHEMA)
    op.alter_column("campaigns", "cadence", server_default=None, schema=SCHEMA)
    op.create_foreign_key(
        "fk_campaigns_brand_id_brands",
        "campaigns",
        "brands",
        ["brand_id"],
        ["id"],
        source_schema=SCHEMA,
        referent_schema=SCHEMA,
    )


def _posts() -> None:
    op.create_table(
        "posts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("local_date", sa.Date(), nullable=False),
        sa.Column("local_time", sa.Time(), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("title", sa.String(200), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("hashtags", postgresql.ARRAY(sa.String(100)), nullable=False),
        sa.Column("call_to_action", sa.String(300), nullable=True),
        sa.Column("image_prompt", sa.Text(), nullable=True),
        sa.Column("alt_text", sa.Text(), nullable=True),
        sa.Column("content_version", sa.Integer(), nullable=False),
        sa.Column("generation_request_id", sa.Uuid(), nullable=True),
        sa.Column("generation_job_id", sa.String(120), nullable=True),
        sa.Column("generation_note", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_posts"),
        sa.ForeignKeyConstraint(
            ["campaign_id"], [f"{SCHEMA}.campaigns.id"], name="fk_posts_campaign_id_campaigns"
        ),
        sa.UniqueConstraint(
            "campaign_id",
            "channel",
            "local_date",
            "local_time",
            name="uq_posts_campaign_id_channel_local_date_local_time",
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_posts_tenant_scheduled", "posts", ["tenant_id", "scheduled_at", "id"], schema=SCHEMA
    )
    op.create_index(
        "ix_posts_campaign_scheduled", "posts", ["campaign_id", "scheduled_at", "id"], schema=SCHEMA
    )
    op.create_index("ix_posts_due", "posts", ["state", "scheduled_at"], schema=SCHEMA)
    op.create_table(
        "post_transitions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("post_id", sa.Uuid(), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        _now("at"),
        sa.PrimaryKeyConstraint("id", name="pk_post_transitions"),
        sa.ForeignKeyConstraint(
            ["post_id"], [f"{SCHEMA}.posts.id"], name="fk_post_transitions_post_id_posts"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_post_transitions_post", "post_transitions", ["post_id", "id"], schema=SCHEMA
    )
    op.create_table(
        "schedule_runs",
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        _now("last_run_at"),
        sa.PrimaryKeyConstraint("campaign_id", "month", name="pk_schedule_runs"),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            [f"{SCHEMA}.campaigns.id"],
            name="fk_schedule_runs_campaign_id_campaigns",
        ),
        schema=SCHEMA,
    )


def _reviews() -> None:
    op.create_table(
        "review_links",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("campaign_id", sa.Uuid(), nullable=False),
        sa.Column("post_id", sa.Uuid(), nullable=True),
        sa.Column("month", sa.String(7), nullable=True),
        sa.Column("reviewer", sa.String(200), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        _now("created_at"),
        _stamp("answered_at"),
        _stamp("reminded_at"),
        _stamp("revoked_at"),
        sa.PrimaryKeyConstraint("id", name="pk_review_links"),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            [f"{SCHEMA}.campaigns.id"],
            name="fk_review_links_campaign_id_campaigns",
        ),
        sa.ForeignKeyConstraint(
            ["post_id"], [f"{SCHEMA}.posts.id"], name="fk_review_links_post_id_posts"
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_review_links_expiring", "review_links", ["expires_at"], schema=SCHEMA)


def _publishing() -> None:
    op.create_table(
        "publishing_targets",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("webhook_url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("accept_secret_header", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_publishing_targets"),
        schema=SCHEMA,
    )
    op.create_table(
        "publish_jobs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("post_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _now("next_attempt_at"),
        _stamp("dispatched_at"),
        _stamp("deadline_at"),
        _stamp("completed_at"),
        sa.Column("external_url", sa.String(2000), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _now("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_publish_jobs"),
        sa.ForeignKeyConstraint(
            ["post_id"], [f"{SCHEMA}.posts.id"], name="fk_publish_jobs_post_id_posts"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_publish_jobs_pending", "publish_jobs", ["state", "next_attempt_at"], schema=SCHEMA
    )
    op.create_index("ix_publish_jobs_post", "publish_jobs", ["post_id"], schema=SCHEMA)


def downgrade() -> None:
    for table in (
        "publish_jobs",
        "publishing_targets",
        "review_links",
        "schedule_runs",
        "post_transitions",
        "posts",
    ):
        op.drop_table(table, schema=SCHEMA)
    op.drop_constraint("fk_campaigns_brand_id_brands", "campaigns", schema=SCHEMA)
    for column in ("updated_at", "cadence", "brief", "brand_id"):
        op.drop_column("campaigns", column, schema=SCHEMA)
    op.drop_table("brands", schema=SCHEMA)
