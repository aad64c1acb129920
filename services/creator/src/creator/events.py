"""Creator's handlers for other services' events; each runs inside the inbox transaction."""

from uuid import UUID

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import CallbackReceived, CampaignCreated, PostGenerationRequested
from bai_platform.envelope import Envelope
from creator.models import CampaignBrief
from creator.service.engines import n8n
from creator.service.generation import accept_request


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


async def on_generation_requested(session: AsyncSession, envelope: Envelope) -> None:
    """Queue a job for the planner's request (a repeat of the request makes nothing new)."""
    request: PostGenerationRequested = envelope.payload(PostGenerationRequested)
    assert envelope.tenantid is not None, "planner events always carry the tenant"
    await accept_request(session, tenant_id=UUID(envelope.tenantid), request=request)


async def on_workflow_callback(session: AsyncSession, envelope: Envelope) -> None:
    """An n8n workflow answered a job (the gateway verified its signature)."""
    callback = envelope.payload(CallbackReceived)
    assert envelope.tenantid is not None, "verified callbacks always carry the tenant"
    await n8n.apply_callback(
        session, tenant_id=UUID(envelope.tenantid), job_id=callback.job_id, payload=callback.payload
    )
