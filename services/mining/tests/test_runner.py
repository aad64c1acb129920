"""The website job runner shares its worker fairly: jobs side by side, round-robin by
workspace, a cap per workspace, and a deadline per job that ends hostile crawls with what
they read, charged for what they fetched."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from sqlalchemy import select, update
from sqlmodel import col

from bai_platform.db import Database
from bai_platform.safe_fetch import SafeFetcher
from bai_testing.billing import BillingStandIn
from bai_testing.sites import Site, website
from mining.models import ExtractionJob
from mining.service.crawler import Crawler
from mining.service.runner import ABANDONED, STOPPED, JobRunner, settle_ended

from .conftest import hostile_site

IdentityFor = Callable[[UUID, str], dict[str, str]]
SHOP = "<html><body><p>Write to hola@shop.example</p></body></html>"


@pytest.fixture
async def other_tenant(mining_db: Database) -> AsyncIterator[UUID]:
    other = uuid4()
    yield other
    await _end_jobs_of(mining_db, other)


@pytest.fixture
async def a_clear_queue(mining_db: Database, tenant: UUID) -> AsyncIterator[None]:
    """Website jobs earlier tests left queued are ended, so the runner sees only ours."""
    async with mining_db.transaction() as session:
        await session.execute(
            update(ExtractionJob)
            .where(
                col(ExtractionJob.state) == "queued", col(ExtractionJob.source_type) == "website"
            )
            .values(state="cancelled", problems=["ended by a later test"])
        )
    yield
    await _end_jobs_of(mining_db, tenant)


async def _end_jobs_of(db: Database, tenant: UUID) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(ExtractionJob)
            .where(
                col(ExtractionJob.tenant_id) == tenant,
                col(ExtractionJob.state).in_(("queued", "running")),
            )
            .values(state="cancelled", problems=["ended by the test"])
        )


@contextlib.asynccontextmanager
async def runner_for(
    db: Database, nc: NatsClient, **options: Any
) -> AsyncIterator[tuple[JobRunner, httpx.AsyncClient]]:
    """A runner as the worker builds one, reading sites on 127.0.0.1 without delay."""
    async with httpx.AsyncClient(trust_env=False) as http:
        fetcher = SafeFetcher(
            client=http, allowed_hosts=frozenset({"127.0.0.1"}), timeout_seconds=30
        )
        # Four requests to a host at once: the hostile site's pages are all asked for together.
        crawler = Crawler(
            fetcher, user_agent="BAI-test", delay_seconds=0, retries=0, host_concurrency=4
        )
        runner = JobRunner(db=db, nc=nc, crawler=crawler, **options)
        try:
            yield runner, http
        finally:
            await runner.close()


@contextlib.asynccontextmanager
async def working(runner: JobRunner) -> AsyncIterator[None]:
    """The worker's loop: top the running jobs up, often."""

    async def loop() -> None:
        while True:
            await runner.fill()
            await asyncio.sleep(0.1)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def queue(
    client: httpx.AsyncClient, headers: dict[str, str], url: str, *, max_pages: int = 20
) -> str:
    body = {
        "source": {"type": "website", "urls": [url]},
        "limits": {"max_pages": max_pages, "max_depth": 1},
    }
    response = await client.post("/v1/mining/jobs", json=body, headers=headers)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def ended(client: httpx.AsyncClient, headers: dict[str, str], job_id: str) -> Any:
    """The job once it has ended (a generous bound: a hang fails the test)."""
    async with asyncio.timeout(60):
        while True:
            job = (await client.get(f"/v1/mining/jobs/{job_id}", headers=headers)).json()
            if job["state"] not in ("queued", "running"):
                return job
            await asyncio.sleep(0.1)


async def states(db: Database, job_ids: list[str]) -> list[str]:
    async with db.transaction() as session:
        rows = dict(
            (
                await session.execute(
                    select(col(ExtractionJob.id), col(ExtractionJob.state)).where(
                        col(ExtractionJob.id).in_(job_ids)
                    )
                )
            ).all()
        )
    return [rows[job_id] for job_id in job_ids]


def charged(billing: BillingStandIn, job_id: str) -> object:
    [commit] = [body for op, body in billing.of(job_id) if op == "commit"]
    return commit["amount"]


@pytest.mark.usefixtures("a_clear_queue")
async def test_a_workspace_is_served_while_another_workspaces_crawls_meet_a_bomb_and_a_tarpit(
    client: httpx.AsyncClient,
    tenant: UUID,
    other_tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
    nats_client: NatsClient,
    billing: BillingStandIn,
) -> None:
    hostile, calm = identity_for(tenant, "editor"), identity_for(other_tenant, "editor")
    shop = Site(pages={"/": SHOP})
    async with hostile_site() as bad, website(shop):
        hostile_jobs = [await queue(client, hostile, f"{bad}/") for _ in range(3)]
        calm_job = await queue(client, calm, f"{shop.base}/")
        options = {"jobs_at_once": 2, "per_workspace": 1, "deadline_seconds": 3.0}
        async with runner_for(mining_db, nats_client, **options) as (runner, _), working(runner):
            served = await ended(client, calm, calm_job)
            hostile_then = await states(mining_db, hostile_jobs)
            hostile_ended = [await ended(client, hostile, job_id) for job_id in hostile_jobs]

    leads = (await client.get(f"/v1/mining/jobs/{calm_job}/results", headers=calm)).json()
    assert served["state"] == "succeeded"
    assert [lead["emails"] for lead in leads["items"]] == [["hola@shop.example"]]
    assert "queued" in hostile_then  # the calm workspace did not wait for the hostile queue
    for job in hostile_ended:
        assert job["state"] == "partial"  # the home page was read
        assert any("time limit (3 s)" in p for p in job["problems"]), job["problems"]
        assert any("malformed link" in p for p in job["problems"])
        # Home, the bomb, the bad Retry-After and the tarpit that held a slot to the end.
        assert job["progress"]["pages_fetched"] == 4
        assert charged(billing, job["id"]) == job["progress"]["pages_fetched"]


@pytest.mark.usefixtures("a_clear_queue")
async def test_a_job_that_reads_nothing_before_its_deadline_fails_saying_why_and_is_charged(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
    nats_client: NatsClient,
    billing: BillingStandIn,
) -> None:
    headers = identity_for(tenant, "editor")
    async with hostile_site() as bad:
        job_id = await queue(client, headers, f"{bad}/tarpit")
        async with runner_for(mining_db, nats_client, deadline_seconds=1.0) as (runner, _):
            assert await runner.run_next()
    job = await ended(client, headers, job_id)

    assert job["state"] == "failed"
    assert job["problems"] == ["the crawl reached its time limit (1 s) and was stopped"]
    assert job["progress"]["pages_fetched"] == 1
    assert charged(billing, job_id) == 1


@pytest.mark.usefixtures("a_clear_queue")
async def test_jobs_are_picked_round_robin_by_workspace_not_first_come_first_served(
    client: httpx.AsyncClient,
    tenant: UUID,
    other_tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
    nats_client: NatsClient,
    billing: BillingStandIn,
) -> None:
    first, second = identity_for(tenant, "editor"), identity_for(other_tenant, "editor")
    async with website(Site(pages={"/": SHOP})) as shop:
        url = f"{shop.base}/"
        queued = [await queue(client, first, url) for _ in range(3)]
        queued.append(await queue(client, second, url))
        async with runner_for(mining_db, nats_client) as (runner, _):
            for _ in queued:
                assert await runner.run_next()

    async with mining_db.transaction() as session:
        query = select(col(ExtractionJob.id)).where(col(ExtractionJob.id).in_(queued))
        order = list((await session.scalars(query.order_by(col(ExtractionJob.started_at)))).all())
    assert order == [queued[0], queued[3], queued[1], queued[2]]


@pytest.mark.usefixtures("a_clear_queue")
async def test_a_workspace_never_runs_more_jobs_at_once_than_its_cap_on_any_worker(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
    nats_client: NatsClient,
    billing: BillingStandIn,
) -> None:
    headers = identity_for(tenant, "editor")
    async with hostile_site() as bad:
        queued = [await queue(client, headers, f"{bad}/tarpit") for _ in range(4)]
        options = {"jobs_at_once": 4, "per_workspace": 2, "deadline_seconds": 30.0}
        async with (
            runner_for(mining_db, nats_client, **options) as (one, _),
            runner_for(mining_db, nats_client, **options) as (other, _),
        ):
            started = [await one.fill(), await other.fill()]
            running = await states(mining_db, queued)

    assert started == [2, 0]
    assert sorted(running) == ["queued", "queued", "running", "running"]


@pytest.mark.usefixtures("a_clear_queue")
async def test_a_job_running_when_its_worker_stops_ends_saying_so_and_is_charged(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
    nats_client: NatsClient,
    billing: BillingStandIn,
) -> None:
    headers = identity_for(tenant, "editor")
    async with hostile_site() as bad:
        job_id = await queue(client, headers, f"{bad}/")
        options = {"deadline_seconds": 600.0}
        async with runner_for(mining_db, nats_client, **options) as (runner, _):
            assert await runner.fill() == 1
            async with asyncio.timeout(30):  # the home page and the bomb, then the tarpit
                while (await pages_fetched(client, headers, job_id)) < 2:
                    await asyncio.sleep(0.1)
        job = await ended(client, headers, job_id)

    assert job["state"] == "partial"
    assert job["problems"][-1] == STOPPED
    assert charged(billing, job_id) == job["progress"]["pages_fetched"] >= 2


async def pages_fetched(client: httpx.AsyncClient, headers: dict[str, str], job_id: str) -> int:
    job = (await client.get(f"/v1/mining/jobs/{job_id}", headers=headers)).json()
    pages: int = job["progress"]["pages_fetched"]
    return pages


@pytest.mark.usefixtures("a_clear_queue")
async def test_a_job_a_dead_worker_left_running_ends_after_its_deadline_and_is_charged(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
    nats_client: NatsClient,
    billing: BillingStandIn,
) -> None:
    headers = identity_for(tenant, "editor")
    job_id = await queue(client, headers, "https://example.org/")
    async with mining_db.transaction() as session:
        await session.execute(
            update(ExtractionJob)
            .where(col(ExtractionJob.id) == job_id)
            .values(
                state="running",
                credits="reserved",
                pages_fetched=3,
                started_at=datetime.now(UTC) - timedelta(minutes=5),
            )
        )
    async with runner_for(mining_db, nats_client, deadline_seconds=120.0) as (runner, _):
        assert await runner.end_abandoned() == 1
        assert await runner.fill() == 0  # nothing else waits
    await settle_ended(mining_db, nats_client, source_type="website")
    job = await ended(client, headers, job_id)

    assert job["state"] == "failed"
    assert job["problems"] == [ABANDONED]
    assert charged(billing, job_id) == 3


@pytest.mark.usefixtures("a_clear_queue")
async def test_a_job_running_within_its_deadline_is_left_to_its_worker(
    client: httpx.AsyncClient,
    tenant: UUID,
    identity_for: IdentityFor,
    mining_db: Database,
    nats_client: NatsClient,
) -> None:
    headers = identity_for(tenant, "editor")
    job_id = await queue(client, headers, "https://example.org/")
    async with mining_db.transaction() as session:
        await session.execute(
            update(ExtractionJob)
            .where(col(ExtractionJob.id) == job_id)
            .values(state="running", started_at=datetime.now(UTC) - timedelta(minutes=2))
        )
    async with runner_for(mining_db, nats_client, deadline_seconds=120.0) as (runner, _):
        assert await runner.end_abandoned() == 0

    assert await states(mining_db, [job_id]) == ["running"]
