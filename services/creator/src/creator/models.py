"""Creator tables (schema ``creator``)."""

from datetime import date, datetime
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
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bai_platform.consumer import inbox_table
from bai_platform.db import TenantOwned, make_metadata
from bai_platform.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = make_metadata("creator")


class CampaignBrief(TenantOwned, Base):
    """What creator knows of a planner campaign: the brief its generations follow."""

    __tablename__ = "campaign_briefs"

    campaign_id: Mapped[UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    goal: Mapped[str | None] = mapped_column(Text)
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(32)), nullable=False)
    starts_on: Mapped[date | None] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    source_event_id: Mapped[str] = mapped_column(String(64), nullable=False)
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class GenerationJob(TenantOwned, Base):
    """One request for a post's content (``gen_`` ids), from queued to an end state."""

    __tablename__ = "generation_jobs"
    __table_args__ = (
        Index("ix_generation_jobs_queue", "state", "next_attempt_at"),
        Index("ix_generation_jobs_post", "post_id", "created_at"),
        Index("ix_generation_jobs_deadline", "state", "deadline_at"),
        Index("ix_generation_jobs_credits", "credits"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    # The planner's request; one job per request however often the request is delivered.
    request_id: Mapped[UUID] = mapped_column(nullable=False, unique=True)
    post_id: Mapped[UUID] = mapped_column(nullable=False)
    campaign_id: Mapped[UUID] = mapped_column(nullable=False)
    channel: Mapped[str] = mapped_column(String(32), nullable=False)
    engine: Mapped[str] = mapped_column(String(32), nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A dispatched job with no callback by then times out.
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The credits saga with billing: none -> reserved -> pending_commit -> committed, or
    # -> pending_release -> released; refused when billing said no. Engines run only
    # reserved jobs.
    credits: Mapped[str] = mapped_column(String(16), nullable=False, default="none")


class EngineSettings(TenantOwned, Base):
    """How a tenant's posts are written; secrets are stored encrypted."""

    __tablename__ = "engine_settings"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    engine: Mapped[str] = mapped_column(String(32), nullable=False)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    accept_secret_header: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    deadline_seconds: Mapped[int] = mapped_column(Integer, nullable=False, default=600)
    base_url: Mapped[str | None] = mapped_column(String(2000))
    model: Mapped[str | None] = mapped_column(String(200))
    api_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    updated_by: Mapped[str] = mapped_column(String(64), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class ContentVersion(TenantOwned, Base):
    """One version of a post's content; regenerating adds one, nothing is overwritten."""

    __tablename__ = "content_versions"
    __table_args__ = (UniqueConstraint("post_id", "version"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    post_id: Mapped[UUID] = mapped_column(nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    job_id: Mapped[str] = mapped_column(ForeignKey("generation_jobs.id"), nullable=False)
    engine: Mapped[str] = mapped_column(String(32), nullable=False)
    content: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class ChatWidget(TenantOwned, Base):
    """A chat widget for one of the tenant's websites."""

    __tablename__ = "chat_widgets"
    __table_args__ = (Index("ix_chat_widgets_tenant", "tenant_id", "created_at"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    # What the website's script tag carries; public by design, it only names the widget.
    public_key: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    allowed_origins: Mapped[list[str]] = mapped_column(ARRAY(String(300)), nullable=False)
    greeting: Mapped[str] = mapped_column(Text, nullable=False)
    knowledge: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    voice: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # "workspace": the workspace's engine answers; "builtin": the knowledge snippets do.
    engine: Mapped[str] = mapped_column(String(32), nullable=False, default="workspace")
    visitor_hourly_limit: Mapped[int] = mapped_column(Integer, nullable=False)
    widget_daily_limit: Mapped[int] = mapped_column(Integer, nullable=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Conversation(TenantOwned, Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_widget", "widget_id", "created_at"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    widget_id: Mapped[UUID] = mapped_column(ForeignKey("chat_widgets.id"), nullable=False)
    visitor: Mapped[str] = mapped_column(String(120), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class ChatMessage(TenantOwned, Base):
    __tablename__ = "chat_messages"
    __table_args__ = (
        Index("ix_chat_messages_conversation", "conversation_id", "id"),
        Index("ix_chat_messages_widget_time", "widget_id", "created_at"),
        Index("ix_chat_messages_visitor_time", "visitor", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    widget_id: Mapped[UUID] = mapped_column(nullable=False)
    conversation_id: Mapped[UUID] = mapped_column(ForeignKey("conversations.id"), nullable=False)
    visitor: Mapped[str] = mapped_column(String(120), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)  # visitor, assistant
    text: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
