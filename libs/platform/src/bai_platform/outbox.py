"""Transactional outbox: events are rows written with the state they describe.

``emit`` adds the row in the caller's transaction and notifies the relay; the relay
publishes unsent rows to JetStream with ``Nats-Msg-Id`` = event id, a bounded number in
flight, and marks them sent. A rolled-back transaction publishes nothing; a crash or a
NATS outage loses nothing (rows stay unsent until an ack comes back), and the stream's
duplicate window plus idempotent consumers absorb the rare re-publish.
"""

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from sqlalchemy import Index, LargeBinary, String, Table, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, SQLModel

from bai_platform.db import Database, created_now, timestamp
from bai_platform.envelope import Envelope

log = structlog.get_logger("bai.outbox")

_OutboxRow = Row[Any, Any, Any, Any]  # id, subject, payload, headers


class OutboxRecord(SQLModel):
    """An event waiting to be published. Each service declares its own outbox table in its
    schema: ``class Outbox(PlannerTable, OutboxRecord, table=True)``."""

    __tablename__ = "outbox"

    id: str = Field(sa_type=String(64), primary_key=True)  # the event id, Nats-Msg-Id
    subject: str = Field(sa_type=String(255))
    payload: bytes = Field(sa_type=LargeBinary)
    headers: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSONB,
        sa_column_kwargs={"server_default": text("'{}'::jsonb")},
    )
    created_at: datetime = created_now()
    published_at: datetime | None = timestamp(nullable=True)
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index]:  # noqa: N805 (a class attribute, per table)
        return (
            Index(
                "ix_outbox_unpublished", "created_at", postgresql_where=text("published_at IS NULL")
            ),
        )


def notify_channel(table: Table) -> str:
    return f"{table.schema or 'public'}_outbox"


async def emit(
    session: AsyncSession, table: Table, envelope: Envelope, *, once: bool = False
) -> None:
    """Add an event to the caller's transaction; it is published after the commit.

    ``once``: an event whose id is still waiting in the outbox is not added again (ids
    made from their input, such as callbacks', repeat when the input does).
    """
    headers = {"traceparent": envelope.traceparent} if envelope.traceparent else {}
    row = {
        "id": envelope.id,
        "subject": envelope.type,
        "payload": envelope.to_bytes(),
        "headers": headers,
    }
    insert = pg_insert(table).values(row)
    await session.execute(insert.on_conflict_do_nothing() if once else insert)
    # NOTIFY is delivered only on commit, which is exactly when the relay should look.
    await session.execute(
        text("SELECT pg_notify(:channel, '')"), {"channel": notify_channel(table)}
    )


async def emit_many(session: AsyncSession, table: Table, envelopes: Sequence[Envelope]) -> None:
    """``emit`` for many events at once: one multi-row insert and one notification."""
    if not envelopes:
        return
    rows = [
        {
            "id": e.id,
            "subject": e.type,
            "payload": e.to_bytes(),
            "headers": {"traceparent": e.traceparent} if e.traceparent else {},
        }
        for e in envelopes
    ]
    await session.execute(table.insert(), rows)
    await session.execute(
        text("SELECT pg_notify(:channel, '')"), {"channel": notify_channel(table)}
    )


class OutboxRelay:
    """Publishes committed outbox rows to JetStream until told to stop."""

    def __init__(
        self,
        *,
        db: Database,
        nc: NatsClient,
        js: JetStreamContext,
        table: Table,
        batch_size: int = 256,
        poll_seconds: float = 1.0,
        ack_timeout_seconds: float = 5.0,
    ) -> None:
        self._db, self._nc, self._js, self._table = db, nc, js, table
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._ack_timeout = ack_timeout_seconds
        self._wakeup = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        async with self._db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            channel = notify_channel(self._table)
            await driver.add_listener(channel, self._on_notify)
            try:
                await self._loop(stop)
            finally:
                await driver.remove_listener(channel, self._on_notify)

    def _on_notify(self, *_: object) -> None:
        self._wakeup.set()

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            published = 0
            try:
                published = await self.publish_pending()
            except Exception:
                log.exception("outbox_relay_failed")
            if published < self._batch_size:
                await self._sleep(stop)

    async def _sleep(self, stop: asyncio.Event) -> None:
        self._wakeup.clear()
        waiters = [asyncio.ensure_future(self._wakeup.wait()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(waiters, timeout=self._poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def publish_pending(self) -> int:
        """Publish one batch of unsent rows; returns how many were acknowledged."""
        if not self._nc.is_connected:
            return 0
        async with self._db.transaction() as session:
            rows = await self._claim(session)
            if not rows:
                return 0
            sent = await self._publish(rows)
            await self._mark(session, rows, sent)
        return len(sent)

    async def _claim(self, session: AsyncSession) -> Sequence[_OutboxRow]:
        t = self._table
        query = (
            select(t.c.id, t.c.subject, t.c.payload, t.c.headers)
            .where(t.c.published_at.is_(None))
            .order_by(t.c.created_at)
            .limit(self._batch_size)
            .with_for_update(skip_locked=True)
        )
        return (await session.execute(query)).all()

    async def _publish(self, rows: Sequence[_OutboxRow]) -> set[str]:
        futures: dict[str, asyncio.Future[Any]] = {}
        for row in rows:
            headers = {**row.headers, "Nats-Msg-Id": row.id}
            futures[row.id] = await self._js.publish_async(
                row.subject, row.payload, headers=headers, wait_stall=self._ack_timeout
            )
        done, pending = await asyncio.wait(futures.values(), timeout=self._ack_timeout)
        for future in pending:
            future.cancel()
        return {
            event_id
            for event_id, future in futures.items()
            if future in done and future.exception() is None
        }

    async def _mark(
        self, session: AsyncSession, rows: Sequence[_OutboxRow], sent: set[str]
    ) -> None:
        t = self._table
        if sent:
            now = datetime.now(UTC)
            await session.execute(update(t).where(t.c.id.in_(sent)).values(published_at=now))
        failed = [row.id for row in rows if row.id not in sent]
        if failed:
            log.warning("outbox_publish_unacknowledged", count=len(failed))
            await session.execute(
                update(t).where(t.c.id.in_(failed)).values(attempts=t.c.attempts + 1)
            )
