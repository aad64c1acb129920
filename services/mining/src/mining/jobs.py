"""Extraction jobs: created queued, run by the worker, readable with their progress."""

import secrets
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bai_platform.errors import Conflict, NotFound
from bai_platform.identity import Identity
from mining.models import ExtractionJob, Lead
from mining.schemas import JobCreate, JobRead, Progress

EDITORS = ("owner", "admin", "editor")
ENDED = ("succeeded", "partial", "failed", "cancelled")


class JobNotFound(NotFound):
    code = "job_not_found"


class JobEnded(Conflict):
    code = "job_ended"


def new_job_id() -> str:
    return "ext_" + secrets.token_urlsafe(18)


async def create_job(
    session: AsyncSession, *, identity: Identity, data: JobCreate
) -> ExtractionJob:
    identity.require_role(*EDITORS)
    job = ExtractionJob(
        id=new_job_id(),
        tenant_id=identity.tenant_id,
        source=data.source.model_dump(mode="json"),
        limits=data.limits.model_dump(mode="json"),
        state="queued",
        pages_fetched=0,
        items_found=0,
        errors=0,
        problems=[],
        credits="none",
        cancel_requested=False,
        created_by=identity.subject,
    )
    session.add(job)
    await session.flush()
    await session.refresh(job)
    return job


async def get_job(session: AsyncSession, *, tenant_id: UUID, job_id: str) -> ExtractionJob:
    job = await session.scalar(
        select(ExtractionJob).where(
            ExtractionJob.id == job_id, ExtractionJob.tenant_id == tenant_id
        )
    )
    if job is None:
        raise JobNotFound("no such extraction job in this workspace")
    return job


async def cancel_job(session: AsyncSession, *, identity: Identity, job_id: str) -> ExtractionJob:
    identity.require_role(*EDITORS)
    job = await get_job(session, tenant_id=identity.tenant_id, job_id=job_id)
    if job.state in ENDED:
        raise JobEnded(f"the job already ended ({job.state})")
    job.cancel_requested = True
    if job.state == "queued":
        job.state, job.finished_at = "cancelled", datetime.now(UTC)
    return job


async def list_leads(
    session: AsyncSession, *, tenant_id: UUID, job_id: str, limit: int, after: int | None
) -> tuple[list[Lead], int | None]:
    await get_job(session, tenant_id=tenant_id, job_id=job_id)
    query = select(Lead).where(Lead.job_id == job_id, Lead.tenant_id == tenant_id)
    if after is not None:
        query = query.where(Lead.id > after)
    rows = list((await session.scalars(query.order_by(Lead.id).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1].id if more and rows else None


def job_read(job: ExtractionJob) -> JobRead:
    return JobRead(
        id=job.id,
        state=job.state,
        source=job.source,
        limits=job.limits,
        progress=Progress(
            pages_fetched=job.pages_fetched, items_found=job.items_found, errors=job.errors
        ),
        problems=job.problems,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )
