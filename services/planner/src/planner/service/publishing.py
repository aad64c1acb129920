"""Publishing through the tenant's n8n workflow (``pub_`` jobs).

We cannot reach social networks from here; tenants already post with n8n. When a
scheduled post is due, a ``pub_`` job is made and dispatched to the tenant's publishing
workflow with the same signed contract as generation (``X-BAI-Timestamp`` and
``X-BAI-Signature``, a ``callback_url`` on the edge). The workflow later POSTs
``{"job_id", "status": "published" | "failed", "url" | "error"}`` to the callback URL;
the gateway verifies it (asking us for the job's secret) and routes it here.

Rules:
- dispatch is retried with exponential backoff and jitter up to ``dispatch_max_attempts``
  (never sooner than an open circuit breaker lets a call through); an unconfigured
  workflow, an unreadable secret or a refusal (4xx) fails the post at once, with the reason;
- a job goes out only while its post is still scheduled and due: a post taken back or
  moved to a later time cancels its queued job (a new one is made when it is due again);
- a dispatched job with no callback by its deadline fails the post;
- a callback is applied once (a job that already finished ignores repeats, and a failure
  reported for a finished job changes nothing); a late "published" after the deadline
  or a cancellation is still applied when it is the post's latest job, because the post
  really is out there;
- the job id is the dispatch's event id, so a workflow can dedupe our retries.
"""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from cryptography.fernet import Fernet
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import PublishResult
from bai_platform.dispatching import Dispatch, JobTable, locked_job
from bai_platform.errors import NotFound
from bai_platform.identity import Identity
from bai_platform.secrets import read_secret
from bai_platform.webhooks import DispatchFailed
from bai_platform.worker import WorkerContext
from bai_platform.workflow_targets import save_for_tenant, workflow_values
from planner.models import Campaign, Post, PublishingTarget, PublishJob
from planner.schemas import PostState, PublishingTargetUpdate
from planner.service._common import move, now
from planner.service.lifecycle import system_may
from planner.settings import PlannerSettings

PUBLISHER = "system:publisher"
ACTIVE = ("queued", "dispatching", "dispatched")
ERROR_LIMIT = 2000
NO_TARGET = "no publishing workflow is configured for this workspace"
UNREADABLE_SECRET = (
    "the publishing workflow's secret cannot be read (was the service key changed?); "
    "save the publishing target again"
)
NOT_DUE = "not sent: the post was taken back or moved to a later time"
INTERNAL_ERROR = "the workflow could not be called (internal error)"


class NoPublishingTarget(NotFound):
    code = "no_publishing_target"


def new_job_id() -> str:
    return "pub_" + secrets.token_urlsafe(18)


# ---- the tenant's workflow -------------------------------------------------------------
async def set_target(
    session: AsyncSession,
    *,
    identity: Identity,
    data: PublishingTargetUpdate,
    box: Fernet,
    allow_private: bool,
) -> PublishingTarget:
    """Store (or replace) the tenant's publishing workflow; the secret is encrypted."""
    values = await workflow_values(data, box=box, allow_private=allow_private)
    await save_for_tenant(
        session, PublishingTarget, identity=identity, values=values, updated_at=now()
    )
    return await get_target(session, tenant_id=identity.tenant_id)


async def get_target(session: AsyncSession, *, tenant_id: UUID) -> PublishingTarget:
    target = await session.get(PublishingTarget, tenant_id, populate_existing=True)
    if target is None:
        raise NoPublishingTarget(NO_TARGET)
    return target


async def delete_target(session: AsyncSession, *, identity: Identity) -> None:
    await session.delete(await get_target(session, tenant_id=identity.tenant_id))


# ---- due posts become jobs -------------------------------------------------------------
async def open_due_jobs(session: AsyncSession, *, limit: int = 100) -> int:
    """Make a job for each due scheduled post that has none in flight."""
    in_flight = exists().where(
        col(PublishJob.post_id) == col(Post.id), col(PublishJob.state).in_(ACTIVE)
    )
    query = (
        select(Post)
        .where(col(Post.state) == PostState.SCHEDULED, col(Post.scheduled_at) <= now(), ~in_flight)
        .order_by(col(Post.scheduled_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    due = list((await session.scalars(query)).all())
    for post in due:
        session.add(
            PublishJob(id=new_job_id(), tenant_id=post.tenant_id, post_id=post.id, state="queued")
        )
    await session.flush()
    return len(due)


@dataclass(frozen=True, kw_only=True)
class PublishJobs(JobTable[PublishJob]):
    """Publishing jobs as ``bai_platform.dispatching`` sends them: ``state`` goes queued,
    dispatching, dispatched. A pass first takes back jobs a dead worker left mid-dispatch
    and opens jobs for due posts, and afterwards fails the overdue ones."""

    callback_deadline: timedelta
    stuck_after: timedelta

    model = PublishJob
    workflow_model = PublishingTarget
    progress, queued, sending, sent = "state", "queued", "dispatching", "dispatched"
    unreadable_secret = UNREADABLE_SECRET

    async def before_pass(self, ctx: WorkerContext[Any]) -> None:
        async with ctx.db.transaction() as session:
            await self.recover_stuck(session, older_than=self.stuck_after)
            await open_due_jobs(session)

    async def after_pass(self, ctx: WorkerContext[Any]) -> None:
        async with ctx.db.transaction() as session:
            await self.expire_overdue(session)

    def crash_message(self, exc: Exception) -> str:
        return INTERNAL_ERROR  # the tenant sees it: no internals

    async def due(self, session: AsyncSession, *, limit: int) -> Sequence[PublishJob]:
        """Queued jobs whose turn has come."""
        query = (
            select(PublishJob)
            .where(col(PublishJob.state) == "queued", col(PublishJob.next_attempt_at) <= now())
            .order_by(col(PublishJob.next_attempt_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (await session.scalars(query)).all()

    async def dispatch_of(self, session: AsyncSession, job: PublishJob) -> Dispatch | None:
        """What the job sends; None when its post is no longer due (the job cancelled) or it
        cannot go out at all (the post failed saying why: an attempt all the same)."""
        post = await session.get_one(Post, job.post_id, populate_existing=True)
        if post.state != PostState.SCHEDULED or post.scheduled_at > now():
            # Taken back or moved while the job waited for its retry: the post is not
            # due (a new job is made when it is due again).
            job.state, job.completed_at, job.last_error = "cancelled", now(), NOT_DUE
            return None
        job.state, job.attempts = "dispatching", job.attempts + 1
        job.next_attempt_at = now()
        target = await self.workflow_of(session, job)
        # An unreadable secret (the service key changed) fails its own job, not every sweep:
        # a claim that raised would roll back and block the queue for all tenants.
        secret = read_secret(self.box, target.secret) if target else None
        if target is None or not secret:
            await self.refuse(session, job, NO_TARGET if target is None else UNREADABLE_SECRET)
            return None
        return Dispatch(
            job_id=job.id,
            url=target.webhook_url,
            secret=secret,
            secret_header=target.accept_secret_header,
            payload=await _payload(session, job, post, self.callback_base),
        )

    async def deadline(self, session: AsyncSession, job: PublishJob) -> timedelta:
        return self.callback_deadline

    def note_failure(self, job: PublishJob, failure: DispatchFailed) -> None:
        job.last_error = str(failure)[:ERROR_LIMIT]

    async def give_up(
        self, session: AsyncSession, job: PublishJob, failure: DispatchFailed
    ) -> None:
        await self.refuse(session, job, str(failure)[:ERROR_LIMIT])

    async def refuse(self, session: AsyncSession, job: PublishJob, reason: str) -> None:
        await _finish(session, job, published=False, error=reason)

    async def time_out(self, session: AsyncSession, job: PublishJob) -> None:
        await self.refuse(session, job, "the workflow did not call back in time")


def publish_jobs(settings: PlannerSettings, box: Fernet) -> PublishJobs:
    """The publishing jobs as the worker sends them, with ``settings``."""
    return PublishJobs.of(
        settings,
        box,
        callback_deadline=timedelta(seconds=settings.publish_callback_deadline_seconds),
        stuck_after=timedelta(seconds=settings.dispatch_timeout_seconds * 3),
    )


async def _payload(
    session: AsyncSession, job: PublishJob, post: Post, callback_base: str
) -> dict[str, Any]:
    campaign = await session.get_one(Campaign, post.campaign_id)
    return {
        "job_id": job.id,
        "kind": "publish",
        "tenant_id": str(job.tenant_id),
        "callback_url": f"{callback_base.rstrip('/')}/v1/webhooks/n8n/{job.id}",
        "post": _post_payload(post),
        "campaign": {"id": str(campaign.id), "name": campaign.name},
    }


def _post_payload(post: Post) -> dict[str, Any]:
    return {
        "id": str(post.id),
        "channel": post.channel,
        "scheduled_at": post.scheduled_at.isoformat(),
        "title": post.title,
        "text": post.text,
        "hashtags": post.hashtags,
        "call_to_action": post.call_to_action,
        "image_prompt": post.image_prompt,
        "alt_text": post.alt_text,
    }


# ---- callbacks -------------------------------------------------------------------------
async def apply_callback(
    session: AsyncSession, *, tenant_id: UUID, job_id: str, payload: dict[str, Any]
) -> None:
    """Mark the post published or failed from the workflow's answer; repeats are no-ops."""
    job = await locked_job(session, PublishJob, job_id)
    if job is None or job.tenant_id != tenant_id:
        return
    result = PublishResult.model_validate(payload)
    status = result.status
    if status not in ("published", "completed", "failed"):
        job.last_error = f"callback ignored: unknown status {str(status)[:50]!r}"
        return
    if job.state == "succeeded" or (status == "failed" and job.state not in ACTIVE):
        return  # applied already, or a failure of a job that no longer decides anything
    if job.state not in ACTIVE and not await _is_latest(session, job):
        return
    job.external_url = result.url[:2000] if result.url is not None else None
    message = (result.error or "the workflow reported a failure")[:ERROR_LIMIT]
    await _finish(
        session, job, published=status != "failed", error=None if status != "failed" else message
    )


async def _finish(
    session: AsyncSession, job: PublishJob, *, published: bool, error: str | None
) -> None:
    job.state, job.completed_at = ("succeeded" if published else "failed"), now()
    job.last_error = error
    post = await session.get_one(Post, job.post_id, with_for_update=True)
    target = PostState.PUBLISHED if published else PostState.FAILED
    if system_may(PostState(post.state), target):
        post.last_error = error
        await move(session, post, to=target, actor=PUBLISHER, note=error or job.external_url)


async def _is_latest(session: AsyncSession, job: PublishJob) -> bool:
    newer = await session.scalar(
        select(col(PublishJob.id))
        .where(col(PublishJob.post_id) == job.post_id, col(PublishJob.created_at) > job.created_at)
        .limit(1)
    )
    return newer is None


async def cancel_active_jobs(session: AsyncSession, *, post_id: UUID, reason: str) -> None:
    """The post was taken back or moved: its jobs in flight stand down.

    A workflow that already posted it may still call back "published"; that is applied
    (the post is out there) when the cancelled job is the post's latest.
    """
    query = (
        select(PublishJob)
        .where(col(PublishJob.post_id) == post_id, col(PublishJob.state).in_(ACTIVE))
        .with_for_update()
    )
    for job in (await session.scalars(query)).all():
        job.state, job.completed_at, job.last_error = "cancelled", now(), reason
