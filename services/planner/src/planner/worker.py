"""Planner worker: outbox relay, creator's answers, publishing callbacks and dispatch,
callback verification for ``pub_`` jobs, and review-link reminders."""

from collections.abc import Callable
from datetime import timedelta
from functools import partial

from cryptography.fernet import Fernet

from bai_contracts import (
    ContentFailed,
    ContentGenerated,
    ContentGenerationStarted,
    ContentVersionChosen,
    callback_subject,
)
from bai_platform.callbacks import callback_verification_task
from bai_platform.consumer import Subscription
from bai_platform.dispatching import DispatchLoop, OnePass, Sender, dispatch_task
from bai_platform.secrets import fernet_for
from bai_platform.settings import ServiceSettings
from bai_platform.webhooks import WebhookDispatcher
from bai_platform.worker import Task, WorkerContext, WorkerSpec, every
from planner.events import on_content_event, on_publish_callback
from planner.models import inbox, outbox
from planner.service import publishing, reviews
from planner.settings import PlannerSettings

INTERNAL_ERROR = "the workflow could not be called (internal error)"


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

    return WorkerSpec(
        outbox=outbox,
        inbox=inbox,
        subscriptions=[content, callbacks],
        tasks=[
            callback_verification_task(
                settings.service_name, partial(publishing.verification_for, box=box)
            ),
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
    loop = DispatchLoop(
        every_seconds=settings.publish_sweep_seconds,
        timeout_seconds=settings.publish_timeout_seconds,
        allow_private=settings.allow_private_destinations,
    )

    def one_pass(ctx: WorkerContext, dispatcher: WebhookDispatcher) -> OnePass:
        return _Publisher(ctx, settings, box, dispatcher).sweep

    return dispatch_task("publisher", loop, one_pass)


class _Publisher:
    """One pass: open jobs for due posts, dispatch those whose turn came, expire the silent."""

    def __init__(
        self,
        ctx: WorkerContext,
        settings: PlannerSettings,
        box: Fernet,
        dispatcher: WebhookDispatcher,
    ) -> None:
        self._db = ctx.db
        self._stuck_after = timedelta(seconds=settings.publish_timeout_seconds * 3)
        deadline = timedelta(seconds=settings.publish_callback_deadline_seconds)
        backoff = (settings.publish_backoff_base_seconds, settings.publish_backoff_cap_seconds)
        self._sender = Sender(
            db=ctx.db,
            dispatcher=dispatcher,
            claim=partial(publishing.claim_jobs, box=box, callback_base=settings.public_base_url),
            sent=partial(publishing.record_delivered, deadline=deadline),
            failed=partial(
                publishing.record_failed_dispatch,
                max_attempts=settings.publish_max_attempts,
                backoff=backoff,
            ),
            crash_message=lambda _: INTERNAL_ERROR,  # the tenant sees it: no internals
        )

    async def sweep(self) -> None:
        async with self._db.transaction() as session:
            await publishing.recover_stuck(session, older_than=self._stuck_after)
            await publishing.open_due_jobs(session)
        await self._sender.pass_once()
        async with self._db.transaction() as session:
            await publishing.expire_overdue(session)
