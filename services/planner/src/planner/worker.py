"""Planner worker: outbox relay, creator's answers, publishing callbacks and dispatch,
callback verification for ``pub_`` jobs, and review-link reminders."""

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
from bai_platform.callbacks import serve_callbacks
from bai_platform.consumer import Subscription
from bai_platform.db import Database
from bai_platform.dispatching import DispatchLoop, Sender, dispatch_every
from bai_platform.secrets import fernet_for
from bai_platform.settings import ServiceSettings
from bai_platform.webhooks import WebhookDispatcher
from bai_platform.worker import WorkerContext, WorkerSpec, every
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
        stream="PLANNER",
        subjects=(callback_subject("planner"),),
        handler=on_publish_callback,
        description="planner marks posts published or failed from the workflow's callback",
    )

    return WorkerSpec(
        outbox=outbox,
        inbox=inbox,
        subscriptions=[content, callbacks],
        tasks=[
            partial(serve_callbacks, lookup=partial(publishing.signer_for, box=box), outbox=outbox),
            review_reminders,
            partial(publisher, box=box),
        ],
    )


async def review_reminders(ctx: WorkerContext[PlannerSettings]) -> None:
    """Review links about to expire remind their sender, once."""
    within = timedelta(hours=ctx.settings.review_reminder_hours)
    remind = partial(_remind, ctx.db, within=within)
    await every(ctx.stop, ctx.settings.review_sweep_seconds, remind, name="review-reminders")


async def _remind(db: Database, *, within: timedelta) -> None:
    async with db.transaction() as session:
        await reviews.remind_expiring(session, within=within)


async def publisher(ctx: WorkerContext[PlannerSettings], *, box: Fernet) -> None:
    """Due posts get publishing jobs, which go to the tenant's workflow."""
    settings = ctx.settings
    loop = DispatchLoop(
        every_seconds=settings.publish_sweep_seconds,
        timeout_seconds=settings.publish_timeout_seconds,
        allow_private=settings.allow_private_destinations,
    )
    await dispatch_every(ctx.stop, loop, partial(publish_pass, ctx, box=box), name="publisher")


async def publish_pass(
    ctx: WorkerContext[PlannerSettings], dispatcher: WebhookDispatcher, *, box: Fernet
) -> None:
    """One pass: open jobs for due posts, dispatch those whose turn came, expire the silent."""
    settings, db = ctx.settings, ctx.db
    backoff = (settings.publish_backoff_base_seconds, settings.publish_backoff_cap_seconds)
    deadline = timedelta(seconds=settings.publish_callback_deadline_seconds)
    sender = Sender(
        db=db,
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
    stuck_after = timedelta(seconds=settings.publish_timeout_seconds * 3)
    async with db.transaction() as session:
        await publishing.recover_stuck(session, older_than=stuck_after)
        await publishing.open_due_jobs(session)
    await sender.pass_once()
    async with db.transaction() as session:
        await publishing.expire_overdue(session)
