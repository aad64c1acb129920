"""Planner tables (schema ``planner``)."""

from datetime import date, datetime, time
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Time,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bai_platform.consumer import inbox_table
from bai_platform.db import TenantOwned, make_metadata
from bai_platform.idempotency import idempotency_table
from bai_platform.outbox import outbox_table


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Base(DeclarativeBase):
    metadata = make_metadata("planner")


class Brand(TenantOwned, Base):
    __tablename__ = "brands"
    __table_args__ = (Index("ix_brands_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False)
    default_channels: Mapped[list[str]] = mapped_column(ARRAY(String(32)), nullable=False)
    voice: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


# Names are unique per workspace whatever their case; concurrent creates cannot both win.
Index("uq_brands_tenant_lower_name", Brand.tenant_id, func.lower(Brand.name), unique=True)


class Campaign(TenantOwned, Base):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    brand_id: Mapped[UUID] = mapped_column(ForeignKey("brands.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    goal: Mapped[str | None] = mapped_column(Text)
    brief: Mapped[str | None] = mapped_column(Text)
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(32)), nullable=False, default=list)
    cadence: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    starts_on: Mapped[date | None] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="draft")
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Post(TenantOwned, Base):
    __tablename__ = "posts"
    __table_args__ = (
        # One post per slot: laying a month out twice creates nothing new.
        UniqueConstraint("campaign_id", "channel", "local_date", "local_time"),
        Index("ix_posts_tenant_scheduled", "tenant_id", "scheduled_at", "id"),
        Index("ix_posts_campaign_scheduled", "campaign_id", "scheduled_at", "id"),
        Index("ix_posts_due", "state", "scheduled_at"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    campaign_id: Mapped[UUID] = mapped_column(ForeignKey("campaigns.id"), nullable=False)
    channel: Mapped[str] = mapped_column(String(32), nullable=False)
    local_date: Mapped[date] = mapped_column(Date, nullable=False)
    local_time: Mapped[time] = mapped_column(Time, nullable=False)
    scheduled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    origin: Mapped[str] = mapped_column(String(16), nullable=False)
    title: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str | None] = mapped_column(Text)
    hashtags: Mapped[list[str]] = mapped_column(ARRAY(String(100)), nullable=False, default=list)
    call_to_action: Mapped[str | None] = mapped_column(String(300))
    image_prompt: Mapped[str | None] = mapped_column(Text)
    alt_text: Mapped[str | None] = mapped_column(Text)
    content_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    generation_request_id: Mapped[UUID | None] = mapped_column()
    generation_job_id: Mapped[str | None] = mapped_column(String(120))
    generation_note: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class PostTransition(TenantOwned, Base):
    """Who moved a post, when, from what to what (append-only)."""

    __tablename__ = "post_transitions"
    __table_args__ = (Index("ix_post_transitions_post", "post_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    post_id: Mapped[UUID] = mapped_column(ForeignKey("posts.id"), nullable=False)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16), nullable=False)
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = _now()


class ScheduleRun(TenantOwned, Base):
    """A month laid out for a campaign (the answer to repeat calls)."""

    __tablename__ = "schedule_runs"

    campaign_id: Mapped[UUID] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    created: Mapped[int] = mapped_column(Integer, nullable=False)
    runs: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    last_run_at: Mapped[datetime] = _now()


class ReviewLink(TenantOwned, Base):
    """A signed, expiring link a client uses to approve or reject without an account."""

    __tablename__ = "review_links"
    __table_args__ = (Index("ix_review_links_expiring", "expires_at"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    campaign_id: Mapped[UUID] = mapped_column(ForeignKey("campaigns.id"), nullable=False)
    post_id: Mapped[UUID | None] = mapped_column(ForeignKey("posts.id"))
    month: Mapped[str | None] = mapped_column(String(7))
    reviewer: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = _now()
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PublishingTarget(TenantOwned, Base):
    """The tenant's n8n publishing workflow; the secret is stored encrypted."""

    __tablename__ = "publishing_targets"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    webhook_url: Mapped[str] = mapped_column(String(2000), nullable=False)
    secret: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    accept_secret_header: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    updated_by: Mapped[str] = mapped_column(String(64), nullable=False)
    updated_at: Mapped[datetime] = _now()


class PublishJob(TenantOwned, Base):
    """One attempt to have a due post published by the tenant's workflow (``pub_`` ids)."""

    __tablename__ = "publish_jobs"
    __table_args__ = (
        Index("ix_publish_jobs_pending", "state", "next_attempt_at"),
        Index("ix_publish_jobs_post", "post_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    post_id: Mapped[UUID] = mapped_column(ForeignKey("posts.id"), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = _now()
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    external_url: Mapped[str | None] = mapped_column(String(2000))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
idempotency = idempotency_table(Base.metadata)
