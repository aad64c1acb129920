"""The credits saga with billing (NATS request/reply): reserve before a job runs, commit
when it completes, release when it fails, times out or is cancelled.

- A queued job runs only once billing has reserved one ``posts`` credit for it (the job
  id is the reservation's reference). If billing refuses, the job fails saying why. If
  billing cannot be reached, the job stays queued: it neither runs free nor fails, and
  goes on when billing answers again.
- Ending a job marks its credits ``pending_commit`` or ``pending_release`` in the same
  transaction; a pass settles them with billing, again until billing answers. Billing
  keys every operation by the job id, so a repeat (a duplicate callback, a redelivered
  event, a retried settle) never charges twice.
- A late result after a timeout (whose credits were released) is delivered free.
"""

import asyncio
from dataclasses import dataclass
from uuid import UUID

import structlog
from nats.aio.client import Client as NatsClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import (
    CommitCredits,
    QuotaAnswer,
    ReleaseCredits,
    ReserveCredits,
    quota_subject,
)
from bai_platform.db import Database
from bai_platform.rpc import Unreachable, ask
from creator.models import GenerationJob
from creator.service.generation import fail

KIND = "posts"
# Questions in flight at once (billing answers them one after the other, quickly).
BATCH = 50
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Pending:
    job_id: str
    tenant_id: UUID
    credits: str


async def pending(db: Database, *, states: tuple[str, ...], limit: int = 100) -> list[Pending]:
    """Jobs whose credits are in ``states``, in turns across workspaces (each one's oldest,
    then each one's second...): a workspace that queued thousands of posts does not hold
    up another's first one."""
    place = func.row_number().over(
        partition_by=col(GenerationJob.tenant_id), order_by=col(GenerationJob.created_at)
    )
    ranked = (
        select(
            col(GenerationJob.id),
            col(GenerationJob.tenant_id),
            col(GenerationJob.credits),
            col(GenerationJob.created_at),
            place.label("turn"),
        )
        .where(col(GenerationJob.credits).in_(states))
        .subquery()
    )
    query = (
        select(ranked.c.id, ranked.c.tenant_id, ranked.c.credits)
        .order_by(ranked.c.turn, ranked.c.created_at)
        .limit(limit)
    )
    async with db.transaction() as session:
        return [Pending(*row) for row in await session.execute(query)]


async def reserve_queued(db: Database, nc: NatsClient | None, *, within: float = 2.0) -> int:
    """Ask billing to hold credits for queued jobs, a batch of questions at a time; returns
    how many billing answered. With billing away every job stays as it is."""
    waiting = await pending(db, states=("none",), limit=BATCH)
    if not waiting:
        return 0
    answers = await asyncio.gather(*(_ask_reserve(nc, job, within) for job in waiting))
    answered = [(job, answer) for job, answer in zip(waiting, answers, strict=True) if answer]
    if answered:
        async with db.transaction() as session:
            for job, answer in answered:
                await _record_reservation(session, job.job_id, answer)
    return len(answered)


async def _ask_reserve(nc: NatsClient | None, job: Pending, within: float) -> QuotaAnswer | None:
    question = ReserveCredits(tenant_id=job.tenant_id, kind=KIND, amount=1, reference=job.job_id)
    try:
        return await ask(nc, quota_subject("reserve"), question, QuotaAnswer, within=within)
    except Unreachable as exc:
        log.info("credits_unreachable", job_id=job.job_id, reason=str(exc))
        return None


async def _record_reservation(session: AsyncSession, job_id: str, answer: QuotaAnswer) -> None:
    job = await session.get(GenerationJob, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.credits != "none":
        return
    if answer.ok:
        job.credits = "reserved"
        return
    job.credits = "refused"
    if job.state == "queued":
        reason = answer.reason or answer.code or "billing refused"
        await fail(session, job, error=f"not enough credits to write this post: {reason}")


async def settle(db: Database, nc: NatsClient | None, *, within: float = 2.0) -> int:
    """Commit or release what ended jobs hold; returns how many billing settled."""
    ended = await pending(db, states=("pending_commit", "pending_release"), limit=BATCH)
    if not ended:
        return 0
    settled = await asyncio.gather(*(_ask_settle(nc, job, within) for job in ended))
    done = [job for job, ok in zip(ended, settled, strict=True) if ok]
    if done:
        async with db.transaction() as session:
            for job in done:
                row = await session.get(GenerationJob, job.job_id, with_for_update=True)
                if row is not None and row.credits == job.credits:
                    commit = job.credits == "pending_commit"
                    row.credits = "committed" if commit else "released"
    return len(done)


async def _ask_settle(nc: NatsClient | None, job: Pending, within: float) -> bool:
    commit = job.credits == "pending_commit"
    question: CommitCredits | ReleaseCredits = (
        CommitCredits(tenant_id=job.tenant_id, kind=KIND, reference=job.job_id)
        if commit
        else ReleaseCredits(tenant_id=job.tenant_id, kind=KIND, reference=job.job_id)
    )
    try:
        await ask(
            nc,
            quota_subject("commit" if commit else "release"),
            question,
            QuotaAnswer,
            within=within,
        )
    except Unreachable:
        return False
    return True
