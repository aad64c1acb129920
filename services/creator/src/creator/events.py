"""Creator's handlers for other services' events; each runs inside the inbox transaction."""

from uuid import UUID

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import CampaignCreated
from bai_platform.envelope import Envelope
from creator.models import CampaignBrief


async def on_campaign_created(session: AsyncSession, envelope: Envelope) -> None:
    """Keep the campaign's brief so generations can follow it."""
    event: CampaignCreated = envelope.payload(CampaignCreated)
    assert envelope.tenantid is not None, "planner events always carry the tenant"
    statement = insert(CampaignBrief).values(
        campaign_id=event.campaign_id,
        tenant_id=UUID(envelope.tenantid),
        name=event.name,
        goal=event.goal,
        channels=event.channels,
        starts_on=event.starts_on,
        ends_on=event.ends_on,
        source_event_id=envelope.id,
    )
    # The inbox already makes repeats no-ops; this guards a replay under a new event id.
    await session.execute(statement.on_conflict_do_nothing(index_elements=["campaign_id"]))
