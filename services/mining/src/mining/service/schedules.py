"""Schedules: an extraction job made again at every cron time, in the schedule's zone.

Cron times are wall times of the schedule's time zone (a "0 9 * * 1" schedule in
Europe/Madrid runs at 09:00 Madrid time in summer and in winter). When a run is due while
the schedule's previous job is still queued or running, the run is skipped (counted in
``skipped_runs``) rather than started beside it: runs of one schedule never overlap. "Run
now" (``run_now``) keeps the same rule: a busy schedule answers 409 ``schedule_busy``
naming its job, and nothing is counted as skipped.
"""

from datetime import UTC, datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_platform.errors import Conflict, NotFound
from bai_platform.identity import Identity
from mining.models import ExtractionJob, MiningSchedule
from mining.schemas import ScheduleCreate
from mining.service.jobs import N8N, new_job
from mining.service.workflows import require_workflow

BUSY = ("queued", "running")


class ScheduleNotFound(NotFound):
    code = "schedule_not_found"


class ScheduleBusy(Conflict):
    code = "schedule_busy"


class ScheduleStopped(Conflict):
    code = "schedule_stopped"


def next_run(cron: str, zone: str, after: datetime) -> datetime:
    """The first cron time strictly after ``after``, as a UTC instant."""
    local = after.astimezone(ZoneInfo(zone))
    following: datetime = croniter(cron, local).get_next(datetime)
    return following.astimezone(UTC)


async def create_schedule(
    session: AsyncSession, *, identity: Identity, data: ScheduleCreate
) -> MiningSchedule:
    if data.job.source.type == N8N:
        await require_workflow(session, tenant_id=identity.tenant_id)
    schedule = MiningSchedule(
        tenant_id=identity.tenant_id,
        name=data.name,
        cron=data.cron,
        timezone=data.timezone,
        job=data.job.model_dump(mode="json"),
        active=True,
        next_run_at=next_run(data.cron, data.timezone, datetime.now(UTC)),
        skipped_runs=0,
        created_by=identity.subject,
    )
    session.add(schedule)
    await session.flush()
    return schedule


async def list_schedules(session: AsyncSession, *, tenant_id: UUID) -> list[MiningSchedule]:
    query = select(MiningSchedule).where(col(MiningSchedule.tenant_id) == tenant_id)
    return list((await session.scalars(query.order_by(col(MiningSchedule.created_at)))).all())


async def stop_schedule(session: AsyncSession, *, identity: Identity, schedule_id: UUID) -> None:
    schedule = await _schedule(session, tenant_id=identity.tenant_id, schedule_id=schedule_id)
    schedule.active = False


async def run_now(session: AsyncSession, *, identity: Identity, schedule_id: UUID) -> ExtractionJob:
    """The schedule's job, started now unless its last one is still queued or running."""
    schedule = await _schedule(
        session, tenant_id=identity.tenant_id, schedule_id=schedule_id, lock=True
    )
    if not schedule.active:
        raise ScheduleStopped("the schedule was stopped; create a new one to run it again")
    if await _busy(session, schedule.last_job_id):
        raise ScheduleBusy(
            f"the schedule's last job {schedule.last_job_id} is still running; "
            "runs of one schedule never overlap",
            extra={"job_id": schedule.last_job_id},
        )
    if schedule.job["source"]["type"] == N8N:
        await require_workflow(session, tenant_id=schedule.tenant_id)
    job = _start(session, schedule)
    schedule.last_job_id = job.id
    await session.flush()
    await session.refresh(job)
    return job


async def _schedule(
    session: AsyncSession, *, tenant_id: UUID, schedule_id: UUID, lock: bool = False
) -> MiningSchedule:
    query = select(MiningSchedule).where(
        col(MiningSchedule.id) == schedule_id, col(MiningSchedule.tenant_id) == tenant_id
    )
    schedule = await session.scalar(query.with_for_update() if lock else query)
    if schedule is None:
        raise ScheduleNotFound("no such schedule in this workspace")
    return schedule


async def run_due(session: AsyncSession, *, now: datetime | None = None, limit: int = 50) -> int:
    """Start the due schedules' jobs (or skip a run whose last job is busy); how many started."""
    at = now or datetime.now(UTC)
    query = (
        select(MiningSchedule)
        .where(col(MiningSchedule.active).is_(True), col(MiningSchedule.next_run_at) <= at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    started = 0
    for schedule in (await session.scalars(query)).all():
        schedule.next_run_at = next_run(schedule.cron, schedule.timezone, at)
        if await _busy(session, schedule.last_job_id):
            schedule.skipped_runs += 1
            continue
        schedule.last_job_id = _start(session, schedule).id
        started += 1
    await session.flush()
    return started


async def _busy(session: AsyncSession, job_id: str | None) -> bool:
    if job_id is None:
        return False
    state = await session.scalar(
        select(col(ExtractionJob.state)).where(col(ExtractionJob.id) == job_id)
    )
    return state in BUSY


def _start(session: AsyncSession, schedule: MiningSchedule) -> ExtractionJob:
    job = new_job(
        tenant_id=schedule.tenant_id,
        source=schedule.job["source"],
        limits=schedule.job["limits"],
        created_by=f"schedule:{schedule.id}",
    )
    session.add(job)
    return job
