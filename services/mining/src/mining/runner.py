"""Running website jobs: claim, hold credits, crawl, keep the leads, settle.

(n8n jobs hold their credits with the same ``hold_credits`` and are run by ``mining.n8n``.)

- A queued job is claimed (``running``) only after billing holds ``max_pages``
  ``extraction_pages`` credits for it (the job id is the reference). Billing away: the job
  stays queued. Billing refuses: the job fails saying why.
- Progress (pages fetched, leads found, errors) is stored and announced after every page
  (``bai.mining.job.progressed.v1``, which live events show); a cancel request stops the
  crawl after the current page.
- The end state: ``succeeded`` (no errors), ``partial`` (pages and errors), ``failed`` (no
  page could be read), ``cancelled``. Billing is then charged for the pages actually
  fetched; the rest of the hold goes back.
"""

from datetime import UTC, datetime
from typing import Any

import structlog
from nats.aio.client import Client as NatsClient
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import CommitCredits, QuotaAnswer, ReserveCredits, quota_subject
from bai_platform.db import Database
from bai_platform.rpc import Unreachable, ask
from mining.crawler import Crawler, Plan
from mining.extract import PageData
from mining.jobs import ENDED, announce, end_job, note_problem
from mining.leads import LeadBook
from mining.models import ExtractionJob, Lead

KIND = "extraction_pages"
WEBSITE = "website"
log = structlog.get_logger("mining.runner")


class JobRunner:
    def __init__(self, *, db: Database, nc: NatsClient | None, crawler: Crawler) -> None:
        self._db, self._nc, self._crawler = db, nc, crawler

    async def run_next(self) -> bool:
        """Run one queued job to its end; False when none is waiting (or billing is away)."""
        job = await self._claim()
        if job is None:
            return False
        book = LeadBook()
        state = "running"

        async def on_page(page: PageData) -> None:
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
            await self._progress(job.id, pages=1, items=len(book.leads))

        async def on_problem(problem: str, error: bool = True) -> None:
            await self._progress(job.id, errors=1 if error else 0, problem=problem)

        async def should_stop() -> bool:
            async with self._db.transaction() as session:
                return bool(
                    await session.scalar(
                        select(ExtractionJob.cancel_requested).where(ExtractionJob.id == job.id)
                    )
                )

        plan = Plan(
            urls=tuple(job.source["urls"]),
            same_site=bool(job.source.get("same_site", True)),
            max_pages=int(job.limits["max_pages"]),
            max_depth=int(job.limits["max_depth"]),
        )
        try:
            pages = await self._crawler.run(
                plan, on_page=on_page, on_problem=on_problem, should_stop=should_stop
            )
        except Exception as exc:  # a bug must not leave the job running forever
            log.exception("crawl_failed", job_id=job.id)
            await on_problem(f"the crawl stopped unexpectedly: {type(exc).__name__}")
            pages, state = 0, "failed"
        await self._finish(job.id, book, pages=pages, failed=state == "failed")
        return True

    async def _claim(self) -> ExtractionJob | None:
        async with self._db.transaction() as session:
            query = (
                select(ExtractionJob)
                .where(ExtractionJob.state == "queued", ExtractionJob.source_type == WEBSITE)
                .order_by(ExtractionJob.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            job = await session.scalar(query)
            if job is None or not await hold_credits(session, self._nc, job):
                return None
            return job

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

    async def _finish(self, job_id: str, book: LeadBook, *, pages: int, failed: bool) -> None:
        async with self._db.transaction() as session:
            job = await session.get_one(ExtractionJob, job_id, with_for_update=True)
            for lead in book.leads:
                await session.execute(
                    insert(Lead)
                    .values(tenant_id=job.tenant_id, job_id=job.id, **_lead_values(lead))
                    .on_conflict_do_nothing(index_elements=["job_id", "key"])
                )
            job.items_found = len(book.leads)
            await end_job(session, job, _end_state(job, pages, failed))
        await self._settle(job_id, pages)

    async def _settle(self, job_id: str, pages: int) -> None:
        async with self._db.transaction() as session:
            job = await session.get_one(ExtractionJob, job_id)
            tenant = job.tenant_id
        question = CommitCredits(tenant_id=tenant, kind=KIND, reference=job_id, amount=pages)
        try:
            await ask(self._nc, quota_subject("commit"), question, QuotaAnswer)
        except Unreachable:
            log.warning("credits_not_settled", job_id=job_id)  # settle_ended retries it
            return
        async with self._db.transaction() as session:
            row = await session.get_one(ExtractionJob, job_id, with_for_update=True)
            row.credits = "committed"


def _end_state(job: ExtractionJob, pages: int, failed: bool) -> str:
    if job.cancel_requested:
        return "cancelled"
    if failed or pages == 0:
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
        query = select(
            ExtractionJob.id, ExtractionJob.tenant_id, ExtractionJob.pages_fetched
        ).where(
            ExtractionJob.credits == "reserved",
            ExtractionJob.state.in_(ENDED),
            ExtractionJob.source_type == source_type,
        )
        ended = list((await session.execute(query.limit(50))).all())
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
