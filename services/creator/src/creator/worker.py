"""Creator worker: outbox relay, the consumers of planner events and workflow callbacks,
the built-in engine, dispatch to n8n workflows, calls of OpenAI-compatible engines, the
deadline sweeper, callback verification for ``gen_`` jobs and the widget lookup.

No task blocks the event loop or makes one workspace wait on another's engine: engine
calls have deadlines and run as tasks of their own, and replies are parsed in linear
time, so the RPCs (callback verification, widget lookup) answer while an engine stalls."""

import asyncio
from collections.abc import Callable
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
from bai_platform.callbacks import callback_verification_task
from bai_platform.consumer import Subscription
from bai_platform.dispatching import OnePass, Sender, deadline_sweeper, dispatch_task
from bai_platform.rpc import Endpoint, rpc_task
from bai_platform.secrets import fernet_for
from bai_platform.settings import ServiceSettings
from bai_platform.webhooks import WebhookDispatcher
from bai_platform.worker import Task, WorkerContext, WorkerSpec, every
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
            stream="GATEWAY",
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
            _credits(settings),
            _builtin_runner(settings),
            _n8n_dispatcher(settings, box),
            openai_runner_task(settings, box),
            _sweeper(settings),
            callback_verification_task(
                settings.service_name, partial(n8n.verification_for, box=box)
            ),
            widget_lookup_task(),
        ],
    )


def _credits(settings: CreatorSettings) -> Callable[[WorkerContext], Task]:
    def build(ctx: WorkerContext) -> Task:
        async def saga() -> None:
            within = settings.billing_timeout_seconds
            while await credits.reserve_queued(ctx.db, ctx.nc, within=within) == credits.BATCH:
                pass  # a full batch: more are waiting
            while await credits.settle(ctx.db, ctx.nc, within=within) == credits.BATCH:
                pass

        return every(settings.builtin_poll_seconds, saga, name="credits")

    return build


def _builtin_runner(settings: CreatorSettings) -> Callable[[WorkerContext], Task]:
    def build(ctx: WorkerContext) -> Task:
        async def run_once() -> None:
            while True:  # drain the queue, one transaction per batch
                async with ctx.db.transaction() as session:
                    if await run_builtin_jobs(session) == 0:
                        return

        return every(settings.builtin_poll_seconds, run_once, name="builtin-engine")

    return build


def openai_runner_task(settings: CreatorSettings, box: Fernet) -> Callable[[WorkerContext], Task]:
    def build(ctx: WorkerContext) -> Task:
        async def run(stop: asyncio.Event) -> None:
            async with httpx.AsyncClient(follow_redirects=False) as client:
                runner = OpenAIRunner(ctx, settings, box, client)
                try:
                    await every(settings.dispatch_poll_seconds, runner.pass_once, name="openai")(
                        stop
                    )
                finally:  # calls cut short stay mid-dispatch: the sweeper takes them back
                    await runner.stop()

        return run

    return build


class OpenAIRunner:
    """Calls of OpenAI-compatible engines: each job its own task, at most
    ``engine_concurrency`` at once, turns shared fairly between workspaces (``claim``).

    A pass starts the jobs whose turn has come in the free slots and returns; it never
    waits for an engine, so one hung call holds up nobody but its own job.
    """

    def __init__(
        self, ctx: WorkerContext, settings: CreatorSettings, box: Fernet, client: httpx.AsyncClient
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


def _sweeper(settings: CreatorSettings) -> Callable[[WorkerContext], Task]:
    """n8n jobs a dead worker left mid-dispatch are sent again, overdue ones end; OpenAI
    jobs left mid-call past their deadline (and a margin) are tried again or failed."""
    engine_stuck_after = timedelta(
        seconds=settings.engine_deadline_seconds + settings.engine_recover_margin_seconds
    )

    async def recover_stuck(session: AsyncSession, *, older_than: timedelta) -> int:
        sent_again = await n8n.recover_stuck(session, older_than=older_than)
        return sent_again + await openai_jobs.recover_stuck(
            session, older_than=engine_stuck_after, max_attempts=settings.dispatch_max_attempts
        )

    return deadline_sweeper(
        settings, recover_stuck=recover_stuck, expire_overdue=n8n.expire_overdue
    )


def widget_lookup_task() -> Callable[[WorkerContext], Task]:
    """The gateway's question before it mints a visitor token."""
    return rpc_task(
        "creator-chat",
        [Endpoint("widget_lookup", WIDGET_LOOKUP_SUBJECT, WidgetLookup, chat.lookup)],
        description="which workspace a chat widget belongs to, and where it may run",
    )


def _n8n_dispatcher(settings: CreatorSettings, box: Fernet) -> Callable[[WorkerContext], Task]:
    def one_pass(ctx: WorkerContext, dispatcher: WebhookDispatcher) -> OnePass:
        return N8nSender(ctx, settings, box, dispatcher).pass_once

    return dispatch_task("n8n", settings.dispatch_loop, one_pass)


class N8nSender:
    """One pass: claim queued n8n jobs, send them, record what each workflow said."""

    def __init__(
        self,
        ctx: WorkerContext,
        settings: CreatorSettings,
        box: Fernet,
        dispatcher: WebhookDispatcher,
    ) -> None:
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
        await self._sender.pass_once()
