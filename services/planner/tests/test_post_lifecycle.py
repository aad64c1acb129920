"""The post lifecycle through the API: allowed moves, refusals naming the allowed ones,
edits, rescheduling, regeneration and the history of who moved what."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from bai_contracts import PostGenerationRequested, PostStateChanged
from bai_platform.db import Database
from planner.models import Campaign, Post, PostTransition, PublishJob

from .conftest import Announced, IdentityFor

POSTS = "/v1/planner/posts"
STATES = [
    "planned",
    "generating",
    "draft_ready",
    "in_review",
    "approved",
    "scheduled",
    "published",
    "failed",
    "rejected",
]
# The moves people may make, written out as the product defines them.
ALLOWED = {
    ("draft_ready", "in_review"),
    ("draft_ready", "approved"),
    ("in_review", "approved"),
    ("in_review", "rejected"),
    ("in_review", "draft_ready"),
    ("approved", "scheduled"),
    ("approved", "in_review"),
    ("scheduled", "approved"),
    ("failed", "approved"),
    ("failed", "in_review"),
    ("rejected", "in_review"),
}


@pytest.fixture
async def campaign_id(planner_db: Database, tenant: UUID, brand: str) -> UUID:
    campaign = Campaign(
        tenant_id=tenant,
        brand_id=UUID(brand),
        name="Lifecycle",
        channels=["instagram", "linkedin"],
        cadence={},
        starts_on=date(2026, 1, 1),
        ends_on=date(2027, 12, 31),
        created_by="test",
    )
    async with planner_db.transaction() as session:
        session.add(campaign)
    return campaign.id


PostIn = Callable[..., Awaitable[UUID]]


@pytest.fixture
def post_in(planner_db: Database, tenant: UUID, campaign_id: UUID) -> PostIn:
    """A post of the campaign in ``state`` (with text unless told), stored directly."""
    counter = iter(range(1, 1000))

    async def make(state: str, *, text: str | None = "Winter blend is here") -> UUID:
        day = date(2027, 2, 1) + timedelta(days=next(counter))
        post = Post(
            tenant_id=tenant,
            campaign_id=campaign_id,
            channel="instagram",
            local_date=day,
            local_time=time(10),
            scheduled_at=datetime.combine(day, time(9), tzinfo=UTC),
            state=state,
            origin="test",
            text=text,
            hashtags=[],
            content_version=1 if text else 0,
        )
        async with planner_db.transaction() as session:
            session.add(post)
        return post.id

    return make


@dataclass(frozen=True)
class PostsApi:
    """The post endpoints, called with one identity's headers."""

    client: httpx.AsyncClient
    headers: dict[str, str]

    async def get(self, post_id: UUID) -> httpx.Response:
        return await self.client.get(f"{POSTS}/{post_id}", headers=self.headers)

    async def move(self, post_id: UUID, to: str, **extra: Any) -> httpx.Response:
        """POST a transition of the post to state ``to`` (``extra``: a note)."""
        url = f"{POSTS}/{post_id}/transitions"
        return await self.client.post(url, json={"to": to, **extra}, headers=self.headers)

    async def edit(self, post_id: UUID, **changes: Any) -> httpx.Response:
        """PATCH the post with ``changes`` as the body."""
        return await self.client.patch(f"{POSTS}/{post_id}", json=changes, headers=self.headers)

    async def regenerate(self, post_id: UUID, **body: Any) -> httpx.Response:
        url = f"{POSTS}/{post_id}/regenerate"
        return await self.client.post(url, json=body, headers=self.headers)

    async def history(self, post_id: UUID) -> httpx.Response:
        return await self.client.get(f"{POSTS}/{post_id}/history", headers=self.headers)

    async def calendar(self, **params: Any) -> httpx.Response:
        """GET the calendar across campaigns with ``params`` as the query."""
        return await self.client.get(POSTS, params=params, headers=self.headers)


@pytest.fixture
def as_editor(client: httpx.AsyncClient, editor: dict[str, str]) -> PostsApi:
    return PostsApi(client, editor)


ApiAs = Callable[[UUID, str], PostsApi]


@pytest.fixture
def api_as(client: httpx.AsyncClient, identity_for: IdentityFor) -> ApiAs:
    """The post endpoints as a user with a role in a tenant."""
    return lambda tenant_id, role: PostsApi(client, identity_for(tenant_id, role))


Stored = Callable[[UUID], Awaitable[Post]]


@pytest.fixture
def stored(planner_db: Database) -> Stored:
    """The post as stored now."""

    async def read(post_id: UUID) -> Post:
        async with planner_db.transaction() as session:
            return await session.get_one(Post, post_id)

    return read


async def history(planner_db: Database, post_id: UUID) -> list[PostTransition]:
    async with planner_db.transaction() as session:
        query = select(PostTransition).where(col(PostTransition.post_id) == post_id)
        return list((await session.scalars(query.order_by(col(PostTransition.id)))).all())


@pytest.mark.parametrize(("current", "target"), [(a, b) for a in STATES for b in STATES])
async def test_only_the_moves_of_the_table_are_allowed(
    as_editor: PostsApi, post_in: PostIn, stored: Stored, current: str, target: str
) -> None:
    post_id = await post_in(current)

    response = await as_editor.move(post_id, target)

    if (current, target) in ALLOWED:
        assert response.status_code == 200, response.text
        assert response.json()["state"] == target
        assert (await stored(post_id)).state == target
    else:
        assert response.status_code == 409, response.text
        problem = response.json()
        assert problem["code"] == "invalid_transition"
        assert problem["allowed"] == sorted(b for a, b in ALLOWED if a == current)
        assert (await stored(post_id)).state == current


async def test_a_move_is_kept_in_the_history_and_announced(
    as_editor: PostsApi, post_in: PostIn, announced: Announced
) -> None:
    post_id = await post_in("draft_ready")

    await as_editor.move(post_id, "in_review", note="ok?")
    response = await as_editor.history(post_id)

    [entry] = response.json()["items"]
    assert (entry["from_state"], entry["to_state"], entry["note"]) == (
        "draft_ready",
        "in_review",
        "ok?",
    )
    assert entry["actor"].startswith("user:")
    changes = await announced(PostStateChanged)
    assert [(c.post_id, c.from_state, c.to_state) for c in changes] == [
        (post_id, "draft_ready", "in_review")
    ]


async def test_a_post_without_text_cannot_be_approved(as_editor: PostsApi, post_in: PostIn) -> None:
    post_id = await post_in("draft_ready", text=None)

    response = await as_editor.move(post_id, "approved")

    assert response.status_code == 409


async def test_a_viewer_cannot_move_a_post(
    api_as: ApiAs, tenant: UUID, post_in: PostIn, stored: Stored
) -> None:
    post_id = await post_in("draft_ready")
    as_viewer = api_as(tenant, "viewer")

    response = await as_viewer.move(post_id, "in_review")

    assert response.status_code == 403
    assert (await stored(post_id)).state == "draft_ready"


async def test_another_tenants_post_is_404_for_every_verb(
    api_as: ApiAs, tenant: UUID, post_in: PostIn, stored: Stored
) -> None:
    post_id = await post_in("draft_ready")
    intruder = api_as(UUID(int=tenant.int ^ 1), "owner")

    answers = [
        await intruder.get(post_id),
        await intruder.edit(post_id, text="x"),
        await intruder.move(post_id, "in_review"),
        await intruder.regenerate(post_id),
        await intruder.history(post_id),
    ]

    assert [a.status_code for a in answers] == [404] * 5
    post = await stored(post_id)
    assert (post.state, post.text) == ("draft_ready", "Winter blend is here")


async def test_editing_a_planned_post_makes_it_a_draft_with_a_new_version(
    as_editor: PostsApi, post_in: PostIn, planner_db: Database
) -> None:
    post_id = await post_in("planned", text=None)

    response = await as_editor.edit(
        post_id, text="Hand written", hashtags=["#coffee", "winter", "coffee"]
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["state"], body["text"], body["content_version"]) == (
        "draft_ready",
        "Hand written",
        1,
    )
    assert body["hashtags"] == ["coffee", "winter"]
    [entry] = await history(planner_db, post_id)
    assert (entry.from_state, entry.to_state, entry.note) == ("planned", "draft_ready", "edited")


@pytest.mark.parametrize("state", ["generating", "in_review", "approved", "scheduled", "published"])
async def test_content_cannot_be_edited_outside_drafting(
    as_editor: PostsApi, post_in: PostIn, stored: Stored, state: str
) -> None:
    post_id = await post_in(state)

    response = await as_editor.edit(post_id, text="Sneaky")

    assert response.status_code == 409
    assert response.json()["code"] == "post_not_editable"
    assert (await stored(post_id)).text == "Winter blend is here"


async def test_rescheduling_keeps_the_brands_wall_time(
    as_editor: PostsApi, post_in: PostIn, stored: Stored
) -> None:
    post_id = await post_in("approved")

    response = await as_editor.edit(post_id, scheduled_at="2027-07-01T18:30:00+00:00")

    assert response.status_code == 200, response.text
    post = await stored(post_id)
    assert post.scheduled_at == datetime(2027, 7, 1, 18, 30, tzinfo=UTC)
    # Madrid is UTC+2 in July.
    assert (post.local_date, post.local_time) == (date(2027, 7, 1), time(20, 30))


@pytest.mark.parametrize(
    "when",
    [
        "2020-01-01T10:00:00+00:00",  # the past
        "2030-01-01T10:00:00+00:00",  # after the campaign
        "2027-07-01T18:30:00",  # no offset
    ],
)
async def test_a_bad_new_time_is_422_and_moves_nothing(
    as_editor: PostsApi, post_in: PostIn, stored: Stored, when: str
) -> None:
    post_id = await post_in("approved")
    before = (await stored(post_id)).scheduled_at

    response = await as_editor.edit(post_id, scheduled_at=when)

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][-1] == "scheduled_at"
    assert (await stored(post_id)).scheduled_at == before


async def test_moving_a_post_onto_another_posts_slot_is_409(
    as_editor: PostsApi, post_in: PostIn, stored: Stored
) -> None:
    first, second = await post_in("approved"), await post_in("approved")
    taken = (await stored(first)).scheduled_at

    response = await as_editor.edit(second, scheduled_at=taken.isoformat())

    assert response.status_code == 409
    assert response.json()["code"] == "slot_taken"


async def test_regenerating_asks_again_with_the_note_and_a_new_request_id(
    as_editor: PostsApi, post_in: PostIn, stored: Stored, announced: Announced
) -> None:
    post_id = await post_in("draft_ready")

    response = await as_editor.regenerate(post_id, note="Shorter, mention the terrace")

    assert response.status_code == 202, response.text
    post = await stored(post_id)
    assert (post.state, post.generation_note) == ("generating", "Shorter, mention the terrace")
    [request] = await announced(PostGenerationRequested)
    assert request.request_id == post.generation_request_id
    assert request.note == "Shorter, mention the terrace"
    assert request.previous_text == "Winter blend is here"


@pytest.mark.parametrize("state", ["generating", "approved", "scheduled", "published"])
async def test_regenerating_is_refused_where_it_would_lose_work_in_flight(
    as_editor: PostsApi, post_in: PostIn, state: str
) -> None:
    post_id = await post_in(state)

    response = await as_editor.regenerate(post_id)

    assert response.status_code == 409


async def test_the_calendar_across_campaigns_filters_by_time_range_channel_and_state(
    api_as: ApiAs, tenant: UUID, post_in: PostIn
) -> None:
    ids = [await post_in(s) for s in ("draft_ready", "approved", "draft_ready")]
    as_viewer = api_as(tenant, "viewer")
    window = {"from": "2027-02-02T00:00:00Z", "to": "2027-02-04T00:00:00Z"}

    in_window = await as_viewer.calendar(**window)
    drafts = await as_viewer.calendar(state="draft_ready")
    linkedin = await as_viewer.calendar(channel="linkedin")

    assert [i["id"] for i in in_window.json()["items"]] == [str(ids[0]), str(ids[1])]
    assert {i["id"] for i in drafts.json()["items"]} == {str(ids[0]), str(ids[2])}
    assert linkedin.json()["items"] == []


async def test_taking_a_scheduled_post_back_or_moving_it_stands_its_publish_job_down(
    as_editor: PostsApi, tenant: UUID, post_in: PostIn, planner_db: Database
) -> None:
    moved_back, moved_later = await post_in("scheduled"), await post_in("scheduled")
    async with planner_db.transaction() as session:
        for post_id in (moved_back, moved_later):
            session.add(
                PublishJob(
                    id=f"pub_{uuid4().hex}", tenant_id=tenant, post_id=post_id, state="dispatched"
                )
            )

    back = await as_editor.move(moved_back, "approved")
    later = await as_editor.edit(moved_later, scheduled_at="2027-06-01T10:00:00Z")

    assert (back.status_code, later.status_code) == (200, 200)
    async with planner_db.transaction() as session:
        query = select(col(PublishJob.state)).where(
            col(PublishJob.post_id).in_([moved_back, moved_later])
        )
        assert set((await session.scalars(query)).all()) == {"cancelled"}


@pytest.mark.parametrize("text", [None, "", "   "])
async def test_a_drafts_text_cannot_be_emptied(
    as_editor: PostsApi, post_in: PostIn, stored: Stored, text: str | None
) -> None:
    post_id = await post_in("draft_ready")

    response = await as_editor.edit(post_id, text=text)

    assert response.status_code == 422
    assert (await stored(post_id)).text == "Winter blend is here"
