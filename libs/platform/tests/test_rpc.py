"""Request/reply over NATS micro: questions are answered concurrently (one slow transaction
does not hold up the rest), a malformed question is a 400, a failing handler a 500 that
rolls back, and ``ask`` says ``Unreachable`` when nobody answers in time (asking again
while no process serves the subject, as during a restart)."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from bai_platform.rpc import Endpoint, Unreachable, ask, serve_rpc
from bai_platform.settings import ServiceSettings
from bai_platform.worker import WorkerContext

from .conftest import Sandbox


class Question(BaseModel):
    n: int


class Answer(BaseModel):
    n: int


@asynccontextmanager
async def serving(
    sandbox: Sandbox, *endpoints: Endpoint, concurrency: int = 8
) -> AsyncIterator[None]:
    ctx = WorkerContext(
        settings=ServiceSettings(service_name=sandbox.service),
        db=sandbox.db,
        nc=sandbox.nc,
        js=sandbox.js,
    )
    task = asyncio.create_task(
        serve_rpc(
            ctx, service=f"{sandbox.service}-rpc", endpoints=endpoints, concurrency=concurrency
        )
    )
    # The service is registered once $SRV discovery finds it (then its endpoints are too).
    async with asyncio.timeout(10):
        while True:
            try:
                await sandbox.nc.request(f"$SRV.PING.{sandbox.service}-rpc", b"", timeout=0.5)
                break
            except Exception:
                await asyncio.sleep(0.05)
    try:
        yield
    finally:
        ctx.stop.set()
        await task


def subject(sandbox: Sandbox) -> str:
    return f"bai.rpc.{sandbox.service}.echo"


async def test_questions_are_answered_concurrently(sandbox: Sandbox) -> None:
    inside, all_in = 0, asyncio.Event()

    async def slow(session: AsyncSession, question: Question) -> Answer:
        nonlocal inside
        inside += 1
        if inside == 4:
            all_in.set()
        # Answered one at a time, the first would wait here until it gives up.
        await asyncio.wait_for(all_in.wait(), timeout=5)
        return Answer(n=question.n)

    async with serving(sandbox, Endpoint("echo", subject(sandbox), Question, slow)):
        answers = await asyncio.gather(
            *(ask(sandbox.nc, subject(sandbox), Question(n=n), Answer, within=5) for n in range(4))
        )

    assert sorted(a.n for a in answers) == [0, 1, 2, 3]


async def test_no_more_than_the_concurrency_are_answered_at_once(sandbox: Sandbox) -> None:
    inside, most = 0, 0

    async def counted(session: AsyncSession, question: Question) -> Answer:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0.05)
        inside -= 1
        return Answer(n=question.n)

    endpoint = Endpoint("echo", subject(sandbox), Question, counted)
    async with serving(sandbox, endpoint, concurrency=2):
        await asyncio.gather(
            *(ask(sandbox.nc, subject(sandbox), Question(n=n), Answer, within=5) for n in range(6))
        )

    assert most == 2


async def test_a_malformed_question_and_a_failing_handler_answer_errors_and_change_nothing(
    sandbox: Sandbox,
) -> None:
    async def failing(session: AsyncSession, question: Question) -> Answer:
        await session.execute(sandbox.effects.insert().values(event_id="written-then-undone"))
        raise RuntimeError("boom")

    async with serving(sandbox, Endpoint("echo", subject(sandbox), Question, failing)):
        reply = await sandbox.nc.request(subject(sandbox), b'{"n": "not a number"}', timeout=5)
        assert reply.headers is not None
        assert reply.headers["Nats-Service-Error-Code"] == "400"
        with pytest.raises(Unreachable, match="500"):
            await ask(sandbox.nc, subject(sandbox), Question(n=1), Answer, within=5)

    async with sandbox.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(sandbox.effects)) == 0


async def test_nobody_answering_is_unreachable(sandbox: Sandbox) -> None:
    with pytest.raises(Unreachable):
        await ask(
            sandbox.nc, f"bai.rpc.{sandbox.service}.nobody", Question(n=1), Answer, within=0.5
        )


async def test_a_question_asked_while_its_service_restarts_is_answered_once_it_is_back(
    sandbox: Sandbox,
) -> None:
    async def echo(session: AsyncSession, question: Question) -> Answer:
        return Answer(n=question.n)

    with capture_logs() as logs:
        asked = asyncio.create_task(
            ask(sandbox.nc, subject(sandbox), Question(n=7), Answer, within=5)
        )
        async with asyncio.timeout(3):  # nobody serves the subject yet: "no responders"
            while not any(e["event"] == "rpc_no_responders" for e in logs):
                await asyncio.sleep(0.01)
    assert not asked.done()  # and it is asked again
    async with serving(sandbox, Endpoint("echo", subject(sandbox), Question, echo)):
        assert (await asked).n == 7
