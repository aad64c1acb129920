"""Idempotent JetStream consumers.

Each subscription is a durable pull consumer with explicit ack and a bounded
``max_deliver``. A message is handled in a database transaction that first records
``(consumer, event id)`` in the service's inbox table: a repeat finds the row and is
acknowledged without effect. A failure is retried with backoff; after the last allowed
delivery the message goes to the dead-letter stream (see ``deadletter``) and is
acknowledged, so one poison message never blocks the ones behind it.

A failure because the database is away (a restart, a failover) is not the message's fault:
the consumer stops fetching until the database answers again, then tries the message again
at once rather than after a growing backoff. So an outage spends about one delivery of
each message in flight, whatever its length, and work resumes as soon as it ends.

A fetched batch shares one transaction, each message in its own savepoint: a failing
message rolls back alone, the others commit together (one commit, not one per message),
and messages are acknowledged only after that commit. If the commit itself fails, no
message of the batch took effect; each is then tried again in a transaction of its own.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import propagate, trace
from pydantic import ValidationError
from sqlalchemy import String, Table, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from bai_platform.db import Database, created_now
from bai_platform.deadletter import dead_letter
from bai_platform.envelope import Envelope

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]

log = structlog.get_logger("bai.consumer")
tracer = trace.get_tracer("bai.consumer")


class InboxRecord(SQLModel):
    """An event a consumer has applied. Each service declares its own inbox table in its
    schema: ``class Inbox(PlannerTable, InboxRecord, table=True)``."""

    __tablename__ = "inbox"

    consumer: str = Field(sa_type=String(128), primary_key=True)
    event_id: str = Field(sa_type=String(64), primary_key=True)
    received_at: datetime = created_now()


@dataclass(frozen=True, slots=True)
class Subscription:
    """What one durable consumer listens to and what it does with each event."""

    durable: str
    stream: str
    subjects: tuple[str, ...]
    handler: Handler
    max_deliver: int = 8
    backoff_seconds: tuple[float, ...] = (1.0, 5.0, 15.0, 60.0, 300.0)
    ack_wait_seconds: float = 30.0
    batch_size: int = 32
    fetch_timeout_seconds: float = 1.0
    # After the database was away: how soon a message is tried again once it is back, and
    # how often the consumer asks whether it is back.
    outage_retry_seconds: float = 0.5
    description: str = field(default="")

    def retry_delay(self, delivered: int) -> float:
        return self.backoff_seconds[min(delivered, len(self.backoff_seconds)) - 1]

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            description=self.description or None,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subjects=list(self.subjects),
            max_deliver=self.max_deliver,
            ack_wait=self.ack_wait_seconds,
        )


class ConsumerRunner:
    """Pulls one subscription's messages and applies each exactly once."""

    def __init__(
        self,
        *,
        db: Database,
        js: JetStreamContext,
        inbox: Table,
        subscription: Subscription,
        service: str,
    ) -> None:
        self._db, self._js, self._inbox = db, js, inbox
        self._sub = subscription
        self._service = service
        self.ready = asyncio.Event()
        self._database_away = False

    @property
    def database_away(self) -> bool:
        """Whether the runner is waiting for its database to answer, fetching nothing."""
        return self._database_away

    async def run(self, stop: asyncio.Event) -> None:
        sub = self._sub
        await self._js.add_consumer(sub.stream, sub.consumer_config())
        pull = await self._js.pull_subscribe_bind(durable=sub.durable, stream=sub.stream)
        self.ready.set()
        try:
            while not stop.is_set():
                if self._database_away:
                    await self._wait_for_database(stop)
                    continue
                await self._fetch_and_handle(pull)
        finally:
            await pull.unsubscribe()

    async def _fetch_and_handle(self, pull: JetStreamContext.PullSubscription) -> None:
        try:
            messages = await pull.fetch(
                self._sub.batch_size, timeout=self._sub.fetch_timeout_seconds
            )
        except (TimeoutError, NatsTimeout):
            return
        except Exception:  # NATS down or reconnecting: wait and retry, never give up
            log.warning("consumer_fetch_failed", consumer=self._sub.durable, exc_info=True)
            await asyncio.sleep(self._sub.fetch_timeout_seconds)
            return
        await self.handle_batch(messages)

    async def handle(self, message: Msg) -> None:
        await self.handle_batch([message])

    async def handle_batch(self, messages: list[Msg]) -> None:
        readable: list[tuple[Msg, Envelope]] = []
        for message in messages:
            try:
                readable.append((message, Envelope.model_validate_json(message.data)))
            except ValidationError as exc:
                await self._give_up(message, f"envelope is not valid: {exc.error_count()} errors")
        if not readable:
            return
        try:
            outcomes = await self._apply_together(readable)
        except Exception as exc:  # the commit failed: nothing of the batch took effect
            await self._apply_apart(readable, exc)
            return
        for (message, envelope), failure in zip(readable, outcomes, strict=True):
            await self._settle(message, envelope, failure)

    async def _apply_together(self, readable: list[tuple[Msg, Envelope]]) -> list[Exception | None]:
        """Every message in its own savepoint of one transaction; the failures, in order."""
        outcomes: list[Exception | None] = []
        async with self._db.transaction() as session:
            for message, envelope in readable:
                with self._span(message, envelope):
                    try:
                        async with session.begin_nested():
                            await self._record_and_run(session, envelope)
                        outcomes.append(None)
                    except Exception as exc:
                        outcomes.append(exc)
        return outcomes

    async def _apply_apart(self, readable: list[tuple[Msg, Envelope]], cause: Exception) -> None:
        log.warning("consumer_batch_failed", consumer=self._sub.durable, error=repr(cause))
        if len(readable) == 1:
            await self._retry_or_give_up(readable[0][0], cause)
            return
        for message, envelope in readable:
            with self._span(message, envelope):
                try:
                    async with self._db.transaction() as session:
                        await self._record_and_run(session, envelope)
                except Exception as exc:
                    await self._settle(message, envelope, exc)
                else:
                    await self._settle(message, envelope, None)

    async def _settle(self, message: Msg, envelope: Envelope, failure: Exception | None) -> None:
        if failure is not None:
            await self._retry_or_give_up(message, failure)
            return
        await message.ack()
        log.debug("event_handled", consumer=self._sub.durable, event_id=envelope.id)

    def _span(self, message: Msg, envelope: Envelope) -> AbstractContextManager[trace.Span]:
        context = propagate.extract(dict(message.headers or {}))
        return tracer.start_as_current_span(
            f"consume {envelope.type}", context=context, kind=trace.SpanKind.CONSUMER
        )

    async def _record_and_run(self, session: AsyncSession, envelope: Envelope) -> bool:
        """Record the event and run the handler; False (and no effect) for a repeat."""
        statement = (
            insert(self._inbox)
            .values(consumer=self._sub.durable, event_id=envelope.id)
            .on_conflict_do_nothing()
            .returning(self._inbox.c.event_id)
        )
        if (await session.execute(statement)).scalar_one_or_none() is None:
            return False
        await self._sub.handler(session, envelope)
        return True

    async def _retry_or_give_up(self, message: Msg, exc: Exception) -> None:
        delivered = message.metadata.num_delivered
        log.warning(
            "event_handler_failed", consumer=self._sub.durable, delivered=delivered, error=repr(exc)
        )
        if delivered >= self._sub.max_deliver:
            await self._give_up(message, repr(exc))
        elif self._database_away or not await self._reachable():
            self._database_away = True  # the loop waits for it before fetching again
            await message.nak(delay=self._sub.outage_retry_seconds)
        else:
            await message.nak(delay=self._sub.retry_delay(delivered))

    async def _reachable(self) -> bool:
        try:
            async with asyncio.timeout(self._sub.fetch_timeout_seconds + 1.0):
                async with self._db.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def _wait_for_database(self, stop: asyncio.Event) -> None:
        """Fetch nothing until the database answers (each message fetched now would fail
        and spend a delivery)."""
        while not stop.is_set() and not await self._reachable():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._sub.outage_retry_seconds)
        if self._database_away:
            log.info("consumer_database_back", consumer=self._sub.durable)
        self._database_away = False

    async def _give_up(self, message: Msg, reason: str) -> None:
        await dead_letter(
            self._js, message, service=self._service, consumer=self._sub.durable, reason=reason
        )
        await message.term()
