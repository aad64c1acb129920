"""``n8n`` sources: the tenant's mining workflow finds the leads and reports them by page.

A queued n8n job holds ``max_pages`` credits (as website jobs do; billing away: it waits,
billing refuses: it fails), becomes ``running`` and is dispatched: an HTTP POST to the
workspace's workflow (PUT /v1/mining/workflow), signed (``X-BAI-Timestamp``,
``X-BAI-Signature: v1=<hex>``; ``X-BAI-Event-Id`` = the job id so the workflow can dedupe
our retries) with a JSON body::

    {"job_id", "kind": "extract", "tenant_id", "callback_url", "params": {...},
     "limits": {"max_pages", "max_items_per_page"}}

``params`` is the job's ``source.params`` as given. The workflow answers at once and later
POSTs to ``callback_url`` (the gateway verifies the signature), one callback per page::

    {"job_id", "page": 1, "items": [{"organisation", "website", "emails": [], "phones": [],
      "socials": [], "addresses": [], "source_url", "data": {}}], "final": false}

the last page with ``"final": true`` (it may carry items too), or at any time::

    {"job_id", "status": "failed", "error": "..."}

Rules:
- dispatch: a failure that may pass (timeouts, 5xx, 429, an open circuit breaker) is tried
  again with exponential backoff and jitter, at most ``dispatch_max_attempts`` times; a
  refusal (other 4xx, a redirect, an internal address), no workflow or an unreadable
  secret fails the job at once with the reason;
- a page is checked whole (see ``mining.service.pages``): a malformed one is rejected and changes
  nothing but the job's ``problems`` ("page 3 rejected: items[2].emails[0]: not an email
  address"); the workflow may send that page number again, corrected;
- a page number is applied once (repeats change nothing); pages may come in any order;
  a page above ``limits.max_pages``, above the final page, or a final page below one
  already taken is rejected with the reason;
- a page's items become leads, merged by email, phone or domain with each other and with
  the job's leads so far (an item with only an organisation merges by its name); each
  lead keeps where it came from (the item's ``source_url``, else ``n8n:page:<n>``);
- progress (``pages_fetched`` = pages taken, ``items_found`` = leads) is announced after
  every page taken; the job ``succeeded`` once the final page and every page below it have
  arrived;
- no end by the workflow's deadline (from dispatch): ``partial`` if pages arrived, else
  ``failed``, saying what was missing; a ``failed`` status ends the job the same way with
  the workflow's reason; a cancelled or ended job ignores later callbacks;
- credits: the pages taken are charged when the job ends, the rest of the hold goes back
  (``mining.service.runner.settle_ended``).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from nats.aio.client import Client as NatsClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import WorkflowReport
from bai_platform.db import Database
from bai_platform.dispatching import Dispatch, JobTable, locked_job
from bai_platform.worker import WorkerContext
from mining.models import ExtractionJob, MiningWorkflow
from mining.service.jobs import N8N, PROBLEMS_KEPT, announce, end_job
from mining.service.lead_store import count_leads, merge_items
from mining.service.pages import (
    MAX_ITEMS_PER_PAGE,
    Page,
    PageRejected,
    page_number,
    read_page,
    region_of,
)
from mining.service.runner import hold_credits, settle_ended
from mining.service.workflows import CONFIGURE, NOT_CONFIGURED

DEFAULT_DEADLINE_SECONDS = 3600
NO_WORKFLOW = f"{NOT_CONFIGURED}; {CONFIGURE}"
UNREADABLE_SECRET = (
    "the mining workflow's secret cannot be read (was the service key changed?); "
    "save the workflow again"
)


def _now() -> datetime:
    return datetime.now(UTC)


# ---- queued jobs hold their credits ----------------------------------------------------
async def start_queued(db: Database, nc: NatsClient | None, *, limit: int = 20) -> int:
    """Queued n8n jobs hold their credits and wait for dispatch; how many were started."""
    started = 0
    for _ in range(limit):
        async with db.transaction() as session:
            job = await session.scalar(
                select(ExtractionJob)
                .where(col(ExtractionJob.state) == "queued", col(ExtractionJob.source_type) == N8N)
                .order_by(col(ExtractionJob.created_at))
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if job is None:
                return started
            if await session.get(MiningWorkflow, job.tenant_id) is None:
                await end_job(session, job, "failed", problem=NO_WORKFLOW)
                continue
            if not await hold_credits(session, nc, job):
                if job.state == "queued":
                    return started  # billing away: try again on the next pass
                continue
            job.dispatch, job.next_attempt_at = "pending", _now()
            started += 1
    return started


# ---- dispatch ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class N8nJobs(JobTable[ExtractionJob]):
    """Running n8n jobs as ``bai_platform.dispatching`` sends them: ``dispatch`` goes
    pending, sending, sent while ``state`` stays running. A pass starts queued jobs first
    (their credits) and charges ended ones after."""

    model = ExtractionJob
    workflow_model = MiningWorkflow
    progress, queued, sending, sent = "dispatch", "pending", "sending", "sent"
    scope = (col(ExtractionJob.state) == "running",)
    unreadable_secret = UNREADABLE_SECRET

    async def before_pass(self, ctx: WorkerContext[Any]) -> None:
        await start_queued(ctx.db, ctx.nc)

    async def after_pass(self, ctx: WorkerContext[Any]) -> None:
        await settle_ended(ctx.db, ctx.nc, source_type=N8N)

    async def due(self, session: AsyncSession, *, limit: int) -> Sequence[ExtractionJob]:
        """Running n8n jobs whose dispatch is due."""
        query = (
            select(ExtractionJob)
            .where(
                col(ExtractionJob.state) == "running",
                col(ExtractionJob.dispatch) == "pending",
                col(ExtractionJob.next_attempt_at) <= _now(),
            )
            .order_by(col(ExtractionJob.next_attempt_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (await session.scalars(query)).all()

    async def dispatch_of(self, session: AsyncSession, job: ExtractionJob) -> Dispatch | None:
        workflow = await self.workflow_of(session, job)
        if workflow is None:
            await self.refuse(session, job, NO_WORKFLOW)
            return None
        return await self.send_to(
            session, job, workflow, payload=payload_of(job, self.callback_base)
        )

    async def deadline(self, session: AsyncSession, job: ExtractionJob) -> timedelta:
        return await _deadline(session, job)

    async def refuse(self, session: AsyncSession, job: ExtractionJob, reason: str) -> None:
        await end_job(session, job, "failed", problem=reason)

    async def time_out(self, session: AsyncSession, job: ExtractionJob) -> None:
        state = "partial" if job.pages_accepted else "failed"
        await end_job(session, job, state, problem=_overdue(job))

    def signs(self, job: ExtractionJob) -> bool:
        return job.source_type == N8N  # no workflow was ever given a website job


def payload_of(job: ExtractionJob, callback_base: str) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "kind": "extract",
        "tenant_id": str(job.tenant_id),
        "callback_url": f"{callback_base.rstrip('/')}/v1/webhooks/n8n/{job.id}",
        "params": job.source.get("params", {}),
        "limits": {
            "max_pages": int(job.limits["max_pages"]),
            "max_items_per_page": MAX_ITEMS_PER_PAGE,
        },
    }


def _overdue(job: ExtractionJob) -> str:
    taken = len(job.pages_accepted)
    if not taken:
        return "the workflow did not call back in time"
    if job.final_page is None:
        return f"the workflow did not finish in time: {taken} page(s) arrived, no final page"
    missing = sorted(set(range(1, job.final_page + 1)) - set(job.pages_accepted))
    listed = ", ".join(str(n) for n in missing[:20])
    return f"the workflow did not finish in time: pages {listed} of {job.final_page} missing"


# ---- callbacks ---------------------------------------------------------------------------
async def apply_callback(
    session: AsyncSession, *, tenant_id: UUID, job_id: str, payload: dict[str, Any]
) -> None:
    """A page, or the workflow's failure, applied by the rules above."""
    job = await locked_job(session, ExtractionJob, job_id)
    if job is None or job.tenant_id != tenant_id or job.source_type != N8N:
        return  # not a job any workflow of this tenant was given
    if job.state != "running":
        return  # ended (cancelled, timed out, done): later callbacks change nothing
    report = WorkflowReport.model_validate(payload)
    page_fields = {name: value for name, value in payload.items() if name != "status"}
    if report.status == "failed":
        await _failed(session, job, report.error)
        return
    if report.status is not None:
        reason = 'status must be "failed" (a failure) or absent (a page)'
        _reject(job, page_number(page_fields), reason)
        return
    try:  # the page itself, by mining's own page contract (mining.service.pages)
        page = read_page(page_fields, region=region_of(job.source.get("params", {})))
    except PageRejected as rejected:
        _reject(job, page_number(page_fields), str(rejected))
        return
    await _apply_page(session, job, page)


async def _failed(session: AsyncSession, job: ExtractionJob, error: str | None) -> None:
    reason = error.strip()[:500] if error and error.strip() else "no reason"
    state = "partial" if job.pages_accepted else "failed"
    await end_job(session, job, state, problem=f"the workflow reported a failure: {reason}")


async def _apply_page(session: AsyncSession, job: ExtractionJob, page: Page) -> None:
    if page.number in job.pages_accepted:
        return  # a repeat (n8n retrying a callback) changes nothing
    problem = _out_of_bounds(job, page)
    if problem:
        _reject(job, page.number, problem)
        return
    await merge_items(session, job, page.items)
    job.pages_accepted = sorted([*job.pages_accepted, page.number])
    job.pages_fetched = len(job.pages_accepted)
    job.final_page = page.number if page.final else job.final_page
    job.items_found = await count_leads(session, job.id)
    if job.dispatch != "sent":  # the workflow took it before we heard its answer
        await _taken(session, job)
    if job.final_page is not None and len(job.pages_accepted) == job.final_page:
        await end_job(session, job, "succeeded")
        return
    await announce(session, job)


def _out_of_bounds(job: ExtractionJob, page: Page) -> str | None:
    max_pages = int(job.limits["max_pages"])
    if page.number > max_pages:
        return f"the job takes at most {max_pages} pages (limits.max_pages)"
    if job.final_page is not None and page.number > job.final_page:
        return f"page {job.final_page} was the final page"
    beyond = [n for n in job.pages_accepted if n > page.number]
    if page.final and beyond:
        return f"it is marked final, but page {max(beyond)} already arrived"
    return None


def _reject(job: ExtractionJob, number: int | None, reason: str) -> None:
    """Say why on the job (the latest problems are kept); nothing else changes."""
    which = f"page {number} rejected" if number is not None else "a callback was rejected"
    job.problems = [*job.problems, f"{which}: {reason}"[:300]][-PROBLEMS_KEPT:]


async def _taken(session: AsyncSession, job: ExtractionJob) -> None:
    """A page came before the workflow's answer to the dispatch: it took the job."""
    deadline = await _deadline(session, job)
    job.dispatch, job.dispatched_at = "sent", _now()
    job.deadline_at = job.dispatched_at + deadline


async def _deadline(session: AsyncSession, job: ExtractionJob) -> timedelta:
    """How long the workflow has, from dispatch, to finish the job."""
    workflow = await session.get(MiningWorkflow, job.tenant_id)
    return timedelta(seconds=workflow.deadline_seconds if workflow else DEFAULT_DEADLINE_SECONDS)
