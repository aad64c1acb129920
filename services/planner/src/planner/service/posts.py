"""Posts: calendar queries, edits, rescheduling, review moves, regeneration, history."""

from datetime import date, datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_platform.errors import Conflict, FieldInvalid
from bai_platform.identity import Identity
from planner.models import Brand, Campaign, Post, PostTransition
from planner.schemas import PostState, PostUpdate
from planner.service._common import PostNotFound, move, now
from planner.service.campaigns import get_campaign
from planner.service.generation import request_generation
from planner.service.lifecycle import EDITABLE, MOVABLE, NEEDS_CONTENT, REGENERABLE, check_manual
from planner.service.publishing import cancel_active_jobs


class PostNotEditable(Conflict):
    code = "post_not_editable"


class SlotTaken(Conflict):
    code = "slot_taken"


async def get_post(
    session: AsyncSession, *, tenant_id: UUID, post_id: UUID, lock: bool = False
) -> Post:
    """The tenant's post; another tenant's is as unknown as a missing one."""
    query = select(Post).where(col(Post.id) == post_id, col(Post.tenant_id) == tenant_id)
    post = await session.scalar(query.with_for_update() if lock else query)
    if post is None:
        raise PostNotFound("no such post in this workspace")
    return post


async def update_post(
    session: AsyncSession, *, identity: Identity, post_id: UUID, data: PostUpdate
) -> Post:
    """Edit the content and / or move the post to another time."""
    post = await get_post(session, tenant_id=identity.tenant_id, post_id=post_id, lock=True)
    actor = f"user:{identity.subject}"
    if data.scheduled_at is not None:
        await _reschedule(session, post, data.scheduled_at)
    content = data.content()
    if content:
        await _edit(session, post, content, actor)
    post.updated_at = now()
    await _flush_slot(session)
    return post


async def transition_post(
    session: AsyncSession, *, identity: Identity, post_id: UUID, to: PostState, note: str | None
) -> Post:
    """Make one of the moves people may make (review, approval, scheduling)."""
    post = await get_post(session, tenant_id=identity.tenant_id, post_id=post_id, lock=True)
    await apply_manual_move(session, post, to=to, actor=f"user:{identity.subject}", note=note)
    return post


async def apply_manual_move(
    session: AsyncSession, post: Post, *, to: PostState, actor: str, note: str | None
) -> None:
    """The checks every person's move passes, then the move."""
    check_manual(PostState(post.state), to)
    if to in NEEDS_CONTENT and not post.text:
        raise PostNotEditable(f"a post without text cannot move to {to.value}")
    if post.state == PostState.SCHEDULED:
        await cancel_active_jobs(session, post_id=post.id, reason=f"moved back to {to.value}")
    await move(session, post, to=to, actor=actor, note=note)


async def regenerate_post(
    session: AsyncSession, *, identity: Identity, post_id: UUID, note: str | None
) -> Post:
    """Ask for new content, passing the editor's note to the writer."""
    post = await get_post(session, tenant_id=identity.tenant_id, post_id=post_id, lock=True)
    await regenerate(session, post, actor=f"user:{identity.subject}", note=note)
    return post


async def regenerate(session: AsyncSession, post: Post, *, actor: str, note: str | None) -> None:
    if PostState(post.state) not in REGENERABLE:
        allowed = sorted(s.value for s in REGENERABLE)
        raise PostNotEditable(
            f"a post in {post.state} cannot be regenerated; it can from: {', '.join(allowed)}",
            extra={"state": post.state, "allowed_from": allowed},
        )
    campaign = await session.get_one(Campaign, post.campaign_id)
    brand = await session.get_one(Brand, campaign.brand_id)
    await request_generation(
        session, post=post, campaign=campaign, brand=brand, actor=actor, note=note
    )


async def post_history(
    session: AsyncSession, *, tenant_id: UUID, post_id: UUID
) -> list[PostTransition]:
    """Every move of the post, oldest first."""
    await get_post(session, tenant_id=tenant_id, post_id=post_id)
    query = select(PostTransition).where(col(PostTransition.post_id) == post_id)
    return list((await session.scalars(query.order_by(col(PostTransition.id)))).all())


async def _reschedule(session: AsyncSession, post: Post, at: datetime) -> None:
    if PostState(post.state) not in MOVABLE:
        raise PostNotEditable(f"a {post.state} post cannot be moved")
    if at <= now():
        raise FieldInvalid("scheduled_at", "must be in the future")
    campaign = await get_campaign(session, tenant_id=post.tenant_id, campaign_id=post.campaign_id)
    brand = await session.get_one(Brand, campaign.brand_id)
    local = at.astimezone(ZoneInfo(brand.timezone))
    _check_in_campaign(campaign, local.date())
    if at != post.scheduled_at:
        await cancel_active_jobs(session, post_id=post.id, reason="the post was moved")
    post.scheduled_at = at
    post.local_date, post.local_time = local.date(), local.time().replace(tzinfo=None)


def _check_in_campaign(campaign: Campaign, day: date) -> None:
    if (campaign.starts_on and day < campaign.starts_on) or (
        campaign.ends_on and day > campaign.ends_on
    ):
        raise FieldInvalid("scheduled_at", "falls outside the campaign's dates")


async def _edit(session: AsyncSession, post: Post, content: dict[str, object], actor: str) -> None:
    state = PostState(post.state)
    if state not in EDITABLE:
        allowed = sorted(s.value for s in EDITABLE)
        raise PostNotEditable(
            f"a post in {state.value} cannot be edited; move it back to draft_ready first",
            extra={"state": state.value, "editable_in": allowed},
        )
    for field, value in content.items():
        setattr(post, field, [] if field == "hashtags" and value is None else value)
    post.content_version += 1
    if state != PostState.DRAFT_READY and post.text:
        await move(session, post, to=PostState.DRAFT_READY, actor=actor, note="edited")


async def _flush_slot(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:  # the request rolls back on the error
        raise SlotTaken("another post of this channel is already at that time") from exc
