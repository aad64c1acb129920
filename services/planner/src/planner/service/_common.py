"""What every planner service module shares: announcing facts and moving posts."""

from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from bai_contracts import EventContract, PostStateChanged
from bai_platform.envelope import new_event
from bai_platform.errors import NotFound
from bai_platform.outbox import emit
from planner.models import Post, PostTransition, outbox
from planner.schemas import PostState


class PostNotFound(NotFound):
    code = "post_not_found"


class CampaignNotFound(NotFound):
    code = "campaign_not_found"


class BrandNotFound(NotFound):
    code = "brand_not_found"


def now() -> datetime:
    return datetime.now(UTC)


async def announce(
    session: AsyncSession, *, tenant_id: UUID, event: EventContract, subject: str
) -> None:
    """Write the event to the outbox in the caller's transaction."""
    envelope = new_event(event, source="planner", tenant_id=tenant_id, subject=subject)
    await emit(session, outbox, envelope)


async def move(
    session: AsyncSession, post: Post, *, to: PostState, actor: str, note: str | None = None
) -> None:
    """Set the post's state, keep the history and announce the change."""
    at = now()
    before = post.state
    post.state, post.updated_at = to.value, at
    session.add(
        PostTransition(
            tenant_id=post.tenant_id,
            post_id=post.id,
            from_state=before,
            to_state=to.value,
            actor=actor,
            note=note,
            at=at,
        )
    )
    changed = PostStateChanged(
        post_id=post.id,
        campaign_id=post.campaign_id,
        from_state=before,
        to_state=to.value,
        actor=actor,
        at=at,
        note=note,
    )
    await announce(session, tenant_id=post.tenant_id, event=changed, subject=str(post.id))
