"""Planner HTTP routes: thin, they validate, call the service and shape the answer."""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, status

from bai_platform.db import ReadSession, Session
from bai_platform.identity import CurrentIdentity, Editor
from bai_platform.openapi_links import ANSWER_ID, FIRST_ITEM_ID, leads_to, link_to
from bai_platform.pagination import MAX_PAGE_SIZE
from planner.schemas import (
    BrandCreate,
    BrandPage,
    BrandRead,
    BrandUpdate,
    CampaignCreate,
    CampaignPage,
    CampaignRead,
    CampaignUpdate,
    Channel,
    Month,
    PostHistory,
    PostPage,
    PostRead,
    PostState,
    PostUpdate,
    RegenerateRequest,
    ScheduleRequest,
    ScheduleResult,
    TransitionRead,
    TransitionRequest,
)
from planner.service import brands, campaigns, posts, reads

router = APIRouter(prefix="/v1/planner", tags=["planner"])

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
Cursor = Annotated[str | None, Query(max_length=200)]

# The ids answers carry, linked to the operations that take them (bai_platform.openapi_links).
BRAND_LINKS = leads_to(
    201,
    {"brand_id": ANSWER_ID},
    create_campaign=link_to("post", "/v1/planner/campaigns", body={"brand_id": ANSWER_ID}),
)
CAMPAIGN_LINKS = leads_to(201, {"campaign_id": ANSWER_ID})
SCHEDULED_LINKS = leads_to(202, {"campaign_id": "$request.path.campaign_id"})
POST_LINKS = leads_to(200, {"post_id": FIRST_ITEM_ID})
# A read or changed resource leads on too: a post just edited is then moved along its states.
BRAND_READ_LINKS = leads_to(
    200,
    {"brand_id": ANSWER_ID},
    create_campaign=link_to("post", "/v1/planner/campaigns", body={"brand_id": ANSWER_ID}),
)
CAMPAIGN_READ_LINKS = leads_to(
    200, {"campaign_id": ANSWER_ID, "brand_id": "$response.body#/brand_id"}
)
POST_IDS = {"post_id": ANSWER_ID, "campaign_id": "$response.body#/campaign_id"}
POST_READ_LINKS = leads_to(200, POST_IDS)
REGENERATED_LINKS = leads_to(202, POST_IDS)


# ---- brands ----------------------------------------------------------------------------
@router.post("/brands", status_code=status.HTTP_201_CREATED, responses=BRAND_LINKS)
async def create_brand(body: BrandCreate, identity: Editor, session: Session) -> BrandRead:
    brand = await brands.create_brand(session, identity=identity, data=body)
    return BrandRead.model_validate(brand)


@router.get("/brands")
async def list_brands(
    identity: CurrentIdentity, session: ReadSession, limit: Limit = 50, cursor: Cursor = None
) -> BrandPage:
    rows, next_cursor = await brands.list_brands(
        session, tenant_id=identity.tenant_id, limit=limit, cursor=cursor
    )
    return BrandPage(items=[BrandRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/brands/{brand_id}", responses=BRAND_READ_LINKS)
async def get_brand(brand_id: UUID, identity: CurrentIdentity, session: ReadSession) -> BrandRead:
    brand = await brands.get_brand(session, tenant_id=identity.tenant_id, brand_id=brand_id)
    return BrandRead.model_validate(brand)


@router.patch("/brands/{brand_id}", responses=BRAND_READ_LINKS)
async def update_brand(
    brand_id: UUID, body: BrandUpdate, identity: Editor, session: Session
) -> BrandRead:
    brand = await brands.update_brand(session, identity=identity, brand_id=brand_id, data=body)
    return BrandRead.model_validate(brand)


# ---- campaigns -------------------------------------------------------------------------
@router.post("/campaigns", status_code=status.HTTP_201_CREATED, responses=CAMPAIGN_LINKS)
async def create_campaign(body: CampaignCreate, identity: Editor, session: Session) -> CampaignRead:
    campaign = await campaigns.create_campaign(session, identity=identity, data=body)
    return CampaignRead.model_validate(campaign)


@router.get("/campaigns")
async def list_campaigns(
    identity: CurrentIdentity, session: ReadSession, limit: Limit = 50, cursor: Cursor = None
) -> CampaignPage:
    rows, next_cursor = await reads.campaign_page(session, limit=limit, cursor=cursor)
    return CampaignPage.model_validate({"items": rows, "next_cursor": next_cursor})


@router.get("/campaigns/{campaign_id}", responses=CAMPAIGN_READ_LINKS)
async def get_campaign(
    campaign_id: UUID, identity: CurrentIdentity, session: ReadSession
) -> CampaignRead:
    """The campaign with its progress: how many posts are in each state."""
    read = CampaignRead.model_validate(await reads.campaign(session, campaign_id=campaign_id))
    read.progress = await reads.progress(session, campaign_id=campaign_id)
    return read


@router.patch("/campaigns/{campaign_id}", responses=CAMPAIGN_READ_LINKS)
async def update_campaign(
    campaign_id: UUID, body: CampaignUpdate, identity: Editor, session: Session
) -> CampaignRead:
    campaign = await campaigns.update_campaign(
        session, identity=identity, campaign_id=campaign_id, data=body
    )
    return CampaignRead.model_validate(campaign)


@router.post(
    "/campaigns/{campaign_id}/schedule",
    status_code=status.HTTP_202_ACCEPTED,
    responses=SCHEDULED_LINKS,
)
async def schedule_month(
    campaign_id: UUID, body: ScheduleRequest, identity: Editor, session: Session
) -> ScheduleResult:
    """Lay the month out and ask for content; running it again creates nothing new."""
    return await campaigns.schedule_month(
        session, identity=identity, campaign_id=campaign_id, month=body.month
    )


@router.get("/campaigns/{campaign_id}/posts", responses=POST_LINKS)
async def campaign_posts(
    campaign_id: UUID,
    identity: CurrentIdentity,
    session: ReadSession,
    month: Annotated[Month | None, Query()] = None,
    channel: Annotated[list[Channel] | None, Query()] = None,
    state: Annotated[list[PostState] | None, Query()] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> PostPage:
    """The campaign's calendar: posts in time order, a month of the brand's calendar."""
    await reads.campaign(session, campaign_id=campaign_id)
    where = reads.PostFilter(
        campaign_id=campaign_id,
        month=month,
        channels=tuple(channel or ()),
        states=tuple(state or ()),
    )
    return await _post_page(session, where, limit, cursor)


# ---- posts -----------------------------------------------------------------------------
@router.get("/posts", responses=POST_LINKS)
async def list_posts(
    identity: CurrentIdentity,
    session: ReadSession,
    campaign_id: UUID | None = None,
    starts: Annotated[datetime | None, Query(alias="from")] = None,
    ends: Annotated[datetime | None, Query(alias="to")] = None,
    channel: Annotated[list[Channel] | None, Query()] = None,
    state: Annotated[list[PostState] | None, Query()] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> PostPage:
    """Posts of every campaign between ``from`` (inclusive) and ``to`` (exclusive)."""
    where = reads.PostFilter(
        campaign_id=campaign_id,
        starts=starts,
        ends=ends,
        channels=tuple(channel or ()),
        states=tuple(state or ()),
    )
    return await _post_page(session, where, limit, cursor)


async def _post_page(
    session: ReadSession, where: reads.PostFilter, limit: int, cursor: str | None
) -> PostPage:
    rows, next_cursor = await reads.post_page(session, where=where, limit=limit, cursor=cursor)
    return PostPage.model_validate({"items": rows, "next_cursor": next_cursor})


@router.get("/posts/{post_id}", responses=POST_READ_LINKS)
async def get_post(post_id: UUID, identity: CurrentIdentity, session: ReadSession) -> PostRead:
    return PostRead.model_validate(await reads.post(session, post_id=post_id))


@router.patch("/posts/{post_id}", responses=POST_READ_LINKS)
async def update_post(
    post_id: UUID, body: PostUpdate, identity: Editor, session: Session
) -> PostRead:
    """Edit the content (a planned, rejected or failed post becomes a draft) or move it."""
    post = await posts.update_post(session, identity=identity, post_id=post_id, data=body)
    return PostRead.model_validate(post)


@router.post("/posts/{post_id}/transitions", responses=POST_READ_LINKS)
async def transition_post(
    post_id: UUID, body: TransitionRequest, identity: Editor, session: Session
) -> PostRead:
    """Move the post (review, approval, scheduling); 409 names the allowed moves."""
    post = await posts.transition_post(
        session, identity=identity, post_id=post_id, to=body.to, note=body.note
    )
    return PostRead.model_validate(post)


@router.post(
    "/posts/{post_id}/regenerate",
    status_code=status.HTTP_202_ACCEPTED,
    responses=REGENERATED_LINKS,
)
async def regenerate_post(
    post_id: UUID, body: RegenerateRequest, identity: Editor, session: Session
) -> PostRead:
    """Ask for new content; the note reaches the writer."""
    post = await posts.regenerate_post(session, identity=identity, post_id=post_id, note=body.note)
    return PostRead.model_validate(post)


@router.get("/posts/{post_id}/history")
async def post_history(
    post_id: UUID, identity: CurrentIdentity, session: ReadSession
) -> PostHistory:
    """Who moved the post, when, from what to what; oldest first."""
    rows = await posts.post_history(session, tenant_id=identity.tenant_id, post_id=post_id)
    return PostHistory(items=[TransitionRead.model_validate(r) for r in rows])
