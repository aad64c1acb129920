"""Planner tables (schema ``planner``)."""

from datetime import date, datetime
from uuid import UUID, uuid4

from sqlalchemy import ARRAY, Date, DateTime, Index, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bai_platform.consumer import inbox_table
from bai_platform.db import make_metadata
from bai_platform.idempotency import idempotency_table
from bai_platform.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = make_metadata("planner")


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    tenant_id: Mapped[UUID] = mapped_column(nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    goal: Mapped[str | None] = mapped_column(Text)
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(32)), nullable=False, default=list)
    starts_on: Mapped[date | None] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="draft")
    created_by: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
idempotency = idempotency_table(Base.metadata)
