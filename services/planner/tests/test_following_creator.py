"""Creator's answers move posts on: order-safe (stale or late answers never overwrite
newer state) and idempotent (a replayed answer changes nothing)."""

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time
from uuid import UUID, uuid4

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from bai_contracts import (
    ContentFailed,
    ContentGenerated,
    ContentGenerationStarted,
    ContentVersionChosen,
    EventContract,
    GeneratedContent,
)
from bai_platform.db import Database
from bai_platform.envelope import new_event
from planner.events import on_content_event
from planner.models import Campaign, Post, PostTransition

CONTENT = GeneratedContent(
    title="Winter blend",
    text="Our winter blend is here. Come taste it.",
    hashtags=["#coffee", "mornings", "coffee"],
    call_to_action="Visit us",
    image_prompt="A steaming cup by a frosty window",
    alt_text="A cup of coffee",
)

Waiting = Callable[[], Awaitable[Post]]


@pytest.fixture
def waiting(planner_db: Database, tenant: UUID, brand: str) -> Waiting:
    """A post waiting (generating) for the answer to its current request."""

    async def make() -> Post:
        campaign = Campaign(
            tenant_id=tenant,
            brand_id=UUID(brand),
            name="C",
            channels=["x"],
            cadence={},
            created_by="test",
        )
        async with planner_db.transaction() as session:
            session.add(campaign)
            await session.flush()
            post = Post(
                tenant_id=tenant,
                campaign_id=campaign.id,
                channel="x",
                local_date=date(2026, 12, 1),
                local_time=time(10),
                scheduled_at=datetime(2026, 12, 1, 9, tzinfo=UTC),
                state="generating",
                origin="test",
                hashtags=[],
                content_version=0,
                generation_request_id=uuid4(),
            )
            session.add(post)
        return post

    return make


async def deliver(planner_db: Database, tenant: UUID, event: EventContract) -> None:
    envelope = new_event(event, source="creator", tenant_id=tenant, subject="post")
    async with planner_db.transaction() as session:
        await on_content_event(session, envelope)


async def reread(planner_db: Database, post_id: UUID) -> Post:
    async with planner_db.transaction() as session:
        return await session.get_one(Post, post_id)


async def moves(planner_db: Database, post_id: UUID) -> list[tuple[str | None, str]]:
    async with planner_db.transaction() as session:
        query = select(PostTransition).where(col(PostTransition.post_id) == post_id)
        rows = (await session.scalars(query.order_by(col(PostTransition.id)))).all()
        return [(r.from_state, r.to_state) for r in rows]


def generated(post: Post, *, version: int = 1, request_id: UUID | None = None) -> ContentGenerated:
    return ContentGenerated(
        request_id=request_id or post.generation_request_id or uuid4(),
        post_id=post.id,
        job_id="gen_abcdefgh",
        version=version,
        content=CONTENT,
    )


async def test_generated_content_makes_the_post_a_draft_with_the_content(
    planner_db: Database, tenant: UUID, waiting: Waiting
) -> None:
    post = await waiting()

    await deliver(planner_db, tenant, generated(post))

    stored = await reread(planner_db, post.id)
    assert stored.state == "draft_ready"
    assert (stored.title, stored.text) == (CONTENT.title, CONTENT.text)
    assert stored.hashtags == ["coffee", "mornings"]
    assert (stored.call_to_action, stored.alt_text) == ("Visit us", "A cup of coffee")
    assert (stored.content_version, stored.generation_job_id) == (1, "gen_abcdefgh")
    assert await moves(planner_db, post.id) == [("generating", "draft_ready")]


async def test_a_replayed_answer_changes_nothing(
    planner_db: Database, tenant: UUID, waiting: Waiting
) -> None:
    post = await waiting()
    answer = generated(post)

    await deliver(planner_db, tenant, answer)
    await deliver(planner_db, tenant, answer)

    assert (await reread(planner_db, post.id)).content_version == 1
    assert await moves(planner_db, post.id) == [("generating", "draft_ready")]


async def test_a_late_started_never_moves_a_post_that_has_its_draft(
    planner_db: Database, tenant: UUID, waiting: Waiting
) -> None:
    post = await waiting()
    request_id = post.generation_request_id
    assert request_id is not None

    await deliver(planner_db, tenant, generated(post))
    started = ContentGenerationStarted(
        request_id=request_id, post_id=post.id, job_id="gen_late0001"
    )
    await deliver(planner_db, tenant, started)

    stored = await reread(planner_db, post.id)
    assert stored.state == "draft_ready"
    assert stored.generation_job_id == "gen_abcdefgh"


async def test_started_remembers_the_job_of_the_current_request(
    planner_db: Database, tenant: UUID, waiting: Waiting
) -> None:
    post = await waiting()
    assert post.generation_request_id is not None
    started = ContentGenerationStarted(
        request_id=post.generation_request_id, post_id=post.id, job_id="gen_current1"
    )

    await deliver(planner_db, tenant, started)

    stored = await reread(planner_db, post.id)
    assert (stored.state, stored.generation_job_id) == ("generating", "gen_current1")


async def test_an_answer_to_a_superseded_request_is_ignored(
    planner_db: Database, tenant: UUID, waiting: Waiting
) -> None:
    post = await waiting()

    await deliver(planner_db, tenant, generated(post, request_id=uuid4()))

    stored = await reread(planner_db, post.id)
    assert (stored.state, stored.text) == ("generating", None)


async def test_a_failure_marks_the_post_failed_with_the_readable_reason(
    planner_db: Database, tenant: UUID, waiting: Waiting
) -> None:
    post = await waiting()
    assert post.generation_request_id is not None
    failed = ContentFailed(
        request_id=post.generation_request_id,
        post_id=post.id,
        job_id="gen_abcdefgh",
        error="n8n answered 500: workflow crashed",
    )

    await deliver(planner_db, tenant, failed)

    stored = await reread(planner_db, post.id)
    assert (stored.state, stored.last_error) == ("failed", "n8n answered 500: workflow crashed")


async def test_a_late_failure_never_undoes_a_draft(
    planner_db: Database, tenant: UUID, waiting: Waiting
) -> None:
    post = await waiting()
    assert post.generation_request_id is not None
    await deliver(planner_db, tenant, generated(post))

    late = ContentFailed(
        request_id=post.generation_request_id,
        post_id=post.id,
        job_id="gen_x0000000",
        error="timeout",
    )
    await deliver(planner_db, tenant, late)

    assert (await reread(planner_db, post.id)).state == "draft_ready"


async def test_content_after_a_failure_of_the_same_request_still_lands(
    planner_db: Database, tenant: UUID, waiting: Waiting
) -> None:
    post = await waiting()
    assert post.generation_request_id is not None
    failed = ContentFailed(
        request_id=post.generation_request_id,
        post_id=post.id,
        job_id="gen_x0000000",
        error="timeout",
    )
    await deliver(planner_db, tenant, failed)

    await deliver(planner_db, tenant, generated(post))

    assert (await reread(planner_db, post.id)).state == "draft_ready"


async def test_an_answer_naming_another_tenant_changes_nothing(
    planner_db: Database, tenant: UUID, waiting: Waiting
) -> None:
    post = await waiting()

    await deliver(planner_db, UUID(int=tenant.int ^ 1), generated(post))

    assert (await reread(planner_db, post.id)).state == "generating"
    async with planner_db.transaction() as session:
        count = select(func.count()).where(col(PostTransition.post_id) == post.id)
        assert await session.scalar(count) == 0


async def test_a_chosen_earlier_version_becomes_the_draft_while_the_post_is_drafted(
    planner_db: Database, tenant: UUID, waiting: Waiting
) -> None:
    drafted, reviewed = await waiting(), await waiting()
    for post in (drafted, reviewed):
        await deliver(planner_db, tenant, generated(post, version=2))
    async with planner_db.transaction() as session:
        row = await session.get_one(Post, reviewed.id)
        row.state = "in_review"
    earlier = CONTENT.model_copy(update={"text": "The first wording."})

    for post in (drafted, reviewed):
        chosen = ContentVersionChosen(
            post_id=post.id, version=1, content=earlier, chosen_by="user:ana"
        )
        await deliver(planner_db, tenant, chosen)

    assert (
        (await reread(planner_db, drafted.id)).text,
        (await reread(planner_db, drafted.id)).content_version,
    ) == ("The first wording.", 1)
    assert (await reread(planner_db, reviewed.id)).text == CONTENT.text  # in review: untouched
