"""Creator HTTP routes."""

from uuid import UUID

from fastapi import APIRouter

from bai_platform.db import ReadSession
from bai_platform.identity import CurrentIdentity
from creator import service
from creator.schemas import CampaignBriefRead

router = APIRouter(prefix="/v1/creator", tags=["creator"])


@router.get("/campaigns/{campaign_id}/brief")
async def get_campaign_brief(
    campaign_id: UUID, identity: CurrentIdentity, session: ReadSession
) -> CampaignBriefRead:
    brief = await service.get_campaign_brief(
        session, tenant_id=identity.tenant_id, campaign_id=campaign_id
    )
    return CampaignBriefRead.model_validate(brief)
