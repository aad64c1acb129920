"""Running website jobs: claim fairly, hold credits, crawl, keep the leads, settle.

(n8n jobs hold their credits with the same ``hold_credits`` and are run by ``mining.service.n8n``.)

- Fairness: a worker runs up to ``jobs_at_once`` jobs side by side. It picks the next
  job round-robin by workspace (the workspace whose last job started longest ago first,
  its oldest queued job), and never starts one of a workspace that already has
  ``per_workspace`` jobs running on any worker (an advisory lock per workspace makes the
  count and the claim one step). A job counts as running for that cap only within its
  deadline (and a minute): a job a dead worker left ``running`` does not block its
  workspace for ever, and ``end_abandoned`` ends it (``failed``, charged what it fetched).
- A queued job is claimed (``running``) only after billing holds ``max_pages``
  ``extraction_pages`` credits for it (the job id is the reference). Billing away: the job
  stays queued. Billing refuses: the job fails saying why.
- Progress (pages fetched, leads found, errors) is stored and announced after every page
  and every problem (``bai.mining.job.progressed.v1``, which live events show); a cancel
  request stops the crawl after the current page.
- Each job has a wall-clock limit (``deadline_seconds``): the crawl is stopped there and
  the job ends with what it read, the reason in its problems.
- A job running when its worker stops ends there (``partial`` or ``failed``, saying so).
- The end state: ``succeeded`` (no errors), ``partial`` (pages and errors), ``failed`` (no
  page could be read, or the crawl failed), ``cancelled``. Billing is then charged for the
  pages fetched (``pages_fetched``: every request that went out, see ``mining.service.crawler``;
  never more than the ``max_pages`` held); the rest of the hold goes back.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog
from nats.aio.client import Client as NatsClient
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import CommitCredits, QuotaAnswer, ReserveCredits, quota_subject
from bai_platform.db import Database
from bai_platform.rpc import Unreachable, ask
from mining.models import ExtractionJob, Lead
from mining.service.crawler import Crawler, Plan, Problem
from mining.service.extract import PageData
from mining.service.jobs import ENDED, announce, end_job, note_problem, try_lock_workspace_queue
from mining.service.leads import LeadBook

KIND = "extraction_pages"
WEBSITE = "website"
STOPPED = "the worker stopped while the job ran; start it again for the rest"
ABANDONED = "the worker running this job stopped; nothing it found was kept"
ABANDONED_AFTER_SECONDS = 60
TURNS_LOOKED_AT = 50  # workspaces considered per claim, in turn order
log = structlog.get_logger(__name__)


class JobRunner:
    def __init__(
        self,
        *,
        db: Database,
        nc: NatsClient | None,
        crawler: Crawler,
        jobs_at_once: int = 1,
        per_workspace: int = 1,
        deadline_seconds: float | None = None,
    ) -> None:
        self._db, self._nc, self._crawler = db, nc, crawler
        self._at_once, self._per_workspace = jobs_at_once, per_workspace
        self._deadline = deadline_seconds
        self._running: set[asyncio.Task[None]] = set()

    async def fill(self) -> int:
        """Start queued jobs, fairly, until ``jobs_at_once`` run here; how many started."""
        started = 0
        while len(self._running) < self._at_once and (job := await self._claim()):
            task = asyncio.create_task(self._run(job), name=f"mining-job-{job.id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            started += 1
        return started

    async def run_next(self) -> bool:
        """Claim one job and run it to its end; False when none could start."""
        job = await self._claim()
        if job is None:
            return False
        await self._run(job)
        return True

    async def wait(self) -> None:
        """Until every job started here has ended."""
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def close(self) -> None:
        """Stop the jobs still running here (the worker is stopping)."""
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _run(self, job: ExtractionJob) -> None:
        """Run one claimed job to its end."""
        book = LeadBook()
        read = 0

        async def on_page(page: PageData) -> None:
            nonlocal read
            read += 1
            _add(book, page)
            await self._progress(job.id, pages=1, items=len(book.leads))

        async def on_problem(problem: Problem) -> None:
            await self._progress(
                job.id, pages=problem.pages, errors=int(problem.error), problem=problem.text
            )

        async def should_stop() -> bool:
            async with self._db.transaction() as session:
                query = select(col(ExtractionJob.cancel_requested)).where(
                    col(ExtractionJob.id) == job.id
                )
                return bool(await session.scalar(query))

        failed = False
        try:
            await self._crawler.run(
                self._plan(job), on_page=on_page, on_problem=on_problem, should_stop=should_stop
            )
        except asyncio.CancelledError:
            # The worker is stopping: the job ends with what it read, charged for what it
            # fetched, instead of staying "running" with its credits held.
            await asyncio.shield(self._stopped(job.id, book, read=read))
            raise
        except Exception as exc:  # a bug must not leave the job running forever
            log.exception("crawl_failed", job_id=job.id)
            await on_problem(Problem(f"the crawl stopped unexpectedly: {type(exc).__name__}"))
            failed = True
        await self._finish(job.id, book, read=read, failed=failed)

    async def _stopped(self, job_id: str, book: LeadBook, *, read: int) -> None:
        await self._progress(job_id, errors=1, problem=STOPPED)
        await self._finish(job_id, book, read=read, failed=False)

    def _plan(self, job: ExtractionJob) -> Plan:
        return Plan(
            urls=tuple(job.source["urls"]),
            same_site=bool(job.source.get("same_site", True)),
            max_pages=int(job.limits["max_pages"]),
            max_depth=int(job.limits["max_depth"]),
            deadline_seconds=self._deadline,
        )

    async def _claim(self) -> ExtractionJob | None:
        """The next job, round-robin by workspace, credits held; None when none can start."""
        async with self._db.transaction() as session:
            for tenant in await self._in_turn(session):
                if not await try_lock_workspace_queue(session, tenant):
                    continue  # another worker is claiming for it: the next workspace
                if await self._running_count(session, tenant) >= self._per_workspace:
                    continue
                job = await _oldest_queued(session, tenant)
                if job is None:
                    continue
                if await hold_credits(session, self._nc, job):
                    return job
                return None  # billing away or refused: the next pass tries again
            return None

    async def _in_turn(self, session: AsyncSession) -> list[UUID]:
        """Workspaces with queued website jobs, the one served least recently first (among
        those never served, the one waiting longest)."""
        waiting = (
            select(
                col(ExtractionJob.tenant_id),
                func.min(col(ExtractionJob.created_at)).label("oldest"),
            )
            .where(col(ExtractionJob.state) == "queued", col(ExtractionJob.source_type) == WEBSITE)
            .group_by(col(ExtractionJob.tenant_id))
            .subquery()
        )
        last_start = (
            select(func.max(col(ExtractionJob.started_at)))
            .where(
                col(ExtractionJob.tenant_id) == waiting.c.tenant_id,
                col(ExtractionJob.source_type) == WEBSITE,
            )
            .scalar_subquery()
        )
        query = (
            select(waiting.c.tenant_id)
            .order_by(last_start.asc().nulls_first(), waiting.c.oldest)
            .limit(TURNS_LOOKED_AT)
        )
        return list((await session.scalars(query)).all())

    def _alive(self) -> timedelta:
        """How long a job may be running: past it, its worker is gone."""
        return timedelta(seconds=(self._deadline or 24 * 3600) + ABANDONED_AFTER_SECONDS)

    async def end_abandoned(self) -> int:
        """End the website jobs a dead worker left ``running`` past any deadline (``failed``,
        saying so; ``settle_ended`` then charges what they fetched)."""
        async with self._db.transaction() as session:
            query = (
                select(ExtractionJob)
                .where(
                    col(ExtractionJob.source_type) == WEBSITE,
                    col(ExtractionJob.state) == "running",
                    col(ExtractionJob.started_at) <= datetime.now(UTC) - self._alive(),
                )
                .limit(50)
                .with_for_update(skip_locked=True)
            )
            abandoned = list((await session.scalars(query)).all())
            for job in abandoned:
                await end_job(session, job, "failed", problem=ABANDONED)
            return len(abandoned)

    async def _running_count(self, session: AsyncSession, tenant: UUID) -> int:
        alive = self._alive()
        query = select(func.count()).where(
            col(ExtractionJob.tenant_id) == tenant,
            col(ExtractionJob.source_type) == WEBSITE,
            col(ExtractionJob.state) == "running",
            col(ExtractionJob.started_at) > datetime.now(UTC) - alive,
        )
        return int(await session.scalar(query) or 0)

    async def _progress(
        self,
        job_id: str,
        *,
        pages: int = 0,
        items: int | None = None,
        errors: int = 0,
        problem: str | None = None,
    ) -> None:
        async with self._db.transaction() as session:
            job = await session.get_one(ExtractionJob, job_id, with_for_update=True)
            job.pages_fetched += pages
            job.errors += errors
            if items is not None:
                job.items_found = items
            if problem:
                note_problem(job, problem)
            await announce(session, job)

    async def _finish(self, job_id: str, book: LeadBook, *, read: int, failed: bool) -> None:
        async with self._db.transaction() as session:
            job = await session.get_one(ExtractionJob, job_id, with_for_update=True)
            for lead in book.leads:
                await session.execute(
                    insert(Lead)
                    .values(tenant_id=job.tenant_id, job_id=job.id, **_lead_values(lead))
                    .on_conflict_do_nothing(index_elements=["job_id", "key"])
                )
            job.items_found = len(book.leads)
            await end_job(session, job, _end_state(job, read, failed))
        await self._settle(job_id)

    async def _settle(self, job_id: str) -> None:
        async with self._db.transaction() as session:
            job = await session.get_one(ExtractionJob, job_id)
            tenant, pages = job.tenant_id, charged_pages(job)
        question = CommitCredits(tenant_id=tenant, kind=KIND, reference=job_id, amount=pages)
        try:
            await ask(self._nc, quota_subject("commit"), question, QuotaAnswer)
        except Unreachable:
            log.warning("credits_not_settled", job_id=job_id)  # settle_ended retries it
            return
        async with self._db.transaction() as session:
            row = await session.get_one(ExtractionJob, job_id, with_for_update=True)
            row.credits = "committed"


def charged_pages(job: ExtractionJob) -> int:
    """The pages fetched, never more than the ``max_pages`` held for the job."""
    return min(job.pages_fetched, int(job.limits.get("max_pages", job.pages_fetched)))


def _add(book: LeadBook, page: PageData) -> None:
    book.add(
        page=page.url,
        organisation=page.organisation,
        emails=page.emails,
        phones=page.phones,
        socials=page.socials,
        addresses=page.addresses,
        title=page.title,
        description=page.description,
    )


async def _oldest_queued(session: AsyncSession, tenant: UUID) -> ExtractionJob | None:
    query = (
        select(ExtractionJob)
        .where(
            col(ExtractionJob.tenant_id) == tenant,
            col(ExtractionJob.state) == "queued",
            col(ExtractionJob.source_type) == WEBSITE,
        )
        .order_by(col(ExtractionJob.created_at))
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return await session.scalar(query)


def _end_state(job: ExtractionJob, read: int, failed: bool) -> str:
    if job.cancel_requested:
        return "cancelled"
    if failed or read == 0:
        return "failed"
    return "partial" if job.errors else "succeeded"


def _lead_values(lead: Any) -> dict[str, Any]:
    return {
        "key": lead.key[:300],
        "organisation": (lead.organisation or None) and lead.organisation[:300],
        "domain": lead.domain,
        "emails": lead.emails[:50],
        "phones": lead.phones[:50],
        "socials": lead.socials[:50],
        "addresses": [a[:500] for a in lead.addresses[:20]],
        "pages": [p[:2000] for p in lead.pages[:100]],
        "data": lead.data,
    }


async def hold_credits(session: AsyncSession, nc: NatsClient | None, job: ExtractionJob) -> bool:
    """Have billing hold ``max_pages`` credits for the locked queued job, then start it.

    False when it cannot start now: billing away (the job stays queued, neither free nor
    failed) or billing refused (the job fails saying why).
    """
    question = ReserveCredits(
        tenant_id=job.tenant_id, kind=KIND, amount=int(job.limits["max_pages"]), reference=job.id
    )
    try:
        answer = await ask(nc, quota_subject("reserve"), question, QuotaAnswer)
    except Unreachable:
        return False
    if not answer.ok:
        reason = answer.reason or "billing refused"
        await end_job(session, job, "failed", problem=f"not enough extraction credits: {reason}")
        return False
    job.state, job.credits, job.started_at = "running", "reserved", datetime.now(UTC)
    await announce(session, job)
    return True


async def settle_ended(db: Database, nc: NatsClient | None, *, source_type: str) -> int:
    """Charge ended jobs of ``source_type`` whose credits are still held: the pages they
    fetched (n8n: the pages accepted); the rest of the hold goes back."""
    async with db.transaction() as session:
        query = select(ExtractionJob).where(
            col(ExtractionJob.credits) == "reserved",
            col(ExtractionJob.state).in_(ENDED),
            col(ExtractionJob.source_type) == source_type,
        )
        rows = (await session.scalars(query.limit(50))).all()
        ended = [(job.id, job.tenant_id, charged_pages(job)) for job in rows]
    settled = 0
    for job_id, tenant, pages in ended:
        question = CommitCredits(tenant_id=tenant, kind=KIND, reference=job_id, amount=pages)
        try:
            await ask(nc, quota_subject("commit"), question, QuotaAnswer)
        except Unreachable:
            return settled
        async with db.transaction() as session:
            row = await session.get_one(ExtractionJob, job_id, with_for_update=True)
            row.credits = "committed"
        settled += 1
    return settled
