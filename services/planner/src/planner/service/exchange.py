"""Calendars out (CSV, iCalendar) and posts in (CSV, all rows or none)."""

import asyncio
import functools
from collections.abc import Iterator
from datetime import date, time
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_platform.errors import Unprocessable
from bai_platform.identity import Identity
from bai_platform.reads import Row
from planner.models import Brand, Campaign, Post, PostTransition
from planner.schemas import PostState
from planner.service.campaigns import CLOSED, CampaignClosed, get_campaign
from planner.service.exports import CalendarEntry, calendar_csv, calendar_ics
from planner.service.generation import request_generation
from planner.service.imports import ImportedPost, ImportReport, RowError, parse_posts_csv
from planner.service.reads import PostFilter, post_page

EXPORT_LIMIT = 20_000


class ImportRejected(Unprocessable):
    code = "import_rejected"


async def export_entries(
    session: AsyncSession, *, tenant_id: UUID, campaign_id: UUID, month: str | None
) -> tuple[Campaign, list[CalendarEntry]]:
    """The campaign's posts (of one month, or all) as calendar entries, in time order."""
    campaign = await get_campaign(session, tenant_id=tenant_id, campaign_id=campaign_id)
    brand = await session.get_one(Brand, campaign.brand_id)
    where = PostFilter(campaign_id=campaign.id, month=month)
    rows, _ = await post_page(session, where=where, limit=EXPORT_LIMIT, cursor=None)
    return campaign, [_entry(post, campaign, brand) for post in rows]


def csv_chunks(entries: list[CalendarEntry]) -> Iterator[bytes]:
    # A BOM so that spreadsheet programs read the UTF-8 right; the import accepts it.
    yield b"\xef\xbb\xbf"
    for chunk in calendar_csv(entries):
        yield chunk.encode()


def ics_bytes(campaign: Campaign, entries: list[CalendarEntry]) -> bytes:
    return calendar_ics(entries, name=campaign.name)


def _entry(post: Row, campaign: Campaign, brand: Brand) -> CalendarEntry:
    return CalendarEntry(
        post_id=post["id"],
        campaign=campaign.name,
        channel=post["channel"],
        scheduled_at=post["scheduled_at"],
        timezone=brand.timezone,
        state=post["state"],
        title=post["title"],
        text=post["text"],
        hashtags=tuple(post["hashtags"]),
        call_to_action=post["call_to_action"],
    )


async def import_posts(
    session: AsyncSession, *, identity: Identity, campaign_id: UUID, data: bytes
) -> int:
    """Add the file's posts to the campaign, or none of them with a row-by-row report."""
    campaign = await get_campaign(
        session, tenant_id=identity.tenant_id, campaign_id=campaign_id, lock=True
    )
    if campaign.state in CLOSED:  # as for laying a month out: a closed campaign gets no posts
        raise CampaignClosed(f"a {campaign.state} campaign cannot take imported posts")
    brand = await session.get_one(Brand, campaign.brand_id)
    # Linear, but up to a megabyte of a tenant's file: parsed on a thread, not the loop.
    parse = functools.partial(
        parse_posts_csv,
        data,
        tz=ZoneInfo(brand.timezone),
        channels=frozenset(campaign.channels),
        starts_on=campaign.starts_on,
        ends_on=campaign.ends_on,
    )
    report = await asyncio.to_thread(parse)
    taken = await _taken_slots(session, campaign, report)
    errors = [*report.errors, *taken, *_repeated_slots(report, skip={e.row for e in taken})]
    if errors:
        raise _rejected(errors)
    actor = f"user:{identity.subject}"
    for imported in report.posts:
        post = _post(campaign, imported)
        session.add(post)
        await session.flush()
        session.add(_created(post, actor))
        if post.text:
            post.state = PostState.DRAFT_READY.value
        else:
            await request_generation(
                session, post=post, campaign=campaign, brand=brand, actor=actor
            )
    await session.flush()
    return len(report.posts)


async def _taken_slots(
    session: AsyncSession, campaign: Campaign, report: ImportReport
) -> list[RowError]:
    if not report.posts:
        return []
    keys = [(p.channel, p.local_date, p.local_time) for p in report.posts]
    query = select(col(Post.channel), col(Post.local_date), col(Post.local_time)).where(
        col(Post.campaign_id) == campaign.id,
        tuple_(col(Post.channel), col(Post.local_date), col(Post.local_time)).in_(keys),
    )
    taken = {tuple(row) for row in await session.execute(query)}
    return [
        RowError(p.row, "scheduled_at", "the campaign already has a post of this channel then")
        for p in report.posts
        if (p.channel, p.local_date, p.local_time) in taken
    ]


def _repeated_slots(report: ImportReport, *, skip: set[int]) -> list[RowError]:
    """Rows whose calendar slot an earlier row of the file already fills.

    The parser tells rows apart by instant; the calendar (and its unique key) by the local
    wall time. The two differ when the clocks go back: 02:30+02:00 and 02:30+01:00 are two
    instants but one slot, and storing both failed the whole request on the unique key.
    """
    first_rows: dict[tuple[str, date, time], int] = {}
    errors = []
    for post in report.posts:
        earlier = first_rows.setdefault((post.channel, post.local_date, post.local_time), post.row)
        if earlier != post.row and post.row not in skip:
            message = (
                f"{post.channel} already has a post at {post.local_time:%H:%M} in row {earlier}"
            )
            errors.append(RowError(post.row, "scheduled_at", message))
    return errors


def _rejected(errors: list[RowError]) -> ImportRejected:
    rows = sorted(errors, key=lambda e: (e.row, e.column or ""))
    return ImportRejected(
        f"nothing was imported: {len(rows)} problem(s) in the file",
        extra={"errors": [{"row": e.row, "column": e.column, "message": e.message} for e in rows]},
    )


def _post(campaign: Campaign, imported: ImportedPost) -> Post:
    return Post(
        tenant_id=campaign.tenant_id,
        campaign_id=campaign.id,
        channel=imported.channel,
        local_date=imported.local_date,
        local_time=imported.local_time,
        scheduled_at=imported.scheduled_at,
        state=PostState.PLANNED.value,
        origin="import",
        title=imported.title,
        text=imported.text,
        hashtags=list(imported.hashtags),
        call_to_action=imported.call_to_action,
        image_prompt=imported.image_prompt,
        alt_text=imported.alt_text,
        content_version=1 if imported.text else 0,
    )


def _created(post: Post, actor: str) -> PostTransition:
    return PostTransition(
        tenant_id=post.tenant_id,
        post_id=post.id,
        from_state=None,
        to_state=PostState.DRAFT_READY.value if post.text else PostState.PLANNED.value,
        actor=actor,
        note="imported",
    )
