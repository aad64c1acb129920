"""Mining worker: outbox relay, the website job runner and schedules, and for ``n8n``
sources: credits, dispatch to the tenants' workflows, their callbacks, the deadline
sweeper, and callback verification for ``ext_`` jobs."""

import asyncio
from collections.abc import Callable
from datetime import timedelta

import httpx
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import CallbackVerification, callback_subject
from bai_platform.callbacks import callback_verification_task
from bai_platform.consumer import Subscription
from bai_platform.safe_fetch import SafeFetcher
from bai_platform.secrets import fernet_for
from bai_platform.settings import ServiceSettings
from bai_platform.webhooks import DispatchFailed, WebhookDispatcher
from bai_platform.worker import Task, WorkerContext, WorkerSpec, every
from mining import n8n
from mining.crawler import Crawler
from mining.events import on_workflow_callback
from mining.jobs import N8N
from mining.models import inbox, outbox
from mining.runner import WEBSITE, JobRunner, settle_ended
from mining.schedules import run_due
from mining.settings import MiningSettings
from mining.workflows import SECRETS_PURPOSE


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

    async def verify(session: AsyncSession, job_id: str) -> CallbackVerification:
        return await n8n.verification_for(session, job_id, box=box)

    return WorkerSpec(
        outbox=outbox,
        inbox=inbox,
        subscriptions=[callbacks],
        tasks=[
            _jobs(settings),
            _n8n_dispatcher(settings, box),
            _sweeper(settings),
            callback_verification_task(settings.service_name, verify),
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
                )
                runner = JobRunner(db=ctx.db, nc=ctx.nc, crawler=crawler)

                async def drain() -> None:
                    async with ctx.db.transaction() as session:
                        await run_due(session)
                    while not stop.is_set() and await runner.run_next():
                        pass
                    await settle_ended(ctx.db, ctx.nc, source_type=WEBSITE)

                await every(settings.job_poll_seconds, drain, name="extraction-jobs")(stop)

        return run

    return build


def _sweeper(settings: MiningSettings) -> Callable[[WorkerContext], Task]:
    stuck_after = timedelta(seconds=settings.dispatch_timeout_seconds * 3)

    def build(ctx: WorkerContext) -> Task:
        async def sweep() -> None:
            async with ctx.db.transaction() as session:
                await n8n.recover_stuck(session, older_than=stuck_after)
                await n8n.expire_overdue(session)

        return every(settings.sweep_seconds, sweep, name="deadline-sweeper")

    return build


def _n8n_dispatcher(settings: MiningSettings, box: Fernet) -> Callable[[WorkerContext], Task]:
    def build(ctx: WorkerContext) -> Task:
        async def run(stop: asyncio.Event) -> None:
            async with httpx.AsyncClient() as client:
                dispatcher = WebhookDispatcher(
                    client=client,
                    timeout_seconds=settings.dispatch_timeout_seconds,
                    failure_threshold=settings.breaker_failures,
                    open_seconds=settings.breaker_open_seconds,
                    allow_private=settings.allow_private_destinations,
                )
                sender = N8nSender(ctx, settings, box, dispatcher)
                await every(settings.dispatch_poll_seconds, sender.pass_once, name="n8n")(stop)

        return run

    return build


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
        self._ctx, self._settings, self._box, self._dispatcher = ctx, settings, box, dispatcher

    async def pass_once(self) -> None:
        await n8n.start_queued(self._ctx.db, self._ctx.nc)
        async with self._ctx.db.transaction() as session:
            claimed = await n8n.claim(
                session, box=self._box, callback_base=self._settings.public_base_url
            )
        await asyncio.gather(*(self._send(job) for job in claimed))
        await settle_ended(self._ctx.db, self._ctx.nc, source_type=N8N)

    async def _send(self, job: n8n.Dispatch) -> None:
        failure: DispatchFailed | None = None
        try:
            await self._dispatcher.dispatch(
                url=job.url,
                payload=job.payload,
                secret=job.secret,
                secret_header=job.secret_header,
                event_id=job.job_id,
            )
        except DispatchFailed as exc:
            failure = exc
        except Exception as exc:  # a bug must not leave the job mid-dispatch forever
            failure = DispatchFailed(f"dispatch failed unexpectedly: {exc!r}"[:300], retryable=True)
        s = self._settings
        async with self._ctx.db.transaction() as session:
            if failure is None:
                await n8n.record_dispatched(session, job_id=job.job_id)
                return
            await n8n.record_dispatch_failure(
                session,
                job_id=job.job_id,
                failure=failure,
                max_attempts=s.dispatch_max_attempts,
                backoff=(s.dispatch_backoff_base_seconds, s.dispatch_backoff_cap_seconds),
            )
