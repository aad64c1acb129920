"""Mining tables (schema ``mining``)."""

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bai_platform.consumer import inbox_table
from bai_platform.db import TenantOwned, make_metadata
from bai_platform.idempotency import idempotency_table
from bai_platform.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = make_metadata("mining")


class ExtractionJob(TenantOwned, Base):
    """One extraction (``ext_`` ids): a source, limits, progress and where it ended."""

    __tablename__ = "extraction_jobs"
    __table_args__ = (
        Index("ix_extraction_jobs_tenant_created", "tenant_id", "created_at"),
        Index("ix_extraction_jobs_queue", "state", "created_at"),
        Index("ix_extraction_jobs_dispatch", "dispatch", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    # "website" (the built-in crawler) or "n8n" (the tenant's workflow); ``source["type"]``.
    source_type: Mapped[str] = mapped_column(
        String(16), nullable=False, default="website", server_default="website"
    )
    source: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    limits: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    pages_fetched: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    items_found: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    errors: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The first problems, readable (a URL refused, a page that failed), capped.
    problems: Mapped[list[str]] = mapped_column(JSONB, nullable=False, default=list)
    credits: Mapped[str] = mapped_column(String(16), nullable=False, default="none")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # n8n jobs only (see mining.service.n8n): "pending" (to send, at ``next_attempt_at``),
    # "sending" (in flight), "sent" (the workflow took it; callbacks until ``deadline_at``).
    dispatch: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The page numbers of the workflow's callbacks taken so far, and the final one's.
    pages_accepted: Mapped[list[int]] = mapped_column(
        ARRAY(Integer), nullable=False, default=list, server_default="{}"
    )
    final_page: Mapped[int | None] = mapped_column(Integer)


class MiningWorkflow(TenantOwned, Base):
    """The tenant's n8n mining workflow (``n8n`` sources); the secret is stored encrypted."""

    __tablename__ = "workflows"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    webhook_url: Mapped[str] = mapped_column(String(2000), nullable=False)
    secret: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    accept_secret_header: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    deadline_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_by: Mapped[str] = mapped_column(String(64), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class Lead(TenantOwned, Base):
    """A lead found by a job, deduplicated by email, phone and domain."""

    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("job_id", "key"),
        Index("ix_leads_job", "job_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    job_id: Mapped[str] = mapped_column(String(64), nullable=False)
    key: Mapped[str] = mapped_column(String(300), nullable=False)
    organisation: Mapped[str | None] = mapped_column(String(300))
    domain: Mapped[str | None] = mapped_column(String(300))
    emails: Mapped[list[str]] = mapped_column(ARRAY(String(320)), nullable=False)
    phones: Mapped[list[str]] = mapped_column(ARRAY(String(40)), nullable=False)
    socials: Mapped[list[str]] = mapped_column(ARRAY(String(500)), nullable=False)
    addresses: Mapped[list[str]] = mapped_column(ARRAY(String(500)), nullable=False)
    pages: Mapped[list[str]] = mapped_column(ARRAY(String(2000)), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class MiningSchedule(TenantOwned, Base):
    """A job run again by a cron expression in a time zone, never over its last run."""

    __tablename__ = "schedules"
    __table_args__ = (Index("ix_schedules_due", "active", "next_run_at"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    cron: Mapped[str] = mapped_column(String(100), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False)
    job: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_job_id: Mapped[str | None] = mapped_column(String(64))
    skipped_runs: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
idempotency = idempotency_table(Base.metadata)
