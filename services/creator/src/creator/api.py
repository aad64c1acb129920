"""Creator HTTP routes."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path

from bai_platform.db import ReadSession
from bai_platform.identity import CurrentIdentity
from creator import generation, service
from creator.schemas import (
    CampaignBriefRead,
    ContentVersionRead,
    ContentVersions,
    GenerationJobRead,
)

router = APIRouter(prefix="/v1/creator", tags=["creator"])


@router.get("/campaigns/{campaign_id}/brief")
async def get_campaign_brief(
    campaign_id: UUID, identity: CurrentIdentity, session: ReadSession
) -> CampaignBriefRead:
    brief = await service.get_campaign_brief(
        session, tenant_id=identity.tenant_id, campaign_id=campaign_id
    )
    return CampaignBriefRead.model_validate(brief)


@router.get("/jobs/{job_id}")
async def get_job(
    job_id: Annotated[str, Path(max_length=64)], identity: CurrentIdentity, session: ReadSession
) -> GenerationJobRead:
    """A generation job: its state, attempts and, when it failed, a readable reason."""
    job = await generation.get_job(session, tenant_id=identity.tenant_id, job_id=job_id)
    return GenerationJobRead.model_validate(job)


@router.get("/posts/{post_id}/versions")
async def post_versions(
    post_id: UUID, identity: CurrentIdentity, session: ReadSession
) -> ContentVersions:
    """Every version written for the post, newest first (regenerating keeps the history)."""
    rows = await generation.post_versions(session, tenant_id=identity.tenant_id, post_id=post_id)
    return ContentVersions(items=[ContentVersionRead.model_validate(r) for r in rows])
