"""Planner HTTP routes: thin, they validate, call the service and shape the answer."""

from typing import Annotated

from fastapi import APIRouter, Query, status

from bai_platform.db import ReadSession, Session
from bai_platform.identity import CurrentIdentity
from bai_platform.pagination import MAX_PAGE_SIZE
from planner import service
from planner.schemas import CampaignCreate, CampaignPage, CampaignRead

router = APIRouter(prefix="/v1/planner", tags=["planner"])


@router.post("/campaigns", status_code=status.HTTP_201_CREATED)
async def create_campaign(
    body: CampaignCreate, identity: CurrentIdentity, session: Session
) -> CampaignRead:
    campaign = await service.create_campaign(session, identity=identity, data=body)
    return CampaignRead.model_validate(campaign)


@router.get("/campaigns")
async def list_campaigns(
    identity: CurrentIdentity,
    session: ReadSession,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CampaignPage:
    rows, next_cursor = await service.list_campaigns(
        session, tenant_id=identity.tenant_id, limit=limit, cursor=cursor
    )
    return CampaignPage(
        items=[CampaignRead.model_validate(r) for r in rows], next_cursor=next_cursor
    )
