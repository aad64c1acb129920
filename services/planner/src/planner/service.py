"""Planner business logic. Functions flush, never commit: the request commits at the edge."""

from uuid import UUID

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import CampaignCreated
from bai_platform.envelope import new_event
from bai_platform.identity import Identity
from bai_platform.outbox import emit
from bai_platform.pagination import decode_cursor, encode_cursor
from planner.models import Campaign, outbox
from planner.schemas import CampaignCreate

EDITORS = ("owner", "admin", "editor")


async def create_campaign(
    session: AsyncSession, *, identity: Identity, data: CampaignCreate
) -> Campaign:
    """Store a draft campaign and announce it, in one transaction."""
    identity.require_role(*EDITORS)
    campaign = Campaign(
        tenant_id=identity.tenant_id,
        name=data.name,
        goal=data.goal,
        channels=[c.value for c in data.channels],
        starts_on=data.starts_on,
        ends_on=data.ends_on,
        created_by=identity.subject,
    )
    session.add(campaign)
    await session.flush()
    await session.refresh(campaign)
    event = CampaignCreated(
        campaign_id=campaign.id,
        name=campaign.name,
        goal=campaign.goal,
        channels=campaign.channels,
        starts_on=campaign.starts_on,
        ends_on=campaign.ends_on,
    )
    await emit(
        session,
        outbox,
        new_event(event, source="planner", tenant_id=identity.tenant_id, subject=str(campaign.id)),
    )
    return campaign


async def list_campaigns(
    session: AsyncSession, *, tenant_id: UUID, limit: int, cursor: str | None
) -> tuple[list[Campaign], str | None]:
    """A page of the tenant's campaigns, newest first, and the cursor of the next page."""
    query = (
        select(Campaign)
        .where(Campaign.tenant_id == tenant_id)
        .order_by(Campaign.created_at.desc(), Campaign.id.desc())
        .limit(limit + 1)
    )
    if cursor:
        created_at, row_id = decode_cursor(cursor)
        query = query.where(tuple_(Campaign.created_at, Campaign.id) < tuple_(created_at, row_id))
    rows = list((await session.scalars(query)).all())
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)
