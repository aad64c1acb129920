"""Creator worker: outbox relay, the consumers of planner events and workflow callbacks,
the built-in engine, dispatch to n8n workflows, calls of OpenAI-compatible engines, the
deadline sweeper, callback verification for ``gen_`` jobs and the widget lookup.

No task blocks the event loop or makes one workspace wait on another's engine: engine
calls have deadlines and run as tasks of their own, and replies are parsed in linear
time, so the RPCs (callback verification, widget lookup) answer while an engine stalls."""

import asyncio
from datetime import timedelta
from functools import partial

import httpx
import structlog
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import (
    WIDGET_LOOKUP_SUBJECT,
    CampaignCreated,
    PostGenerationRequested,
    WidgetLookup,
    callback_subject,
)
from bai_platform.consumer import Subscription
from bai_platform.db import Database
from bai_platform.dispatching import dispatching_tasks, sweep_deadlines
from bai_platform.rpc import Endpoint, serve_rpc
from bai_platform.secrets import fernet_for
from bai_platform.settings import ServiceSettings
from bai_platform.worker import WorkerContext, WorkerSpec, every
from creator.clients import openai
from creator.events import on_campaign_created, on_generation_requested, on_workflow_callback
from creator.models import inbox, outbox
from creator.service import chat, credits
from creator.service.engines import n8n, openai_jobs
from creator.service.engines.config import ENGINE_SECRETS
from creator.service.generation import run_builtin_jobs
from creator.settings import CreatorSettings

log = structlog.get_logger("creator.worker")


def worker_spec(settings: ServiceSettings) -> WorkerSpec:
    assert isinstance(settings, CreatorSettings)
    box = fernet_for(settings.secret_key, ENGINE_SECRETS)
    n8n_jobs = n8n.N8nJobs.of(settings, box)
    subscriptions = [
        Subscription(
            durable="creator-campaign-created",
            stream="PLANNER",
            subjects=(CampaignCreated.subject,),
            handler=on_campaign_created,
            description="creator keeps each campaign's brief",
        ),
        Subscription(
            durable="creator-generation-requested",
            stream="PLANNER",
            subjects=(PostGenerationRequested.subject,),
            handler=on_generation_requested,
            description="creator queues a generation job per request",
        ),
        Subscription(
            durable="creator-workflow-callbacks",
            stream="CREATOR",
            subjects=(callback_subject("creator"),),
            handler=on_workflow_callback,
            description="creator applies n8n workflows' results",
        ),
    ]

    return WorkerSpec(
        outbox=outbox,
        inbox=inbox,
        subscriptions=subscriptions,
        tasks=[
            credit_saga,
            builtin_engine,
            *dispatching_tasks(n8n_jobs, outbox=outbox, sweep=False),
            partial(openai_calls, box=box),
            partial(deadline_sweeper, n8n_jobs=n8n_jobs),
            widget_lookup,
        ],
    )


async def credit_saga(ctx: WorkerContext[CreatorSettings]) -> None:
    """Queued jobs get their credit held by billing; ended ones commit or release it."""
    await every(ctx.stop, ctx.settings.builtin_poll_seconds, partial(_saga, ctx), name="credits")


async def _saga(ctx: WorkerContext[CreatorSettings]) -> None:
    within = ctx.settings.billing_timeout_seconds
    while await credits.reserve_queued(ctx.db, ctx.nc, within=within) == credits.BATCH:
        pass  # a full batch: more are waiting
    while await credits.settle(ctx.db, ctx.nc, within=within) == credits.BATCH:
        pass


async def builtin_engine(ctx: WorkerContext[CreatorSettings]) -> None:
    """Jobs of the built-in engine are written, a batch per transaction."""
    drain = partial(_builtin_pass, ctx.db)
    await every(ctx.stop, ctx.settings.builtin_poll_seconds, drain, name="builtin-engine")


async def _builtin_pass(db: Database) -> None:
    while True:  # drain the queue, one transaction per batch
        async with db.transaction() as session:
            if await run_builtin_jobs(session) == 0:
                return


async def openai_calls(ctx: WorkerContext[CreatorSettings], *, box: Fernet) -> None:
    """Jobs of OpenAI-compatible engines are called, each its own task."""
    async with httpx.AsyncClient(follow_redirects=False) as client:
        runner = OpenAIRunner(ctx, ctx.settings, box, client)
        try:
            poll = ctx.settings.dispatch_poll_seconds
            await every(ctx.stop, poll, runner.pass_once, name="openai")
        finally:  # calls cut short stay mid-dispatch: the sweeper takes them back
            await runner.stop()


class OpenAIRunner:
    """Calls of OpenAI-compatible engines: each job its own task, at most
    ``engine_concurrency`` at once, turns shared fairly between workspaces (``claim``).

    A pass starts the jobs whose turn has come in the free slots and returns; it never
    waits for an engine, so one hung call holds up nobody but its own job.
    """

    def __init__(
        self,
        ctx: WorkerContext[CreatorSettings],
        settings: CreatorSettings,
        box: Fernet,
        client: httpx.AsyncClient,
    ) -> None:
        self._ctx, self._settings, self._box, self._client = ctx, settings, box, client
        self._running: set[asyncio.Task[None]] = set()

    async def pass_once(self) -> None:
        """Start the due jobs that fit in the free slots."""
        s = self._settings
        free = s.engine_concurrency - len(self._running)
        if free <= 0:
            return
        async with self._ctx.db.transaction() as session:
            claimed = await openai_jobs.claim(
                session, box=self._box, limit=free, per_workspace=s.engine_workspace_concurrency
            )
        for job in claimed:
            task = asyncio.create_task(self._ask(job), name=f"openai-{job.job_id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def idle(self) -> None:
        """Wait until no call is in flight."""
        while self._running:
            await asyncio.wait(set(self._running))

    async def stop(self) -> None:
        """Cut the calls in flight short (the worker is stopping)."""
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _ask(self, job: openai_jobs.Claimed) -> None:
        try:
            await self._call(job)
        except Exception:  # the database went away: the sweeper takes the job back
            log.exception("openai_job_not_recorded", job_id=job.job_id)

    async def _call(self, job: openai_jobs.Claimed) -> None:
        s = self._settings
        try:
            content = await openai.generate(
                self._client,
                job.endpoint,
                job.request,
                deadline_seconds=s.engine_deadline_seconds,
                allow_private=s.allow_private_destinations,
            )
        except openai.EngineFailed as exc:
            failure = exc
        except Exception as exc:  # a bug must not leave the job mid-dispatch forever
            failure = openai.EngineFailed(f"the engine call failed: {exc!r}", retryable=True)
        else:
            async with self._ctx.db.transaction() as session:
                await openai_jobs.record_content(session, job_id=job.job_id, content=content)
            return
        async with self._ctx.db.transaction() as session:
            await openai_jobs.record_failure(
                session,
                job_id=job.job_id,
                failure=failure,
                max_attempts=s.dispatch_max_attempts,
                backoff=s.dispatch_backoff,
            )


async def deadline_sweeper(ctx: WorkerContext[CreatorSettings], *, n8n_jobs: n8n.N8nJobs) -> None:
    """n8n jobs a dead worker left mid-dispatch are sent again, overdue ones end; OpenAI
    jobs left mid-call past their deadline (and a margin) are tried again or failed."""
    recover = partial(_recover_stuck, settings=ctx.settings, n8n_jobs=n8n_jobs)
    await sweep_deadlines(ctx, recover_stuck=recover, expire_overdue=n8n_jobs.expire_overdue)


async def _recover_stuck(
    session: AsyncSession,
    *,
    older_than: timedelta,
    settings: CreatorSettings,
    n8n_jobs: n8n.N8nJobs,
) -> int:
    engine_stuck_after = timedelta(
        seconds=settings.engine_deadline_seconds + settings.engine_recover_margin_seconds
    )
    sent_again = await n8n_jobs.recover_stuck(session, older_than=older_than)
    return sent_again + await openai_jobs.recover_stuck(
        session, older_than=engine_stuck_after, max_attempts=settings.dispatch_max_attempts
    )


async def widget_lookup(ctx: WorkerContext[CreatorSettings]) -> None:
    """The gateway's question before it mints a visitor token."""
    await serve_rpc(
        ctx,
        service="creator-chat",
        endpoints=[Endpoint("widget_lookup", WIDGET_LOOKUP_SUBJECT, WidgetLookup, chat.lookup)],
        description="which workspace a chat widget belongs to, and where it may run",
    )
