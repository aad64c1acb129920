"""Mining worker: outbox relay, the website job runner and schedules, and for ``n8n``
sources: credits, dispatch to the tenants' workflows, their callbacks, the deadline
sweeper, and callback verification for ``ext_`` jobs."""

from functools import partial

import httpx

from bai_contracts import callback_subject
from bai_platform.consumer import Subscription
from bai_platform.dispatching import dispatching_tasks
from bai_platform.safe_fetch import SafeFetcher
from bai_platform.secrets import fernet_for
from bai_platform.settings import ServiceSettings
from bai_platform.worker import WorkerContext, WorkerSpec, every
from mining.events import on_workflow_callback
from mining.models import inbox, outbox
from mining.service import n8n
from mining.service.crawler import Crawler
from mining.service.runner import WEBSITE, JobRunner, settle_ended
from mining.service.schedules import run_due
from mining.service.workflows import SECRETS_PURPOSE
from mining.settings import MiningSettings


def worker_spec(settings: ServiceSettings) -> WorkerSpec:
    assert isinstance(settings, MiningSettings)
    box = fernet_for(settings.secret_key, SECRETS_PURPOSE)
    callbacks = Subscription(
        durable="mining-workflow-callbacks",
        stream="MINING",
        subjects=(callback_subject("mining"),),
        handler=on_workflow_callback,
        description="mining applies n8n workflows' pages",
    )

    return WorkerSpec(
        outbox=outbox,
        inbox=inbox,
        subscriptions=[callbacks],
        tasks=[
            extraction_jobs,
            *dispatching_tasks(n8n.N8nJobs.of(settings, box), outbox=outbox),
        ],
    )


async def extraction_jobs(ctx: WorkerContext[MiningSettings]) -> None:
    """Website jobs: due schedules start theirs, abandoned ones end, free slots fill in
    turns across workspaces, and ended ones are charged."""
    settings = ctx.settings
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
            concurrency=settings.crawl_concurrency,
            host_concurrency=settings.crawl_host_concurrency,
            retries=settings.crawl_retries,
            retry_base_seconds=settings.crawl_retry_base_seconds,
        )
        runner = JobRunner(
            db=ctx.db,
            nc=ctx.nc,
            crawler=crawler,
            jobs_at_once=settings.crawl_jobs_at_once,
            per_workspace=settings.crawl_jobs_per_workspace,
            deadline_seconds=settings.crawl_job_deadline_seconds,
        )
        try:
            drain = partial(_website_pass, ctx, runner)
            await every(ctx.stop, settings.job_poll_seconds, drain, name="extraction-jobs")
        finally:
            await runner.close()


async def _website_pass(ctx: WorkerContext[MiningSettings], runner: JobRunner) -> None:
    async with ctx.db.transaction() as session:
        await run_due(session)
    await runner.end_abandoned()
    if not ctx.stop.is_set():
        await runner.fill()  # the jobs run on; the next pass tops them up
    await settle_ended(ctx.db, ctx.nc, source_type=WEBSITE)
