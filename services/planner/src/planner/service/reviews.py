"""Client review links: signed, expiring, no account needed.

A link covers one post or a campaign's month. The token is an HS256 JWT naming the
link; the link row is the source of truth (revoked, expired, answered). Creating a link
puts the covered drafts in review. The client approves or rejects each post; a
rejection sends the post back to be written again with the client's comment.
"""

from datetime import timedelta
from uuid import UUID

import jwt
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import ReviewLinkExpiring
from bai_platform.db import retrying_conflicts
from bai_platform.errors import Conflict, NotFound, Unauthorized
from bai_platform.identity import Identity
from bai_platform.secrets import derive_key
from planner.models import Brand, Campaign, Post, ReviewLink
from planner.schemas import PostState, ReviewDecision, ReviewLinkCreate
from planner.service._common import announce, move, now
from planner.service.calendar import month_bounds
from planner.service.campaigns import get_campaign
from planner.service.posts import apply_manual_move, get_post, regenerate

ISSUER, AUDIENCE = "bai-planner", "bai-review"
REVIEWABLE = (PostState.DRAFT_READY.value, PostState.IN_REVIEW.value)


class InvalidReviewLink(Unauthorized):
    code = "invalid_review_link"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={})


class NotUnderReview(Conflict):
    code = "not_under_review"


def review_key(secret: SecretStr) -> bytes:
    return derive_key(secret, "planner/review-links")


def sign_link(link: ReviewLink, *, key: bytes) -> str:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(link.id),
        "tid": str(link.tenant_id),
        "exp": int(link.expires_at.timestamp()),
    }
    return jwt.encode(claims, key, algorithm="HS256")


async def create_link(
    session: AsyncSession, *, identity: Identity, campaign_id: UUID, data: ReviewLinkCreate
) -> ReviewLink:
    """Make a link for a post or a month, and put the covered drafts in review."""
    campaign = await get_campaign(session, tenant_id=identity.tenant_id, campaign_id=campaign_id)
    link = ReviewLink(
        tenant_id=identity.tenant_id,
        campaign_id=campaign.id,
        post_id=data.post_id,
        month=data.month,
        reviewer=data.reviewer,
        expires_at=now() + timedelta(hours=data.expires_in_hours),
        created_by=identity.subject,
    )
    if data.post_id is not None:
        post = await get_post(session, tenant_id=identity.tenant_id, post_id=data.post_id)
        if post.campaign_id != campaign.id:
            raise NotFound("no such post in this campaign")
    session.add(link)
    await session.flush()

    async def put_in_review() -> None:
        for post in await covered_posts(session, link, lock=True):
            # Nothing empty is reviewed (a draft's text can be cleared by an edit): the
            # client would have nothing to judge, and an approval would be refused.
            if post.state == PostState.DRAFT_READY and post.text:
                await move(
                    session,
                    post,
                    to=PostState.IN_REVIEW,
                    actor=f"user:{identity.subject}",
                    note="sent to the client for review",
                )

    # The month's posts are locked in calendar order, while the worker's batch of creator's
    # answers locks them in the order the drafts were written: the two can deadlock.
    await retrying_conflicts(session, put_in_review)
    return link


async def revoke_link(session: AsyncSession, *, identity: Identity, link_id: UUID) -> None:
    link = await session.scalar(
        select(ReviewLink).where(
            col(ReviewLink.id) == link_id, col(ReviewLink.tenant_id) == identity.tenant_id
        )
    )
    if link is None:
        raise NotFound("no such review link in this workspace")
    link.revoked_at = link.revoked_at or now()


async def open_link(session: AsyncSession, *, token: str, key: bytes) -> ReviewLink:
    """The link a token names, if the token is genuine and the link still stands."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "tid"]},
        )
        link_id, tenant_id = UUID(claims["sub"]), UUID(claims["tid"])
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidReviewLink("this review link is not valid or has expired") from exc
    link = await session.scalar(
        select(ReviewLink).where(
            col(ReviewLink.id) == link_id, col(ReviewLink.tenant_id) == tenant_id
        )
    )
    if link is None or link.revoked_at is not None or link.expires_at <= now():
        raise InvalidReviewLink("this review link was withdrawn or has expired")
    return link


async def covered_posts(
    session: AsyncSession, link: ReviewLink, *, lock: bool = False
) -> list[Post]:
    """The posts a link covers, in calendar order."""
    query = select(Post).where(
        col(Post.tenant_id) == link.tenant_id, col(Post.campaign_id) == link.campaign_id
    )
    if link.post_id is not None:
        query = query.where(col(Post.id) == link.post_id)
    elif link.month is not None:
        first, last = month_bounds(link.month)
        query = query.where(col(Post.local_date).between(first, last))
    query = query.order_by(col(Post.scheduled_at), col(Post.id))
    return list((await session.scalars(query.with_for_update() if lock else query)).all())


async def review_context(session: AsyncSession, link: ReviewLink) -> tuple[Campaign, Brand]:
    campaign = await session.get_one(Campaign, link.campaign_id)
    return campaign, await session.get_one(Brand, campaign.brand_id)


async def decide(
    session: AsyncSession, *, link: ReviewLink, post_id: UUID, decision: ReviewDecision
) -> Post:
    """Apply the client's approval or rejection to one post the link covers."""
    post = await get_post(session, tenant_id=link.tenant_id, post_id=post_id, lock=True)
    if post.campaign_id != link.campaign_id or not _covers(link, post):
        raise NotFound("this review link does not cover that post")
    if post.state != PostState.IN_REVIEW:
        raise NotUnderReview(f"this post is {post.state}, not waiting for a review")
    actor = f"client:{link.id}"
    if decision.decision == "approve":
        await apply_manual_move(
            session, post, to=PostState.APPROVED, actor=actor, note=decision.comment
        )
    else:
        await apply_manual_move(
            session, post, to=PostState.REJECTED, actor=actor, note=decision.comment
        )
        await regenerate(session, post, actor="system:review", note=decision.comment)
    link.answered_at = link.answered_at or now()
    return post


def _covers(link: ReviewLink, post: Post) -> bool:
    if link.post_id is not None:
        return post.id == link.post_id
    if link.month is not None:
        first, last = month_bounds(link.month)
        return first <= post.local_date <= last
    return True


async def remind_expiring(session: AsyncSession, *, within: timedelta, limit: int = 100) -> int:
    """Announce unanswered links that expire within ``within``, once each."""
    at = now()
    query = (
        select(ReviewLink)
        .where(
            col(ReviewLink.answered_at).is_(None),
            col(ReviewLink.revoked_at).is_(None),
            col(ReviewLink.reminded_at).is_(None),
            col(ReviewLink.expires_at) > at,
            col(ReviewLink.expires_at) <= at + within,
        )
        .order_by(col(ReviewLink.expires_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    links = list((await session.scalars(query)).all())
    for link in links:
        link.reminded_at = at
        await announce(
            session, tenant_id=link.tenant_id, event=_expiring(link), subject=str(link.id)
        )
    return len(links)


def _expiring(link: ReviewLink) -> ReviewLinkExpiring:
    return ReviewLinkExpiring(
        link_id=link.id,
        campaign_id=link.campaign_id,
        post_id=link.post_id,
        month=link.month,
        expires_at=link.expires_at,
        created_by=link.created_by,
    )
