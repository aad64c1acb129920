"""Extraction jobs: created queued, run by the worker, readable with their progress."""

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import ExtractionProgressed
from bai_platform.db import table_of
from bai_platform.envelope import new_event
from bai_platform.errors import Conflict, NotFound, TooManyRequests
from bai_platform.identity import Identity
from bai_platform.outbox import emit
from bai_platform.reads import TENANT, ReadQuery
from mining.models import ExtractionJob, Lead, outbox
from mining.schemas import JobCreate, JobRead, Progress
from mining.service.workflows import require_workflow

ENDED = ("succeeded", "partial", "failed", "cancelled")
PROBLEMS_KEPT = 20
N8N = "n8n"


_JOBS = table_of(ExtractionJob)
_JOB_COLUMNS = [c for c in _JOBS.c if c.key in (*JobRead.model_fields, *Progress.model_fields)]


class JobNotFound(NotFound):
    code = "job_not_found"


class JobEnded(Conflict):
    code = "job_ended"


class TooManyQueuedJobs(TooManyRequests):
    code = "too_many_queued_jobs"


def new_job_id() -> str:
    return "ext_" + secrets.token_urlsafe(18)


def new_job(
    *, tenant_id: UUID, source: dict[str, Any], limits: dict[str, Any], created_by: str
) -> ExtractionJob:
    """A queued job (not yet added to a session)."""
    return ExtractionJob(
        id=new_job_id(),
        tenant_id=tenant_id,
        source_type=str(source["type"]),
        source=source,
        limits=limits,
        state="queued",
        pages_fetched=0,
        items_found=0,
        errors=0,
        problems=[],
        credits="none",
        cancel_requested=False,
        created_by=created_by,
        attempts=0,
        pages_accepted=[],
    )


async def create_job(
    session: AsyncSession, *, identity: Identity, data: JobCreate, max_queued: int
) -> ExtractionJob:
    """A queued job; refused when the workspace already has ``max_queued`` waiting."""
    if data.source.type == N8N:
        await require_workflow(session, tenant_id=identity.tenant_id)
    await lock_workspace_queue(session, identity.tenant_id)
    if await queued_count(session, tenant_id=identity.tenant_id) >= max_queued:
        raise TooManyQueuedJobs(
            f"this workspace already has {max_queued} jobs waiting; "
            "wait for some to start or cancel some"
        )
    job = new_job(
        tenant_id=identity.tenant_id,
        source=data.source.model_dump(mode="json"),
        limits=data.limits.model_dump(mode="json"),
        created_by=identity.subject,
    )
    session.add(job)
    await session.flush()
    await session.refresh(job)
    return job


async def lock_workspace_queue(session: AsyncSession, tenant_id: UUID) -> None:
    """Serialise the workspace's job creations and claims until the transaction ends, so
    two at once cannot both pass a cap."""
    await session.execute(select(func.pg_advisory_xact_lock(_queue_key(tenant_id))))


async def try_lock_workspace_queue(session: AsyncSession, tenant_id: UUID) -> bool:
    """The same lock if it is free right now (a claim moves on to the next workspace)."""
    return bool(await session.scalar(select(func.pg_try_advisory_xact_lock(_queue_key(tenant_id)))))


def _queue_key(tenant_id: UUID) -> ColumnElement[int]:
    return func.hashtext(f"mining.jobs:{tenant_id}")


async def queued_count(session: AsyncSession, *, tenant_id: UUID) -> int:
    query = select(func.count()).where(
        col(ExtractionJob.tenant_id) == tenant_id, col(ExtractionJob.state) == "queued"
    )
    return int(await session.scalar(query) or 0)


async def get_job(session: AsyncSession, *, tenant_id: UUID, job_id: str) -> ExtractionJob:
    job = await session.scalar(
        select(ExtractionJob).where(
            col(ExtractionJob.id) == job_id, col(ExtractionJob.tenant_id) == tenant_id
        )
    )
    if job is None:
        raise JobNotFound("no such extraction job in this workspace")
    return job


async def cancel_job(session: AsyncSession, *, identity: Identity, job_id: str) -> ExtractionJob:
    """Queued jobs and n8n jobs end at once; a crawl stops after its current page."""
    job = await get_job(session, tenant_id=identity.tenant_id, job_id=job_id)
    if job.state in ENDED:
        raise JobEnded(f"the job already ended ({job.state})")
    job.cancel_requested = True
    if job.state == "queued":
        job.state, job.finished_at = "cancelled", datetime.now(UTC)
    elif job.source_type == N8N:  # nothing runs here: the workflow's later callbacks are ignored
        await end_job(session, job, "cancelled")
    return job


async def list_leads(
    session: AsyncSession, *, tenant_id: UUID, job_id: str, limit: int, after: int | None
) -> tuple[list[Lead], int | None]:
    await get_job(session, tenant_id=tenant_id, job_id=job_id)
    query = select(Lead).where(col(Lead.job_id) == job_id, col(Lead.tenant_id) == tenant_id)
    if after is not None:
        query = query.where(col(Lead.id) > after)
    rows = list((await session.scalars(query.order_by(col(Lead.id)).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1].id if more and rows else None


def note_problem(job: ExtractionJob, problem: str) -> None:
    """Keep a readable problem on the job (the first ``PROBLEMS_KEPT``)."""
    if len(job.problems) < PROBLEMS_KEPT:
        job.problems = [*job.problems, problem[:300]]


async def end_job(
    session: AsyncSession, job: ExtractionJob, state: str, *, problem: str | None = None
) -> None:
    job.state, job.finished_at = state, datetime.now(UTC)
    if problem:
        job.problems = [*job.problems, problem[:300]]
    await announce(session, job)


async def announce(session: AsyncSession, job: ExtractionJob) -> None:
    """``bai.mining.job.progressed.v1`` with the job's counters (live events show it)."""
    event = ExtractionProgressed(
        job_id=job.id,
        state=job.state,
        pages_fetched=job.pages_fetched,
        items_found=job.items_found,
        errors=job.errors,
    )
    await emit(
        session, outbox, new_event(event, source="mining", tenant_id=job.tenant_id, subject=job.id)
    )


def job_read(job: ExtractionJob) -> JobRead:
    return job_read_of({c.key: getattr(job, c.key) for c in _JOB_COLUMNS})


def job_read_of(job: Mapping[str, Any]) -> JobRead:
    """What a client sees of a job, from its row (an entity's attributes or a read's row)."""
    progress = {name: job[name] for name in ("pages_fetched", "items_found", "errors")}
    return JobRead.model_validate({**job, "progress": Progress.model_validate(progress)})


# The job's poll (a client asks every second while it runs): a read without the ORM.
_JOB = ReadQuery(
    select(*_JOB_COLUMNS).where(
        _JOBS.c.tenant_id == bindparam(TENANT), _JOBS.c.id == bindparam("job_id")
    )
)


async def read_job(session: AsyncSession, *, job_id: str) -> JobRead:
    """The workspace's job as a client sees it; another workspace's is unknown."""
    row = await _JOB.first(session, job_id=job_id)
    if row is None:
        raise JobNotFound("no such extraction job in this workspace")
    return job_read_of(row)
