"""Planner worker: outbox relay, creator's answers, publishing callbacks and dispatch,
callback verification for ``pub_`` jobs, and review-link reminders."""

import asyncio
from collections.abc import Callable
from datetime import timedelta

import httpx
import structlog
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import (
    CallbackVerification,
    ContentFailed,
    ContentGenerated,
    ContentGenerationStarted,
    ContentVersionChosen,
    callback_subject,
)
from bai_platform.callbacks import callback_verification_task
from bai_platform.consumer import Subscription
from bai_platform.secrets import fernet_for
from bai_platform.settings import ServiceSettings
from bai_platform.webhooks import DispatchFailed, WebhookDispatcher
from bai_platform.worker import Task, WorkerContext, WorkerSpec, every
from planner.events import on_content_event, on_publish_callback
from planner.models import inbox, outbox
from planner.service import publishing, reviews
from planner.service.publishing import Dispatch
from planner.settings import PlannerSettings

log = structlog.get_logger("planner.worker")


def worker_spec(settings: ServiceSettings) -> WorkerSpec:
    assert isinstance(settings, PlannerSettings)
    box = fernet_for(settings.secret_key, "planner/publishing-secrets")
    content = Subscription(
        durable="planner-content",
        stream="CREATOR",
        subjects=(
            ContentGenerated.subject,
            ContentFailed.subject,
            ContentGenerationStarted.subject,
            ContentVersionChosen.subject,
        ),
        handler=on_content_event,
        description="planner moves posts as creator answers",
    )
    callbacks = Subscription(
        durable="planner-publish-callbacks",
        stream="GATEWAY",
        subjects=(callback_subject("planner"),),
        handler=on_publish_callback,
        description="planner marks posts published or failed from the workflow's callback",
    )

    async def verify(session: AsyncSession, job_id: str) -> CallbackVerification:
        return await publishing.verification_for(session, job_id, box=box)

    return WorkerSpec(
        outbox=outbox,
        inbox=inbox,
        subscriptions=[content, callbacks],
        tasks=[
            callback_verification_task(settings.service_name, verify),
            _reminders(settings),
            _publisher(settings, box),
        ],
    )


def _reminders(settings: PlannerSettings) -> Callable[[WorkerContext], Task]:
    within = timedelta(hours=settings.review_reminder_hours)

    def build(ctx: WorkerContext) -> Task:
        async def sweep() -> None:
            async with ctx.db.transaction() as session:
                await reviews.remind_expiring(session, within=within)

        return every(settings.review_sweep_seconds, sweep, name="review-reminders")

    return build


def _publisher(settings: PlannerSettings, box: Fernet) -> Callable[[WorkerContext], Task]:
    def build(ctx: WorkerContext) -> Task:
        async def run(stop: asyncio.Event) -> None:
            async with httpx.AsyncClient() as client:
                dispatcher = WebhookDispatcher(
                    client=client,
                    timeout_seconds=settings.publish_timeout_seconds,
                    allow_private=settings.allow_private_destinations,
                )
                publisher = _Publisher(ctx, settings, box, dispatcher)
                await every(settings.publish_sweep_seconds, publisher.sweep, name="publisher")(stop)

        return run

    return build


class _Publisher:
    """One pass: open jobs for due posts, dispatch those whose turn came, expire the silent."""

    def __init__(
        self,
        ctx: WorkerContext,
        settings: PlannerSettings,
        box: Fernet,
        dispatcher: WebhookDispatcher,
    ) -> None:
        self._ctx, self._settings, self._box, self._dispatcher = ctx, settings, box, dispatcher

    async def sweep(self) -> None:
        db, settings = self._ctx.db, self._settings
        stuck_after = timedelta(seconds=settings.publish_timeout_seconds * 3)
        async with db.transaction() as session:
            await publishing.recover_stuck(session, older_than=stuck_after)
            await publishing.open_due_jobs(session)
        async with db.transaction() as session:
            claimed = await publishing.claim_jobs(
                session, box=self._box, callback_base=settings.public_base_url
            )
        # One job's trouble must not keep the others' results (or the expiry) unrecorded.
        results = await asyncio.gather(
            *(self._dispatch(d) for d in claimed), return_exceptions=True
        )
        for job, result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                log.error("publish_dispatch_unrecorded", job_id=job.job_id, exc_info=result)
        async with db.transaction() as session:
            await publishing.expire_overdue(session)

    async def _dispatch(self, job: Dispatch) -> None:
        settings = self._settings
        failure = job.problem or await self._send(job)
        async with self._ctx.db.transaction() as session:
            if failure is None:
                deadline = timedelta(seconds=settings.publish_callback_deadline_seconds)
                await publishing.record_delivered(session, job_id=job.job_id, deadline=deadline)
                return
            await publishing.record_failed_dispatch(
                session,
                job_id=job.job_id,
                failure=failure,
                max_attempts=settings.publish_max_attempts,
                backoff=(
                    settings.publish_backoff_base_seconds,
                    settings.publish_backoff_cap_seconds,
                ),
            )

    async def _send(self, job: Dispatch) -> DispatchFailed | str | None:
        """Call the workflow; the failure, if any."""
        if job.url is None or not job.secret:
            return publishing.NO_TARGET
        try:
            await self._dispatcher.dispatch(
                url=job.url,
                payload=job.payload,
                secret=job.secret,
                secret_header=job.secret_header,
                event_id=job.job_id,
            )
        except DispatchFailed as exc:
            return exc
        except Exception:
            # Left unrecorded, the job would sit in "dispatching", be recovered and sent
            # again for ever: count it as an attempt like any other failure.
            log.exception("publish_dispatch_crashed", job_id=job.job_id)
            return DispatchFailed(
                "the workflow could not be called (internal error)", retryable=True
            )
        return None
