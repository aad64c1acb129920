"""The credits saga: a job runs only with credits held by billing, is charged once when it
completes and gives them back when it fails; with billing away, jobs wait."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from nats.aio.client import Client as NatsClient
from nats.micro import add_service
from nats.micro.request import Request
from sqlalchemy import select

from bai_contracts import (
    BrandVoice,
    ContentFailed,
    PostGenerationRequested,
    QuotaAnswer,
    quota_subject,
)
from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope, new_event
from bai_platform.messaging import connect
from creator import credits
from creator.events import on_generation_requested
from creator.generation import fail, run_builtin_jobs
from creator.models import GenerationJob, outbox


@dataclass
class Billing:
    """A stand-in answering billing's quota questions (the contract in bai_contracts)."""

    asked: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    refuse: bool = False

    async def answer(self, request: Request) -> None:
        operation = request.subject.rsplit(".", 1)[-1]
        self.asked.append((operation, json.loads(request.data)))
        if operation == "reserve" and self.refuse:
            answer = QuotaAnswer(ok=False, code="insufficient_credits", reason="1 needed, 0 left")
        else:
            answer = QuotaAnswer(ok=True, balances={"posts": 9})
        await request.respond(answer.model_dump_json().encode())

    def of(self, job_id: str) -> list[str]:
        return [op for op, body in self.asked if body.get("reference") == job_id]


@pytest.fixture
async def nc(migrated: Stack) -> AsyncIterator[NatsClient]:
    client = await connect(migrated.nats_url, name="saga-test")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def billing(nc: NatsClient) -> AsyncIterator[Billing]:
    stand_in = Billing()
    service = await add_service(nc, name="billing-quota-test", version="0.0.1")
    for operation in ("reserve", "commit", "release"):
        await service.add_endpoint(
            name=operation, subject=quota_subject(operation), handler=stand_in.answer
        )
    await nc.flush()  # the server knows the responders before any question is asked
    try:
        yield stand_in
    finally:
        await service.stop()


def request() -> PostGenerationRequested:
    return PostGenerationRequested(
        request_id=uuid4(),
        post_id=uuid4(),
        campaign_id=uuid4(),
        brand_id=uuid4(),
        channel="linkedin",
        scheduled_at=datetime(2026, 12, 2, 9, tzinfo=UTC),
        campaign_name="December push",
        brand_name="Acme Coffee",
        voice=BrandVoice(tone="warm"),
    )


async def queued(creator_db: Database, tenant: UUID) -> GenerationJob:
    asked = request()
    envelope = new_event(asked, source="planner", tenant_id=tenant, subject=str(asked.post_id))
    async with creator_db.transaction() as session:
        await on_generation_requested(session, envelope)
        query = select(GenerationJob).where(GenerationJob.request_id == asked.request_id)
        return (await session.scalars(query)).one()


async def reread(creator_db: Database, job_id: str) -> GenerationJob:
    async with creator_db.transaction() as session:
        return await session.get_one(GenerationJob, job_id)


async def run_builtin(creator_db: Database) -> None:
    async with creator_db.transaction() as session:
        await run_builtin_jobs(session, limit=1000)


async def test_with_billing_away_a_job_neither_runs_nor_fails(
    creator_db: Database, tenant: UUID, nc: NatsClient
) -> None:
    job = await queued(creator_db, tenant)

    await credits.reserve_queued(creator_db, nc, within=0.2)  # nobody answers
    await run_builtin(creator_db)

    waiting = await reread(creator_db, job.id)
    assert (waiting.state, waiting.credits) == ("queued", "none")


async def test_a_job_runs_once_billing_holds_its_credit_and_is_charged_once(
    creator_db: Database, tenant: UUID, nc: NatsClient, billing: Billing
) -> None:
    job = await queued(creator_db, tenant)

    await credits.reserve_queued(creator_db, nc)
    await run_builtin(creator_db)
    await credits.settle(creator_db, nc)
    await credits.settle(creator_db, nc)

    done = await reread(creator_db, job.id)
    assert (done.state, done.credits) == ("completed", "committed")
    assert billing.of(job.id) == ["reserve", "commit"]
    reserve = next(
        body for op, body in billing.asked if op == "reserve" and body["reference"] == job.id
    )
    assert (reserve["kind"], reserve["amount"], reserve["tenant_id"]) == ("posts", 1, str(tenant))


async def test_a_refused_reservation_fails_the_job_saying_why(
    creator_db: Database, tenant: UUID, nc: NatsClient, billing: Billing
) -> None:
    billing.refuse = True
    job = await queued(creator_db, tenant)

    await credits.reserve_queued(creator_db, nc)

    refused = await reread(creator_db, job.id)
    assert (refused.state, refused.credits) == ("failed", "refused")
    assert refused.error == "not enough credits to write this post: 1 needed, 0 left"
    async with creator_db.transaction() as session:
        rows = (await session.execute(select(outbox.c.payload))).all()
    failures = [
        e
        for e in (Envelope.model_validate_json(r.payload) for r in rows)
        if e.subject == job.id and e.type == ContentFailed.subject
    ]
    assert len(failures) == 1


async def test_a_failed_job_gives_its_credit_back_once(
    creator_db: Database, tenant: UUID, nc: NatsClient, billing: Billing
) -> None:
    job = await queued(creator_db, tenant)
    await credits.reserve_queued(creator_db, nc)
    async with creator_db.transaction() as session:
        row = await session.get_one(GenerationJob, job.id)
        await fail(session, row, error="the workflow did not call back in time", state="timed_out")

    await credits.settle(creator_db, nc)
    await credits.settle(creator_db, nc)

    assert (await reread(creator_db, job.id)).credits == "released"
    assert billing.of(job.id) == ["reserve", "release"]


async def test_settling_waits_for_billing_and_then_happens_once(
    creator_db: Database, tenant: UUID, nc: NatsClient, billing: Billing
) -> None:
    job = await queued(creator_db, tenant)
    await credits.reserve_queued(creator_db, nc)
    await run_builtin(creator_db)
    async with creator_db.transaction() as session:
        row = await session.get_one(GenerationJob, job.id)
        assert row.credits == "pending_commit"

    await credits.settle(creator_db, None, within=0.2)  # billing unreachable
    assert (await reread(creator_db, job.id)).credits == "pending_commit"

    await credits.settle(creator_db, nc)
    assert (await reread(creator_db, job.id)).credits == "committed"
    assert billing.of(job.id).count("commit") == 1
