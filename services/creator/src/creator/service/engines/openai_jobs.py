"""Jobs of OpenAI-compatible engines: claimed in turns across workspaces, their answers
recorded, and those left mid-call taken back.

A job is ``queued`` until its turn comes, ``dispatching`` while its engine is called (at
most ``per_workspace`` of a workspace's at once, across workers), then ``completed`` or
``failed``; a failure that may pass goes back to ``queued`` with backoff. A job left
``dispatching`` past its deadline and a margin (its worker crashed or stopped) is tried
again, or failed once its attempts are used up; failing releases its credits.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import GeneratedContent, PostGenerationRequested
from bai_platform.webhooks import backoff_delay
from creator.clients.openai import Endpoint, EngineFailed
from creator.models import EngineSettings, GenerationJob
from creator.service.engines.config import OPENAI_COMPATIBLE
from creator.service.generation import complete, fail, in_turns, request_of


@dataclass(frozen=True, slots=True)
class Claimed:
    job_id: str
    endpoint: Endpoint
    request: PostGenerationRequested


async def claim(
    session: AsyncSession, *, box: Fernet, limit: int = 10, per_workspace: int = 2
) -> list[Claimed]:
    """Take queued jobs of this engine whose turn has come; they run after this commits.

    Fair across workspaces: a workspace never has more than ``per_workspace`` calls in
    flight (counted from the jobs being dispatched, so across every worker), and turns go
    round the workspaces (each one's first due job, then each one's second...), so one
    workspace with many or slow jobs cannot hold up another's.
    """
    query = (
        select(GenerationJob)
        .where(
            col(GenerationJob.id).in_(
                in_turns(_DUE, limit=limit, per_workspace=per_workspace, engine=OPENAI_COMPATIBLE)
            ),
            *_DUE,
        )
        .with_for_update(skip_locked=True)
    )
    claimed = []
    for job in (await session.scalars(query)).all():
        endpoint = await _endpoint(session, job, box)
        if endpoint is None:
            continue
        job.state, job.attempts, job.next_attempt_at = "dispatching", job.attempts + 1, _now()
        claimed.append(Claimed(job_id=job.id, endpoint=endpoint, request=request_of(job)))
    await session.flush()
    return claimed


_DUE = (
    col(GenerationJob.state) == "queued",
    col(GenerationJob.engine) == OPENAI_COMPATIBLE,
    col(GenerationJob.credits) == "reserved",
    col(GenerationJob.next_attempt_at) <= func.now(),
)


async def _endpoint(session: AsyncSession, job: GenerationJob, box: Fernet) -> Endpoint | None:
    settings = await session.get(EngineSettings, job.tenant_id)
    if settings is None or settings.engine != OPENAI_COMPATIBLE or not settings.base_url:
        await fail(session, job, error="the workspace's engine changed; regenerate the post")
        return None
    try:
        key = box.decrypt(settings.api_key or b"").decode()
    except InvalidToken:
        await fail(session, job, error="the engine's API key cannot be read; save the engine again")
        return None
    return Endpoint(base_url=settings.base_url, model=settings.model or "", api_key=key)


async def record_content(session: AsyncSession, *, job_id: str, content: GeneratedContent) -> None:
    job = await session.get(GenerationJob, job_id, with_for_update=True, populate_existing=True)
    if job is not None and job.state == "dispatching":
        await complete(session, job, content=content)


async def record_failure(
    session: AsyncSession,
    *,
    job_id: str,
    failure: EngineFailed,
    max_attempts: int,
    backoff: tuple[float, float],
) -> None:
    """Try again later when that may help; otherwise fail the job with the reason."""
    job = await session.get(GenerationJob, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.state != "dispatching":
        return
    job.error = str(failure)
    if failure.retryable and job.attempts < max_attempts:
        delay = backoff_delay(job.attempts, base=backoff[0], cap=backoff[1])
        job.state, job.next_attempt_at = "queued", _now() + timedelta(seconds=delay)
        return
    await fail(session, job, error=f"after {job.attempts} attempt(s): {failure}")


def _now() -> datetime:
    return datetime.now(UTC)


async def recover_stuck(
    session: AsyncSession, *, older_than: timedelta, max_attempts: int, limit: int = 100
) -> int:
    """Jobs left mid-call (a worker that crashed or was stopped) past their deadline: tried
    again while attempts remain, otherwise failed saying so (their credits released).

    Once each: the rows are locked and leave ``dispatching``, and a late answer of the
    lost call finds the job no longer waiting for it (``record_content``)."""
    query = (
        select(GenerationJob)
        .where(
            col(GenerationJob.state) == "dispatching",
            col(GenerationJob.engine) == OPENAI_COMPATIBLE,
            col(GenerationJob.next_attempt_at) < _now() - older_than,
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    jobs = list((await session.scalars(query)).all())
    for job in jobs:
        job.error = "the engine call was interrupted and did not finish"
        if job.attempts < max_attempts:
            job.state, job.next_attempt_at = "queued", _now()
        else:
            await fail(session, job, error=f"after {job.attempts} attempt(s): {job.error}")
    return len(jobs)
