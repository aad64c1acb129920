"""The website job runner shares its worker fairly: jobs side by side, round-robin by
workspace, a cap per workspace, and a deadline per job that ends hostile crawls with what
they read, charged for what they fetched."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
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

from .conftest import end_jobs_of, hostile_site

IdentityFor = Callable[[UUID, str], dict[str, str]]
RunnerFor = Callable[..., AbstractAsyncContextManager[JobRunner]]
SHOP = "<html><body><p>Write to hola@shop.example</p></body></html>"

pytestmark = pytest.mark.usefixtures("a_clear_queue")


@dataclass(frozen=True)
class Editor:
    """An editor of one workspace: queues website jobs through the API and reads them back."""

    client: httpx.AsyncClient
    headers: dict[str, str]

    async def queue(self, url: str, *, max_pages: int = 20) -> str:
        body = {
            "source": {"type": "website", "urls": [url]},
            "limits": {"max_pages": max_pages, "max_depth": 1},
        }
        response = await self.client.post("/v1/mining/jobs", json=body, headers=self.headers)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    async def job(self, job_id: str) -> Any:
        return (await self.client.get(f"/v1/mining/jobs/{job_id}", headers=self.headers)).json()

    async def ended(self, job_id: str) -> Any:
        """The job once it has ended (a generous bound: a hang fails the test)."""
        async with asyncio.timeout(60):
            while True:
                job = await self.job(job_id)
                if job["state"] not in ("queued", "running"):
                    return job
                await asyncio.sleep(0.1)

    async def pages_fetched(self, job_id: str) -> int:
        pages: int = (await self.job(job_id))["progress"]["pages_fetched"]
        return pages

    async def results(self, job_id: str) -> Any:
        path = f"/v1/mining/jobs/{job_id}/results"
        return (await self.client.get(path, headers=self.headers)).json()


@pytest.fixture
async def other_tenant(mining_db: Database) -> AsyncIterator[UUID]:
    other = uuid4()
    yield other
    await end_jobs_of(mining_db, other)


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
    await end_jobs_of(mining_db, tenant)


@pytest.fixture
def editor(client: httpx.AsyncClient, identity_for: IdentityFor, tenant: UUID) -> Editor:
    return Editor(client, identity_for(tenant, "editor"))


@pytest.fixture
def other_editor(
    client: httpx.AsyncClient, identity_for: IdentityFor, other_tenant: UUID
) -> Editor:
    """An editor of another workspace."""
    return Editor(client, identity_for(other_tenant, "editor"))


@pytest.fixture
async def bad_site() -> AsyncIterator[str]:
    """The base URL of the hostile site (a regex bomb, a tarpit, a bad Retry-After...)."""
    async with hostile_site() as base:
        yield base


@pytest.fixture
async def shop() -> AsyncIterator[Site]:
    """A calm one-page site with an email address on it."""
    async with website(Site(pages={"/": SHOP})) as site:
        yield site


@pytest.fixture
def runner_for(mining_db: Database, nats_client: NatsClient) -> RunnerFor:
    """Opens a runner with these options as the worker builds one, reading sites on
    127.0.0.1 without delay; closing it stops the jobs still running in it."""

    @contextlib.asynccontextmanager
    async def open_runner(**options: Any) -> AsyncIterator[JobRunner]:
        async with httpx.AsyncClient(trust_env=False) as http:
            fetcher = SafeFetcher(
                client=http, allowed_hosts=frozenset({"127.0.0.1"}), timeout_seconds=30
            )
            # Four requests to a host at once: the hostile site's pages are asked for together.
            crawler = Crawler(
                fetcher, user_agent="BAI-test", delay_seconds=0, retries=0, host_concurrency=4
            )
            runner = JobRunner(db=mining_db, nc=nats_client, crawler=crawler, **options)
            try:
                yield runner
            finally:
                await runner.close()

    return open_runner


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


async def left_running(db: Database, job_id: str, *, since: timedelta, **values: Any) -> None:
    """The job as a worker left it: ``running``, started ``since`` ago, with ``values``."""
    async with db.transaction() as session:
        await session.execute(
            update(ExtractionJob)
            .where(col(ExtractionJob.id) == job_id)
            .values(state="running", started_at=datetime.now(UTC) - since, **values)
        )


def charged(billing: BillingStandIn, job_id: str) -> object:
    [commit] = [body for op, body in billing.of(job_id) if op == "commit"]
    return commit["amount"]


async def test_a_workspace_is_served_while_another_workspaces_crawls_meet_a_bomb_and_a_tarpit(
    editor: Editor,
    other_editor: Editor,
    bad_site: str,
    shop: Site,
    runner_for: RunnerFor,
    mining_db: Database,
    billing: BillingStandIn,
) -> None:
    hostile, calm = editor, other_editor
    hostile_jobs = [await hostile.queue(f"{bad_site}/") for _ in range(3)]
    calm_job = await calm.queue(f"{shop.base}/")
    options = {"jobs_at_once": 2, "per_workspace": 1, "deadline_seconds": 3.0}
    async with runner_for(**options) as runner, working(runner):
        served = await calm.ended(calm_job)
        hostile_then = await states(mining_db, hostile_jobs)
        hostile_ended = [await hostile.ended(job_id) for job_id in hostile_jobs]

    leads = await calm.results(calm_job)
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


async def test_a_job_that_reads_nothing_before_its_deadline_fails_saying_why_and_is_charged(
    editor: Editor, bad_site: str, runner_for: RunnerFor, billing: BillingStandIn
) -> None:
    job_id = await editor.queue(f"{bad_site}/tarpit")
    async with runner_for(deadline_seconds=1.0) as runner:
        assert await runner.run_next()
    job = await editor.ended(job_id)

    assert job["state"] == "failed"
    assert job["problems"] == ["the crawl reached its time limit (1 s) and was stopped"]
    assert job["progress"]["pages_fetched"] == 1
    assert charged(billing, job_id) == 1


@pytest.mark.usefixtures("billing")
async def test_jobs_are_picked_round_robin_by_workspace_not_first_come_first_served(
    editor: Editor, other_editor: Editor, shop: Site, runner_for: RunnerFor, mining_db: Database
) -> None:
    first, second = editor, other_editor
    url = f"{shop.base}/"
    queued = [await first.queue(url) for _ in range(3)]
    queued.append(await second.queue(url))
    async with runner_for() as runner:
        for _ in queued:
            assert await runner.run_next()

    async with mining_db.transaction() as session:
        query = select(col(ExtractionJob.id)).where(col(ExtractionJob.id).in_(queued))
        order = list((await session.scalars(query.order_by(col(ExtractionJob.started_at)))).all())
    assert order == [queued[0], queued[3], queued[1], queued[2]]


@pytest.mark.usefixtures("billing")
async def test_a_workspace_never_runs_more_jobs_at_once_than_its_cap_on_any_worker(
    editor: Editor, bad_site: str, runner_for: RunnerFor, mining_db: Database
) -> None:
    queued = [await editor.queue(f"{bad_site}/tarpit") for _ in range(4)]
    options = {"jobs_at_once": 4, "per_workspace": 2, "deadline_seconds": 30.0}
    async with runner_for(**options) as one, runner_for(**options) as other:
        started = [await one.fill(), await other.fill()]
        running = await states(mining_db, queued)

    assert started == [2, 0]
    assert sorted(running) == ["queued", "queued", "running", "running"]


async def test_a_job_running_when_its_worker_stops_ends_saying_so_and_is_charged(
    editor: Editor, bad_site: str, runner_for: RunnerFor, billing: BillingStandIn
) -> None:
    job_id = await editor.queue(f"{bad_site}/")
    async with runner_for(deadline_seconds=600.0) as runner:
        assert await runner.fill() == 1
        async with asyncio.timeout(30):  # the home page and the bomb, then the tarpit
            while (await editor.pages_fetched(job_id)) < 2:
                await asyncio.sleep(0.1)
    job = await editor.ended(job_id)

    assert job["state"] == "partial"
    assert job["problems"][-1] == STOPPED
    assert charged(billing, job_id) == job["progress"]["pages_fetched"] >= 2


async def test_a_job_a_dead_worker_left_running_ends_after_its_deadline_and_is_charged(
    editor: Editor,
    runner_for: RunnerFor,
    mining_db: Database,
    nats_client: NatsClient,
    billing: BillingStandIn,
) -> None:
    job_id = await editor.queue("https://example.org/")
    await left_running(
        mining_db, job_id, since=timedelta(minutes=5), credits="reserved", pages_fetched=3
    )
    async with runner_for(deadline_seconds=120.0) as runner:
        assert await runner.end_abandoned() == 1
        assert await runner.fill() == 0  # nothing else waits
    await settle_ended(mining_db, nats_client, source_type="website")
    job = await editor.ended(job_id)

    assert job["state"] == "failed"
    assert job["problems"] == [ABANDONED]
    assert charged(billing, job_id) == 3


async def test_a_job_running_within_its_deadline_is_left_to_its_worker(
    editor: Editor, runner_for: RunnerFor, mining_db: Database
) -> None:
    job_id = await editor.queue("https://example.org/")
    await left_running(mining_db, job_id, since=timedelta(minutes=2))
    async with runner_for(deadline_seconds=120.0) as runner:
        assert await runner.end_abandoned() == 0

    assert await states(mining_db, [job_id]) == ["running"]
