"""Mining worker: outbox relay and the extraction job runner."""

import asyncio
from collections.abc import Callable

import httpx

from bai_platform.safe_fetch import SafeFetcher
from bai_platform.settings import ServiceSettings
from bai_platform.worker import Task, WorkerContext, WorkerSpec, every
from mining.crawler import Crawler
from mining.models import inbox, outbox
from mining.runner import JobRunner, settle_ended
from mining.schedules import run_due
from mining.settings import MiningSettings


def worker_spec(settings: ServiceSettings) -> WorkerSpec:
    assert isinstance(settings, MiningSettings)
    return WorkerSpec(outbox=outbox, inbox=inbox, tasks=[_jobs(settings)])


def _jobs(settings: MiningSettings) -> Callable[[WorkerContext], Task]:
    def build(ctx: WorkerContext) -> Task:
        async def run(stop: asyncio.Event) -> None:
            # No proxy from the environment: pinned TLS needs a direct connection.
            async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
                fetcher = SafeFetcher(
                    client=client,
                    allow_private=settings.crawl_allow_private,
                    allowed_hosts=frozenset(settings.crawl_allowed_hosts),
                    max_bytes=settings.crawl_max_bytes,
                    timeout_seconds=settings.crawl_timeout_seconds,
                    user_agent=settings.crawl_user_agent,
                )
                crawler = Crawler(
                    fetcher,
                    user_agent=settings.crawl_user_agent,
                    delay_seconds=settings.crawl_delay_seconds,
                )
                runner = JobRunner(db=ctx.db, nc=ctx.nc, crawler=crawler)

                async def drain() -> None:
                    async with ctx.db.transaction() as session:
                        await run_due(session)
                    while not stop.is_set() and await runner.run_next():
                        pass
                    await settle_ended(ctx.db, ctx.nc)

                await every(settings.job_poll_seconds, drain, name="extraction-jobs")(stop)

        return run

    return build
