"""Planner worker: outbox relay, creator's answers, publishing callbacks and dispatch,
callback verification for ``pub_`` jobs, and review-link reminders."""

from datetime import timedelta
from functools import partial

from bai_contracts import (
    ContentFailed,
    ContentGenerated,
    ContentGenerationStarted,
    ContentVersionChosen,
    callback_subject,
)
from bai_platform.consumer import Subscription
from bai_platform.db import Database
from bai_platform.dispatching import dispatching_tasks
from bai_platform.secrets import fernet_for
from bai_platform.settings import ServiceSettings
from bai_platform.worker import WorkerContext, WorkerSpec, every
from planner.events import on_content_event, on_publish_callback
from planner.models import inbox, outbox
from planner.service import publishing, reviews
from planner.settings import PlannerSettings


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
            review_reminders,
            *dispatching_tasks(
                publishing.publish_jobs(settings, box), outbox=outbox, name="publisher", sweep=False
            ),
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
