"""Routes for client review links: an editor creates and revokes them; the client review
routes (``/v1/planner/review/{token}``) need no account: the signed link is the credential,
and the edge routes them without ForwardAuth.
"""

from uuid import UUID

from fastapi import APIRouter, Request, status

from bai_platform.app_state import settings_of
from bai_platform.db import ReadSession, Session
from bai_platform.identity import Editor
from bai_platform.openapi_links import ANSWER_ID, leads_to
from planner.models import ReviewLink
from planner.schemas import (
    ReviewDecision,
    ReviewLinkCreate,
    ReviewLinkRead,
    ReviewPost,
    ReviewView,
)
from planner.service import reviews
from planner.settings import PlannerSettings

router = APIRouter(prefix="/v1/planner", tags=["planner"])
review_router = APIRouter(prefix="/v1/planner/review", tags=["client review"])


def _settings(request: Request) -> PlannerSettings:
    return settings_of(request, PlannerSettings)


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
