"""Generation jobs: one per planner request, run by the tenant's engine, versioned content.

A request delivered twice makes one job (the request id is unique). The built-in engine
runs in the worker: a queued job is claimed, written, stored as the post's next content
version and announced, all in one transaction, so a crash leaves it queued, never half done.
"""

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import (
    ContentFailed,
    ContentGenerated,
    ContentGenerationStarted,
    ContentVersionChosen,
    EventContract,
    GeneratedContent,
    PostGenerationRequested,
)
from bai_platform.envelope import new_event
from bai_platform.errors import NotFound
from bai_platform.identity import Identity
from bai_platform.outbox import emit
from creator.errors import CampaignBriefNotFound
from creator.models import CampaignBrief, ContentVersion, GenerationJob, outbox
from creator.service.engines.builtin import Brief, write
from creator.service.engines.config import BUILTIN, engine_of

ERROR_LIMIT = 2000


class JobNotFound(NotFound):
    code = "job_not_found"


class PostNotFound(NotFound):
    code = "post_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


def new_job_id() -> str:
    return "gen_" + secrets.token_urlsafe(18)


async def accept_request(
    session: AsyncSession, *, tenant_id: UUID, request: PostGenerationRequested
) -> GenerationJob | None:
    """Queue a job for the request with the tenant's engine; a request seen before makes
    nothing new."""
    settings = await engine_of(session, tenant_id=tenant_id)
    statement = (
        insert(GenerationJob)
        .values(
            id=new_job_id(),
            tenant_id=tenant_id,
            request_id=request.request_id,
            post_id=request.post_id,
            campaign_id=request.campaign_id,
            channel=request.channel,
            engine=settings.engine if settings else BUILTIN,
            state="queued",
            attempts=0,
            inputs=request.model_dump(mode="json"),
        )
        .on_conflict_do_nothing(index_elements=["request_id"])
        .returning(col(GenerationJob.id))
    )
    job_id = await session.scalar(statement)
    if job_id is None:
        return None
    job = await session.get_one(GenerationJob, job_id)
    started = ContentGenerationStarted(
        request_id=job.request_id, post_id=job.post_id, job_id=job.id
    )
    await _announce(session, job, started)
    return job


async def run_builtin_jobs(session: AsyncSession, *, limit: int = 20) -> int:
    """Write the content of queued built-in jobs; returns how many were completed."""
    due = (
        col(GenerationJob.state) == "queued",
        col(GenerationJob.engine) == BUILTIN,
        col(GenerationJob.credits) == "reserved",
        col(GenerationJob.next_attempt_at) <= func.now(),
    )
    query = (
        select(GenerationJob)
        .where(col(GenerationJob.id).in_(in_turns(due, limit=limit)), *due)
        .with_for_update(skip_locked=True)
    )
    jobs = list((await session.scalars(query)).all())
    for job in jobs:
        job.attempts += 1
        version = await _next_version(session, job.post_id)
        await complete(session, job, content=write(brief_of(job, version)), version=version)
    return len(jobs)


def in_turns(
    due: Sequence[ColumnElement[bool]],
    *,
    limit: int,
    per_workspace: int | None = None,
    engine: str | None = None,
) -> Select[tuple[str]]:
    """The ids of the next ``limit`` jobs among ``due``, in turns across workspaces: each
    workspace's first due job, then each one's second... so one workspace with many jobs
    cannot hold up another's. With ``per_workspace``, a workspace's jobs of ``engine``
    already being dispatched (by any worker) count against it, and it gets no more turns
    than that allows. Lock the rows with ``id IN (this) AND due ... FOR UPDATE SKIP
    LOCKED`` (Postgres locks no rows of a query with a window function)."""
    running = (
        select(col(GenerationJob.tenant_id), func.count().label("calls"))
        .where(col(GenerationJob.state) == "dispatching", col(GenerationJob.engine) == engine)
        .group_by(col(GenerationJob.tenant_id))
        .subquery()
    )
    place = func.row_number().over(
        partition_by=col(GenerationJob.tenant_id), order_by=col(GenerationJob.next_attempt_at)
    )
    turn = (place if per_workspace is None else func.coalesce(running.c.calls, 0) + place).label(
        "turn"
    )
    ranked = select(col(GenerationJob.id), col(GenerationJob.next_attempt_at), turn).where(*due)
    if per_workspace is not None:
        ranked = ranked.outerjoin(running, running.c.tenant_id == col(GenerationJob.tenant_id))
    candidates = ranked.subquery()
    query = select(candidates.c.id).order_by(candidates.c.turn, candidates.c.next_attempt_at)
    if per_workspace is not None:
        query = query.where(candidates.c.turn <= per_workspace)
    return query.limit(limit)


def request_of(job: GenerationJob) -> PostGenerationRequested:
    return PostGenerationRequested.model_validate(job.inputs)


def brief_of(job: GenerationJob, version: int) -> Brief:
    request = request_of(job)
    return Brief(
        brand=request.brand_name,
        campaign=request.campaign_name,
        channel=request.channel,
        brief=request.brief,
        goal=request.goal,
        voice=request.voice,
        note=request.note,
        version=version,  # each regeneration of a post is worded differently
    )


async def complete(
    session: AsyncSession,
    job: GenerationJob,
    *,
    content: GeneratedContent,
    version: int | None = None,
) -> None:
    """Store the content as the post's next version, end the job, tell the planner."""
    version = version or await _next_version(session, job.post_id)
    session.add(
        ContentVersion(
            tenant_id=job.tenant_id,
            post_id=job.post_id,
            version=version,
            job_id=job.id,
            engine=job.engine,
            content=content.model_dump(mode="json"),
        )
    )
    now = datetime.now(UTC)
    job.state, job.completed_at, job.updated_at, job.error = "completed", now, now, None
    if job.credits == "reserved":
        job.credits = "pending_commit"
    generated = ContentGenerated(
        request_id=job.request_id,
        post_id=job.post_id,
        job_id=job.id,
        version=version,
        content=content,
    )
    await _announce(session, job, generated)


async def fail(
    session: AsyncSession, job: GenerationJob, *, error: str, state: str = "failed"
) -> None:
    """End the job without content, with a reason the tenant can read; tell the planner."""
    now = datetime.now(UTC)
    job.state, job.error, job.completed_at, job.updated_at = state, error[:ERROR_LIMIT], now, now
    if job.credits == "reserved":
        job.credits = "pending_release"
    failed = ContentFailed(
        request_id=job.request_id, post_id=job.post_id, job_id=job.id, error=job.error
    )
    await _announce(session, job, failed)


async def _next_version(session: AsyncSession, post_id: UUID) -> int:
    query = select(func.coalesce(func.max(col(ContentVersion.version)), 0)).where(
        col(ContentVersion.post_id) == post_id
    )
    return int(await session.scalar(query) or 0) + 1


async def get_campaign_brief(
    session: AsyncSession, *, tenant_id: UUID, campaign_id: UUID
) -> CampaignBrief:
    """The brief of one of the tenant's campaigns; another tenant's is not found."""
    brief = await session.scalar(
        select(CampaignBrief).where(
            col(CampaignBrief.tenant_id) == tenant_id, col(CampaignBrief.campaign_id) == campaign_id
        )
    )
    if brief is None:
        raise CampaignBriefNotFound("creator has no brief for this campaign")
    return brief


async def get_job(session: AsyncSession, *, tenant_id: UUID, job_id: str) -> GenerationJob:
    """The tenant's job; another tenant's is as unknown as a missing one."""
    job = await session.scalar(
        select(GenerationJob).where(
            col(GenerationJob.id) == job_id, col(GenerationJob.tenant_id) == tenant_id
        )
    )
    if job is None:
        raise JobNotFound("no such generation job in this workspace")
    return job


async def post_versions(
    session: AsyncSession, *, tenant_id: UUID, post_id: UUID
) -> list[ContentVersion]:
    """Every content version of the post, newest first; a post creator never wrote for the
    tenant is not found (another tenant's post looks exactly like a missing one)."""
    known = select(col(GenerationJob.id)).where(
        col(GenerationJob.tenant_id) == tenant_id, col(GenerationJob.post_id) == post_id
    )
    if await session.scalar(known.limit(1)) is None:
        raise PostNotFound("creator has written nothing for this post")
    query = (
        select(ContentVersion)
        .where(col(ContentVersion.tenant_id) == tenant_id, col(ContentVersion.post_id) == post_id)
        .order_by(col(ContentVersion.version).desc())
    )
    return list((await session.scalars(query)).all())


async def _announce(session: AsyncSession, job: GenerationJob, event: EventContract) -> None:
    envelope = new_event(event, source="creator", tenant_id=job.tenant_id, subject=job.id)
    await emit(session, outbox, envelope)


async def choose_version(
    session: AsyncSession, *, identity: Identity, post_id: UUID, version: int
) -> ContentVersion:
    """Make an earlier version the post's draft again (the planner applies it)."""
    chosen = await session.scalar(
        select(ContentVersion).where(
            col(ContentVersion.tenant_id) == identity.tenant_id,
            col(ContentVersion.post_id) == post_id,
            col(ContentVersion.version) == version,
        )
    )
    if chosen is None:
        raise VersionNotFound("this post has no such version")
    event = ContentVersionChosen(
        post_id=post_id,
        version=version,
        content=GeneratedContent.model_validate(chosen.content),
        chosen_by=f"user:{identity.subject}",
    )
    envelope = new_event(
        event, source="creator", tenant_id=identity.tenant_id, subject=str(post_id)
    )
    await emit(session, outbox, envelope)
    return chosen
