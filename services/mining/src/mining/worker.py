"""Mining worker: outbox relay, the website job runner and schedules, and for ``n8n``
sources: credits, dispatch to the tenants' workflows, their callbacks, the deadline
sweeper, and callback verification for ``ext_`` jobs."""

import asyncio
from collections.abc import Callable
from functools import partial

import httpx
from cryptography.fernet import Fernet

from bai_contracts import callback_subject
from bai_platform.callbacks import callback_verification_task
from bai_platform.consumer import Subscription
from bai_platform.dispatching import OnePass, Sender, deadline_sweeper, dispatch_task
from bai_platform.safe_fetch import SafeFetcher
from bai_platform.secrets import fernet_for
from bai_platform.settings import ServiceSettings
from bai_platform.webhooks import WebhookDispatcher
from bai_platform.worker import Task, WorkerContext, WorkerSpec, every
from mining.events import on_workflow_callback
from mining.models import inbox, outbox
from mining.service import n8n
from mining.service.crawler import Crawler
from mining.service.jobs import N8N
from mining.service.runner import WEBSITE, JobRunner, settle_ended
from mining.service.schedules import run_due
from mining.service.workflows import SECRETS_PURPOSE
from mining.settings import MiningSettings


def worker_spec(settings: ServiceSettings) -> WorkerSpec:
    assert isinstance(settings, MiningSettings)
    box = fernet_for(settings.secret_key, SECRETS_PURPOSE)
    callbacks = Subscription(
        durable="mining-workflow-callbacks",
        stream="GATEWAY",
        subjects=(callback_subject("mining"),),
        handler=on_workflow_callback,
        description="mining applies n8n workflows' pages",
    )

    return WorkerSpec(
        outbox=outbox,
        inbox=inbox,
        subscriptions=[callbacks],
        tasks=[
            _jobs(settings),
            _n8n_dispatcher(settings, box),
            deadline_sweeper(
                settings, recover_stuck=n8n.recover_stuck, expire_overdue=n8n.expire_overdue
            ),
            callback_verification_task(
                settings.service_name, partial(n8n.verification_for, box=box)
            ),
        ],
    )


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

                async def drain() -> None:
                    async with ctx.db.transaction() as session:
                        await run_due(session)
                    await runner.end_abandoned()
                    if not stop.is_set():
                        await runner.fill()  # the jobs run on; the next pass tops them up
                    await settle_ended(ctx.db, ctx.nc, source_type=WEBSITE)

                try:
                    await every(settings.job_poll_seconds, drain, name="extraction-jobs")(stop)
                finally:
                    await runner.close()

        return run

    return build


def _n8n_dispatcher(settings: MiningSettings, box: Fernet) -> Callable[[WorkerContext], Task]:
    def one_pass(ctx: WorkerContext, dispatcher: WebhookDispatcher) -> OnePass:
        return N8nSender(ctx, settings, box, dispatcher).pass_once

    return dispatch_task("n8n", settings.dispatch_loop, one_pass)


class N8nSender:
    """One pass: queued n8n jobs hold credits; due ones go to their workflow; ended ones
    are charged."""

    def __init__(
        self,
        ctx: WorkerContext,
        settings: MiningSettings,
        box: Fernet,
        dispatcher: WebhookDispatcher,
    ) -> None:
        self._ctx = ctx
        self._sender = Sender(
            db=ctx.db,
            dispatcher=dispatcher,
            claim=partial(n8n.claim, box=box, callback_base=settings.public_base_url),
            sent=n8n.record_dispatched,
            failed=partial(
                n8n.record_dispatch_failure,
                max_attempts=settings.dispatch_max_attempts,
                backoff=settings.dispatch_backoff,
            ),
        )

    async def pass_once(self) -> None:
        await n8n.start_queued(self._ctx.db, self._ctx.nc)
        await self._sender.pass_once()
        await settle_ended(self._ctx.db, self._ctx.nc, source_type=N8N)
