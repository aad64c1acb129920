"""Mining HTTP routes: extraction jobs, their progress and their leads, schedules, and the
workspace's n8n mining workflow."""

import base64
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import StreamingResponse

from bai_platform.app_state import platform_of, settings_of
from bai_platform.db import ReadSession, Session
from bai_platform.identity import Admin, CurrentIdentity, Editor
from bai_platform.openapi import file_answer
from bai_platform.openapi_links import ANSWER_ID, leads_to
from bai_platform.pagination import InvalidCursor
from bai_platform.secrets import fernet_for
from mining.schemas import (
    JobCreate,
    JobRead,
    LeadPage,
    LeadRead,
    ScheduleCreate,
    SchedulePage,
    ScheduleRead,
    WorkflowRead,
    WorkflowUpdate,
)
from mining.service import exports, jobs, schedules, workflows
from mining.settings import MiningSettings

router = APIRouter(prefix="/v1/mining", tags=["mining"])
JobId = Annotated[str, Path(max_length=64)]

# The ids answers carry, linked to the operations that take them (bai_platform.openapi_links).
JOB_LINKS = leads_to(202, {"job_id": ANSWER_ID})
JOB_READ_LINKS = leads_to(200, {"job_id": ANSWER_ID})
SCHEDULE_LINKS = leads_to(201, {"schedule_id": ANSWER_ID})


@router.post("/jobs", status_code=status.HTTP_202_ACCEPTED, responses=JOB_LINKS)
async def create_job(
    body: JobCreate, identity: Editor, session: Session, request: Request
) -> JobRead:
    """Queue an extraction; watch it at GET /v1/mining/jobs/{id} or on /v1/events.

    An ``n8n`` source needs the workspace's workflow (PUT /v1/mining/workflow) first. A
    workspace with ``crawl_queued_per_workspace`` jobs waiting gets 429
    ``too_many_queued_jobs``.
    """
    settings = settings_of(request, MiningSettings)
    job = await jobs.create_job(
        session, identity=identity, data=body, max_queued=settings.crawl_queued_per_workspace
    )
    return jobs.job_read(job)


@router.get("/jobs/{job_id}", responses=JOB_READ_LINKS)
async def get_job(job_id: JobId, identity: CurrentIdentity, session: ReadSession) -> JobRead:
    return await jobs.read_job(session, job_id=job_id)


@router.post("/jobs/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, responses=JOB_LINKS)
async def cancel_job(job_id: JobId, identity: Editor, session: Session) -> JobRead:
    """Stop the job: a queued one at once, a running one after its current page."""
    return jobs.job_read(await jobs.cancel_job(session, identity=identity, job_id=job_id))


@router.get("/jobs/{job_id}/results")
async def results(
    job_id: JobId,
    identity: CurrentIdentity,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> LeadPage:
    """The job's leads, deduplicated, in the order they were found."""
    rows, last = await jobs.list_leads(
        session, tenant_id=identity.tenant_id, job_id=job_id, limit=limit, after=_after(cursor)
    )
    next_cursor = base64.urlsafe_b64encode(str(last).encode()).decode() if last else None
    return LeadPage(items=[LeadRead.model_validate(r) for r in rows], next_cursor=next_cursor)


def _after(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode())
    except ValueError as exc:
        raise InvalidCursor("the cursor is not one this API gave") from exc


@router.get(
    "/jobs/{job_id}/results.csv",
    response_class=StreamingResponse,
    responses=file_answer("text/csv", "The job's leads, one row each."),
)
async def results_csv(
    job_id: JobId, request: Request, identity: CurrentIdentity, session: ReadSession
) -> StreamingResponse:
    await jobs.get_job(session, tenant_id=identity.tenant_id, job_id=job_id)
    db = platform_of(request).db
    return StreamingResponse(
        exports.csv_chunks(db, job_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.csv"'},
    )


@router.get(
    "/jobs/{job_id}/results.jsonl",
    response_class=StreamingResponse,
    responses=file_answer("application/x-ndjson", "The job's leads, one JSON object a line."),
)
async def results_jsonl(
    job_id: JobId, request: Request, identity: CurrentIdentity, session: ReadSession
) -> StreamingResponse:
    await jobs.get_job(session, tenant_id=identity.tenant_id, job_id=job_id)
    db = platform_of(request).db
    return StreamingResponse(
        exports.jsonl_chunks(db, job_id),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{job_id}.jsonl"'},
    )


@router.post("/schedules", status_code=status.HTTP_201_CREATED, responses=SCHEDULE_LINKS)
async def create_schedule(body: ScheduleCreate, identity: Editor, session: Session) -> ScheduleRead:
    """Run a job again at every cron time (in ``timezone``), never over its last run."""
    schedule = await schedules.create_schedule(session, identity=identity, data=body)
    return ScheduleRead.model_validate(schedule)


@router.get("/schedules")
async def list_schedules(identity: CurrentIdentity, session: ReadSession) -> SchedulePage:
    rows = await schedules.list_schedules(session, tenant_id=identity.tenant_id)
    return SchedulePage(items=[ScheduleRead.model_validate(r) for r in rows])


@router.delete("/schedules/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def stop_schedule(schedule_id: UUID, identity: Editor, session: Session) -> None:
    await schedules.stop_schedule(session, identity=identity, schedule_id=schedule_id)


@router.post(
    "/schedules/{schedule_id}/run", status_code=status.HTTP_202_ACCEPTED, responses=JOB_LINKS
)
async def run_schedule(schedule_id: UUID, identity: Editor, session: Session) -> JobRead:
    """Run the schedule's job now; 409 ``schedule_busy`` while its last job is not done."""
    job = await schedules.run_now(session, identity=identity, schedule_id=schedule_id)
    return jobs.job_read(job)


@router.put("/workflow")
async def set_workflow(
    body: WorkflowUpdate, request: Request, identity: Admin, session: Session
) -> WorkflowRead:
    """The workspace's n8n workflow that runs ``n8n`` jobs (see deploy/n8n/README.md)."""
    settings = settings_of(request, MiningSettings)
    workflow = await workflows.set_workflow(
        session,
        identity=identity,
        data=body,
        box=fernet_for(settings.secret_key, workflows.SECRETS_PURPOSE),
        allow_private=settings.allow_private_destinations,
    )
    return WorkflowRead.model_validate(workflow)


@router.get("/workflow")
async def get_workflow(identity: CurrentIdentity, session: ReadSession) -> WorkflowRead:
    workflow = await workflows.get_workflow(session, tenant_id=identity.tenant_id)
    return WorkflowRead.model_validate(workflow)


@router.delete("/workflow", status_code=status.HTTP_204_NO_CONTENT)
async def delete_workflow(identity: Admin, session: Session) -> None:
    await workflows.delete_workflow(session, identity=identity)
