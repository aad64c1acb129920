"""The n8n engine: jobs dispatched to the tenant's workflow, results by signed callback.

Dispatch is an HTTP POST to the workflow's webhook, signed (``X-BAI-Timestamp``,
``X-BAI-Signature: v1=<hex>``; ``X-BAI-Event-Id`` = the job id so the workflow can
dedupe our retries) with a JSON body::

    {"job_id", "kind": "generate", "tenant_id", "callback_url", "post_id", "channel",
     "constraints": {"max_chars", "max_hashtags", "title", "image"}, "language",
     "brand": {"name", "voice"}, "campaign": {"id", "name", "brief", "goal"},
     "scheduled_at", "note", "previous_text"}

The workflow answers at once and later POSTs to ``callback_url``, signed the same way::

    {"job_id", "status": "completed", "content": {"text", "title", "hashtags",
     "call_to_action", "image_prompt", "alt_text"}}   or   {"job_id", "status": "failed", "error"}

Rules:
- a job goes out only once billing holds its credit (``creator.service.credits``);
- a dispatch that fails in a way that may pass (timeouts, 5xx, 429, an open circuit
  breaker) is tried again with exponential backoff and jitter, at most
  ``dispatch_max_attempts`` times; a refusal (other 4xx, a redirect, an internal address)
  fails the job at once with the workflow's reason, size-capped;
- a dispatched job with no callback by its engine's deadline times out;
- a callback is applied once: a job that already ended ignores repeats;
- a callback arriving after a timeout is recorded on the job and applied only if the job
  was not retried meanwhile (no newer job for the post); the planner then takes the
  late content because it answers the post's current request;
- a reply that is not valid content (no text, too long for the channel, not an object)
  fails the job with a message saying what was wrong.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import GeneratedContent, GenerationResult
from bai_platform.dispatching import Dispatch, JobTable, locked_job
from bai_platform.webhooks import DispatchFailed
from creator.models import EngineSettings, GenerationJob
from creator.service.channels import rules_for
from creator.service.engines.config import N8N
from creator.service.generation import ERROR_LIMIT, complete, fail, in_turns, request_of

ACTIVE = ("queued", "dispatching", "dispatched")
UNREADABLE_SECRET = (
    "the workflow's secret cannot be read (was the service key changed?); save the engine again"
)
NOT_N8N = "the workspace's engine is no longer n8n; regenerate the post to use the current one"
LATE_IGNORED = "(a late result was ignored: the post was retried)"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class N8nJobs(JobTable[GenerationJob]):
    """Generation jobs of the n8n engine, as ``bai_platform.dispatching`` sends them:
    ``state`` goes queued, dispatching, dispatched (n8n jobs only: OpenAI-compatible jobs
    share the first two states and have their own rules)."""

    model = GenerationJob
    workflow_model = EngineSettings
    progress, queued, sending, sent = "state", "queued", "dispatching", "dispatched"
    scope = (col(GenerationJob.engine) == N8N,)
    unreadable_secret = UNREADABLE_SECRET

    async def due(self, session: AsyncSession, *, limit: int) -> Sequence[GenerationJob]:
        """Queued n8n jobs whose turn has come."""
        due = (
            col(GenerationJob.state) == "queued",
            col(GenerationJob.engine) == N8N,
            # Only once billing holds its credit (creator.service.credits): a workflow that
            # answered before the hold would end the job with nothing to commit, and the hold
            # that came after would never be settled; a refused hold would have been written
            # for free.
            col(GenerationJob.credits) == "reserved",
            col(GenerationJob.next_attempt_at) <= _now(),
        )
        query = (  # in turns across workspaces: one with many jobs does not fill every batch
            select(GenerationJob)
            .where(col(GenerationJob.id).in_(in_turns(due, limit=limit)), *due)
            .with_for_update(skip_locked=True)
        )
        return (await session.scalars(query)).all()

    async def dispatch_of(self, session: AsyncSession, job: GenerationJob) -> Dispatch | None:
        settings = await self.workflow_of(session, job)
        if settings is None or settings.engine != N8N or not settings.webhook_url:
            await fail(session, job, error=NOT_N8N)
            return None
        payload = payload_of(job, self.callback_base)
        return await self.send_to(session, job, settings, payload=payload)

    async def deadline(self, session: AsyncSession, job: GenerationJob) -> timedelta:
        """The engine's deadline for a callback."""
        settings = await self.workflow_of(session, job)
        return timedelta(seconds=settings.deadline_seconds if settings else 600)

    def note_failure(self, job: GenerationJob, failure: DispatchFailed) -> None:
        job.error = str(failure)[:ERROR_LIMIT]

    async def refuse(self, session: AsyncSession, job: GenerationJob, reason: str) -> None:
        await fail(session, job, error=reason)

    async def time_out(self, session: AsyncSession, job: GenerationJob) -> None:
        await fail(session, job, error="the workflow did not call back in time", state="timed_out")


def payload_of(job: GenerationJob, callback_base: str) -> dict[str, Any]:
    request = request_of(job)
    rules = rules_for(job.channel)
    return {
        "job_id": job.id,
        "kind": "generate",
        "tenant_id": str(job.tenant_id),
        "callback_url": f"{callback_base.rstrip('/')}/v1/webhooks/n8n/{job.id}",
        "post_id": str(job.post_id),
        "channel": job.channel,
        "constraints": {
            "max_chars": rules.max_chars,
            "max_hashtags": rules.max_hashtags,
            "title": rules.wants_title,
            "image": rules.wants_image,
        },
        "language": request.voice.language or "en",
        "brand": {"name": request.brand_name, "voice": request.voice.model_dump(mode="json")},
        "campaign": {
            "id": str(request.campaign_id),
            "name": request.campaign_name,
            "brief": request.brief,
            "goal": request.goal,
        },
        "scheduled_at": request.scheduled_at.isoformat(),
        "note": request.note,
        "previous_text": request.previous_text,
    }


async def apply_callback(
    session: AsyncSession, *, tenant_id: UUID, job_id: str, payload: dict[str, Any]
) -> None:
    """The workflow's result: content or a failure, applied once and by the rules above."""
    job = await locked_job(session, GenerationJob, job_id)
    if job is None or job.tenant_id != tenant_id or job.engine != N8N:
        return  # not a job any workflow of this tenant was given
    if job.state in ("completed", "failed"):
        return
    if job.state not in ACTIVE and not await _latest(session, job):
        if LATE_IGNORED not in (job.error or ""):  # repeats of the late result change nothing
            job.error = f"{job.error or ''} {LATE_IGNORED}".strip()[:ERROR_LIMIT]
        return
    result = GenerationResult.model_validate(payload)
    if job.state not in ACTIVE and result.status != "completed":
        return  # a late failure adds nothing: the job already ended without content
    if result.status == "failed":
        reason = result.error if result.error and result.error.strip() else "no reason given"
        await fail(session, job, error=f"the workflow reported a failure: {reason}")
        return
    if result.status != "completed":
        unknown = f"{result.status!r:.50}"
        await fail(session, job, error=f"the workflow's reply has an unknown status: {unknown}")
        return
    content, problem = _content(result.content, job.channel)
    if content is None:
        await fail(session, job, error=f"the workflow's reply is not valid content: {problem}")
        return
    await complete(session, job, content=content)


def _content(raw: object, channel: str) -> tuple[GeneratedContent | None, str]:
    try:
        content = GeneratedContent.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "content"
        return None, f"{where}: {first['msg']}"
    rules = rules_for(channel)
    if not content.text.strip():
        return None, "text is empty"
    hashtags = _hashtags(content.hashtags, rules.max_hashtags)
    length, counted = len(content.text), ""
    if rules.hashtags_in_text and hashtags:
        # As the built-in engine counts them: the text, a blank line, then the hashtags.
        length += len(" ".join("#" + tag for tag in hashtags)) + 2
        counted = " with its hashtags"
    if length > rules.max_chars:
        return None, f"text has {length} characters{counted}; {channel} allows {rules.max_chars}"
    return content.model_copy(update={"hashtags": hashtags}), ""


def _hashtags(raw: list[str], limit: int) -> list[str]:
    """Without '#' or surrounding spaces, each once (whatever its case), at most ``limit``."""
    tags: dict[str, str] = {}
    for tag in (h.strip().lstrip("#").strip() for h in raw):
        if tag:
            tags.setdefault(tag.casefold(), tag)
    return list(tags.values())[: max(limit, 0)]


async def _latest(session: AsyncSession, job: GenerationJob) -> bool:
    newer = await session.scalar(
        select(col(GenerationJob.id))
        .where(
            col(GenerationJob.post_id) == job.post_id,
            col(GenerationJob.created_at) > job.created_at,
        )
        .limit(1)
    )
    return newer is None
