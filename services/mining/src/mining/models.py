"""Mining tables (schema ``mining``), as SQLModel tables in mining's own registry."""

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from bai_platform.consumer import InboxRecord
from bai_platform.db import TenantOwned, created_now, table_of, table_registry, timestamp
from bai_platform.idempotency import IdempotencyRecord
from bai_platform.outbox import OutboxRecord


class MiningTable(SQLModel, registry=table_registry("mining")):
    """The base of mining's tables."""


class ExtractionJob(MiningTable, TenantOwned, table=True):
    """One extraction (``ext_`` ids): a source, limits, progress and where it ended."""

    __tablename__ = "extraction_jobs"
    __table_args__ = (
        Index("ix_extraction_jobs_tenant_created", "tenant_id", "created_at"),
        Index("ix_extraction_jobs_queue", "state", "created_at"),
        Index("ix_extraction_jobs_dispatch", "dispatch", "next_attempt_at"),
    )

    id: str = Field(sa_type=String(64), primary_key=True)
    tenant_id: UUID
    # "website" (the built-in crawler) or "n8n" (the tenant's workflow); ``source["type"]``.
    source_type: str = Field(
        default="website", sa_type=String(16), sa_column_kwargs={"server_default": "website"}
    )
    source: dict[str, Any] = Field(sa_type=JSONB)
    limits: dict[str, Any] = Field(sa_type=JSONB)
    state: str = Field(sa_type=String(16))
    pages_fetched: int = 0
    items_found: int = 0
    errors: int = 0
    # The first problems, readable (a URL refused, a page that failed), capped.
    problems: list[str] = Field(default_factory=list, sa_type=JSONB)
    credits: str = Field(default="none", sa_type=String(16))
    cancel_requested: bool = False
    created_by: str = Field(sa_type=String(64))
    created_at: datetime = created_now()
    started_at: datetime | None = timestamp(nullable=True)
    finished_at: datetime | None = timestamp(nullable=True)
    # n8n jobs only (see mining.service.n8n): "pending" (to send, at ``next_attempt_at``),
    # "sending" (in flight), "sent" (the workflow took it; callbacks until ``deadline_at``).
    dispatch: str | None = Field(default=None, sa_type=String(16))
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_attempt_at: datetime | None = timestamp(nullable=True)
    dispatched_at: datetime | None = timestamp(nullable=True)
    deadline_at: datetime | None = timestamp(nullable=True)
    # The page numbers of the workflow's callbacks taken so far, and the final one's.
    pages_accepted: list[int] = Field(
        default_factory=list, sa_type=ARRAY(Integer), sa_column_kwargs={"server_default": "{}"}
    )
    final_page: int | None = None


class MiningWorkflow(MiningTable, TenantOwned, table=True):
    """The tenant's n8n mining workflow (``n8n`` sources); the secret is stored encrypted."""

    __tablename__ = "workflows"

    tenant_id: UUID = Field(primary_key=True)
    webhook_url: str = Field(sa_type=String(2000))
    secret: bytes = Field(sa_type=LargeBinary)
    accept_secret_header: bool = False
    deadline_seconds: int
    updated_by: str = Field(sa_type=String(64))
    updated_at: datetime = created_now()


class Lead(MiningTable, TenantOwned, table=True):
    """A lead found by a job, deduplicated by email, phone and domain."""

    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("job_id", "key"),
        Index("ix_leads_job", "job_id", "id"),
    )

    # Given by PostgreSQL on insert (None on an instance until then).
    id: int = Field(default=None, sa_type=BigInteger, primary_key=True, sa_column_args=[Identity()])
    tenant_id: UUID
    job_id: str = Field(sa_type=String(64))
    key: str = Field(sa_type=String(300))
    organisation: str | None = Field(default=None, sa_type=String(300))
    domain: str | None = Field(default=None, sa_type=String(300))
    emails: list[str] = Field(sa_type=ARRAY(String(320)))
    phones: list[str] = Field(sa_type=ARRAY(String(40)))
    socials: list[str] = Field(sa_type=ARRAY(String(500)))
    addresses: list[str] = Field(sa_type=ARRAY(String(500)))
    pages: list[str] = Field(sa_type=ARRAY(String(2000)))
    data: dict[str, Any] = Field(sa_type=JSONB)
    created_at: datetime = created_now()


class MiningSchedule(MiningTable, TenantOwned, table=True):
    """A job run again by a cron expression in a time zone, never over its last run."""

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_due", "active", "next_run_at"),)

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    tenant_id: UUID
    name: str = Field(sa_type=String(200))
    cron: str = Field(sa_type=String(100))
    timezone: str = Field(sa_type=String(64))
    job: dict[str, Any] = Field(sa_type=JSONB)
    active: bool = True
    next_run_at: datetime = timestamp()
    last_job_id: str | None = Field(default=None, sa_type=String(64))
    skipped_runs: int = 0
    created_by: str = Field(sa_type=String(64))
    created_at: datetime = created_now()


class Outbox(MiningTable, OutboxRecord, table=True):
    """Events of this service waiting to be published (``bai_platform.outbox``)."""


class Inbox(MiningTable, InboxRecord, table=True):
    """Events this service's consumers have applied (``bai_platform.consumer``)."""


class IdempotencyKey(MiningTable, IdempotencyRecord, table=True):
    """Answers kept for ``Idempotency-Key`` (``bai_platform.idempotency``)."""


outbox = table_of(Outbox)
inbox = table_of(Inbox)
idempotency = table_of(IdempotencyKey)
