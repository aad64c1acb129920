"""Asking creator for content, and following its answers in an order-safe way.

Each request has its own id, kept on the post. An answer is applied only when it answers
the post's current request and the post is still waiting for it: a regeneration makes
older answers stale, and a late "started" never moves a post that already has content.
Repeats are no-ops (the inbox skips redelivered events; the state checks skip replays).
"""

from datetime import UTC, datetime
from uuid import UUID, uuid4

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bai_contracts import (
    BrandVoice,
    ContentFailed,
    ContentGenerated,
    ContentGenerationStarted,
    ContentVersionChosen,
    PostGenerationRequested,
)
from planner.models import Brand, Campaign, Post
from planner.schemas import PostState
from planner.service._common import announce, move
from planner.service.lifecycle import EDITABLE, system_may

CREATOR = "system:creator"
ERROR_LIMIT = 2000


async def request_generation(
    session: AsyncSession,
    *,
    post: Post,
    campaign: Campaign,
    brand: Brand,
    actor: str,
    note: str | None = None,
) -> None:
    """Move the post to generating and ask creator for content, in one transaction."""
    post.generation_request_id = uuid4()
    post.generation_note = note
    post.generation_job_id = None
    post.last_error = None
    await move(session, post, to=PostState.GENERATING, actor=actor, note=note)
    request = generation_request(post, campaign=campaign, brand=brand, note=note)
    await announce(session, tenant_id=post.tenant_id, event=request, subject=str(post.id))


def generation_request(
    post: Post, *, campaign: Campaign, brand: Brand, note: str | None = None
) -> PostGenerationRequested:
    """What creator needs to write the post: the brief, the voice, the channel, the note."""
    assert post.generation_request_id is not None, "a request has its id before it is sent"
    return PostGenerationRequested(
        request_id=post.generation_request_id,
        post_id=post.id,
        campaign_id=campaign.id,
        brand_id=brand.id,
        channel=post.channel,
        scheduled_at=post.scheduled_at,
        campaign_name=campaign.name,
        brief=campaign.brief,
        goal=campaign.goal,
        brand_name=brand.name,
        voice=BrandVoice.model_validate(brand.voice),
        note=note,
        previous_text=post.text,
    )


async def apply_started(
    session: AsyncSession, *, tenant_id: UUID, event: ContentGenerationStarted
) -> None:
    """Remember the job; the state is the planner's and a late start never moves it."""
    post = await _waiting_post(session, tenant_id=tenant_id, post_id=event.post_id)
    if post is None or post.generation_request_id != event.request_id:
        return
    if post.state == PostState.GENERATING and post.generation_job_id is None:
        post.generation_job_id = event.job_id


async def apply_generated(
    session: AsyncSession, *, tenant_id: UUID, event: ContentGenerated
) -> None:
    """Store the content and make the post a draft, if this answers the current request."""
    post = await _waiting_post(session, tenant_id=tenant_id, post_id=event.post_id)
    if post is None or post.generation_request_id != event.request_id:
        return
    if not system_may(PostState(post.state), PostState.DRAFT_READY):
        return
    content = event.content
    post.title, post.text = content.title, content.text
    post.hashtags = list(dict.fromkeys(h.lstrip("#") for h in content.hashtags))[:30]
    post.call_to_action, post.image_prompt = content.call_to_action, content.image_prompt
    post.alt_text = content.alt_text
    post.content_version = max(post.content_version + 1, event.version)
    post.generation_job_id, post.last_error = event.job_id, None
    await move(session, post, to=PostState.DRAFT_READY, actor=CREATOR)


async def apply_failed(session: AsyncSession, *, tenant_id: UUID, event: ContentFailed) -> None:
    """Mark the post failed with creator's reason, if it was waiting for this request."""
    post = await _waiting_post(session, tenant_id=tenant_id, post_id=event.post_id)
    if post is None or post.generation_request_id != event.request_id:
        return
    if post.state != PostState.GENERATING:
        return
    post.generation_job_id, post.last_error = event.job_id, event.error[:ERROR_LIMIT]
    await move(session, post, to=PostState.FAILED, actor=CREATOR, note=post.last_error)


async def _waiting_post(session: AsyncSession, *, tenant_id: UUID, post_id: UUID) -> Post | None:
    # Locked: two answers for one post are applied one after the other, never interleaved.
    query = (
        select(Post)
        .where(col(Post.id) == post_id, col(Post.tenant_id) == tenant_id)
        .with_for_update()
    )
    return await session.scalar(query)


async def apply_version_chosen(
    session: AsyncSession, *, tenant_id: UUID, event: ContentVersionChosen
) -> None:
    """An earlier version becomes the draft again, while the post is still being drafted."""
    post = await _waiting_post(session, tenant_id=tenant_id, post_id=event.post_id)
    if post is None or PostState(post.state) not in EDITABLE:
        return
    if post.content_version == event.version and post.state == PostState.DRAFT_READY:
        return  # already the draft: a replay
    content = event.content
    post.title, post.text = content.title, content.text
    post.hashtags = list(dict.fromkeys(h.lstrip("#") for h in content.hashtags))[:30]
    post.call_to_action, post.image_prompt = content.call_to_action, content.image_prompt
    post.alt_text, post.content_version = content.alt_text, event.version
    note = f"version {event.version} chosen"
    if post.state == PostState.DRAFT_READY:
        post.updated_at = datetime.now(UTC)
        return
    await move(session, post, to=PostState.DRAFT_READY, actor=event.chosen_by, note=note)
