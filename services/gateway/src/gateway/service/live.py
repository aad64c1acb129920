"""Live events: the tenant's status changes pushed to browsers over Server-Sent Events.

One feed per gateway process reads the services' streams from JetStream and fans each
event with a tenant out to that tenant's open connections. Live events flow from the
moment the feed starts; the recent history (``retention`` back, so every replica holds the
same) is filled in beside them by a second reader that never fans out: a restarted
gateway does not delay new events behind minutes of old ones, nor show old ones as new.
Event ids are ``<stream>:<sequence>``, the same on every replica, so ``Last-Event-ID``
resumes anywhere within the retention window; an id outside it (or one never sent) gets a
``reset`` event (refetch state). The reset's own id is ``since:<unix milliseconds>``, the
moment of the reset: a browser sends it back on its next reconnect and resumes from there,
with the events stored since (had the reset repeated the unknown id, every reconnect would
get another reset, forever).
Slow clients never hold the feed up: each connection has a bounded queue, and one that
overflows is closed (the browser reconnects and resumes).
"""

import asyncio
import bisect
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from bai_contracts import callback_subject
from bai_platform.envelope import Envelope
from bai_platform.errors import TooManyRequests
from bai_platform.messaging import NatsLink

log = structlog.get_logger(__name__)

QUEUE_SIZE = 256
_BACKGROUND: set[asyncio.Task[None]] = set()
RETRY_MILLISECONDS = 2000
SINCE = "since:"  # a reset's id: the moment to resume from, in unix milliseconds


class TooManyConnections(TooManyRequests):
    code = "too_many_live_connections"


@dataclass(frozen=True, slots=True)
class LiveEvent:
    id: str
    tenant_id: str
    received_at: float
    frame: bytes


@dataclass(eq=False)
class Connection:
    tenant_id: str
    queue: asyncio.Queue[LiveEvent | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_SIZE)
    )


def frame(event_id: str, event_type: str, data: Mapping[str, object]) -> bytes:
    body = json.dumps(data, separators=(",", ":"), default=str)
    return f"id: {event_id}\nevent: {event_type}\ndata: {body}\n\n".encode()


def _to_live(message: Msg) -> LiveEvent | None:
    try:
        envelope = Envelope.model_validate_json(message.data)
    except ValidationError:
        return None
    meta = message.metadata
    if envelope.tenantid is None or envelope.type == callback_subject(meta.stream.lower()):
        return None  # a workflow's callback is the owner's input, not a change to show
    event_id = f"{meta.stream}:{meta.sequence.stream}"
    # When JetStream stored it: history expires by the event's age, not by when we read it.
    stored_at = meta.timestamp.timestamp() if meta.timestamp else time.time()
    data = {
        "type": envelope.type,
        "time": envelope.time.isoformat(),
        "subject": envelope.subject,
        "data": envelope.data,
    }
    return LiveEvent(event_id, envelope.tenantid, stored_at, frame(event_id, envelope.type, data))


class Hub:
    """Connections by tenant, and each tenant's recent events for resuming."""

    def __init__(
        self, *, retention_seconds: float, max_per_tenant: int, history_per_tenant: int = 1000
    ) -> None:
        self.retention_seconds, self.max_per_tenant = retention_seconds, max_per_tenant
        self._history_size = history_per_tenant
        self._connections: dict[str, set[Connection]] = {}
        self._history: dict[str, list[LiveEvent]] = {}

    @property
    def connection_count(self) -> int:
        return sum(len(c) for c in self._connections.values())

    def open(self, tenant_id: str) -> Connection:
        current = self._connections.setdefault(tenant_id, set())
        if len(current) >= self.max_per_tenant:
            raise TooManyConnections(
                f"at most {self.max_per_tenant} live connections per workspace",
                headers={"Retry-After": "30"},
            )
        connection = Connection(tenant_id)
        current.add(connection)
        return connection

    def close(self, connection: Connection) -> None:
        current = self._connections.get(connection.tenant_id, set())
        current.discard(connection)
        if not current:
            self._connections.pop(connection.tenant_id, None)

    async def release(self, connection: Connection) -> None:
        """``close`` on the event loop: a ``BackgroundTask`` runs a plain function in a worker
        thread, where it would change the sets that ``open`` and ``publish`` use."""
        self.close(connection)

    def publish(self, event: LiveEvent) -> None:
        self.remember(event)
        for connection in list(self._connections.get(event.tenant_id, ())):
            try:
                connection.queue.put_nowait(event)
            except asyncio.QueueFull:  # too slow: close it; the browser resumes from its id
                self.close(connection)
                with contextlib.suppress(asyncio.QueueFull):
                    connection.queue.put_nowait(None)

    def remember(self, event: LiveEvent) -> None:
        """Keep the event for resuming, in time order, without sending it to anyone."""
        history = self._history.setdefault(event.tenant_id, [])
        if history and (history[-1].received_at, history[-1].id) > (event.received_at, event.id):
            bisect.insort(history, event, key=lambda e: (e.received_at, e.id))
        else:
            history.append(event)
        if len(history) > self._history_size:
            del history[: len(history) - self._history_size]
        self._expire(history)

    def since(self, tenant_id: str, last_event_id: str) -> list[LiveEvent] | None:
        """Events after ``last_event_id`` (an event's id or a reset's); None when it is no
        longer (or never was) held."""
        history = self._history.get(tenant_id, [])
        self._expire(history)
        moment = _moment(last_event_id)
        if moment is not None:
            if moment < time.time() - self.retention_seconds:
                return None
            return history[bisect.bisect_right(history, moment, key=lambda e: e.received_at) :]
        ids = [event.id for event in history]
        if last_event_id not in ids:
            return None
        return list(history)[ids.index(last_event_id) + 1 :]

    def shutdown(self) -> None:
        for connections in list(self._connections.values()):
            for connection in list(connections):
                with contextlib.suppress(asyncio.QueueFull):
                    connection.queue.put_nowait(None)

    def _expire(self, history: list[LiveEvent]) -> None:
        cutoff = time.time() - self.retention_seconds
        stale = bisect.bisect_left(history, cutoff, key=lambda e: e.received_at)
        if stale:
            del history[:stale]


async def _follow(js: JetStreamContext, hub: Hub, name: str, start: datetime) -> list[Any]:
    """Live from the stream's next message on; its history up to there, beside it."""
    last = (await js.stream_info(name)).state.last_seq

    async def live(message: Msg) -> None:
        event = _to_live(message)
        if event is not None:
            hub.publish(event)

    caught_up = asyncio.Event()

    async def history(message: Msg) -> None:
        sequence = message.metadata.sequence.stream
        if sequence >= last:
            caught_up.set()  # from here on the live reader has everything
        if sequence > last:
            return
        event = _to_live(message)
        if event is not None:
            hub.remember(event)

    subject = f"bai.{name.lower()}.>"
    following = await js.subscribe(
        subject,
        stream=name,
        cb=live,
        ordered_consumer=True,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=last + 1
        ),
    )
    backfill = await js.subscribe(
        subject,
        stream=name,
        cb=history,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start),
    )

    async def retire() -> None:
        await caught_up.wait()
        with contextlib.suppress(Exception):
            await backfill.unsubscribe()

    task = asyncio.create_task(retire())
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return [following, backfill]


async def stream(
    hub: Hub, connection: Connection, *, last_event_id: str | None, heartbeat_seconds: float
) -> AsyncIterator[bytes]:
    """The bytes of one SSE response: retry hint, missed events, then live ones."""
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
        for missed in _missed(hub, connection.tenant_id, last_event_id):
            yield missed
        while True:
            try:
                event = await asyncio.wait_for(connection.queue.get(), timeout=heartbeat_seconds)
            except TimeoutError:
                yield b": heartbeat\n\n"
                continue
            if event is None:  # shutting down or too slow: the client reconnects
                return
            yield event.frame
    finally:
        hub.close(connection)


def _missed(hub: Hub, tenant_id: str, last_event_id: str | None) -> Iterable[bytes]:
    if not last_event_id:
        return []
    missed = hub.since(tenant_id, last_event_id)
    if missed is None:
        return [reset_frame(time.time())]
    return [event.frame for event in missed]


def reset_frame(at: float) -> bytes:
    """Refetch: the events after the client's last id are not held. Its id is the moment
    of the reset, which the next reconnect resumes from (``Hub.since``)."""
    reason = "the last event id is unknown or too old: refetch, then resume from this one"
    return frame(f"{SINCE}{math.floor(at * 1000)}", "reset", {"reason": reason})


def _moment(last_event_id: str) -> float | None:
    """The unix time a reset's id names, or None when it is no reset's id."""
    millis = last_event_id.removeprefix(SINCE)
    if millis == last_event_id or not (millis.isascii() and millis.isdigit()):
        return None
    return int(millis) / 1000


async def feed(hub: Hub, link: NatsLink, *, streams: Iterable[str], stop: asyncio.Event) -> None:
    """Read every live stream into the hub until ``stop``."""
    waiters = [asyncio.ensure_future(link.connected.wait()), asyncio.ensure_future(stop.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    if link.client is None:
        return
    js = link.client.jetstream()
    start = datetime.now(UTC) - timedelta(seconds=hub.retention_seconds)
    subscriptions = []
    for name in streams:
        try:
            subscriptions += await _follow(js, hub, name, start)
        except Exception:  # a stream not made yet: its service's worker has not started
            log.warning("live_stream_unavailable", stream=name, exc_info=True)
    await stop.wait()
    for subscription in subscriptions:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
