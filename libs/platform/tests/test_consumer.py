"""Consumers apply each event once, retry failures, and dead-letter what never succeeds."""

import asyncio
from collections.abc import Awaitable, Callable
from uuid import uuid4

from nats.js.errors import NotFoundError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bai_platform import deadletter
from bai_platform.consumer import ConsumerRunner, Subscription
from bai_platform.envelope import Envelope

from .conftest import Sandbox


def _envelope(box: Sandbox) -> Envelope:
    return Envelope.model_validate(
        {
            "id": f"evt_{uuid4().hex}",
            "source": "test",
            "type": box.subject("happened"),
            "time": "2026-11-29T10:00:00Z",
            "tenantid": "t-1",
            "data": {"name": "a"},
        }
    )


def _recording(box: Sandbox) -> Callable[[AsyncSession, Envelope], Awaitable[None]]:
    async def record(session: AsyncSession, envelope: Envelope) -> None:
        await session.execute(box.effects.insert().values(event_id=envelope.id))

    return record


def _runner(
    box: Sandbox,
    handler: Callable[[AsyncSession, Envelope], Awaitable[None]],
    *,
    max_deliver: int = 8,
) -> ConsumerRunner:
    subscription = Subscription(
        durable=f"{box.service}-test",
        stream=box.stream.name,
        subjects=(box.subject("happened"),),
        handler=handler,
        max_deliver=max_deliver,
        backoff_seconds=(0.05,),
        fetch_timeout_seconds=0.2,
    )
    return ConsumerRunner(
        db=box.db, js=box.js, inbox=box.inbox, subscription=subscription, service=box.service
    )


async def _effects(box: Sandbox) -> int:
    async with box.db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(box.effects)) or 0)


async def _run_until(runner: ConsumerRunner, done: Callable[[], Awaitable[bool]]) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(10):
            while not await done():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


async def test_the_same_event_delivered_twice_is_applied_once(sandbox: Sandbox) -> None:
    envelope = _envelope(sandbox)
    for copy in ("first", "second"):  # distinct Nats-Msg-Id: the stream keeps both copies
        await sandbox.js.publish(
            envelope.type, envelope.to_bytes(), headers={"Nats-Msg-Id": f"{envelope.id}-{copy}"}
        )
    runner = _runner(sandbox, _recording(sandbox))

    async def both_acked() -> bool:
        try:
            info = await sandbox.js.consumer_info(sandbox.stream.name, f"{sandbox.service}-test")
        except NotFoundError:  # not created yet
            return False
        settled = (info.num_ack_pending, info.num_pending, info.delivered.stream_seq)
        return settled == (0, 0, 2)

    await _run_until(runner, both_acked)
    assert await _effects(sandbox) == 1


async def test_a_failing_handler_is_retried_until_it_succeeds(sandbox: Sandbox) -> None:
    attempts = 0
    record = _recording(sandbox)

    async def flaky(session: AsyncSession, envelope: Envelope) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("downstream not ready")
        await record(session, envelope)

    await sandbox.js.publish(sandbox.subject("happened"), _envelope(sandbox).to_bytes())

    async def applied() -> bool:
        return await _effects(sandbox) == 1

    await _run_until(_runner(sandbox, flaky), applied)
    assert attempts == 3


async def test_poison_event_goes_to_dead_letters_and_replays_once(sandbox: Sandbox) -> None:
    async def always_fails(session: AsyncSession, envelope: Envelope) -> None:
        raise ValueError("cannot handle this")

    envelope = _envelope(sandbox)
    await sandbox.js.publish(envelope.type, envelope.to_bytes())

    async def dead_lettered() -> bool:
        letters = await deadletter.list_dead_letters(sandbox.js, service=sandbox.service)
        return len(letters) == 1

    await _run_until(_runner(sandbox, always_fails, max_deliver=2), dead_lettered)
    [letter] = await deadletter.list_dead_letters(sandbox.js, service=sandbox.service)
    assert letter.original_subject == envelope.type
    assert "cannot handle this" in letter.reason

    await deadletter.replay(sandbox.js, sequence=letter.sequence)

    async def applied() -> bool:
        return await _effects(sandbox) == 1

    await _run_until(_runner(sandbox, _recording(sandbox)), applied)
    assert await deadletter.list_dead_letters(sandbox.js, service=sandbox.service) == []


async def test_message_that_is_not_an_envelope_is_dead_lettered_at_once(sandbox: Sandbox) -> None:
    await sandbox.js.publish(sandbox.subject("happened"), b"{not json")

    async def dead_lettered() -> bool:
        letters = await deadletter.list_dead_letters(sandbox.js, service=sandbox.service)
        return len(letters) > 0

    await _run_until(_runner(sandbox, _recording(sandbox)), dead_lettered)
    [letter] = await deadletter.list_dead_letters(sandbox.js, service=sandbox.service)
    assert "envelope is not valid" in letter.reason
    assert await _effects(sandbox) == 0
