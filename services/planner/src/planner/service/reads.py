"""The calendar's hot reads: campaigns, a campaign with its progress, pages of posts, a post.

These are most of what people ask the planner for (bench/load_users.py), so they skip the
ORM: each is a ``bai_platform.reads.ReadQuery`` compiled once, run on the request's read
session and scoped to its workspace by the query itself. Changes go through the ORM
functions of ``campaigns`` and ``posts``.
"""

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ARRAY, ColumnElement, String, any_, bindparam, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from bai_platform.db import table_of
from bai_platform.pagination import decode_cursor, encode_cursor
from bai_platform.reads import TENANT, ReadQuery, Row
from planner.models import Campaign, Post
from planner.schemas import CampaignRead, Channel, PostRead, PostState, Progress
from planner.service._common import CampaignNotFound, PostNotFound
from planner.service.calendar import month_bounds


@dataclass(frozen=True, slots=True)
class PostFilter:
    """Which posts a page holds; what is left out does not filter."""

    campaign_id: UUID | None = None
    month: str | None = None
    starts: datetime | None = None
    ends: datetime | None = None
    channels: tuple[Channel, ...] = ()
    states: tuple[PostState, ...] = ()


_CAMPAIGNS = table_of(Campaign)
_POSTS = table_of(Post)
_CAMPAIGN_COLUMNS = [c for c in _CAMPAIGNS.c if c.key in CampaignRead.model_fields]
_POST_COLUMNS = [c for c in _POSTS.c if c.key in PostRead.model_fields]
_OWN_CAMPAIGN = _CAMPAIGNS.c.tenant_id == bindparam(TENANT)
_OWN_POST = _POSTS.c.tenant_id == bindparam(TENANT)
_NEWEST_FIRST = (_CAMPAIGNS.c.created_at.desc(), _CAMPAIGNS.c.id.desc())

_CAMPAIGN = ReadQuery(
    select(*_CAMPAIGN_COLUMNS).where(_OWN_CAMPAIGN, _CAMPAIGNS.c.id == bindparam("campaign_id"))
)
_CAMPAIGN_PAGE = ReadQuery(
    select(*_CAMPAIGN_COLUMNS).where(_OWN_CAMPAIGN).order_by(*_NEWEST_FIRST).limit(bindparam("n"))
)
_CAMPAIGN_PAGE_AFTER = ReadQuery(
    select(*_CAMPAIGN_COLUMNS)
    .where(
        _OWN_CAMPAIGN,
        tuple_(_CAMPAIGNS.c.created_at, _CAMPAIGNS.c.id)
        < tuple_(bindparam("after_at"), bindparam("after_id")),
    )
    .order_by(*_NEWEST_FIRST)
    .limit(bindparam("n"))
)
_PROGRESS = ReadQuery(
    select(_POSTS.c.state, func.count().label("n"))
    .where(_OWN_POST, _POSTS.c.campaign_id == bindparam("campaign_id"))
    .group_by(_POSTS.c.state)
)
_POST = ReadQuery(select(*_POST_COLUMNS).where(_OWN_POST, _POSTS.c.id == bindparam("post_id")))


async def campaign_page(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> tuple[list[Row], str | None]:
    """A page of the workspace's campaigns, newest first, and the cursor of the next page."""
    if cursor:
        at, row_id = decode_cursor(cursor)
        rows = await _CAMPAIGN_PAGE_AFTER.all(session, n=limit + 1, after_at=at, after_id=row_id)
    else:
        rows = await _CAMPAIGN_PAGE.all(session, n=limit + 1)
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last["created_at"], last["id"])


async def campaign(session: AsyncSession, *, campaign_id: UUID) -> Row:
    """The workspace's campaign; another workspace's is as unknown as a missing one."""
    row = await _CAMPAIGN.first(session, campaign_id=campaign_id)
    if row is None:
        raise CampaignNotFound("no such campaign in this workspace")
    return row


async def progress(session: AsyncSession, *, campaign_id: UUID) -> Progress:
    """Posts of the campaign per state."""
    rows = await _PROGRESS.all(session, campaign_id=campaign_id)
    counts = {PostState(row["state"]): row["n"] for row in rows}
    return Progress(total=sum(counts.values()), by_state=counts)


async def post(session: AsyncSession, *, post_id: UUID) -> Row:
    """The workspace's post; another workspace's is as unknown as a missing one."""
    row = await _POST.first(session, post_id=post_id)
    if row is None:
        raise PostNotFound("no such post in this workspace")
    return row


async def post_page(
    session: AsyncSession, *, where: PostFilter, limit: int, cursor: str | None
) -> tuple[list[Row], str | None]:
    """A page of the workspace's posts in calendar order, and the cursor of the next page."""
    params: dict[str, Any] = {"n": limit + 1}
    if where.campaign_id is not None:
        params["campaign_id"] = where.campaign_id
    if where.month is not None:
        params["first_day"], params["last_day"] = month_bounds(where.month)
    if where.starts is not None:
        params["starts"] = where.starts
    if where.ends is not None:
        params["ends"] = where.ends
    if where.channels:
        params["channels"] = [c.value for c in where.channels]
    if where.states:
        params["states"] = [s.value for s in where.states]
    if cursor:
        params["after_at"], params["after_id"] = decode_cursor(cursor)
    rows = await _post_query(frozenset(params)).all(session, **params)
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last["scheduled_at"], last["id"])


@functools.cache
def _post_query(given: frozenset[str]) -> ReadQuery:
    """The page's query for the filters given (at most one per combination, compiled once)."""
    p = _POSTS.c
    conditions: list[ColumnElement[bool]] = [_OWN_POST]
    if "campaign_id" in given:
        conditions.append(p.campaign_id == bindparam("campaign_id"))
    if "first_day" in given:
        conditions.append(p.local_date.between(bindparam("first_day"), bindparam("last_day")))
    if "starts" in given:
        conditions.append(p.scheduled_at >= bindparam("starts"))
    if "ends" in given:
        conditions.append(p.scheduled_at < bindparam("ends"))
    for name, column in (("channels", p.channel), ("states", p.state)):
        if name in given:
            conditions.append(column == any_(bindparam(name, type_=ARRAY(String))))
    if "after_at" in given:
        after = tuple_(bindparam("after_at"), bindparam("after_id"))
        conditions.append(tuple_(p.scheduled_at, p.id) > after)
    return ReadQuery(
        select(*_POST_COLUMNS)
        .where(*conditions)
        .order_by(p.scheduled_at, p.id)
        .limit(bindparam("n"))
    )
