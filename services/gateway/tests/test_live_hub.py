"""The live-event hub: per-tenant fan-out, resume window, caps, slow clients."""

import asyncio
import time

import pytest

from gateway.service.live import QUEUE_SIZE, Hub, LiveEvent, TooManyConnections, frame, stream


def _event(n: int, tenant: str = "t1", age: float = 0.0) -> LiveEvent:
    event_id = f"PLANNER:{n}"
    return LiveEvent(event_id, tenant, time.time() - age, frame(event_id, "x", {"n": n}))


def test_events_reach_only_their_tenants_connections() -> None:
    hub = Hub(retention_seconds=60, max_per_tenant=5)
    mine, theirs = hub.open("t1"), hub.open("t2")
    hub.publish(_event(1, "t1"))
    assert mine.queue.qsize() == 1
    assert theirs.queue.qsize() == 0


def test_a_tenant_over_its_connection_cap_is_refused() -> None:
    hub = Hub(retention_seconds=60, max_per_tenant=2)
    hub.open("t1")
    hub.open("t1")
    with pytest.raises(TooManyConnections):
        hub.open("t1")
    hub.open("t2")  # other tenants are not affected


def test_resume_returns_what_came_after_the_last_event() -> None:
    hub = Hub(retention_seconds=60, max_per_tenant=5)
    for n in range(1, 5):
        hub.publish(_event(n))
    missed = hub.since("t1", "PLANNER:2")
    assert [e.id for e in missed or []] == ["PLANNER:3", "PLANNER:4"]


def test_resume_from_an_event_older_than_the_window_is_refused() -> None:
    hub = Hub(retention_seconds=60, max_per_tenant=5)
    hub.publish(_event(1, age=120))
    hub.publish(_event(2))
    assert hub.since("t1", "PLANNER:1") is None


def test_a_client_too_slow_to_keep_up_is_closed_not_waited_for() -> None:
    hub = Hub(retention_seconds=60, max_per_tenant=5)
    slow = hub.open("t1")
    for n in range(QUEUE_SIZE + 1):
        hub.publish(_event(n))
    assert hub.connection_count == 0
    assert slow.queue.qsize() == QUEUE_SIZE


async def test_a_stream_sends_the_retry_hint_heartbeats_and_events() -> None:
    hub = Hub(retention_seconds=60, max_per_tenant=5)
    connection = hub.open("t1")
    frames = stream(hub, connection, last_event_id=None, heartbeat_seconds=0.05)
    assert await anext(frames) == b"retry: 2000\n\n"
    assert await anext(frames) == b": heartbeat\n\n"
    hub.publish(_event(7))
    assert b"id: PLANNER:7" in await anext(frames)
    hub.shutdown()
    with pytest.raises(StopAsyncIteration):
        await anext(frames)
    assert hub.connection_count == 0
    await asyncio.sleep(0)


def test_history_filled_in_later_is_kept_in_time_order_and_sent_to_nobody() -> None:
    hub = Hub(retention_seconds=60, max_per_tenant=10)
    connection = hub.open("t1")
    hub.publish(_event(3))  # live
    for n in (1, 2):  # the history reader catches up beside it
        hub.remember(_event(n, age=10 - n))

    assert connection.queue.qsize() == 1
    assert [e.id for e in hub.since("t1", _event(1).id) or []] == [_event(2).id, _event(3).id]
