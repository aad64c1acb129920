"""The live-event hub: per-tenant fan-out, resume window, caps, slow clients."""

import asyncio
import time
from uuid import uuid4

import pytest
from nats.aio.msg import Msg

from bai_contracts import CallbackReceived, ExtractionProgressed, callback_subject
from bai_platform.envelope import Envelope, new_event
from gateway.service.live import (
    QUEUE_SIZE,
    Hub,
    LiveEvent,
    TooManyConnections,
    _missed,
    _to_live,
    frame,
    stream,
)


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


def _reset_id(frames: list[bytes]) -> str:
    (reset,) = frames
    assert b"\nevent: reset\n" in reset
    return reset.decode().split("\n", 1)[0].removeprefix("id: ")


def test_a_reset_gives_an_id_the_next_reconnect_resumes_from() -> None:
    hub = Hub(retention_seconds=60, max_per_tenant=5)
    hub.publish(_event(1, age=5))
    reset_id = _reset_id(list(_missed(hub, "t1", "PLANNER:999")))
    assert reset_id != "PLANNER:999"  # repeated, it would be reset on every reconnect
    hub.publish(_event(2))  # after the reset: the reconnect gets it, not a reset
    assert _missed(hub, "t1", reset_id) == [_event(2).frame]
    assert _missed(hub, "t1", reset_id) == [_event(2).frame]  # and again, as often as asked


def test_a_reset_id_older_than_the_window_gets_a_new_reset() -> None:
    hub = Hub(retention_seconds=60, max_per_tenant=5)
    old = f"since:{int((time.time() - 120) * 1000)}"
    assert hub.since("t1", old) is None
    assert _reset_id(list(_missed(hub, "t1", old))) != old


def test_only_digits_after_since_name_a_moment() -> None:
    hub = Hub(retention_seconds=60, max_per_tenant=5)
    for unknown in ("since:", "since:12a", "since:-5", "since:١٢٣", "SINCE:1"):
        assert hub.since("t1", unknown) is None, unknown


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


def _stored(envelope: Envelope, stream_name: str) -> Msg:
    """``envelope`` as a live reader gets it from ``stream_name`` (its ack subject carries
    the stream, sequence and time)."""
    reply = f"$JS.ACK.{stream_name}.live.1.7.7.{time.time_ns()}.0"
    return Msg(_client=None, subject=envelope.type, reply=reply, data=envelope.to_bytes())  # type: ignore[arg-type]


def test_a_workflows_callback_is_not_a_live_event_but_the_owners_events_are() -> None:
    tenant = str(uuid4())
    done = new_event(
        ExtractionProgressed(
            job_id="ext_1", state="running", pages_fetched=1, items_found=0, errors=0
        ),
        source="mining",
        tenant_id=tenant,
    )
    callback = new_event(
        CallbackReceived(job_id="ext_1", payload={"leads": ["x" * 1000]}, verified_by="signature"),
        source="mining",
        tenant_id=tenant,
        event_type=callback_subject("mining"),
    )

    shown = _to_live(_stored(done, "MINING"))
    assert shown is not None
    assert shown.tenant_id == tenant
    assert _to_live(_stored(callback, "MINING")) is None
