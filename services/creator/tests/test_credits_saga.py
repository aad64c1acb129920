"""The credits saga: a job runs only with credits held by billing, is charged once when it
completes and gives them back when it fails; with billing away, jobs wait."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from nats.aio.client import Client as NatsClient
from sqlalchemy import select, update
from sqlmodel import col

from bai_contracts import (
    BrandVoice,
    ContentFailed,
    PostGenerationRequested,
)
from bai_platform.db import Database
from bai_platform.devstack import Stack
from bai_platform.envelope import Envelope, new_event
from bai_platform.messaging import connect
from bai_testing.billing import BillingStandIn, billing_stand_in
from creator.events import on_generation_requested
from creator.models import GenerationJob, outbox
from creator.service import credits
from creator.service.generation import fail, run_builtin_jobs


@pytest.fixture
async def nc(migrated: Stack) -> AsyncIterator[NatsClient]:
    client = await connect(migrated.nats_url, name="saga-test")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def billing(nc: NatsClient) -> AsyncIterator[BillingStandIn]:
    async with billing_stand_in(nc, balances={"posts": 9}, reason="1 needed, 0 left") as stand_in:
        yield stand_in


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
        query = select(GenerationJob).where(col(GenerationJob.request_id) == asked.request_id)
        return (await session.scalars(query)).one()


async def reread(creator_db: Database, job_id: str) -> GenerationJob:
    async with creator_db.transaction() as session:
        return await session.get_one(GenerationJob, job_id)


def operations(billing: BillingStandIn, job_id: str) -> list[str]:
    """What billing was asked about the job, in order."""
    return [operation for operation, _ in billing.of(job_id)]


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
    creator_db: Database, tenant: UUID, nc: NatsClient, billing: BillingStandIn
) -> None:
    job = await queued(creator_db, tenant)

    await credits.reserve_queued(creator_db, nc)
    await run_builtin(creator_db)
    await credits.settle(creator_db, nc)
    await credits.settle(creator_db, nc)

    done = await reread(creator_db, job.id)
    assert (done.state, done.credits) == ("completed", "committed")
    assert operations(billing, job.id) == ["reserve", "commit"]
    reserve = next(body for op, body in billing.of(job.id) if op == "reserve")
    assert (reserve["kind"], reserve["amount"], reserve["tenant_id"]) == ("posts", 1, str(tenant))


async def test_a_refused_reservation_fails_the_job_saying_why(
    creator_db: Database, tenant: UUID, nc: NatsClient, billing: BillingStandIn
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
    creator_db: Database, tenant: UUID, nc: NatsClient, billing: BillingStandIn
) -> None:
    job = await queued(creator_db, tenant)
    await credits.reserve_queued(creator_db, nc)
    async with creator_db.transaction() as session:
        row = await session.get_one(GenerationJob, job.id)
        await fail(session, row, error="the workflow did not call back in time", state="timed_out")

    await credits.settle(creator_db, nc)
    await credits.settle(creator_db, nc)

    assert (await reread(creator_db, job.id)).credits == "released"
    assert operations(billing, job.id) == ["reserve", "release"]


async def test_settling_waits_for_billing_and_then_happens_once(
    creator_db: Database, tenant: UUID, nc: NatsClient, billing: BillingStandIn
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
    assert operations(billing, job.id).count("commit") == 1


async def test_a_workspace_with_many_queued_posts_does_not_hold_up_anothers_first(
    creator_db: Database, nc: NatsClient, billing: BillingStandIn
) -> None:
    busy, neighbour = uuid4(), uuid4()
    for _ in range(credits.BATCH + 10):  # more than one pass takes, all queued first
        await queued(creator_db, busy)
    first = await queued(creator_db, neighbour)

    await credits.reserve_queued(creator_db, nc)

    assert operations(billing, first.id) == ["reserve"]
    assert (await reread(creator_db, first.id)).credits == "reserved"
    async with creator_db.transaction() as session:  # nothing left for the tests after this
        await session.execute(
            update(GenerationJob)
            .where(col(GenerationJob.tenant_id).in_([busy, neighbour]))
            .values(state="failed", credits="released")
        )
