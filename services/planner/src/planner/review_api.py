"""Routes for exports, imports, client review links and the publishing workflow.

The client review routes (``/v1/planner/review/{token}``) need no account: the signed
link is the credential, and the edge routes them without ForwardAuth.
"""

import re
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from bai_platform.db import ReadSession, Session
from bai_platform.identity import Admin, CurrentIdentity, Editor
from bai_platform.openapi_links import ANSWER_ID, leads_to
from bai_platform.secrets import fernet_for
from planner.models import ReviewLink
from planner.schemas import (
    ImportResult,
    Month,
    PublishingTargetRead,
    PublishingTargetUpdate,
    ReviewDecision,
    ReviewLinkCreate,
    ReviewLinkRead,
    ReviewPost,
    ReviewView,
)
from planner.service import exchange, publishing, reviews
from planner.settings import PlannerSettings

router = APIRouter(prefix="/v1/planner", tags=["planner"])
review_router = APIRouter(prefix="/v1/planner/review", tags=["client review"])

MonthQuery = Annotated[Month | None, Query()]
CSV_TYPE = "text/csv; charset=utf-8"
_UNSAFE_IN_FILENAME = re.compile(r"[^a-z0-9]+")


def _settings(request: Request) -> PlannerSettings:
    settings: PlannerSettings = request.app.state.settings
    return settings


def _filename(name: str, month: str | None, suffix: str) -> str:
    # ASCII only: header values are sent as latin-1, and anything else there (a campaign
    # named in Chinese, an emoji) made Starlette fail the whole download with a 500.
    safe = _UNSAFE_IN_FILENAME.sub("-", name.lower())[:60].strip("-") or "calendar"
    return f"{safe}-{month or 'all'}.{suffix}"


# ---- exports and imports ---------------------------------------------------------------
@router.get("/campaigns/{campaign_id}/calendar.csv", response_class=StreamingResponse)
async def export_csv(
    campaign_id: UUID, identity: CurrentIdentity, session: ReadSession, month: MonthQuery = None
) -> StreamingResponse:
    """The calendar as CSV; cells a spreadsheet would run as formulas are neutralised."""
    campaign, entries = await exchange.export_entries(
        session, tenant_id=identity.tenant_id, campaign_id=campaign_id, month=month
    )
    filename = _filename(campaign.name, month, "csv")
    return StreamingResponse(
        exchange.csv_chunks(entries),
        media_type=CSV_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/campaigns/{campaign_id}/calendar.ics", response_class=Response)
async def export_ics(
    campaign_id: UUID, identity: CurrentIdentity, session: ReadSession, month: MonthQuery = None
) -> Response:
    """The calendar as iCalendar (RFC 5545), one event per post."""
    campaign, entries = await exchange.export_entries(
        session, tenant_id=identity.tenant_id, campaign_id=campaign_id, month=month
    )
    filename = _filename(campaign.name, month, "ics")
    return Response(
        exchange.ics_bytes(campaign, entries),
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.post(
    "/campaigns/{campaign_id}/posts/import",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def import_posts(
    campaign_id: UUID, request: Request, identity: Editor, session: Session
) -> ImportResult:
    """Posts from a CSV (channel, scheduled_at, text, ...): all rows, or none and a report."""
    data = await request.body()
    imported = await exchange.import_posts(
        session, identity=identity, campaign_id=campaign_id, data=data
    )
    return ImportResult(imported=imported)


# ---- review links ----------------------------------------------------------------------
REVIEW_LINK_LINKS = leads_to(
    201,
    {"link_id": ANSWER_ID, "token": "$response.body#/token", "post_id": "$response.body#/post_id"},
)


@router.post(
    "/campaigns/{campaign_id}/review-links",
    status_code=status.HTTP_201_CREATED,
    responses=REVIEW_LINK_LINKS,
)
async def create_review_link(
    campaign_id: UUID,
    body: ReviewLinkCreate,
    request: Request,
    identity: Editor,
    session: Session,
) -> ReviewLinkRead:
    """A link for the client to approve or reject a post or a month; drafts go to review."""
    settings = _settings(request)
    link = await reviews.create_link(session, identity=identity, campaign_id=campaign_id, data=body)
    return _link_read(link, settings)


@router.delete("/review-links/{link_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_review_link(link_id: UUID, identity: Editor, session: Session) -> None:
    await reviews.revoke_link(session, identity=identity, link_id=link_id)


def _link_read(link: ReviewLink, settings: PlannerSettings) -> ReviewLinkRead:
    token = reviews.sign_link(link, key=reviews.review_key(settings.secret_key))
    return ReviewLinkRead(
        id=link.id,
        token=token,
        url=f"{settings.public_base_url.rstrip('/')}/v1/planner/review/{token}",
        expires_at=link.expires_at,
        post_id=link.post_id,
        month=link.month,
    )


@review_router.get("/{token}")
async def review_view(token: str, request: Request, session: ReadSession) -> ReviewView:
    """What the client reviews: the covered posts (no account needed)."""
    key = reviews.review_key(_settings(request).secret_key)
    link = await reviews.open_link(session, token=token, key=key)
    campaign, brand = await reviews.review_context(session, link)
    posts = await reviews.covered_posts(session, link)
    return ReviewView(
        campaign=campaign.name,
        brand=brand.name,
        expires_at=link.expires_at,
        posts=[ReviewPost.model_validate(p) for p in posts],
    )


@review_router.post("/{token}/posts/{post_id}")
async def review_decide(
    token: str, post_id: UUID, body: ReviewDecision, request: Request, session: Session
) -> ReviewPost:
    """Approve, or reject with a comment (the post is written again with it)."""
    key = reviews.review_key(_settings(request).secret_key)
    link = await reviews.open_link(session, token=token, key=key)
    post = await reviews.decide(session, link=link, post_id=post_id, decision=body)
    return ReviewPost.model_validate(post)


# ---- publishing workflow ---------------------------------------------------------------
@router.put("/publishing-target")
async def set_publishing_target(
    body: PublishingTargetUpdate, request: Request, identity: Admin, session: Session
) -> PublishingTargetRead:
    """Where due posts are sent to be published (the tenant's n8n workflow)."""
    settings = _settings(request)
    box = fernet_for(settings.secret_key, "planner/publishing-secrets")
    target = await publishing.set_target(
        session,
        identity=identity,
        data=body,
        box=box,
        allow_private=settings.allow_private_destinations,
    )
    return PublishingTargetRead.model_validate(target, from_attributes=True)


@router.get("/publishing-target")
async def get_publishing_target(
    identity: CurrentIdentity, session: ReadSession
) -> PublishingTargetRead:
    target = await publishing.get_target(session, tenant_id=identity.tenant_id)
    return PublishingTargetRead.model_validate(target, from_attributes=True)


@router.delete("/publishing-target", status_code=status.HTTP_204_NO_CONTENT)
async def delete_publishing_target(identity: Admin, session: Session) -> None:
    await publishing.delete_target(session, identity=identity)
