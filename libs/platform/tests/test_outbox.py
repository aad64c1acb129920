"""Events leave with the transaction that wrote them: never before, never lost, never twice."""

import asyncio
from typing import ClassVar

from sqlalchemy import func, select, update

from bai_contracts import EventContract
from bai_platform.envelope import Envelope, new_event
from bai_platform.outbox import OutboxRelay, emit

from .conftest import Sandbox


class ThingHappened(EventContract):
    subject: ClassVar[str] = "placeholder"
    name: str


def _event(box: Sandbox, name: str = "a") -> Envelope:
    envelope = new_event(ThingHappened(name=name), source=box.service, tenant_id="t-1")
    return envelope.model_copy(update={"type": box.subject("happened")})


def _relay(box: Sandbox) -> OutboxRelay:
    return OutboxRelay(db=box.db, nc=box.nc, js=box.js, table=box.outbox)


async def _stream_count(box: Sandbox) -> int:
    return int((await box.js.stream_info(box.stream.name)).state.messages)


async def test_committed_event_is_published_with_its_id_as_msg_id(sandbox: Sandbox) -> None:
    envelope = _event(sandbox)
    async with sandbox.db.transaction() as session:
        await emit(session, sandbox.outbox, envelope)
    assert await _relay(sandbox).publish_pending() == 1
    message = await sandbox.js.get_last_msg(sandbox.stream.name, envelope.type)
    assert message.headers is not None
    assert message.headers["Nats-Msg-Id"] == envelope.id
    assert Envelope.model_validate_json(message.data or b"") == envelope


async def test_rolled_back_transaction_publishes_nothing(sandbox: Sandbox) -> None:
    try:
        async with sandbox.db.transaction() as session:
            await emit(session, sandbox.outbox, _event(sandbox))
            raise RuntimeError("the business write failed")
    except RuntimeError:
        pass
    assert await _relay(sandbox).publish_pending() == 0
    assert await _stream_count(sandbox) == 0


async def test_published_rows_are_marked_and_not_sent_again(sandbox: Sandbox) -> None:
    async with sandbox.db.transaction() as session:
        await emit(session, sandbox.outbox, _event(sandbox))
    relay = _relay(sandbox)
    assert await relay.publish_pending() == 1
    assert await relay.publish_pending() == 0
    async with sandbox.db.transaction() as session:
        unsent = await session.scalar(
            select(func.count())
            .select_from(sandbox.outbox)
            .where(sandbox.outbox.c.published_at.is_(None))
        )
    assert unsent == 0


async def test_republish_after_a_crash_is_deduplicated_by_the_stream(sandbox: Sandbox) -> None:
    async with sandbox.db.transaction() as session:
        await emit(session, sandbox.outbox, _event(sandbox))
    relay = _relay(sandbox)
    await relay.publish_pending()
    async with sandbox.db.transaction() as session:  # as if the process died before marking
        await session.execute(update(sandbox.outbox).values(published_at=None))
    await relay.publish_pending()
    assert await _stream_count(sandbox) == 1


async def test_running_relay_publishes_soon_after_commit(sandbox: Sandbox) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(_relay(sandbox).run(stop))
    try:
        await asyncio.sleep(0.2)
        async with sandbox.db.transaction() as session:
            for name in "abc":
                await emit(session, sandbox.outbox, _event(sandbox, name))
        async with asyncio.timeout(5):
            while await _stream_count(sandbox) < 3:
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    assert await _stream_count(sandbox) == 3
