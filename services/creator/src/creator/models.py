"""Creator tables (schema ``creator``), as SQLModel tables in creator's own registry."""

from datetime import date, datetime
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
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from bai_platform.consumer import InboxRecord
from bai_platform.db import TenantOwned, created_now, table_of, table_registry, timestamp
from bai_platform.outbox import OutboxRecord


class CreatorTable(SQLModel, registry=table_registry("creator")):
    """The base of creator's tables."""


class CampaignBrief(CreatorTable, TenantOwned, table=True):
    """What creator knows of a planner campaign: the brief its generations follow."""

    __tablename__ = "campaign_briefs"

    campaign_id: UUID = Field(primary_key=True)
    tenant_id: UUID = Field(index=True)
    name: str = Field(sa_type=String(200))
    goal: str | None = Field(default=None, sa_type=Text)
    channels: list[str] = Field(sa_type=ARRAY(String(32)))
    starts_on: date | None = None
    ends_on: date | None = None
    source_event_id: str = Field(sa_type=String(64))
    received_at: datetime = created_now()


class GenerationJob(CreatorTable, TenantOwned, table=True):
    """One request for a post's content (``gen_`` ids), from queued to an end state."""

    __tablename__ = "generation_jobs"
    __table_args__ = (
        Index("ix_generation_jobs_queue", "state", "next_attempt_at"),
        Index("ix_generation_jobs_post", "post_id", "created_at"),
        Index("ix_generation_jobs_deadline", "state", "deadline_at"),
        Index("ix_generation_jobs_credits", "credits"),
    )

    id: str = Field(sa_type=String(64), primary_key=True)
    tenant_id: UUID
    # The planner's request; one job per request however often the request is delivered.
    request_id: UUID = Field(unique=True)
    post_id: UUID
    campaign_id: UUID
    channel: str = Field(sa_type=String(32))
    engine: str = Field(sa_type=String(32))
    state: str = Field(sa_type=String(16))
    attempts: int = 0
    inputs: dict[str, Any] = Field(sa_type=JSONB)
    error: str | None = Field(default=None, sa_type=Text)
    next_attempt_at: datetime = created_now()
    created_at: datetime = created_now()
    updated_at: datetime = created_now()
    completed_at: datetime | None = timestamp(nullable=True)
    dispatched_at: datetime | None = timestamp(nullable=True)
    # A dispatched job with no callback by then times out.
    deadline_at: datetime | None = timestamp(nullable=True)
    # The credits saga with billing: none -> reserved -> pending_commit -> committed, or
    # -> pending_release -> released; refused when billing said no. Engines run only
    # reserved jobs.
    credits: str = Field(default="none", sa_type=String(16))


class EngineSettings(CreatorTable, TenantOwned, table=True):
    """How a tenant's posts are written; secrets are stored encrypted."""

    __tablename__ = "engine_settings"

    tenant_id: UUID = Field(primary_key=True)
    engine: str = Field(sa_type=String(32))
    webhook_url: str | None = Field(default=None, sa_type=String(2000))
    secret: bytes | None = Field(default=None, sa_type=LargeBinary)
    accept_secret_header: bool = False
    deadline_seconds: int = 600
    base_url: str | None = Field(default=None, sa_type=String(2000))
    model: str | None = Field(default=None, sa_type=String(200))
    api_key: bytes | None = Field(default=None, sa_type=LargeBinary)
    updated_by: str = Field(sa_type=String(64))
    updated_at: datetime = created_now()


class ContentVersion(CreatorTable, TenantOwned, table=True):
    """One version of a post's content; regenerating adds one, nothing is overwritten."""

    __tablename__ = "content_versions"
    __table_args__ = (UniqueConstraint("post_id", "version"),)

    # Given by PostgreSQL on insert (None on an instance until then).
    id: int = Field(default=None, sa_type=BigInteger, primary_key=True, sa_column_args=[Identity()])
    tenant_id: UUID
    post_id: UUID
    version: int
    job_id: str = Field(sa_type=String(64), foreign_key="generation_jobs.id")
    engine: str = Field(sa_type=String(32))
    content: dict[str, Any] = Field(sa_type=JSONB)
    created_at: datetime = created_now()


class ChatWidget(CreatorTable, TenantOwned, table=True):
    """A chat widget for one of the tenant's websites."""

    __tablename__ = "chat_widgets"
    __table_args__ = (Index("ix_chat_widgets_tenant", "tenant_id", "created_at"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    tenant_id: UUID
    # What the website's script tag carries; public by design, it only names the widget.
    public_key: str = Field(sa_type=String(64), unique=True)
    name: str = Field(sa_type=String(200))
    allowed_origins: list[str] = Field(sa_type=ARRAY(String(300)))
    greeting: str = Field(sa_type=Text)
    knowledge: list[dict[str, Any]] = Field(sa_type=JSONB)
    voice: dict[str, Any] = Field(sa_type=JSONB)
    active: bool = True
    # "workspace": the workspace's engine answers; "builtin": the knowledge snippets do.
    engine: str = Field(default="workspace", sa_type=String(32))
    visitor_hourly_limit: int
    widget_daily_limit: int
    created_by: str = Field(sa_type=String(64))
    created_at: datetime = created_now()
    updated_at: datetime = created_now()


class Conversation(CreatorTable, TenantOwned, table=True):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_widget", "widget_id", "created_at"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    tenant_id: UUID
    widget_id: UUID = Field(foreign_key="chat_widgets.id")
    visitor: str = Field(sa_type=String(120))
    created_at: datetime = created_now()


class ChatMessage(CreatorTable, TenantOwned, table=True):
    __tablename__ = "chat_messages"
    __table_args__ = (
        Index("ix_chat_messages_conversation", "conversation_id", "id"),
        Index("ix_chat_messages_widget_time", "widget_id", "created_at"),
        Index("ix_chat_messages_visitor_time", "visitor", "created_at"),
    )

    # Given by PostgreSQL on insert (None on an instance until then).
    id: int = Field(default=None, sa_type=BigInteger, primary_key=True, sa_column_args=[Identity()])
    tenant_id: UUID
    widget_id: UUID
    conversation_id: UUID = Field(foreign_key="conversations.id")
    visitor: str = Field(sa_type=String(120))
    role: str = Field(sa_type=String(16))  # visitor, assistant
    text: str = Field(sa_type=Text)
    created_at: datetime = created_now()


class ChatWidgetDay(CreatorTable, table=True):
    """Visitors' messages a widget took on one UTC day: its daily limit, counted in one
    row instead of over the day's messages (which a busy widget has by the thousand)."""

    __tablename__ = "chat_widget_days"

    widget_id: UUID = Field(foreign_key="chat_widgets.id", primary_key=True)
    day: date = Field(primary_key=True)
    messages: int


class Outbox(CreatorTable, OutboxRecord, table=True):
    """Events of this service waiting to be published (``bai_platform.outbox``)."""


class Inbox(CreatorTable, InboxRecord, table=True):
    """Events this service's consumers have applied (``bai_platform.consumer``)."""


outbox = table_of(Outbox)
inbox = table_of(Inbox)
