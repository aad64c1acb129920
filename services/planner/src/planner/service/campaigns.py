"""Campaigns: a brand's brief, channels, dates and cadence; and the monthly schedule."""

from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import CampaignCreated, MonthScheduled
from bai_platform.envelope import new_event
from bai_platform.errors import Conflict, FieldInvalid
from bai_platform.identity import Identity
from bai_platform.outbox import emit_many
from planner.models import Brand, Campaign, Post, PostTransition, ScheduleRun, outbox
from planner.schemas import (
    DEFAULT_CADENCE,
    WEEKDAYS,
    Cadence,
    CampaignCreate,
    CampaignState,
    CampaignUpdate,
    PostState,
    ScheduleResult,
)
from planner.service._common import CampaignNotFound, announce, now
from planner.service.brands import get_brand
from planner.service.calendar import ChannelCadence, Slot, lay_out_month, month_bounds
from planner.service.generation import generation_request

C = CampaignState
CAMPAIGN_MOVES: dict[C, frozenset[C]] = {
    C.DRAFT: frozenset({C.ACTIVE, C.ARCHIVED}),
    C.ACTIVE: frozenset({C.PAUSED, C.COMPLETED, C.ARCHIVED}),
    C.PAUSED: frozenset({C.ACTIVE, C.COMPLETED, C.ARCHIVED}),
    C.COMPLETED: frozenset({C.ACTIVE, C.ARCHIVED}),
    C.ARCHIVED: frozenset(),
}
CLOSED = frozenset({C.COMPLETED, C.ARCHIVED})
SLOT = ["campaign_id", "channel", "local_date", "local_time"]


class InvalidCampaignTransition(Conflict):
    code = "invalid_transition"


class CampaignClosed(Conflict):
    code = "campaign_closed"


async def create_campaign(
    session: AsyncSession, *, identity: Identity, data: CampaignCreate
) -> Campaign:
    """Store a draft campaign of one of the tenant's brands and announce it."""
    brand = await get_brand(session, tenant_id=identity.tenant_id, brand_id=data.brand_id)
    channels = [c.value for c in data.channels] or list(brand.default_channels)
    _check_cadence_channels(data.cadence.keys(), channels)
    campaign = Campaign(
        tenant_id=identity.tenant_id,
        brand_id=brand.id,
        name=data.name,
        goal=data.goal,
        brief=data.brief,
        channels=channels,
        cadence=_cadence_json(data.cadence),
        starts_on=data.starts_on,
        ends_on=data.ends_on,
        created_by=identity.subject,
    )
    session.add(campaign)
    await session.flush()
    await session.refresh(campaign)
    await _announce_created(session, campaign)
    return campaign


async def get_campaign(
    session: AsyncSession, *, tenant_id: UUID, campaign_id: UUID, lock: bool = False
) -> Campaign:
    """The tenant's campaign; another tenant's is as unknown as a missing one."""
    query = select(Campaign).where(
        col(Campaign.id) == campaign_id, col(Campaign.tenant_id) == tenant_id
    )
    campaign = await session.scalar(query.with_for_update() if lock else query)
    if campaign is None:
        raise CampaignNotFound("no such campaign in this workspace")
    return campaign


async def update_campaign(
    session: AsyncSession, *, identity: Identity, campaign_id: UUID, data: CampaignUpdate
) -> Campaign:
    """Change what was given; a state change must be one of the allowed moves."""
    campaign = await get_campaign(
        session, tenant_id=identity.tenant_id, campaign_id=campaign_id, lock=True
    )
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    if changes.get("state") is not None:
        _check_campaign_move(C(campaign.state), changes.pop("state"))
        campaign.state = data.state.value if data.state else campaign.state
    if changes.get("cadence") is not None:
        _check_cadence_channels(changes.pop("cadence").keys(), campaign.channels)
        campaign.cadence = _cadence_json(data.cadence or {})
    for field in ("name", "goal", "brief", "starts_on", "ends_on"):
        if field in changes and (changes[field] is not None or field != "name"):
            setattr(campaign, field, changes[field])
    if campaign.starts_on and campaign.ends_on and campaign.ends_on < campaign.starts_on:
        raise FieldInvalid("ends_on", "must not be before starts_on")
    campaign.updated_at = now()
    await session.flush()
    return campaign


async def schedule_month(
    session: AsyncSession, *, identity: Identity, campaign_id: UUID, month: str
) -> ScheduleResult:
    """Lay the month's posts out by the cadence and ask for their content.

    Idempotent per campaign and month: slots already laid out are kept as they are, so a
    second run creates nothing (and a changed cadence only adds the new slots).
    """
    campaign = await get_campaign(
        session, tenant_id=identity.tenant_id, campaign_id=campaign_id, lock=True
    )
    if C(campaign.state) in CLOSED:
        raise CampaignClosed(f"a {campaign.state} campaign cannot be scheduled")
    _check_month_in_campaign(campaign, month)
    brand = await get_brand(session, tenant_id=identity.tenant_id, brand_id=campaign.brand_id)
    slots = lay_out_month(
        month=month,
        tz=ZoneInfo(brand.timezone),
        cadence=cadence_of(campaign),
        starts_on=campaign.starts_on,
        ends_on=campaign.ends_on,
    )
    created = await _insert_posts(session, campaign, slots)
    await _ask_for_content(session, campaign, brand, created, actor=f"user:{identity.subject}")
    await _record_run(session, campaign, month, len(created))
    if created:  # a repeat that adds nothing announces nothing
        scheduled = MonthScheduled(campaign_id=campaign.id, month=month, created=len(created))
        await announce(
            session, tenant_id=campaign.tenant_id, event=scheduled, subject=str(campaign.id)
        )
    return ScheduleResult(month=month, created=len(created), existing=len(slots) - len(created))


def cadence_of(campaign: Campaign) -> dict[str, ChannelCadence]:
    """The campaign's cadence per channel; a channel without one posts three times a week."""
    cadence = {c: Cadence.model_validate(v) for c, v in campaign.cadence.items()}
    return {
        channel: _calendar_cadence(cadence.get(channel, DEFAULT_CADENCE))
        for channel in campaign.channels
    }


def _calendar_cadence(cadence: Cadence) -> ChannelCadence:
    return ChannelCadence(
        per_week=cadence.per_week,
        per_day=cadence.per_day,
        weekdays=tuple(sorted({WEEKDAYS.index(d) for d in cadence.weekdays})),
        times=tuple(sorted(set(cadence.times))),
    )


def _cadence_json(cadence: dict[Any, Cadence]) -> dict[str, Any]:
    return {str(channel): c.model_dump(mode="json") for channel, c in cadence.items()}


def _check_campaign_move(current: C, target: C) -> None:
    if target != current and target not in CAMPAIGN_MOVES[current]:
        allowed = sorted(s.value for s in CAMPAIGN_MOVES[current])
        raise InvalidCampaignTransition(
            f"a {current.value} campaign cannot become {target.value}; "
            f"allowed: {', '.join(allowed) or 'none'}",
            extra={"state": current.value, "allowed": allowed},
        )


def _check_cadence_channels(channels: Any, used: list[str]) -> None:
    stray = sorted(str(c) for c in channels if str(c) not in used)
    if stray:
        raise FieldInvalid("cadence", f"names channels the campaign does not use: {stray}")


def _check_month_in_campaign(campaign: Campaign, month: str) -> None:
    first, last = month_bounds(month)
    if (campaign.ends_on and first > campaign.ends_on) or (
        campaign.starts_on and last < campaign.starts_on
    ):
        span = f"{campaign.starts_on or '…'} to {campaign.ends_on or '…'}"
        raise FieldInvalid("month", f"{month} is outside the campaign ({span})")


async def _insert_posts(session: AsyncSession, campaign: Campaign, slots: list[Slot]) -> list[Post]:
    """Insert the slots not laid out yet, already waiting for content; the new posts."""
    if not slots:
        return []
    rows = [
        {
            "id": uuid4(),
            "tenant_id": campaign.tenant_id,
            "campaign_id": campaign.id,
            "channel": s.channel,
            "local_date": s.local_date,
            "local_time": s.local_time,
            "scheduled_at": s.scheduled_at,
            "state": PostState.GENERATING.value,
            "origin": "schedule",
            "hashtags": [],
            "content_version": 0,
            "generation_request_id": uuid4(),
        }
        for s in slots
    ]
    statement = insert(Post).on_conflict_do_nothing(index_elements=SLOT).returning(col(Post.id))
    new_ids: set[UUID] = set()
    for chunk in _chunks(rows, 1000):  # PostgreSQL takes at most 32,767 bind parameters
        new_ids.update((await session.scalars(statement.values(chunk))).all())
    if not new_ids:
        return []
    query = (
        select(Post)
        .where(col(Post.id).in_(new_ids))
        .order_by(col(Post.scheduled_at), col(Post.channel))
    )
    return list((await session.scalars(query)).all())


async def _ask_for_content(
    session: AsyncSession, campaign: Campaign, brand: Brand, posts: list[Post], *, actor: str
) -> None:
    """Each new post's history starts, and creator is asked for its content, in bulk."""
    if not posts:
        return
    history = [
        {
            "tenant_id": p.tenant_id,
            "post_id": p.id,
            "from_state": None,
            "to_state": PostState.GENERATING.value,
            "actor": actor,
            "note": "scheduled",
        }
        for p in posts
    ]
    for chunk in _chunks(history, 1000):
        await session.execute(insert(PostTransition).values(chunk))
    envelopes = [
        new_event(
            generation_request(p, campaign=campaign, brand=brand),
            source="planner",
            tenant_id=campaign.tenant_id,
            subject=str(p.id),
        )
        for p in posts
    ]
    await emit_many(session, outbox, envelopes)


def _chunks(rows: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


async def _record_run(session: AsyncSession, campaign: Campaign, month: str, created: int) -> None:
    statement = insert(ScheduleRun).values(
        campaign_id=campaign.id, month=month, tenant_id=campaign.tenant_id, created=created, runs=1
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["campaign_id", "month"],
            set_={
                "created": col(ScheduleRun.created) + created,
                "runs": col(ScheduleRun.runs) + 1,
                "last_run_at": func.now(),
            },
        )
    )


async def _announce_created(session: AsyncSession, campaign: Campaign) -> None:
    event = CampaignCreated(
        campaign_id=campaign.id,
        name=campaign.name,
        goal=campaign.goal,
        brief=campaign.brief,
        brand_id=campaign.brand_id,
        channels=campaign.channels,
        starts_on=campaign.starts_on,
        ends_on=campaign.ends_on,
    )
    await announce(session, tenant_id=campaign.tenant_id, event=event, subject=str(campaign.id))
