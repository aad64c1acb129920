"""Consumers apply each event once, retry failures, and dead-letter what never succeeds."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from uuid import uuid4

from nats.js.errors import NotFoundError
from pydantic import SecretStr
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bai_platform import deadletter
from bai_platform.consumer import ConsumerRunner, Subscription
from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope
from bai_platform.settings import ServiceSettings

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
    db: Database | None = None,
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
        db=db or box.db, js=box.js, inbox=box.inbox, subscription=subscription, service=box.service
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


@contextlib.asynccontextmanager
async def _through_a_door(infra: Stack, folder: Path) -> AsyncIterator[tuple[Database, Path]]:
    """A Database that reaches the session's PostgreSQL through a socket link in ``folder``
    (the door): removing the link makes the database unreachable, as a restart does."""
    assert infra.postgres is not None
    port = infra.settings.postgres_port
    door = folder / f".s.PGSQL.{port}"
    door.symlink_to(infra.postgres.socket_dir / f".s.PGSQL.{port}")
    url = f"postgresql+asyncpg://postgres@/{infra.settings.database}?host={folder}&port={port}"
    db = Database(ServiceSettings(service_name="door", database_url=SecretStr(url)))
    try:
        yield db, door
    finally:
        await db.dispose()


async def test_while_the_database_is_away_a_message_waits_instead_of_being_dead_lettered(
    sandbox: Sandbox, infra: Stack, tmp_path: Path
) -> None:
    """Three deliveries at a 0.05 s backoff would all fail within a moment of an outage;
    the consumer notices the database is away and fetches nothing until it is back (so no
    delivery is spent meanwhile), and the message is applied once it is."""
    async with _through_a_door(infra, tmp_path) as (db, door):
        target = door.readlink()
        door.unlink()  # the database goes away
        await sandbox.js.publish(sandbox.subject("happened"), _envelope(sandbox).to_bytes())
        stop = asyncio.Event()
        runner = _runner(sandbox, _recording(sandbox), max_deliver=3, db=db)
        task = asyncio.create_task(runner.run(stop))
        try:
            async with asyncio.timeout(10):
                while not runner.database_away:
                    await asyncio.sleep(0.05)
            assert await _effects(sandbox) == 0
            assert await deadletter.list_dead_letters(sandbox.js, service=sandbox.service) == []
            door.symlink_to(target)  # and comes back
            async with asyncio.timeout(10):
                while await _effects(sandbox) == 0:
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task
    assert await deadletter.list_dead_letters(sandbox.js, service=sandbox.service) == []
    assert await _effects(sandbox) == 1


async def test_message_that_is_not_an_envelope_is_dead_lettered_at_once(sandbox: Sandbox) -> None:
    await sandbox.js.publish(sandbox.subject("happened"), b"{not json")

    async def dead_lettered() -> bool:
        letters = await deadletter.list_dead_letters(sandbox.js, service=sandbox.service)
        return len(letters) > 0

    await _run_until(_runner(sandbox, _recording(sandbox)), dead_lettered)
    [letter] = await deadletter.list_dead_letters(sandbox.js, service=sandbox.service)
    assert "envelope is not valid" in letter.reason
    assert await _effects(sandbox) == 0


async def test_in_a_batch_a_failing_event_rolls_back_alone_and_the_rest_commit(
    sandbox: Sandbox,
) -> None:
    envelopes = [_envelope(sandbox) for _ in range(5)]
    failing = envelopes[2].id
    tries: dict[str, int] = {}
    record = _recording(sandbox)

    async def fails_once(session: AsyncSession, envelope: Envelope) -> None:
        await record(session, envelope)  # written first: the savepoint must take it back
        tries[envelope.id] = tries.get(envelope.id, 0) + 1
        if envelope.id == failing and tries[envelope.id] == 1:
            raise ConnectionError("downstream not ready")

    for envelope in envelopes:
        await sandbox.js.publish(envelope.type, envelope.to_bytes())

    async def all_applied() -> bool:
        return await _effects(sandbox) == 5

    await _run_until(_runner(sandbox, fails_once), all_applied)
    assert tries[failing] == 2
    assert all(tries[e.id] == 1 for e in envelopes if e.id != failing)
    async with sandbox.db.transaction() as session:
        rows = (await session.execute(select(sandbox.effects.c.event_id))).scalars().all()
    assert sorted(rows) == sorted(e.id for e in envelopes)


async def test_a_batch_whose_commit_fails_is_applied_event_by_event(sandbox: Sandbox) -> None:
    envelopes = [_envelope(sandbox) for _ in range(3)]
    record = _recording(sandbox)
    commits_refused = 0

    def refuse_one_commit(session: Session) -> None:
        nonlocal commits_refused
        if commits_refused == 0:
            commits_refused += 1
            raise ConnectionError("the connection went away at commit")

    async def recorded(session: AsyncSession, envelope: Envelope) -> None:
        if not event.contains(session.sync_session, "before_commit", refuse_one_commit):
            event.listen(session.sync_session, "before_commit", refuse_one_commit)
        await record(session, envelope)

    for envelope in envelopes:
        await sandbox.js.publish(envelope.type, envelope.to_bytes())

    async def all_applied() -> bool:
        return await _effects(sandbox) == 3

    await _run_until(_runner(sandbox, recorded), all_applied)
    assert commits_refused == 1
    async with sandbox.db.transaction() as session:
        rows = (await session.execute(select(sandbox.effects.c.event_id))).scalars().all()
    assert sorted(rows) == sorted(e.id for e in envelopes)  # each once, none lost
