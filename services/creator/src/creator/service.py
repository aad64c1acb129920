"""Creator business logic."""

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from creator.errors import CampaignBriefNotFound
from creator.models import CampaignBrief


async def get_campaign_brief(
    session: AsyncSession, *, tenant_id: UUID, campaign_id: UUID
) -> CampaignBrief:
    """The brief of one of the tenant's campaigns; another tenant's is not found."""
    brief = await session.scalar(
        select(CampaignBrief).where(
            CampaignBrief.tenant_id == tenant_id, CampaignBrief.campaign_id == campaign_id
        )
    )
    if brief is None:
        raise CampaignBriefNotFound("creator has no brief for this campaign")
    return brief
