"""Planner tables (schema ``planner``), as SQLModel tables in planner's own registry."""

from datetime import date, datetime, time
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Identity,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel, col

from bai_platform.consumer import InboxRecord
from bai_platform.db import TenantOwned, created_now, table_of, table_registry, timestamp
from bai_platform.idempotency import IdempotencyRecord
from bai_platform.outbox import OutboxRecord


class PlannerTable(SQLModel, registry=table_registry("planner")):
    """The base of planner's tables."""


class Brand(PlannerTable, TenantOwned, table=True):
    __tablename__ = "brands"
    __table_args__ = (Index("ix_brands_tenant_created", "tenant_id", "created_at", "id"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    tenant_id: UUID
    name: str = Field(sa_type=String(200))
    timezone: str = Field(sa_type=String(64))
    default_channels: list[str] = Field(sa_type=ARRAY(String(32)))
    voice: dict[str, Any] = Field(sa_type=JSONB)
    created_by: str = Field(sa_type=String(64))
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


# Names are unique per workspace whatever their case; concurrent creates cannot both win.
Index(
    "uq_brands_tenant_lower_name",
    col(Brand.tenant_id),
    func.lower(col(Brand.name)),
    unique=True,
)


class Campaign(PlannerTable, TenantOwned, table=True):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_tenant_created", "tenant_id", "created_at", "id"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    tenant_id: UUID
    brand_id: UUID = Field(foreign_key="brands.id")
    name: str = Field(sa_type=String(200))
    goal: str | None = Field(default=None, sa_type=Text)
    brief: str | None = Field(default=None, sa_type=Text)
    channels: list[str] = Field(default_factory=list, sa_type=ARRAY(String(32)))
    cadence: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    starts_on: date | None = None
    ends_on: date | None = None
    state: str = Field(default="draft", sa_type=String(16))
    created_by: str = Field(sa_type=String(64))
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class Post(PlannerTable, TenantOwned, table=True):
    __tablename__ = "posts"
    __table_args__ = (
        # One post per slot: laying a month out twice creates nothing new.
        UniqueConstraint("campaign_id", "channel", "local_date", "local_time"),
        Index("ix_posts_tenant_scheduled", "tenant_id", "scheduled_at", "id"),
        Index("ix_posts_campaign_scheduled", "campaign_id", "scheduled_at", "id"),
        Index("ix_posts_due", "state", "scheduled_at"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    tenant_id: UUID
    campaign_id: UUID = Field(foreign_key="campaigns.id")
    channel: str = Field(sa_type=String(32))
    local_date: date
    local_time: time
    scheduled_at: datetime = timestamp()
    state: str = Field(sa_type=String(16))
    origin: str = Field(sa_type=String(16))
    title: str | None = Field(default=None, sa_type=String(200))
    text: str | None = Field(default=None, sa_type=Text)
    hashtags: list[str] = Field(default_factory=list, sa_type=ARRAY(String(100)))
    call_to_action: str | None = Field(default=None, sa_type=String(300))
    image_prompt: str | None = Field(default=None, sa_type=Text)
    alt_text: str | None = Field(default=None, sa_type=Text)
    content_version: int = 0
    generation_request_id: UUID | None = None
    generation_job_id: str | None = Field(default=None, sa_type=String(120))
    generation_note: str | None = Field(default=None, sa_type=Text)
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class PostTransition(PlannerTable, TenantOwned, table=True):
    """Who moved a post, when, from what to what (append-only)."""

    __tablename__ = "post_transitions"
    __table_args__ = (Index("ix_post_transitions_post", "post_id", "id"),)

    # Given by PostgreSQL on insert (None on an instance until then).
    id: int = Field(default=None, sa_type=BigInteger, primary_key=True, sa_column_args=[Identity()])
    tenant_id: UUID
    post_id: UUID = Field(foreign_key="posts.id")
    from_state: str | None = Field(default=None, sa_type=String(16))
    to_state: str = Field(sa_type=String(16))
    actor: str = Field(sa_type=String(120))
    note: str | None = Field(default=None, sa_type=Text)
    at: datetime = created_now()


class ScheduleRun(PlannerTable, TenantOwned, table=True):
    """A month laid out for a campaign (the answer to repeat calls)."""

    __tablename__ = "schedule_runs"

    campaign_id: UUID = Field(foreign_key="campaigns.id", primary_key=True)
    month: str = Field(sa_type=String(7), primary_key=True)
    tenant_id: UUID
    created: int
    runs: int = 1
    last_run_at: datetime = created_now()


class ReviewLink(PlannerTable, TenantOwned, table=True):
    """A signed, expiring link a client uses to approve or reject without an account."""

    __tablename__ = "review_links"
    __table_args__ = (Index("ix_review_links_expiring", "expires_at"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    tenant_id: UUID
    campaign_id: UUID = Field(foreign_key="campaigns.id")
    post_id: UUID | None = Field(default=None, foreign_key="posts.id")
    month: str | None = Field(default=None, sa_type=String(7))
    reviewer: str | None = Field(default=None, sa_type=String(200))
    expires_at: datetime = timestamp()
    created_by: str = Field(sa_type=String(64))
    created_at: datetime = created_now()
    answered_at: datetime | None = timestamp(nullable=True)
    reminded_at: datetime | None = timestamp(nullable=True)
    revoked_at: datetime | None = timestamp(nullable=True)


class PublishingTarget(PlannerTable, TenantOwned, table=True):
    """The tenant's n8n publishing workflow; the secret is stored encrypted."""

    __tablename__ = "publishing_targets"

    tenant_id: UUID = Field(primary_key=True)
    webhook_url: str = Field(sa_type=String(2000))
    secret: bytes = Field(sa_type=LargeBinary)
    accept_secret_header: bool = False
    updated_by: str = Field(sa_type=String(64))
    updated_at: datetime = created_now()


class PublishJob(PlannerTable, TenantOwned, table=True):
    """One attempt to have a due post published by the tenant's workflow (``pub_`` ids)."""

    __tablename__ = "publish_jobs"
    __table_args__ = (
        Index("ix_publish_jobs_pending", "state", "next_attempt_at"),
        Index("ix_publish_jobs_post", "post_id"),
    )

    id: str = Field(sa_type=String(64), primary_key=True)
    tenant_id: UUID
    post_id: UUID = Field(foreign_key="posts.id")
    state: str = Field(sa_type=String(16))
    attempts: int = 0
    next_attempt_at: datetime = created_now()
    dispatched_at: datetime | None = timestamp(nullable=True)
    deadline_at: datetime | None = timestamp(nullable=True)
    completed_at: datetime | None = timestamp(nullable=True)
    external_url: str | None = Field(default=None, sa_type=String(2000))
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = created_now()


class Outbox(PlannerTable, OutboxRecord, table=True):
    """Events of this service waiting to be published (``bai_platform.outbox``)."""


class Inbox(PlannerTable, InboxRecord, table=True):
    """Events this service's consumers have applied (``bai_platform.consumer``)."""


class IdempotencyKey(PlannerTable, IdempotencyRecord, table=True):
    """Answers kept for ``Idempotency-Key`` (``bai_platform.idempotency``)."""


outbox = table_of(Outbox)
inbox = table_of(Inbox)
idempotency = table_of(IdempotencyKey)
